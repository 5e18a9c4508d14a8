"""The `thinktank` command: the commands of each module in this package, and the one way a command ends."""

from __future__ import annotations

import sys

import typer

from thinktank.cli.ask import ask
from thinktank.cli.backend import backend_app
from thinktank.cli.cache import cache_app
from thinktank.cli.common import err_console, exit_code
from thinktank.cli.doctor import doctor
from thinktank.cli.evaluate import archs, eval_command, report, trace
from thinktank.cli.models import models_app
from thinktank.cli.search import search
from thinktank.cli.serve import serve
from thinktank.cli.ui import ui
from thinktank.version import __version__

app = typer.Typer(
    help="thinktank: compose inference-time techniques over LLM endpoints, verify by execution, serve the result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (README, "Shell completion")
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"thinktank {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print thinktank's version and exit."
    ),
) -> None:
    """Options that come before any command."""


app.add_typer(models_app, name="models")
app.add_typer(backend_app, name="backend")
app.add_typer(cache_app, name="cache")
app.command()(ask)
app.command("eval")(eval_command)
app.command()(report)
app.command()(search)
app.command()(trace)
app.command()(archs)
app.command()(serve)
app.command()(doctor)
app.command()(ui)


def main() -> None:
    """The console script: run a command; a known error or Ctrl-C ends it with its exit status (`EXIT_CODES`)."""
    try:
        app()
    except (KeyboardInterrupt, Exception) as exc:
        code = exit_code(exc)
        if code is None:
            raise
        if isinstance(exc, KeyboardInterrupt):
            err_console.print("interrupted")
        else:
            err_console.print(f"[bold red]error:[/bold red] {exc}", markup=True, highlight=False)
        sys.exit(code)
