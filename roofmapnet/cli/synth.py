"""``roofmap synth``: write the embedded synthetic roof dataset (raw annotation format)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from roofmapnet.cli._common import console, report_errors
from roofmapnet.data.synth import DEFAULT_COUNTS, SynthSummary, generate_dataset, parse_image_size
from roofmapnet.errors import RoofMapError

_DATASET = "Dataset"
_RUN = "Run"
_N_TRAIN, _N_VALID, _N_TEST = (DEFAULT_COUNTS[s] for s in ("train", "valid", "test"))


@report_errors
def synth(
    out_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder to write (train.json, valid.json, test.json, images/, synth.json).", show_default=False
        ),
    ],
    train: Annotated[int, typer.Option("--train", min=0, help="Training images.", rich_help_panel=_DATASET)] = _N_TRAIN,
    valid: Annotated[
        int, typer.Option("--valid", min=0, help="Validation images.", rich_help_panel=_DATASET)
    ] = _N_VALID,
    test: Annotated[int, typer.Option("--test", min=0, help="Test images.", rich_help_panel=_DATASET)] = _N_TEST,
    size: Annotated[
        str,
        typer.Option(
            "--size",
            help="Image size: N for N×N, or WIDTHxHEIGHT (e.g. 320x256).",
            rich_help_panel=_DATASET,
        ),
    ] = "512",
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, help="Base seed; the same seed writes the same bytes.", rich_help_panel=_DATASET),
    ] = 0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-j", min=1, help="Parallel processes (results do not depend on it).", rich_help_panel=_RUN
        ),
    ] = 1,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Write into a non-empty folder (replaces our files).", rich_help_panel=_RUN),
    ] = False,
) -> None:
    """Write a synthetic dataset of top-down roof crops with exact wireframe ground truth.

    Roofs are flat, gable, hip, pyramid, L-shaped, or T / cross compositions with valleys, lit by a random sun (facet shading, cast shadows) on textured ground with roads, partial neighbours, tree crowns over some edges, blur and noise. The output is the raw annotation format that [bold]roofmap preprocess[/] reads.

    Example: [bold]roofmap synth data/synth --train 2000 --workers 4[/]
    """
    try:
        height, width = parse_image_size(size)
    except RoofMapError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--size'") from None
    summary = generate_dataset(
        out_dir,
        counts={"train": train, "valid": valid, "test": test},
        image_size=(height, width),
        seed=seed,
        workers=workers,
        progress=True,
        overwrite=overwrite,
    )
    print_summary(summary)


def print_summary(summary: SynthSummary) -> None:
    """Print what was written and the next step."""
    console.print(f"synthetic roofs {summary.width}×{summary.height}, seed {summary.seed}", highlight=False)
    table = Table()
    console.print(table)
    console.print(f"wrote [bold]{summary.out_dir}[/] in {summary.seconds:.1f} s", highlight=False)
    console.print(f"next: [bold]roofmap preprocess {summary.out_dir} DATA_DIR[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the ``roofmap`` application."""
    app.command("synth", no_args_is_help=True, rich_help_panel="Data")(synth)
