"""`thinktank ui`: a local, read-only dashboard over the runs directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from thinktank.cli.common import console, err_console


def ui(
    runs: Annotated[
        Path, typer.Option("--runs", help="Directory whose run directories (results.sqlite, pareto.json) to show.")
    ] = Path("runs"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8765,
    api_key_env: Annotated[
        str,
        typer.Option(
            help="Environment variable holding the key, as for `thinktank serve`: Bearer token, or open the page once with"
            " ?key=<key> (kept in a cookie); unset or empty: no auth."
        ),
    ] = "THINKTANK_API_KEY",
) -> None:
    """A local, read-only web dashboard: runs, comparisons, call trees, search fronts, live progress."""
    import uvicorn

    from thinktank.ui import UiSettings, create_app

    api_key = os.environ.get(api_key_env) or None
    if api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/yellow] ${api_key_env} is not set: anyone reaching {host}:{port} can read your runs"
        )
    if not runs.is_dir():
        err_console.print(f"[yellow]note:[/yellow] {runs} does not exist yet; the dashboard will list runs once it does")
    auth = "API key required" if api_key else "no auth"
    console.print(f"thinktank ui for {runs} at http://{host}:{port}/ ({auth})")
    uvicorn.run(create_app(UiSettings(runs=runs, api_key=api_key)), host=host, port=port, log_level="warning")
