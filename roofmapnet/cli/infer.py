"""``roofmap infer``: run a trained model on image files and write JSON, GeoJSON and overlay PNGs."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from roofmapnet.cli._common import (
    ConfigOption,
    as_flags,
    command_flags,
    console,
    default_config_path,
    err_console,
    notice,
    report_errors,
)
from roofmapnet.errors import RoofMapError

_IO = "Input/Output"
_MODEL = "Model"
_DECODING = "Decoding"
_PERF = "Performance"
_GIS = "GIS rasters (GeoTIFF, tiling)"
#: Failures listed in the summary before the rest are counted.
_MAX_FAILURE_ROWS = 100
#: Seconds between plain progress lines when stderr is not a terminal.
_PLAIN_PROGRESS_EVERY = 10.0


class Precision(str, Enum):
    """``--precision`` choices as the CLI spells them (the library's :class:`roofmapnet.utils.device.Precision`
    takes these spellings too)."""

    fp32 = "32"
    bf16 = "bf16"
    fp16 = "16"
    auto = "auto"


class GeoJSONCRS(str, Enum):
    """``--crs``: GeoJSON coordinates of georeferenced rasters."""

    wgs84 = "wgs84"
    native = "native"


class Strategy(str, Enum):
    """``--strategy``: ``auto`` = one process unless ``--devices`` > 1; ``ddp`` = Lightning's predict loop."""

    auto = "auto"
    ddp = "ddp"


def _is_rank_zero() -> bool:
    """Whether this is the launching process (Lightning's DDP children have LOCAL_RANK / NODE_RANK set)."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


class _ProgressReporter:
    """Rich progress bar when stderr is a terminal, else a plain line every ~10 s and at the end.

    Calling it reports images; :meth:`tiles` reports the tiles of the raster being tiled (a second bar).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rich = enabled and err_console.is_terminal
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._tile_task: TaskID | None = None
        self._last = 0.0
        self._last_tiles = 0.0
        self._start = time.perf_counter()

    def __enter__(self) -> _ProgressReporter:
        if self.rich:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task("infer", total=total, unit="images")
            self._bar.update(self._task, completed=done, total=total)
            return
        now = time.perf_counter()
        if done == total or now - self._last >= _PLAIN_PROGRESS_EVERY:
            self._last = now
            err_console.print(f"infer: {done}/{total} images, {now - self._start:.1f} s", highlight=False)

    def tiles(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` tiles of the current raster."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self._tile_task is None:
                self._tile_task = self._bar.add_task("tiles", total=total, unit="tiles")
            self._bar.update(self._tile_task, completed=done, total=total)
            return
        now = time.perf_counter()
        if done == total or now - self._last_tiles >= _PLAIN_PROGRESS_EVERY:
            self._last_tiles = now
            err_console.print(f"infer: {done}/{total} tiles, {now - self._start:.1f} s", highlight=False)


def print_summary(report: object) -> None:
    """The summary table, then one ``skipped: <input>: <reason>`` line per failed input, on stdout."""
    from roofmapnet.inference.types import InferReport

    assert isinstance(report, InferReport)
    table = Table(title="roofmap infer", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    n = len(report.results)
    table.add_row("images processed", str(n))
    table.add_row("lines written", str(report.total_lines))
    table.add_row("failed / skipped", str(len(report.failed)))
    table.add_row("wall time", f"{report.seconds:.2f} s")
    table.add_row("images/s", f"{report.images_per_second:.2f}")
    if n and report.model_seconds > 0:
        table.add_row("model-only images/s", f"{n / report.model_seconds:.2f}")
    if report.tiling:
        tiles = sum(t.tiles for t in report.tiling)
        tile_seconds = sum(t.seconds for t in report.tiling)
        merge_seconds = sum(t.merge_seconds for t in report.tiling)
        table.add_row("raster tiles", f"{tiles} ({sum(t.tiles_run for t in report.tiling)} with data)")
        table.add_row("tiles/s", f"{tiles / tile_seconds:.2f}" if tile_seconds > 0 else "-")
        table.add_row("merge time", f"{merge_seconds:.2f} s ({100 * merge_seconds / max(tile_seconds, 1e-9):.1f} %)")
    table.add_row("written to", str(report.out_dir))
    console.print(table)
    # Failures as one line each (no table folding, greppable in logs).
    for item in report.failed[:_MAX_FAILURE_ROWS]:
        text = f"[yellow]skipped:[/] {escape(item.path)}: {escape(as_flags(item.reason, item.fields, _FLAGS))}"
        console.print(text, highlight=False, soft_wrap=True, markup=True)
    if len(report.failed) > _MAX_FAILURE_ROWS:
        console.print(f"[yellow]skipped:[/] … and {len(report.failed) - _MAX_FAILURE_ROWS} more", highlight=False)


@report_errors
def infer_command(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files (png, jpg, tif), folders, or glob patterns (quote them), any size and aspect.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder (created if needed).", show_default=False, rich_help_panel=_IO),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            "-k",
            help="Weights: our Lightning .ckpt, an exported .pth (+ .json sidecar) or the official .pth.",
            show_default=False,
            rich_help_panel=_MODEL,
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="An exported pipeline instead of weights: model.onnx (onnxruntime) or a TorchScript file "
            "from `roofmap export`; its config travels inside it.",
            show_default=False,
            rich_help_panel=_MODEL,
        ),
    ] = None,
    outputs: Annotated[
        str,
        typer.Option(
            help="Which outputs to write, comma-separated: json, geojson, overlay, facets.", rich_help_panel=_IO
        ),
    ] = "json,geojson,overlay",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Descend into sub-folders of folder inputs.", rich_help_panel=_IO)
    ] = False,
    geojson_junctions: Annotated[
        bool,
        typer.Option(
            "--geojson-junctions/--no-geojson-junctions",
            help="Add the junctions to the GeoJSON as Point features.",
            rich_help_panel=_IO,
        ),
    ] = True,
    config: ConfigOption = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Keep lines with score above this. Default: model.line_score_thres (0.1, the reference's).",
            show_default=False,
            rich_help_panel=_DECODING,
        ),
    ] = None,
    junction_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Junction proposal threshold. Default: model.eval_junc_thres (0.008).",
            show_default=False,
            rich_help_panel=_DECODING,
        ),
    ] = None,
    max_lines: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Keep at most the N best lines per image (before post-processing). Default: no cap.",
            show_default=False,
            rich_help_panel=_DECODING,
        ),
    ] = None,
    postprocess: Annotated[
        bool,
        typer.Option(
            "--postprocess/--no-postprocess",
            help="L-CNN duplicate/overlap removal in image pixels, tolerance t·diagonal.",
            rich_help_panel=_DECODING,
        ),
    ] = True,
    postprocess_t: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Post-processing factor t (L-CNN uses 0.006, 0.010, 0.015).",
            rich_help_panel=_DECODING,
        ),
    ] = 0.01,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images per forward pass. Default: model.batch_size_eval.",
            show_default=False,
            rich_help_panel=_PERF,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA if available), cpu, cuda or cuda:N.", rich_help_panel=_PERF)
    ] = "auto",
    precision: Annotated[
        Precision,
        typer.Option(
            help="32 (fp32), bf16 (autocast), 16 (fp16 autocast, CUDA only), or auto (bf16 where the hardware has it).",
            rich_help_panel=_PERF,
        ),
    ] = Precision.fp32,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Background image decoders (threads; DataLoader processes per rank with --strategy ddp).",
            rich_help_panel=_PERF,
        ),
    ] = 2,
    devices: Annotated[
        int,
        typer.Option(
            min=1, help="Processes / GPUs for the Lightning predict loop (with --strategy ddp).", rich_help_panel=_PERF
        ),
    ] = 1,
    strategy: Annotated[
        Strategy,
        typer.Option(
            help="auto (one process unless --devices > 1) or ddp (Lightning's predict loop).", rich_help_panel=_PERF
        ),
    ] = Strategy.auto,
    tile: Annotated[
        int | None,
        typer.Option(
            help="Tile side in raster pixels; also tiles plain images. Default: the model input size "
            "(scaled by --gsd). GeoTIFFs are always tiled.",
            show_default=False,
            rich_help_panel=_GIS,
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            help="Overlap of neighbouring tiles in raster pixels (less than half a tile). Default: tile / 8.",
            show_default=False,
            rich_help_panel=_GIS,
        ),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            help="1-based raster bands to use as R,G,B (e.g. 1,2,3) or one grey band. Default: the RGB bands, "
            "else 1,2,3, else 1.",
            show_default=False,
            rich_help_panel=_GIS,
        ),
    ] = None,
    gsd: Annotated[
        float | None,
        typer.Option(
            help="Ground resolution (m/pixel) the model was trained at: the default tile covers image_size × gsd "
            "metres of a georeferenced raster.",
            show_default=False,
            rich_help_panel=_GIS,
        ),
    ] = None,
    crs: Annotated[
        GeoJSONCRS,
        typer.Option(
            help="GeoJSON coordinates of georeferenced rasters: wgs84 (RFC 7946 lon/lat) or native (raster CRS, "
            "with a crs member).",
            rich_help_panel=_GIS,
        ),
    ] = GeoJSONCRS.wgs84,
    vector_format: Annotated[
        str,
        typer.Option(
            help="Vector files of georeferenced rasters, comma-separated: gpkg (GeoPackage), fgb (FlatGeobuf), shp "
            "(Shapefile), geojson, parquet (GeoParquet, where GDAL has it), or none. Layers lines, junctions, facets.",
            rich_help_panel=_GIS,
        ),
    ] = "gpkg",
) -> None:
    """Run a trained RoofMapNet on images and write per-image JSON, GeoJSON and overlay PNG.

    Each image is resized to the network input (any size or aspect) and its lines, scores and junctions are
    mapped back to the image's own pixels (origin top-left, x right, y down). For IMAGE.png the outputs are
    OUT/IMAGE.json, OUT/IMAGE.geojson and OUT/IMAGE_overlay.png. Unreadable or non-image files are skipped
    and listed; the exit code is 1 if any input failed, 2 if no image matched.

    GeoTIFFs and other GDAL rasters of any size (with the optional geo extra of the package) are read window
    by window, run in overlapping tiles, merged across seams, and written in map coordinates: GeoJSON (WGS 84
    by default) and a GeoPackage (docs/gis.md).

    [bold]Example[/]: roofmap infer -k logs/checkpoints/best-sAP10.ckpt tiles/ "extra/*.tif" -o results/
    """
    from roofmapnet.config import load_config
    from roofmapnet.config.schema import InferConfig
    from roofmapnet.inference.predictor import Predictor
    from roofmapnet.inference.raster.grid import route_inputs
    from roofmapnet.inference.runner import discover, run_inference

    distributed = devices > 1 or strategy is not Strategy.auto
    options = InferConfig.from_options(
        threshold=threshold,
        junction_threshold=junction_threshold,
        max_lines=max_lines,
        postprocess=postprocess,
        postprocess_t=postprocess_t,
        outputs=outputs,
        geojson_junctions=geojson_junctions,
        batch_size=batch_size,
        workers=workers,
        recursive=recursive,
        raster={
            "tile": tile,
            "overlap": overlap,
            "gsd": gsd,
            "bands": bands,
            "crs": crs.value,
            "vector_formats": () if vector_format.strip().lower() == "none" else vector_format,
            "tile_all": tile is not None or bool(bands and bands.strip()),
        },
    )
    cfg_path = config if config is not None else default_config_path()
    cfg = load_config(cfg_path)
    if (checkpoint is None) == (model is None):
        raise RoofMapError(
            "give exactly one of --checkpoint (weights) or --model (an exported .onnx / TorchScript)", exit_code=2
        )
    if model is not None and distributed:
        raise RoofMapError(
            "--model: exported pipelines run in one process; drop --devices / --strategy ddp", exit_code=2
        )
    weights = checkpoint if checkpoint is not None else model
    assert weights is not None
    predictor = Predictor.from_checkpoint(weights, device=device, precision=precision.value, cfg=cfg)
    if distributed:
        paths, _ = discover(inputs, options, predictor.cfg, out)
        tiled = [p for p, t in zip(paths, route_inputs(paths, options.raster), strict=True) if t]
        if tiled:
            msg = (
                f"{tiled[0]}: rasters run tile by tile in one process; drop --devices / --strategy ddp "
                "(or the GIS options) for these inputs"
            )
            raise RoofMapError(msg, exit_code=2)
    rank_zero = _is_rank_zero()
    if predictor.precision_notice and rank_zero:
        notice(as_flags(predictor.precision_notice, ("precision",), _FLAGS))
    with _ProgressReporter(rank_zero) as progress:
        on_progress: Callable[[int, int], None] = progress
        if distributed:
            with warnings.catch_warnings():  # Lightning's import-time deprecation noise, once per process
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*LeafSpec.*")
                from roofmapnet.inference.distributed import run_distributed

            report = run_distributed(
                predictor,
                inputs,
                out,
                options,
                devices=devices,
                strategy="ddp",
                progress=on_progress,
            )
        else:
            report = run_inference(predictor, inputs, out, options, progress=on_progress, tile_progress=progress.tiles)
    if report.global_rank == 0:
        print_summary(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


#: The flags of ``roofmap infer`` (library messages name fields; the summary writes them as these flags).
_FLAGS = command_flags(infer_command)


def register(app: typer.Typer) -> None:
    """Add ``infer`` to the root app."""
    app.command("infer", rich_help_panel="Inference")(infer_command)
