"""Tiled inference on rasters of any size: the tile grid, batched prediction, and the merge across seams.

A raster is cut into square tiles of ``tile`` raster pixels overlapping by ``overlap`` pixels
(:class:`TileGrid`), read window by window in a background thread, resized to the network input, run through
:meth:`Predictor.predict <roofmapnet.inference.predictor.Predictor.predict>` in batches, and the per-tile lines
and junctions, moved to raster pixels, are merged into one wireframe (:func:`merge_tiles`).  Pixel memory is
bounded by the tiles in flight (the batch plus a prefetch of two batches), whatever the raster size.

Tile size (``--tile``, ``--overlap``, ``--gsd``)
    Default tile: the model's input size (``model.image_size``) in raster pixels, so the network sees the raster
    at its native resolution.  With ``--gsd G`` (the ground resolution, metres per pixel, that the model was
    trained at) and a raster whose pixel size ``g`` is known, the tile is ``round(image_size · G / g)`` raster
    pixels, resized to the network input, so the network sees the ground at its training resolution.  Default
    overlap: ``round(tile / 8)`` (64 px for 512).  Tiles start every ``tile − overlap`` pixels; the last row and
    column of tiles are moved back to end at the raster edge (so every tile is full and overlaps its neighbour by
    at least ``overlap``).  A raster smaller than a tile is padded (padding counts as nodata).

Core regions (ownership)
    Along each axis the boundary between consecutive tiles is the middle of their overlap; the tile's *core* is
    the part of the raster closer to it than to any neighbour.  Cores partition the raster; every point has
    exactly one owner tile.

Merge rule (:func:`merge_tiles`), all in raster pixels
    1. Nodata: a line with half or more of its 16 samples on nodata (or padding, dilated by one pixel) is dropped,
       as is a junction on a nodata pixel.
    2. Ownership: a line whose two endpoints lie in the core of one same *other* tile is dropped (that tile saw
       it with more context).  A junction is kept only from the tile that owns it.
    3. Seam candidates: only lines whose bounding box meets an overlap strip (widened by ``distance``) are
       compared, and only with lines of other tiles in the same strip section.
    4. Two lines from different tiles are *collinear* when their directions differ by at most ``angle_deg`` and
       both endpoints of the shorter lie within ``distance`` of the longer's supporting line.  Collinear lines
       whose projections overlap by more than ``gap`` are duplicates (or the two halves of a line cut by a tile
       border, which overlap in the overlap strip) and are merged.  Collinear lines that overlap by at most ``gap``
       or leave a gap of at most ``gap`` (they *touch*) are joined only when the touching ends are within
       ``distance + gap`` of each other and *both* look cut by their own tile's border (extended outwards along
       the line by ``border``, the end leaves its tile through an interior border), so two roof edges that meet
       at a real junction are not fused.
    5. Merged groups are the connected components of these pairs.  A group becomes one line from the endpoint
       with the lowest to the endpoint with the highest projection on the group's longest member; its score is
       the highest score of its members and ``pieces`` counts them.  A lone piece shorter than ``gap`` with an
       end cut by its tile's border is a fragment of a line clipped at a tile corner and is dropped.
    6. Junctions of different tiles closer than ``distance`` are duplicates; the lower score is dropped.

    Defaults (:meth:`MergeParams.for_tile`): ``distance = 1.5`` heatmap cells, ``gap = 2`` cells and
    ``border = 1`` cell, a cell being ``tile / heatmap_size`` raster pixels (6, 8 and 4 px for the default
    512 / 128 model), ``angle_deg = 10``.
    Every step is vectorised with numpy / scipy (the only Python loops are over tiles and over chunks of at most
    ~1M candidate pairs).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch
from torch import Tensor

from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.inference.geo import (
    DEFAULT_STRETCH,
    RasterSource,
    Window,
    check_bands,
    needs_raster_reader,
    open_source,
)
from roofmapnet.inference.images import SkippedInput, prepare_image
from roofmapnet.models.outputs import Wireframe

if TYPE_CHECKING:
    from roofmapnet.inference.predictor import ImageResult, InferOptions, Predictor
    from roofmapnet.inference.writers import RunInfo

#: ``--crs`` choices for the GeoJSON output.
GEOJSON_CRS_CHOICES: Final = ("wgs84", "native")
#: Smallest accepted tile side (raster pixels).
MIN_TILE: Final = 16
#: Largest accepted tile side (raster pixels).
MAX_TILE: Final = 16384
#: Samples per line for the nodata rule.
NODATA_SAMPLES: Final = 16
#: Candidate pairs examined per vectorised chunk of the merge (bounds its temporary memory).
PAIR_CHUNK: Final = 1 << 20

ProgressFn = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class RasterOptions:
    """Settings of tiled raster inference (``roofmap infer`` GIS options).

    Attributes:
        tile: tile side in raster pixels (``None``: from the model input size and ``gsd``).
        overlap: overlap of neighbouring tiles in raster pixels (``None``: ``round(tile / 8)``).
        gsd: ground resolution (metres / pixel) the model was trained at; scales the default tile.
        bands: 1-based band selection (``None``: default rule of :mod:`roofmapnet.inference.geo`).
        crs: GeoJSON coordinates: ``wgs84`` (RFC 7946 longitude / latitude) or ``native`` (the raster's CRS,
            named in the ``crs`` member).
        vector_formats: vector files of georeferenced rasters (:data:`roofmapnet.inference.vectors.VECTOR_FORMATS`:
            gpkg, fgb, shp, geojson, parquet), each with the lines, junctions and facets layers; empty: none.
        tile_all: tile every input, plain images too (set by ``--tile`` / ``--bands``); otherwise only
            GeoTIFFs and GDAL-only formats are tiled.
        stretch: percentiles of the linear stretch of non-8-bit bands.
    """

    tile: int | None = None
    overlap: int | None = None
    gsd: float | None = None
    bands: tuple[int, ...] | None = None
    crs: str = "wgs84"
    vector_formats: tuple[str, ...] = ("gpkg",)
    tile_all: bool = False
    stretch: tuple[float, float] = DEFAULT_STRETCH

    def __post_init__(self) -> None:
        if self.tile is not None and not MIN_TILE <= self.tile <= MAX_TILE:
            raise RoofMapError(f"--tile {self.tile}: must be between {MIN_TILE} and {MAX_TILE} pixels", exit_code=2)
        if self.overlap is not None and self.overlap < 0:
            raise RoofMapError(f"--overlap {self.overlap}: must be 0 or more", exit_code=2)
        if self.tile is not None and self.overlap is not None and 2 * self.overlap >= self.tile:
            msg = f"--overlap {self.overlap}: must be less than half the tile ({self.tile} px)"
            raise RoofMapError(msg, exit_code=2)
        if self.gsd is not None and not (math.isfinite(self.gsd) and self.gsd > 0):
            raise RoofMapError(f"--gsd {self.gsd}: must be a positive number of metres per pixel", exit_code=2)
        if self.crs not in GEOJSON_CRS_CHOICES:
            raise RoofMapError(f"--crs {self.crs}: expected one of {', '.join(GEOJSON_CRS_CHOICES)}", exit_code=2)
        from roofmapnet.inference.vectors import VECTOR_FORMATS

        unknown = [f for f in self.vector_formats if f not in VECTOR_FORMATS]
        if unknown:
            msg = f"--vector-format {','.join(unknown)}: expected none or a comma-separated subset of {','.join(VECTOR_FORMATS)}"
            raise RoofMapError(msg, exit_code=2)
        if self.bands is not None:
            try:
                check_bands(self.bands)
            except ValueError as exc:
                raise RoofMapError(str(exc), exit_code=2) from None


def default_overlap(tile: int) -> int:
    """The default overlap for a tile side: ``round(tile / 8)``."""
    return round(tile / 8)


def resolve_tiling(
    options: RasterOptions, image_size: int, ground_resolution_m: float | None, path: str | Path = "<raster>"
) -> tuple[int, int]:
    """The tile side and overlap (raster pixels) for one raster (rule in the module docstring).

    Args:
        options: the run's raster options.
        image_size: the network input side.
        ground_resolution_m: the raster's metres per pixel, if known.
        path: the raster (for messages).

    Raises:
        DataError: ``--gsd`` given for a raster whose pixel size is unknown, or a tile outside the limits.
    """
    tile = options.tile
    if tile is None:
        if options.gsd is not None:
            if ground_resolution_m is None:
                msg = f"{path}: --gsd needs a raster with a known pixel size (a CRS and a geotransform)"
                raise DataError(msg)
            tile = round(image_size * options.gsd / ground_resolution_m)
        else:
            tile = image_size
    if not MIN_TILE <= tile <= MAX_TILE:
        msg = f"{path}: tile of {tile} px (from --gsd) is outside [{MIN_TILE}, {MAX_TILE}]"
        raise DataError(msg)
    overlap = default_overlap(tile) if options.overlap is None else options.overlap
    if 2 * overlap >= tile:
        msg = f"{path}: --overlap {overlap} must be less than half the tile ({tile} px)"
        raise DataError(msg)
    return int(tile), int(overlap)


def wants_tiling(path: str | Path, options: RasterOptions) -> bool:
    """Whether ``path`` goes through tiled inference (GeoTIFF / GDAL raster, or ``tile_all``)."""
    return options.tile_all or needs_raster_reader(path)


def route_inputs(paths: Sequence[Path], options: RasterOptions | None) -> list[bool]:
    """For each input, whether it is tiled (:func:`wants_tiling`); only TIFF headers are read."""
    opts = options or RasterOptions()
    return [wants_tiling(p, opts) for p in paths]


# ------------------------------------------------------------------------------------------------ grid
def _origins(n: int, tile: int, stride: int) -> np.ndarray:
    if n <= tile:
        return np.zeros(1, dtype=np.int64)
    k = math.ceil((n - tile) / stride) + 1
    origins = np.arange(k, dtype=np.int64) * stride
    origins[-1] = n - tile
    return origins


def _boundaries(origins: np.ndarray, tile: int, n: int) -> np.ndarray:
    """Core boundaries along one axis: ``[0, mid(overlap 0|1), ..., n]`` (length = tiles + 1)."""
    inner = (origins[:-1] + tile + origins[1:]) / 2.0
    return np.concatenate([[0.0], inner, [float(n)]])


@dataclass(frozen=True)
class TileGrid:
    """Square tiles covering a ``height × width`` raster, row-major (tile ``i`` = row ``i // cols``, col ``i % cols``).

    Attributes:
        height: raster rows.
        width: raster columns.
        tile: tile side (the network sees ``tile × tile`` pixels, padded if the raster is smaller).
        overlap: requested overlap between neighbours.
        ys: row origin of each tile row.
        xs: column origin of each tile column.
    """

    height: int
    width: int
    tile: int
    overlap: int
    ys: np.ndarray = field(repr=False)
    xs: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, height: int, width: int, tile: int, overlap: int) -> TileGrid:
        """The grid for a raster (origins every ``tile − overlap``, last tile moved back to the edge)."""
        if height < 1 or width < 1:
            msg = f"raster size {width}×{height}: must be at least 1×1"
            raise ValueError(msg)
        if tile < 1 or overlap < 0 or 2 * overlap >= tile:
            msg = f"tile {tile} / overlap {overlap}: need tile ≥ 1 and 0 ≤ 2·overlap < tile"
            raise ValueError(msg)
        stride = tile - overlap
        return cls(height, width, tile, overlap, _origins(height, tile, stride), _origins(width, tile, stride))

    @property
    def rows(self) -> int:
        """Tile rows."""
        return int(self.ys.size)

    @property
    def cols(self) -> int:
        """Tile columns."""
        return int(self.xs.size)

    def __len__(self) -> int:
        return self.rows * self.cols

    @property
    def read_height(self) -> int:
        """Rows read per tile (``tile``, or the raster height when it is smaller)."""
        return min(self.tile, self.height)

    @property
    def read_width(self) -> int:
        """Columns read per tile."""
        return min(self.tile, self.width)

    def window(self, index: int) -> Window:
        """The read window of tile ``index`` (inside the raster)."""
        r, c = divmod(int(index), self.cols)
        return Window(int(self.ys[r]), int(self.xs[c]), self.read_height, self.read_width)

    def windows(self) -> list[Window]:
        """All read windows, row-major."""
        return [self.window(i) for i in range(len(self))]

    def extents(self, ids: np.ndarray) -> np.ndarray:
        """``[N, 4]`` ``x0, y0, x1, y1`` raster extent of tiles ``ids`` (clipped to the raster)."""
        ids = np.asarray(ids, dtype=np.int64)
        r, c = np.divmod(ids, self.cols)
        x0, y0 = self.xs[c].astype(np.float64), self.ys[r].astype(np.float64)
        return np.stack([x0, y0, x0 + self.read_width, y0 + self.read_height], axis=1)

    @property
    def core_x(self) -> np.ndarray:
        """Core boundaries along x (``cols + 1`` values from 0 to width)."""
        return _boundaries(self.xs, self.tile, self.width)

    @property
    def core_y(self) -> np.ndarray:
        """Core boundaries along y (``rows + 1`` values from 0 to height)."""
        return _boundaries(self.ys, self.tile, self.height)

    def owner(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Flat index of the tile whose core contains each point (points on a boundary go to the later tile)."""
        cx = np.clip(
            np.searchsorted(self.core_x[1:-1], np.asarray(x, dtype=np.float64), side="right"), 0, self.cols - 1
        )
        cy = np.clip(
            np.searchsorted(self.core_y[1:-1], np.asarray(y, dtype=np.float64), side="right"), 0, self.rows - 1
        )
        return cy * self.cols + cx


# ------------------------------------------------------------------------------------------------ geometry
def clip_segments(xyxy: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Clip segments ``[N, 4]`` (``x1, y1, x2, y2``) to the rectangle ``box = (x0, y0, x1, y1)`` (Liang-Barsky).

    Returns:
        The clipped segments ``[N, 4]`` (unchanged rows where nothing is left) and ``[N]`` bool: something is left
        (more than a point).
    """
    seg = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in box)
    p = seg[:, :2]
    d = seg[:, 2:] - p
    t0 = np.zeros(len(seg))
    t1 = np.ones(len(seg))
    ok = np.ones(len(seg), dtype=bool)
    for q, r in ((-d[:, 0], p[:, 0] - x0), (d[:, 0], x1 - p[:, 0]), (-d[:, 1], p[:, 1] - y0), (d[:, 1], y1 - p[:, 1])):
        parallel = q == 0
        ok &= ~(parallel & (r < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(parallel, 0.0, r / np.where(parallel, 1.0, q))
        t0 = np.where(~parallel & (q < 0), np.maximum(t0, t), t0)
        t1 = np.where(~parallel & (q > 0), np.minimum(t1, t), t1)
    ok &= t1 > t0
    out = np.concatenate([p + t0[:, None] * d, p + t1[:, None] * d], axis=1)
    return np.where(ok[:, None], out, seg), ok


def _nodata_fraction(xyxy: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """Fraction of :data:`NODATA_SAMPLES` samples of each line (tile pixels) that fall on ``invalid``."""
    if xyxy.shape[0] == 0:
        return np.zeros(0)
    h, w = invalid.shape
    t = (np.arange(NODATA_SAMPLES) + 0.5) / NODATA_SAMPLES
    x = xyxy[:, None, 0] + t[None] * (xyxy[:, None, 2] - xyxy[:, None, 0])
    y = xyxy[:, None, 1] + t[None] * (xyxy[:, None, 3] - xyxy[:, None, 1])
    cols = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
    rows = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    return invalid[rows, cols].mean(axis=1)


# ------------------------------------------------------------------------------------------------ merge
@dataclass(frozen=True)
class MergeParams:
    """Tolerances of :func:`merge_tiles`, in raster pixels (rule in the module docstring).

    Attributes:
        distance: largest offset of a collinear line from the other's supporting line; junction dedupe radius.
        gap: largest gap (or smallest overlap) of two pieces that touch at a tile border.
        border: how far from an interior tile border a line end may stop and still count as cut by it.
        angle_deg: largest angle between collinear lines.
    """

    distance: float
    gap: float
    border: float = 0.0
    angle_deg: float = 10.0

    def __post_init__(self) -> None:
        if self.border <= 0:
            object.__setattr__(self, "border", self.gap / 2)

    @classmethod
    def for_tile(cls, tile: int, heatmap_size: int, image_size: int) -> MergeParams:
        """Defaults for a tile of ``tile`` raster pixels seen by a model with the given input / heatmap sizes."""
        del image_size  # the heatmap cell in raster pixels depends only on tile / heatmap size
        cell = tile / heatmap_size
        return cls(distance=1.5 * cell, gap=2.0 * cell, border=cell)


@dataclass
class TileDetections:
    """Per-tile detections in raster pixels, concatenated (input of :func:`merge_tiles`).

    Attributes:
        lines: ``[N, 4]`` ``x1, y1, x2, y2``.
        scores: ``[N]``.
        tiles: ``[N]`` flat tile index of each line.
        junctions: ``[J, 2]`` ``x, y``.
        junction_scores: ``[J]``.
        junction_tiles: ``[J]``.
    """

    lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tiles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    junctions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    junction_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    junction_tiles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def concat(cls, parts: Sequence[TileDetections]) -> TileDetections:
        """Concatenate per-tile parts."""
        if not parts:
            return cls()
        return cls(
            lines=np.concatenate([p.lines.reshape(-1, 4) for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            tiles=np.concatenate([p.tiles for p in parts]).astype(np.int64),
            junctions=np.concatenate([p.junctions.reshape(-1, 2) for p in parts]),
            junction_scores=np.concatenate([p.junction_scores for p in parts]),
            junction_tiles=np.concatenate([p.junction_tiles for p in parts]).astype(np.int64),
        )


@dataclass(frozen=True)
class MergedWireframe:
    """The merged wireframe of a raster, in raster pixels (``x`` right, ``y`` down, pixel edges at integers).

    Attributes:
        lines: ``[L, 4]`` ``x1, y1, x2, y2``, by descending score.
        scores: ``[L]``.
        pieces: ``[L]`` number of tile detections merged into each line.
        junctions: ``[J, 2]`` ``x, y``, by descending score.
        junction_scores: ``[J]``.
        height: raster rows.
        width: raster columns.
    """

    lines: np.ndarray
    scores: np.ndarray
    pieces: np.ndarray
    junctions: np.ndarray
    junction_scores: np.ndarray
    height: int
    width: int

    def to_wireframe(self, size: tuple[int, int] | None = None) -> Wireframe:
        """As a :class:`Wireframe` whose image frame is the raster (or ``size`` = (H, W), e.g. a preview)."""
        xy = self.lines.reshape(-1, 2, 2)
        yx = torch.from_numpy(xy[:, :, ::-1].copy())  # copy: positive strides even when empty
        junc = torch.from_numpy(self.junctions.reshape(-1, 2)[:, ::-1].copy())
        return Wireframe(
            lines=yx.to(torch.float64),
            scores=torch.from_numpy(self.scores.astype(np.float64)),
            junctions=junc.to(torch.float64),
            junction_scores=torch.from_numpy(self.junction_scores.astype(np.float64)),
            heatmap_size=(self.height, self.width),
            image_size=size or (self.height, self.width),
        )


def _pairs_in_groups(keys: np.ndarray, members: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs of ``members`` sharing a key, in chunks of at most ~:data:`PAIR_CHUNK` pairs."""
    if keys.size < 2:
        return
    order = np.argsort(keys, kind="stable")
    k, m = keys[order], members[order]
    n = k.size
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    end = np.repeat(starts + sizes, sizes)
    count = end - np.arange(n) - 1
    cum = np.cumsum(count)
    # Chunk boundaries on elements so that each chunk holds at most ~PAIR_CHUNK pairs.
    cuts = np.unique(np.concatenate([[0], np.searchsorted(cum, np.arange(PAIR_CHUNK, cum[-1], PAIR_CHUNK)), [n]]))
    for lo, hi in itertools.pairwise(cuts):
        cnt = count[lo:hi]
        total = int(cnt.sum())
        if total == 0:
            continue
        a = np.repeat(np.arange(lo, hi), cnt)
        offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        yield m[a], m[a + 1 + offs]


def _seam_incidences(grid: TileGrid, lines: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(line index, seam-section key) for every overlap-strip section a line's bounding box meets."""
    bx0 = np.minimum(lines[:, 0], lines[:, 2])
    bx1 = np.maximum(lines[:, 0], lines[:, 2])
    by0 = np.minimum(lines[:, 1], lines[:, 3])
    by1 = np.maximum(lines[:, 1], lines[:, 3])
    idx_parts: list[np.ndarray] = []
    key_parts: list[np.ndarray] = []
    # axis 0: vertical strips between tile columns, sectioned by tile rows; axis 1: the transpose.
    specs = (
        (grid.xs, grid.read_width, grid.ys, grid.read_height, bx0, bx1, by0, by1),
        (grid.ys, grid.read_height, grid.xs, grid.read_width, by0, by1, bx0, bx1),
    )
    offset = 0
    for origins, span, cross_origins, cross_span, a0, a1, c0, c1 in specs:
        n_strips = origins.size - 1
        n_sections = cross_origins.size
        if n_strips < 1:
            continue
        lo = origins[1:].astype(np.float64) - tol
        hi = origins[:-1].astype(np.float64) + span + tol
        s_lo = np.searchsorted(hi, a0, side="left")
        s_hi = np.searchsorted(lo, a1, side="right") - 1
        c_lo_edge = cross_origins.astype(np.float64) - tol
        c_hi_edge = cross_origins.astype(np.float64) + cross_span + tol
        r_lo = np.searchsorted(c_hi_edge, c0, side="left")
        r_hi = np.searchsorted(c_lo_edge, c1, side="right") - 1
        ns = np.maximum(s_hi - s_lo + 1, 0)
        nr = np.maximum(r_hi - r_lo + 1, 0)
        count = ns * nr
        total = int(count.sum())
        if total:
            line = np.repeat(np.arange(lines.shape[0]), count)
            k = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
            nr_l = nr[line]
            strip = s_lo[line] + k // nr_l
            section = r_lo[line] + k % nr_l
            idx_parts.append(line)
            key_parts.append(offset + strip * n_sections + section)
        offset += n_strips * n_sections
    if not idx_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(idx_parts), np.concatenate(key_parts)


def _cut_ends(grid: TileGrid, lines: np.ndarray, tiles: np.ndarray, tol: float) -> np.ndarray:
    """``[N, 2]`` bool: the endpoint looks cut by its tile's border.

    Extended outwards along the line by ``tol``, the endpoint leaves its tile through an interior border (not
    the raster's edge).  A line running along a border, or ending farther than ``tol`` from it, is not cut.
    """
    ext = grid.extents(tiles)
    ends = lines.reshape(-1, 2, 2)
    d = ends[:, 1] - ends[:, 0]
    u = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]
    out = np.zeros((lines.shape[0], 2), dtype=bool)
    for e, sign in ((0, -1.0), (1, 1.0)):
        x = ends[:, e, 0] + sign * tol * u[:, 0]
        y = ends[:, e, 1] + sign * tol * u[:, 1]
        out[:, e] = (
            ((x < ext[:, 0]) & (ext[:, 0] > 0))
            | ((x > ext[:, 2]) & (ext[:, 2] < grid.width))
            | ((y < ext[:, 1]) & (ext[:, 1] > 0))
            | ((y > ext[:, 3]) & (ext[:, 3] < grid.height))
        )
    return out


def _link_pairs(
    a: np.ndarray,
    b: np.ndarray,
    lines: np.ndarray,
    tiles: np.ndarray,
    cut: np.ndarray,
    params: MergeParams,
) -> np.ndarray:
    """Which candidate pairs ``(a, b)`` are merged (collinear and overlapping, or touching at a tile border)."""
    reach = params.distance + params.gap
    x1, y1, x2, y2 = lines[:, 0], lines[:, 1], lines[:, 2], lines[:, 3]
    # Cheap pre-filter: other tile, and bounding boxes closer than distance + gap.
    near = (tiles[a] != tiles[b]) & (
        (np.minimum(x1[a], x2[a]) <= np.maximum(x1[b], x2[b]) + reach)
        & (np.minimum(x1[b], x2[b]) <= np.maximum(x1[a], x2[a]) + reach)
        & (np.minimum(y1[a], y2[a]) <= np.maximum(y1[b], y2[b]) + reach)
        & (np.minimum(y1[b], y2[b]) <= np.maximum(y1[a], y2[a]) + reach)
    )
    linked = np.zeros(a.size, dtype=bool)
    k = np.flatnonzero(near)
    if k.size == 0:
        return linked
    a, b = a[k], b[k]
    dx, dy = x2 - x1, y2 - y1
    length = np.hypot(dx, dy)
    swap = length[a] < length[b]
    li = np.where(swap, b, a)  # the longer line of the pair
    sj = np.where(swap, a, b)
    ux, uy = dx[li] / length[li], dy[li] / length[li]
    # Offsets of the shorter line's endpoints from the longer's first endpoint: along (t) and across (n) it.
    px, py = x1[sj] - x1[li], y1[sj] - y1[li]
    qx, qy = x2[sj] - x1[li], y2[sj] - y1[li]
    t1, t2 = px * ux + py * uy, qx * ux + qy * uy
    dist = np.maximum(np.abs(py * ux - px * uy), np.abs(qy * ux - qx * uy))
    cos = np.abs(ux * dx[sj] + uy * dy[sj]) / length[sj]
    overlap = np.minimum(np.maximum(t1, t2), length[li]) - np.maximum(np.minimum(t1, t2), 0.0)
    collinear = (cos >= math.cos(math.radians(params.angle_deg))) & (dist <= params.distance)
    duplicate = collinear & (overlap > params.gap)
    touching = collinear & (overlap <= params.gap) & (overlap >= -params.gap)
    t = np.flatnonzero(touching)
    if t.size:
        ends_l = lines[li[t]].reshape(-1, 2, 2)
        ends_s = lines[sj[t]].reshape(-1, 2, 2)
        gaps = np.linalg.norm(ends_l[:, :, None, :] - ends_s[:, None, :, :], axis=-1)  # [T, 2, 2]
        at_border = cut[li[t]][:, :, None] & cut[sj[t]][:, None, :]
        touching[t] = ((gaps <= reach) & at_border).any(axis=(1, 2))
    linked[k] = duplicate | touching
    return linked


def _merge_groups(
    lines: np.ndarray, scores: np.ndarray, labels: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One line per group: extreme endpoints along the longest member, max score, member count."""
    d = lines[:, 2:] - lines[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    by_len = np.lexsort((length, labels))
    group_end = np.searchsorted(labels[by_len], np.arange(n_groups), side="right") - 1
    ref = by_len[group_end]
    u = d[ref] / length[ref][:, None]
    ends = lines.reshape(-1, 2, 2)
    proj = (ends * u[labels][:, None, :]).sum(-1).reshape(-1)
    owner = np.repeat(labels, 2)
    order = np.lexsort((proj, owner))
    first = np.searchsorted(owner[order], np.arange(n_groups), side="left")
    last = np.searchsorted(owner[order], np.arange(n_groups), side="right") - 1
    flat_ends = ends.reshape(-1, 2)
    merged = np.concatenate([flat_ends[order[first]], flat_ends[order[last]]], axis=1)
    best = np.full(n_groups, -np.inf)
    np.maximum.at(best, labels, scores)
    pieces = np.bincount(labels, minlength=n_groups)
    return merged, best, pieces


def _import_merge_deps() -> None:
    """Import the scipy modules of the merge and the nodata rule (0.1-0.5 s once per process)."""
    import scipy.ndimage
    import scipy.sparse.csgraph
    import scipy.spatial  # noqa: F401


def merge_tiles(grid: TileGrid, det: TileDetections, params: MergeParams) -> MergedWireframe:
    """Merge per-tile detections (raster pixels) into one wireframe (rule in the module docstring, steps 2-6).

    Step 1 (nodata) is applied per tile by the engine before this.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    lines = np.asarray(det.lines, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    tiles = np.asarray(det.tiles, dtype=np.int64).reshape(-1)
    length = np.hypot(lines[:, 2] - lines[:, 0], lines[:, 3] - lines[:, 1])
    o1 = grid.owner(lines[:, 0], lines[:, 1])
    o2 = grid.owner(lines[:, 2], lines[:, 3])
    keep = ~((o1 == o2) & (o1 != tiles)) & (length > 1e-9) & np.isfinite(lines).all(axis=1)
    lines, scores, tiles = lines[keep], scores[keep], tiles[keep]
    n = lines.shape[0]

    links_a: list[np.ndarray] = []
    links_b: list[np.ndarray] = []
    cut = _cut_ends(grid, lines, tiles, params.border) if len(grid) > 1 else np.zeros((n, 2), dtype=bool)
    if n > 1 and len(grid) > 1:
        idx, keys = _seam_incidences(grid, lines, max(params.distance, params.gap))
        for a, b in _pairs_in_groups(keys, idx):
            linked = _link_pairs(a, b, lines, tiles, cut, params)
            links_a.append(a[linked])
            links_b.append(b[linked])
    if links_a and sum(x.size for x in links_a):
        ea, eb = np.concatenate(links_a), np.concatenate(links_b)
        graph = coo_matrix((np.ones(ea.size, dtype=np.int8), (ea, eb)), shape=(n, n))
        n_groups, labels = connected_components(graph, directed=False)
    else:
        n_groups, labels = n, np.arange(n)
    if n:
        labels = labels.astype(np.int64)
        merged, best, pieces = _merge_groups(lines, scores, labels, int(n_groups))
        fragment = np.zeros(int(n_groups), dtype=bool)
        fragment[labels] = (length[keep] < params.gap) & cut.any(axis=1)
        fragment &= pieces == 1
        merged, best, pieces = merged[~fragment], best[~fragment], pieces[~fragment]
    else:
        merged, best, pieces = np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.argsort(-best, kind="stable")

    junc = np.asarray(det.junctions, dtype=np.float64).reshape(-1, 2)
    jsc = np.asarray(det.junction_scores, dtype=np.float64).reshape(-1)
    jt = np.asarray(det.junction_tiles, dtype=np.int64).reshape(-1)
    jkeep = (grid.owner(junc[:, 0], junc[:, 1]) == jt) & np.isfinite(junc).all(axis=1)
    junc, jsc, jt = junc[jkeep], jsc[jkeep], jt[jkeep]
    if junc.shape[0] > 1 and len(grid) > 1:
        pairs = cKDTree(junc).query_pairs(params.distance, output_type="ndarray")
        pairs = pairs[jt[pairs[:, 0]] != jt[pairs[:, 1]]]
        if pairs.size:
            i, j = pairs[:, 0], pairs[:, 1]
            lower = np.where((jsc[i] < jsc[j]) | ((jsc[i] == jsc[j]) & (i > j)), i, j)
            drop = np.zeros(junc.shape[0], dtype=bool)
            drop[lower] = True
            junc, jsc = junc[~drop], jsc[~drop]
    jorder = np.argsort(-jsc, kind="stable")
    return MergedWireframe(
        lines=merged[order],
        scores=best[order],
        pieces=pieces[order].astype(np.int64),
        junctions=junc[jorder],
        junction_scores=jsc[jorder],
        height=grid.height,
        width=grid.width,
    )


# ------------------------------------------------------------------------------------------------ engine
@dataclass
class TilingStats:
    """Timings and counts of one raster's tiled inference.

    Attributes:
        image: the raster path.
        height: raster rows.
        width: raster columns.
        tile: tile side (raster pixels).
        overlap: overlap (raster pixels).
        tiles: tiles in the grid.
        tiles_run: tiles sent to the model (tiles with no valid pixel are skipped).
        seconds: wall time from opening the raster to the written outputs.
        predict_seconds: wall time of the tile loop (reading, model, per-tile conversion).
        model_seconds: time inside ``model.predict``.
        merge_seconds: time of :func:`merge_tiles`.
        write_seconds: time writing the outputs.
        lines_before_merge: tile lines entering the merge.
        lines: merged lines written.
        junctions: merged junctions written.
        peak_tile_pixels: pixels of each window read (every read is one grid window, at most ``tile²``).
    """

    image: str
    height: int
    width: int
    tile: int
    overlap: int
    tiles: int
    tiles_run: int = 0
    seconds: float = 0.0
    predict_seconds: float = 0.0
    model_seconds: float = 0.0
    merge_seconds: float = 0.0
    write_seconds: float = 0.0
    lines_before_merge: int = 0
    lines: int = 0
    junctions: int = 0
    peak_tile_pixels: int = 0

    @property
    def tiles_per_second(self) -> float:
        """Grid tiles per second of total wall time."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    @property
    def merge_share(self) -> float:
        """Merge time as a fraction of the total wall time."""
        return self.merge_seconds / self.seconds if self.seconds > 0 else 0.0

    def record(self) -> dict[str, Any]:
        """The JSON's ``tiling`` object."""
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "tiles": self.tiles,
            "tiles_run": self.tiles_run,
            "lines_before_merge": self.lines_before_merge,
        }


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


def _load_tile(source: RasterSource, grid: TileGrid, index: int, mean: np.ndarray, predictor: Predictor) -> _Tile:
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
    cfg = predictor.cfg.model
    return _Tile(index, window, prepare_image(rgb, cfg.image_size, cfg.image), invalid)


def _iter_tiles(load: Callable[[int], _Tile], n: int, workers: int, prefetch: int) -> Iterator[_Tile]:
    """``load(0..n-1)`` in order, read ahead by one background thread (rasterio datasets are not thread-safe)."""
    if workers <= 0:
        yield from (load(i) for i in range(n))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roofmap-tiles") as pool:
        pending: deque[Future[_Tile]] = deque(pool.submit(load, i) for i in range(min(prefetch, n)))
        nxt = len(pending)
        try:
            while pending:
                done = pending.popleft()
                if nxt < n:
                    pending.append(pool.submit(load, nxt))
                    nxt += 1
                yield done.result()
        finally:
            for fut in pending:
                fut.cancel()


def _tile_detections(tile: _Tile, wf: Wireframe, grid: TileGrid) -> TileDetections:
    """Move one tile's wireframe to raster pixels and apply the nodata rule."""
    lines = wf.lines_xyxy()
    scores = wf.scores.detach().double().cpu().numpy().reshape(-1)
    junc = wf.junctions_xy()
    jsc = wf.junction_scores.detach().double().cpu().numpy().reshape(-1)
    if tile.invalid is not None:
        from scipy import ndimage

        near = ndimage.binary_dilation(tile.invalid, structure=np.ones((3, 3), dtype=bool))
        keep = _nodata_fraction(lines, near) < 0.5
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
    options: InferOptions,
    raster: RasterOptions,
    *,
    progress: ProgressFn | None = None,
    merge_params: MergeParams | None = None,
) -> RasterPrediction:
    """Run the model over a raster tile by tile and merge the results (module docstring).

    Args:
        predictor: the loaded model (thresholds, post-processing, precision, device).
        source: the opened raster.
        options: decoding options (``batch_size``: tiles per forward pass; ``workers`` 0: read in this thread).
        raster: tile size / overlap / gsd.
        progress: ``progress(done_tiles, total_tiles)``.
        merge_params: override the merge tolerances.

    Raises:
        DataError: the tiling cannot be resolved for this raster.
    """
    start = time.perf_counter()
    _import_merge_deps()  # one-time import cost, kept out of the merge timing
    cfg = predictor.cfg.model
    ground = source.georef.ground_resolution_m(source.height, source.width)
    tile, overlap = resolve_tiling(raster, cfg.image_size, ground, source.path)
    grid = TileGrid.build(source.height, source.width, tile, overlap)
    params = merge_params or MergeParams.for_tile(tile, cfg.heatmap_size, cfg.image_size)
    stats = TilingStats(str(source.path), source.height, source.width, tile, overlap, len(grid))
    mean = np.asarray(cfg.image.mean, dtype=np.float32)
    batch_size = options.batch_size or cfg.batch_size_eval
    model_before = predictor.model_seconds
    parts: list[TileDetections] = []
    batch: list[_Tile] = []
    done = 0

    def run_batch() -> None:
        nonlocal done
        images = torch.stack([t.tensor for t in batch if t.tensor is not None])
        wfs = predictor.predict(images, [(tile, tile)] * len(batch), options)
        parts.extend(_tile_detections(t, wf, grid) for t, wf in zip(batch, wfs, strict=True))
        stats.tiles_run += len(batch)
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done, len(grid))

    def load(i: int) -> _Tile:
        return _load_tile(source, grid, i, mean, predictor)

    stats.peak_tile_pixels = grid.read_height * grid.read_width
    for item in _iter_tiles(load, len(grid), options.workers, 2 * batch_size):
        if item.tensor is None:
            done += 1
            if progress is not None:
                progress(done, len(grid))
            continue
        batch.append(item)
        if len(batch) == batch_size:
            run_batch()
    if batch:
        run_batch()
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
    options: InferOptions,
    raster: RasterOptions,
    info: RunInfo,
    *,
    progress: ProgressFn | None = None,
) -> tuple[ImageResult | SkippedInput, TilingStats | None]:
    """Tiled inference on one raster and its outputs; a failure becomes a :class:`SkippedInput`.

    Outputs (``OUT/<stem>...``): ``.json`` (raster pixels + georeference), ``.geojson`` (map coordinates when
    georeferenced), vector files (georeferenced rasters, ``raster.vector_formats``) and ``_overlay.png`` (a preview of at
    most 4096 px), per ``options.outputs``.
    """
    from roofmapnet.inference.geowriters import write_raster_outputs
    from roofmapnet.inference.predictor import ImageResult

    start = time.perf_counter()
    try:
        with open_source(path, bands=raster.bands, stretch=raster.stretch) as source:
            prediction = predict_raster(predictor, source, options, raster, progress=progress)
            t0 = time.perf_counter()
            written = write_raster_outputs(out_dir, stem, prediction, source, info, options, raster)
            prediction.stats.write_seconds = time.perf_counter() - t0
    except DataError as exc:
        return SkippedInput(str(path), str(exc).removeprefix(f"{path}: ")), None
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
