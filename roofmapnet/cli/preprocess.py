"""``roofmap preprocess``: raw annotations → ``<out>/{train,valid,test}/<stem>.png`` + ``<stem>_label.npz``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from roofmapnet.cli._common import ConfigOption, console, is_tty, report_errors
from roofmapnet.errors import ConfigError

if TYPE_CHECKING:
    from roofmapnet.data.formats.gis import GisOptions

_INPUT = "Input"
_GIS = "GIS labels (--format gis)"
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
    """Raw annotation layout (docs/data-format.md §2)."""

    auto = "auto"
    json = "json"
    rid2 = "rid2"
    roofvec = "roofvec"
    heat = "heat"
    labelme = "labelme"
    gis = "gis"


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


@report_errors
def preprocess_command(
    raw_dir: Annotated[
        Path,
        typer.Argument(
            help="Raw annotations: a folder in one of the --format layouts (for gis: the orthophoto or a folder of them).",
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
        typer.Option(
            "--format",
            help="json: {train,valid,test}.json + images/; rid2: <stem>.npz + images/; roofvec: RoofVec "
            "SimpleRoofTXT; heat: rgb/ + annot/*.npy (HEAT); labelme: LabelMe *.json; gis: "
            "orthophoto(s) + --lines vector layer. auto: the one layout RAW_DIR matches (gis: a raster file).",
            rich_help_panel=_INPUT,
        ),
    ] = FormatChoice.auto,
    images: Annotated[
        Path | None, typer.Option(help="Images folder. Default: RAW_DIR/images.", rich_help_panel=_INPUT)
    ] = None,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            help="Follow symbolic links in the images folder that point outside it (refused by default).",
            rich_help_panel=_INPUT,
        ),
    ] = False,
    splits: Annotated[
        str | None,
        typer.Option(help="Comma-separated splits to process. Default: every split present.", rich_help_panel=_INPUT),
    ] = None,
    split_fractions: Annotated[
        str,
        typer.Option(
            help="rid2, labelme, gis, heat without lists: train,valid,test fractions of the seeded split.",
            rich_help_panel=_INPUT,
        ),
    ] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Seed of that train/valid/test split.", rich_help_panel=_INPUT)] = 0,
    lines: Annotated[
        Path | None,
        typer.Option(
            help="Roof lines digitised over the raster: LineString/MultiLineString layer (GeoPackage, GeoJSON, "
            "Shapefile, ...), reprojected to the raster's CRS.",
            rich_help_panel=_GIS,
        ),
    ] = None,
    lines_layer: Annotated[
        str | None, typer.Option(help="Layer of --lines (default: the first).", rich_help_panel=_GIS)
    ] = None,
    footprints: Annotated[
        Path | None,
        typer.Option(
            help="Building footprints (polygons): one crop centred on each. Default: a grid of crops.",
            rich_help_panel=_GIS,
        ),
    ] = None,
    footprints_layer: Annotated[
        str | None, typer.Option(help="Layer of --footprints (default: the first).", rich_help_panel=_GIS)
    ] = None,
    crop_size: Annotated[
        int | None,
        typer.Option(min=8, help="Crop side in raster pixels. Default: the written image side.", rich_help_panel=_GIS),
    ] = None,
    min_lines: Annotated[
        int, typer.Option(min=1, help="Least line pieces a crop must hold to be written.", rich_help_panel=_GIS)
    ] = 3,
    bands: Annotated[
        str | None,
        typer.Option(
            help="1-based raster bands: one (grey) or three (R,G,B). Default: RGB by colour interpretation.",
            rich_help_panel=_GIS,
        ),
    ] = None,
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

    Every failing file is listed at the end with its reason; the exit code is 1 if any failed. Warnings
    (samples written anyway, e.g. RoofVec segments that disagree with the adjacency matrix) are listed too.
    OUT_DIR/dataset.json records the format and the ground sample distance (gis).
    """
    from roofmapnet.config import load_config
    from roofmapnet.data.preprocess import PreprocessOptions, default_workers, preprocess, print_summary

    if image_size is not None and heatmap_size is None:
        heatmap_size = image_size // 4
    elif heatmap_size is not None and image_size is None:
        image_size = heatmap_size * 4
    cfg = load_config(
        config,
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
        gis=_gis_options(lines, lines_layer, footprints, footprints_layer, crop_size, min_lines, bands),
        follow_symlinks=follow_symlinks,
        resize=cfg.data.resize,
        fill=cfg.model.image.mean,
    )
    summary = preprocess(raw_dir, out_dir, options, show_progress=is_tty())
    print_summary(summary, console)
    if not summary.ok:
        raise typer.Exit(1)


def _gis_options(
    lines: Path | None,
    lines_layer: str | None,
    footprints: Path | None,
    footprints_layer: str | None,
    crop_size: int | None,
    min_lines: int,
    bands: str | None,
) -> GisOptions | None:
    from roofmapnet.config.schema import check_bands
    from roofmapnet.data.formats.gis import GisOptions

    if lines is None:
        if footprints is not None:
            raise ConfigError(["--footprints needs --lines (the roof lines of --format gis)"])
        return None
    band_tuple: tuple[int, ...] | None = None
    if bands is not None and bands.strip():
        try:
            band_tuple = tuple(int(part) for part in bands.split(",") if part.strip())
        except ValueError:
            raise ConfigError([f"--bands {bands}: expected 1-based band numbers separated by commas"]) from None
        try:
            check_bands(band_tuple)
        except ValueError as exc:
            raise ConfigError([f"--bands {bands}: {exc}"]) from None
    return GisOptions(lines, lines_layer, footprints, footprints_layer, crop_size, min_lines, band_tuple)


def register(app: typer.Typer) -> None:
    """Add ``preprocess`` to the root app."""
    app.command("preprocess", rich_help_panel="Data")(preprocess_command)
