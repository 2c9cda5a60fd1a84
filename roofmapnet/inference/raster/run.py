"""Tiled inference on one raster: read tiles ahead, run them through the predictor in batches, merge, write.

A raster (:mod:`~roofmapnet.inference.raster.source`) is cut into the tiles of its
:class:`~roofmapnet.inference.raster.grid.TileGrid`, read window by window in one background thread
(:func:`~roofmapnet.inference.batching.prefetch`; rasterio datasets are not thread-safe), padded and filled with
the normalisation mean where there is no data, resized to the network input
(:func:`~roofmapnet.inference.predictor.model_input`), run through :meth:`Predictor.predict
<roofmapnet.inference.predictor.Predictor.predict>` in batches of ``batch_size`` tiles with data
(:func:`~roofmapnet.inference.batching.batched`), and the per-tile lines and junctions, moved to raster pixels with
the nodata rule applied, are merged into one wireframe (:func:`~roofmapnet.inference.raster.merge.merge_tiles`).
Pixel memory is bounded by the tiles in flight (the batch plus a prefetch of two batches), whatever the raster size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roofmapnet.config.schema import InferConfig, ModelConfig
from roofmapnet.errors import DataError
from roofmapnet.inference.batching import batched, prefetch
from roofmapnet.inference.outputs.geo import write_raster_outputs
from roofmapnet.inference.outputs.writers import RunInfo
from roofmapnet.inference.predictor import Predictor, model_input
from roofmapnet.inference.raster.grid import TileGrid, clip_segments, nodata_fraction, resolve_tiling
from roofmapnet.inference.raster.merge import MergeParams, import_merge_deps, merge_tiles
from roofmapnet.inference.raster.source import RasterSource, Window, open_source
from roofmapnet.inference.types import ImageResult, MergedWireframe, SkippedInput, TileDetections, TilingStats
from roofmapnet.models.outputs import Wireframe

ProgressFn = Callable[[int, int], None]


@dataclass
class _Tile:
    index: int
    window: Window
    tensor: Tensor | None = None
    invalid: np.ndarray | None = None  # [tile, tile] bool incl. padding; None = all valid


@dataclass
class RasterPrediction:
    """Result of :func:`predict_raster`: the merged wireframe, the grid and the statistics."""

    merged: MergedWireframe
    grid: TileGrid
    stats: TilingStats
    params: MergeParams

    def tiling_record(self) -> dict[str, Any]:
        """The JSON's ``tiling`` object: tile, overlap, counts and the merge tolerances."""
        p = self.params
        merge = {"distance_px": p.distance, "gap_px": p.gap, "border_px": p.border, "angle_deg": p.angle_deg}
        return {**self.stats.record(), "merge": merge}


def _load_tile(source: RasterSource, grid: TileGrid, index: int, mean: np.ndarray, cfg: ModelConfig) -> _Tile:
    """Read, pad, fill nodata and prepare one tile (runs in the reader thread)."""
    window = grid.window(index)
    pixels = source.read(window)
    valid = pixels.valid
    if valid is not None and not valid.any():
        return _Tile(index, window)
    t = grid.tile
    rgb = pixels.rgb
    invalid: np.ndarray | None = None
    if (window.height, window.width) != (t, t) or valid is not None:
        canvas = np.empty((t, t, 3), dtype=np.float32)
        canvas[:] = mean
        canvas[: window.height, : window.width] = rgb
        invalid = np.ones((t, t), dtype=bool)
        invalid[: window.height, : window.width] = False if valid is None else ~valid
        canvas[invalid] = mean
        rgb = canvas
    return _Tile(index, window, model_input(rgb, cfg), invalid)


def _tile_detections(tile: _Tile, wf: Wireframe, grid: TileGrid) -> TileDetections:
    """Move one tile's wireframe to raster pixels and apply the nodata rule."""
    lines = wf.lines_xyxy()
    scores = wf.scores.detach().double().cpu().numpy().reshape(-1)
    junc = wf.junctions_xy()
    jsc = wf.junction_scores.detach().double().cpu().numpy().reshape(-1)
    if tile.invalid is not None:
        from scipy import ndimage

        near = ndimage.binary_dilation(tile.invalid, structure=np.ones((3, 3), dtype=bool))
        keep = nodata_fraction(lines, near) < 0.5
        lines, scores = lines[keep], scores[keep]
        h, w = tile.invalid.shape
        cols = np.clip(np.floor(junc[:, 0]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.floor(junc[:, 1]).astype(np.int64), 0, h - 1)
        jkeep = ~tile.invalid[rows, cols]
        junc, jsc = junc[jkeep], jsc[jkeep]
    off = np.array([tile.window.col, tile.window.row], dtype=np.float64)
    lines = lines + np.tile(off, 2)
    junc = junc + off
    # Padding beyond the raster edge: keep what lies on the raster.
    lines, inside = clip_segments(lines, (0.0, 0.0, grid.width, grid.height))
    lines, scores = lines[inside], scores[inside]
    jin = (junc[:, 0] >= 0) & (junc[:, 0] <= grid.width) & (junc[:, 1] >= 0) & (junc[:, 1] <= grid.height)
    junc, jsc = junc[jin], jsc[jin]
    return TileDetections(
        lines=lines,
        scores=scores,
        tiles=np.full(lines.shape[0], tile.index, dtype=np.int64),
        junctions=junc,
        junction_scores=jsc,
        junction_tiles=np.full(junc.shape[0], tile.index, dtype=np.int64),
    )


def predict_raster(
    predictor: Predictor,
    source: RasterSource,
    options: InferConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    merge_params: MergeParams | None = None,
) -> RasterPrediction:
    """Run the model over a raster tile by tile and merge the results (module docstring).

    Args:
        predictor: the loaded model (thresholds, post-processing, precision, device).
        source: the opened raster.
        options: decoding options (``batch_size``: tiles per forward pass; ``workers`` 0: read in this thread) and
            ``raster`` (tile size / overlap / gsd); default ``predictor.cfg.infer``.
        progress: ``progress(done_tiles, total_tiles)``.
        merge_params: override the merge tolerances.

    Raises:
        DataError: the tiling cannot be resolved for this raster.
    """
    start = time.perf_counter()
    options = predictor.cfg.infer if options is None else options
    import_merge_deps()  # one-time import cost, kept out of the merge timing
    cfg = predictor.cfg.model
    ground = source.georef.ground_resolution_m(source.height, source.width)
    tile, overlap = resolve_tiling(options.raster, cfg.image_size, ground, source.path)
    grid = TileGrid.build(source.height, source.width, tile, overlap)
    params = merge_params or MergeParams.for_tile(tile, cfg.heatmap_size, cfg.image_size)
    stats = TilingStats(str(source.path), source.height, source.width, tile, overlap, len(grid))
    mean = np.asarray(cfg.image.mean, dtype=np.float32)
    batch_size = options.batch_size or cfg.batch_size_eval
    model_before = predictor.model_seconds
    parts: list[TileDetections] = []
    done = 0
    stats.peak_tile_pixels = grid.read_height * grid.read_width
    # One reader thread: rasterio datasets are not thread-safe.
    tiles = prefetch(
        lambda i: _load_tile(source, grid, i, mean, cfg),
        len(grid),
        threads=min(options.workers, 1),
        ahead=2 * batch_size,
        name="roofmap-tiles",
    )
    for batch in batched(tiles, batch_size, runnable=lambda t: t.tensor is not None):
        run = [t for t in batch if t.tensor is not None]
        if run:
            images = torch.stack([t.tensor for t in run if t.tensor is not None])
            wfs = predictor.predict(images, [(tile, tile)] * len(run), options)
            parts.extend(_tile_detections(t, wf, grid) for t, wf in zip(run, wfs, strict=True))
            stats.tiles_run += len(run)
        done += len(batch)
        if progress is not None:
            progress(done, len(grid))
    stats.predict_seconds = time.perf_counter() - start
    stats.model_seconds = predictor.model_seconds - model_before
    det = TileDetections.concat(parts)
    stats.lines_before_merge = int(det.lines.shape[0])
    t0 = time.perf_counter()
    merged = merge_tiles(grid, det, params)
    stats.merge_seconds = time.perf_counter() - t0
    stats.lines = int(merged.lines.shape[0])
    stats.junctions = int(merged.junctions.shape[0])
    stats.seconds = time.perf_counter() - start
    return RasterPrediction(merged, grid, stats, params)


def run_raster(
    predictor: Predictor,
    path: Path,
    stem: str,
    out_dir: Path,
    options: InferConfig,
    info: RunInfo,
    *,
    progress: ProgressFn | None = None,
) -> tuple[ImageResult | SkippedInput, TilingStats | None]:
    """Tiled inference on one raster and its outputs; a failure becomes a :class:`SkippedInput`.

    Outputs (``OUT/<stem>...``): ``.json`` (raster pixels + georeference), ``.geojson`` (map coordinates when
    georeferenced), vector files (georeferenced rasters, ``options.raster.vector_formats``) and ``_overlay.png`` (a preview of
    at most 4096 px), per ``options.outputs``.
    """
    start = time.perf_counter()
    raster = options.raster
    try:
        with open_source(path, bands=raster.bands, stretch=raster.stretch) as source:
            prediction = predict_raster(predictor, source, options, progress=progress)
            t0 = time.perf_counter()
            written = write_raster_outputs(
                out_dir,
                stem,
                prediction.merged,
                source,
                info,
                options,
                tiling=prediction.tiling_record(),
                prediction=prediction,
            )
            prediction.stats.write_seconds = time.perf_counter() - t0
    except DataError as exc:
        return SkippedInput(str(path), str(exc).removeprefix(f"{path}: "), exc.fields), None
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return SkippedInput(str(path), f"cannot read or write ({reason})"), None
    except Exception as exc:
        # rasterio's read errors (RasterioIOError, CPLE_*) do not derive from OSError.
        if type(exc).__module__.startswith("rasterio"):
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return SkippedInput(str(path), f"raster read error ({reason})"), None
        raise
    stats = prediction.stats
    stats.seconds = time.perf_counter() - start
    merged = prediction.merged
    result = ImageResult(
        image=str(path),
        stem=stem,
        width=merged.width,
        height=merged.height,
        lines=int(merged.lines.shape[0]),
        junctions=int(merged.junctions.shape[0]),
        outputs=tuple(str(p) for p in written),
    )
    return result, stats
