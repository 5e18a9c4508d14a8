"""`thinktank cache`: the persistent response cache."""

from __future__ import annotations

import typer

from thinktank.cli.common import console, run_async
from thinktank.cli.options import CacheOpt

cache_app = typer.Typer(help="The persistent response cache.", no_args_is_help=True)


@cache_app.command("clear")
def cache_clear(cache: CacheOpt = None) -> None:
    """Delete every cached response (also repairs a corrupt cache file; a shared cache keeps its schema)."""
    from pathlib import Path

    from thinktank.exceptions import CacheError
    from thinktank.runtime import cache_location, open_cache

    location = cache_location(cache)

    async def clear() -> tuple[str, int]:
        opened = await open_cache(location)
        try:
            return opened.location, await opened.purge()
        finally:
            await opened.aclose()

    if not isinstance(location, Path):  # a URL: its errors (server down, other schema version) are the user's to see
        shown, removed = run_async(clear())
        console.print(f"removed {removed} cached responses from {shown}")
        return
    try:
        shown, removed = run_async(clear())
        console.print(f"removed {removed} cached responses from {shown}")
    except CacheError:
        for suffix in ("", "-wal", "-shm"):
            location.with_name(location.name + suffix).unlink(missing_ok=True)
        console.print(f"{location} was unreadable; deleted it")
