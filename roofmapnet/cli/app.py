"""The root ``roofmap`` Typer application; each subcommand lives in its own module."""

from __future__ import annotations

from importlib import import_module
from typing import Annotated

import typer

from roofmapnet import __version__

app = typer.Typer(
    name="roofmap",
    help=(
        "RoofMapNet: parse roof wireframes (junctions + eaves, ridges, hips, valleys) from aerial images.\n\n"
        "Typical flow: [bold]synth[/] or your own annotations → [bold]preprocess[/] → [bold]train[/] → "
        "[bold]validate[/] → [bold]infer[/] / [bold]export[/]."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Modules whose ``register(app)`` adds a working subcommand, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "synth",
    "preprocess",
    "train",
    "validate",
    "infer",
    "export",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"roofmap {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", help="Show the version and exit.", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """RoofMapNet command line."""


for _name in COMMAND_MODULES:
    import_module(f"roofmapnet.cli.{_name}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()
