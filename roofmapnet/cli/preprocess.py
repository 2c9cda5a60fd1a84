"""``roofmap preprocess``: raw annotations → ``<out>/{train,valid,test}/<stem>.png`` + ``<stem>_label.npz``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from roofmapnet.cli._common import ConfigOption, console, default_config_path, is_tty, report_errors
from roofmapnet.errors import ConfigError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessSummary

_INPUT = "Input"
_OUTPUT = "Output"


class AxisOrderChoice(str, Enum):
    """Coordinate order of each point in the raw annotations."""

    xy = "xy"
    yx = "yx"


class ResizeChoice(str, Enum):
    """How images become the square network input (``data.resize``)."""

    stretch = "stretch"
    letterbox = "letterbox"


class FormatChoice(str, Enum):
    """Raw annotation layout."""

    auto = "auto"
    json = "json"
    rid2 = "rid2"


def parse_split_list(text: str | None) -> tuple[str, ...] | None:
    """``"train,valid"`` → ``("train", "valid")``; ``None`` stays ``None``."""
    if text is None:
        return None
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if not parts:
        raise ConfigError([f"--splits {text!r}: give a comma-separated list such as train,valid,test"])
    return parts


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` → ``(0.8, 0.1, 0.1)``: three numbers in [0, 1] summing to 1."""
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not 0 <= v <= 1 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(
            [f"--split-fractions {text!r}: expected three numbers in [0, 1] summing to 1, e.g. 0.8,0.1,0.1"]
        )
    return values  # type: ignore[return-value]


def print_summary(summary: PreprocessSummary, out: Console | None = None) -> None:
    """Print a preprocessing summary: a per-split table (written / skipped / failed), then ``file: reason`` per failure."""
    out = out or console
    table = Table(title="preprocess summary", title_justify="left")
    table.add_column("split")
    table.add_column("written", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    order = {"train": 0, "valid": 1, "test": 2}
    for split in sorted(summary.counts, key=lambda s: order.get(s, 9)):
        c = summary.counts[split]
        failed = f"[bold red]{c.failed}[/]" if c.failed else "0"
        table.add_row(split, str(c.written), str(c.skipped), failed)
    out.print(table)
    if summary.failures:
        out.print(f"[bold red]{len(summary.failures)} failed:[/]")
        for _, file, reason in sorted(summary.failures, key=lambda f: order.get(f[0], 9)):
            out.print(Text(f"  {file}: {reason}"), soft_wrap=True)  # Text: brackets in reasons are not markup


@report_errors
def preprocess_command(
    raw_dir: Annotated[
        Path,
        typer.Argument(
            help="Raw annotations: {train,valid,test}.json + images/, or RID2 <stem>.npz edge files + images/.",
            show_default=False,
        ),
    ],
    out_dir: Annotated[
        Path, typer.Argument(help="Output data root; gets train/, valid/ and test/ folders.", show_default=False)
    ],
    config: ConfigOption = None,
    axis_order: Annotated[
        AxisOrderChoice,
        typer.Option(
            help="Point order in the annotations: xy = x1,y1,x2,y2 per line (L-CNN), yx = y1,x1,y2,x2.",
            rich_help_panel=_INPUT,
        ),
    ] = AxisOrderChoice.xy,
    raw_format: Annotated[
        FormatChoice,
        typer.Option("--format", help="auto: json if <split>.json files exist, else rid2.", rich_help_panel=_INPUT),
    ] = FormatChoice.auto,
    images: Annotated[
        Path | None, typer.Option(help="Images folder. Default: RAW_DIR/images.", rich_help_panel=_INPUT)
    ] = None,
    splits: Annotated[
        str | None,
        typer.Option(help="Comma-separated splits to process. Default: every split present.", rich_help_panel=_INPUT),
    ] = None,
    split_fractions: Annotated[
        str, typer.Option(help="RID2 only: train,valid,test fractions of the seeded split.", rich_help_panel=_INPUT)
    ] = "0.8,0.1,0.1",
    seed: Annotated[
        int, typer.Option(help="RID2 only: seed of the train/valid/test split.", rich_help_panel=_INPUT)
    ] = 0,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Written image side. Default: model.image_size (or 4 × --heatmap-size).", rich_help_panel=_OUTPUT
        ),
    ] = None,
    heatmap_size: Annotated[
        int | None,
        typer.Option(
            help="Label heatmap side. Default: model.heatmap_size (or --image-size / 4).", rich_help_panel=_OUTPUT
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0, help="Worker processes (0 = none). Default: the CPU cores, at most 8.", rich_help_panel=_OUTPUT
        ),
    ] = None,
    skip_existing: Annotated[
        bool, typer.Option(help="Keep samples whose image and label already exist.", rich_help_panel=_OUTPUT)
    ] = False,
    resize: Annotated[
        ResizeChoice | None,
        typer.Option(
            help="stretch each axis, or letterbox (aspect kept, padded with model.image.mean). "
            "Default: data.resize. Train and infer with the same data.resize.",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
) -> None:
    """Convert raw roof annotations into training images and [bold]*_label.npz[/] targets.

    Every failing file is listed at the end with its reason; the exit code is 1 if any failed.
    """
    from roofmapnet.config import load_config
    from roofmapnet.data.preprocess import PreprocessOptions, default_workers, preprocess

    if image_size is not None and heatmap_size is None:
        heatmap_size = image_size // 4
    elif heatmap_size is not None and image_size is None:
        image_size = heatmap_size * 4
    cfg = load_config(
        config if config is not None else default_config_path(),
        {
            "model.image_size": image_size,
            "model.heatmap_size": heatmap_size,
            "data.resize": resize.value if resize is not None else None,
        },
    )
    options = PreprocessOptions(
        image_size=cfg.model.image_size,
        heatmap_size=cfg.model.heatmap_size,
        axis_order=axis_order.value,  # type: ignore[arg-type]
        raw_format=None if raw_format is FormatChoice.auto else raw_format.value,  # type: ignore[arg-type]
        images_dir=images,
        splits=parse_split_list(splits),
        split_fractions=parse_fractions(split_fractions),
        seed=seed,
        workers=default_workers() if workers is None else workers,
        skip_existing=skip_existing,
        image_extensions=cfg.data.image_extensions,
        resize=cfg.data.resize,
        fill=cfg.model.image.mean,
    )
    summary = preprocess(raw_dir, out_dir, options, show_progress=is_tty())
    print_summary(summary)
    if not summary.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``preprocess`` to the root app."""
    app.command("preprocess", rich_help_panel="Data")(preprocess_command)
