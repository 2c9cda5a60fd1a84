"""``roofmap demo``: synth → preprocess → train → validate → infer → export on synthetic roofs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from roofmapnet.cli._common import console, report_errors
from roofmapnet.cli.validate import metrics_table

_SIZE = "Dataset"
_RUN = "Run"


@report_errors
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder for every artefact.", rich_help_panel=_RUN)] = Path("runs/demo"),
    minutes: Annotated[
        float, typer.Option(help="Training time budget in minutes (≈10 on 2 CPU cores).", rich_help_panel=_RUN)
    ] = 10.0,
    train_images: Annotated[int, typer.Option(help="Synthetic training images.", rich_help_panel=_SIZE)] = 240,
    valid_images: Annotated[int, typer.Option(help="Synthetic validation images.", rich_help_panel=_SIZE)] = 24,
    test_images: Annotated[int, typer.Option(help="Synthetic test images.", rich_help_panel=_SIZE)] = 24,
    image_size: Annotated[int, typer.Option(help="Side of the synthetic images.", rich_help_panel=_SIZE)] = 256,
    max_epochs: Annotated[
        int, typer.Option(help="Upper bound on epochs (the time budget usually stops first).", rich_help_panel=_RUN)
    ] = 200,
    infer_images: Annotated[int, typer.Option(help="Held-out images to run `infer` on.", rich_help_panel=_RUN)] = 6,
    config: Annotated[
        Path | None,
        typer.Option(help="Model/training config (default: config/presets/small.yaml).", rich_help_panel=_RUN),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel=_RUN)] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.", rich_help_panel=_RUN)] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes for synth/preprocess.", rich_help_panel=_RUN)] = 2,
    export: Annotated[bool, typer.Option(help="Export ONNX at the end.", rich_help_panel=_RUN)] = True,
    fresh: Annotated[
        bool, typer.Option(help="Redo every stage instead of skipping finished ones.", rich_help_panel=_RUN)
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            help="Real data instead of synthetic roofs: FORMAT:PATH of a raw data set, e.g. "
            "roofvec:Vectorization-Roof-Data-Set/SimpleRoofTXT (any `roofmap preprocess --format`).",
            rich_help_panel=_SIZE,
        ),
    ] = None,
) -> None:
    """Run the whole pipeline on synthetic roofs: synth → preprocess → train → validate → infer → export.

    Re-running skips finished stages and resumes an interrupted training.

    Example: [bold]roofmap demo[/]   or, for a one-minute smoke run:  [bold]roofmap demo --minutes 1 --train-images 40[/]
    """
    from roofmapnet.demo import DemoOptions, run_demo

    options = DemoOptions(
        out_dir=out,
        train_images=train_images,
        valid_images=valid_images,
        test_images=test_images,
        image_size=image_size,
        minutes=minutes,
        max_epochs=max_epochs,
        infer_images=infer_images,
        seed=seed,
        workers=workers,
        device=device,
        config=config,
        export=export,
        fresh=fresh,
        data=data,
    )
    report = run_demo(options, say=lambda text: console.print(f"[bold cyan]{text}[/]"))
    if report.skipped:
        console.print(f"skipped (already done): {', '.join(report.skipped)}")
    console.print(metrics_table(report.metrics, f"demo model on {data or 'the synthetic test split'}"))
    table = Table(title="artefacts", show_header=False)
    for name, path in report.artefacts.items():
        table.add_row(name, str(path))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the root app."""
    app.command("demo", rich_help_panel="Getting started")(demo_command)
