"""`thinktank backend`: the embedded llama-server (build, start, stop, status)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from thinktank.cli.common import console, prepare_local, run_async, speculation_settings
from thinktank.cli.options import DraftOpt, ModelOpt, NoSpeculativeOpt
from thinktank.models.packs import DEFAULT_MODEL, model_label

backend_app = typer.Typer(help="The embedded llama-server: build, start, stop, status.", no_args_is_help=True)


@backend_app.command("build")
def backend_build(
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Forget that a build variant failed here and try it again.")
    ] = False,
) -> None:
    """Build llama-server now (otherwise it is built on first use) and smoke-test it.

    The native build (AMX kernels compiled out) is tried first; if it fails to build or to decode,
    a portable build is made instead. A variant that failed is remembered and skipped until --retry-failed.
    """
    from thinktank.backends.llama_build import SMOKE_FAILED, build_variants, server_binary_path

    if retry_failed:
        for variant in build_variants():
            (variant.directory / SMOKE_FAILED).unlink(missing_ok=True)
    prepare_local([])
    console.print(f"[green]✓[/green] llama-server at {server_binary_path()}")


@backend_app.command("start")
def backend_start(
    model: ModelOpt = DEFAULT_MODEL,
    slots: Annotated[int, typer.Option(min=1, max=64, help="Parallel slots (-np).")] = 4,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one).")] = None,
    no_speculative: NoSpeculativeOpt = True,
    draft: DraftOpt = None,
) -> None:
    """Start a long-lived embedded llama-server that later commands reuse.

    Several commands may share it at once; each then sends one sample per call, so no call waits for all
    of a sample group's slots to be free together.
    """
    from thinktank.backends.llama_server import LlamaServer, find_running

    running = find_running(model_label(model))
    if running:
        console.print(f"already running: {running.model} at {running.base_url} (pid {running.pid})")
        return
    speculation = speculation_settings(no_speculative, None, draft)
    prepare_local([model], speculation=speculation)
    server = LlamaServer(model, slots=slots, port=port, detached=True, speculation=speculation.for_model(model))
    run_async(server.start())
    console.print(f"[green]✓[/green] {server.model} at {server.base_url} (pid {server.process.pid if server.process else '?'})")


@backend_app.command("stop")
def backend_stop(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Stop only this model's server.")] = None,
) -> None:
    """Stop long-lived embedded servers (all, or one model's)."""
    from thinktank.backends.llama_server import running_servers, stop_detached

    targets = [s.model for s in running_servers() if model is None or s.model == model_label(model)]
    if not targets:
        console.print("no embedded server is running")
    for name in targets:
        stop_detached(name)
        console.print(f"stopped {name}")


@backend_app.command("status")
def backend_status() -> None:
    """Show long-lived embedded servers and where llama-server is built."""
    from thinktank.backends.llama_build import good_binary, server_binary_path
    from thinktank.backends.llama_server import running_servers

    binary = good_binary()
    state = "built and smoke-tested" if binary else "not built yet"
    console.print(f"llama-server binary: {binary or server_binary_path()} ({state})")
    servers = running_servers()
    if not servers:
        console.print("no embedded server is running (start one with `thinktank backend start`)")
        return
    table = Table("model", "url", "pid", "slots", "log")
    for s in servers:
        table.add_row(s.model, s.base_url, str(s.pid), str(s.slots), s.log)
    console.print(table)
