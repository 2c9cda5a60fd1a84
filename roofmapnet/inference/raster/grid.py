"""The tile grid of a raster: tile size from the options, tiles, their core regions, and clipping to them.

A raster is cut into square tiles of ``tile`` raster pixels overlapping by ``overlap`` pixels (:class:`TileGrid`).
Pure numpy; the model driver is :mod:`roofmapnet.inference.raster.run`, the merge across seams
:mod:`roofmapnet.inference.raster.merge`.

Tile size (``infer.raster``: ``tile``, ``overlap``, ``gsd``)
    Default tile: the model's input size (``model.image_size``) in raster pixels, so the network sees the raster
    at its native resolution.  With ``gsd = G`` (the ground resolution, metres per pixel, that the model was
    trained at) and a raster whose pixel size ``g`` is known, the tile is ``round(image_size · G / g)`` raster
    pixels, resized to the network input, so the network sees the ground at its training resolution.  Default
    overlap: ``round(tile / 8)`` (64 px for 512).  Tiles start every ``tile − overlap`` pixels; the last row and
    column of tiles are moved back to end at the raster edge (so every tile is full and overlaps its neighbour by
    at least ``overlap``).  A raster smaller than a tile is padded (padding counts as nodata).

Core regions (ownership)
    Along each axis the boundary between consecutive tiles is the middle of their overlap; the tile's *core* is
    the part of the raster closer to it than to any neighbour.  Cores partition the raster; every point has
    exactly one owner tile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from roofmapnet.config.schema import MAX_TILE, MIN_TILE, RasterConfig
from roofmapnet.errors import DataError
from roofmapnet.inference.raster.source import Window, needs_raster_reader

#: Samples per line for the nodata rule.
NODATA_SAMPLES: Final = 16
#: The options named in messages.
_GSD: Final = "infer.raster.gsd"
_OVERLAP: Final = "infer.raster.overlap"


# ------------------------------------------------------------------------------------------------ tile size
def default_overlap(tile: int) -> int:
    """The default overlap for a tile side: ``round(tile / 8)``."""
    return round(tile / 8)


def resolve_tiling(
    options: RasterConfig, image_size: int, ground_resolution_m: float | None, path: str | Path = "<raster>"
) -> tuple[int, int]:
    """The tile side and overlap (raster pixels) for one raster (rule in the module docstring).

    Args:
        options: the run's raster options.
        image_size: the network input side.
        ground_resolution_m: the raster's metres per pixel, if known.
        path: the raster (for messages).

    Raises:
        DataError: ``gsd`` given for a raster whose pixel size is unknown, or a tile outside the limits.
    """
    tile = options.tile
    if tile is None:
        if options.gsd is not None:
            if ground_resolution_m is None:
                msg = f"{path}: {_GSD} {options.gsd} needs a raster with a known pixel size (a CRS and a geotransform)"
                raise DataError(msg, fields=_GSD)
            tile = round(image_size * options.gsd / ground_resolution_m)
        else:
            tile = image_size
    if not MIN_TILE <= tile <= MAX_TILE:
        msg = f"{path}: tile of {tile} px (from {_GSD} {options.gsd}) is outside [{MIN_TILE}, {MAX_TILE}]"
        raise DataError(msg, fields=_GSD)
    overlap = default_overlap(tile) if options.overlap is None else options.overlap
    if 2 * overlap >= tile:
        msg = f"{path}: {_OVERLAP} {overlap} must be less than half the tile ({tile} px)"
        raise DataError(msg, fields=_OVERLAP)
    return int(tile), int(overlap)


def wants_tiling(path: str | Path, options: RasterConfig) -> bool:
    """Whether ``path`` goes through tiled inference (GeoTIFF / GDAL raster, or ``tile_all``)."""
    return options.tile_all or needs_raster_reader(path)


def route_inputs(paths: Sequence[Path], options: RasterConfig) -> list[bool]:
    """For each input, whether it is tiled (:func:`wants_tiling`); only TIFF headers are read."""
    return [wants_tiling(p, options) for p in paths]


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


def nodata_fraction(xyxy: np.ndarray, invalid: np.ndarray) -> np.ndarray:
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
