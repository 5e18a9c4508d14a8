"""`thinktank cache`: the persistent response cache."""

from __future__ import annotations

import typer

from thinktank.cli.common import console

cache_app = typer.Typer(help="The persistent response cache.", no_args_is_help=True)


@cache_app.command("clear")
def cache_clear() -> None:
    """Delete every cached response (also repairs a corrupt cache file)."""
    from thinktank.engine import ResponseCache
    from thinktank.exceptions import CacheError
    from thinktank.runtime import default_cache_path

    path = default_cache_path()
    try:
        cache = ResponseCache(path)
        removed = cache.clear()
        cache.close()
        console.print(f"removed {removed} cached responses from {path}")
    except CacheError:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        console.print(f"{path} was unreadable; deleted it")
