"""``--format gis``: an orthophoto plus a vector layer of roof lines digitised over it (e.g. in QGIS).

Inputs::

    RAW_DIR                          # a raster (GeoTIFF or any GDAL raster) or a folder of them
    --lines roof_lines.gpkg          # LineString / MultiLineString layer (GeoPackage, GeoJSON, Shapefile, ...)
    [--footprints buildings.gpkg]    # optional Polygon / MultiPolygon layer: one crop per building

**Crops.**  With footprints, each footprint gives one square crop centred on its bounding box, of side
``--crop-size`` raster pixels, or larger when the building (plus :data:`FOOTPRINT_MARGIN` of its size on each
side) does not fit, so that a crop never cuts a building; crops are moved inside the raster and identical
windows are written once.  Without footprints, a grid of ``--crop-size`` crops covers the raster (the last row
and column are aligned with its edges).  Either way a crop is kept when at least ``--min-lines`` line pieces
fall inside it.

**Coordinates.**  The line layer is reprojected to the raster's CRS when they differ (PROJ through
``rasterio.warp.transform``, vertex by vertex; a straight map segment stays straight).  Map coordinates go to
continuous raster pixels through the inverse of the raster's affine transform (pixel edges at integers, as
everywhere in this package); every segment is clipped to each crop (Liang–Barsky) and shifted to the crop's
origin.  Pieces shorter than :data:`MIN_PIECE_PX` (a line that only touches the crop) are dropped.

**Splits.**  Crops are assigned to train / valid / test by the position of their centre along the raster's
longer axis, in contiguous stripes of ``--split-fractions`` (a spatial split: neighbouring, overlapping crops
cannot land in different splits); a crop that reaches into another split's stripe is dropped, with a warning
giving the count.  ``--split-fractions 1,0,0`` writes every crop to train.

**Pixels and metadata.**  A crop is read as a window (never the whole raster) with the raster reading rule of
:mod:`roofmapnet.inference.raster.source` (band choice, 2-98 % stretch of non-8-bit data, palette); nodata pixels (mask,
alpha band, NaN) are written black.  Each sample records in ``dataset.json`` its raster, window, CRS, the
crop's affine transform and ``gsd_m`` (metres per network-input pixel: the raster's ground sample distance ×
crop side / ``model.image_size``).

Needs the ``geo`` extra (rasterio, pyogrio, shapely).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from roofmapnet.data.formats.base import Annotation, SampleReader
from roofmapnet.data.raw import SPLITS, RawSample, RawSplit
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions

#: Fraction of a footprint's larger side added as a margin on each side when its crop must grow.
FOOTPRINT_MARGIN: Final = 0.1
#: Shortest clipped line piece kept, in raster pixels.
MIN_PIECE_PX: Final = 1e-6
#: Raster suffixes picked up in a RAW_DIR folder.
RASTER_SUFFIXES: Final = frozenset({".tif", ".tiff", ".gtif", ".vrt", ".jp2", ".img", ".kea", ".ntf"})
_INSTALL: Final = "pip install 'roofmapnet[geo]'"


@dataclass(frozen=True)
class GisOptions:
    """Settings of ``--format gis``.

    Attributes:
        lines: the vector file of roof lines.
        lines_layer: its layer (``None``: the first).
        footprints: optional vector file of building footprints (one crop per building).
        footprints_layer: its layer (``None``: the first).
        crop_size: crop side in raster pixels (``None``: ``model.image_size``).
        min_lines: least line pieces a crop must hold to be written.
        bands: 1-based band selection (``None``: the default rule of :mod:`roofmapnet.inference.raster.source`).
    """

    lines: Path
    lines_layer: str | None = None
    footprints: Path | None = None
    footprints_layer: str | None = None
    crop_size: int | None = None
    min_lines: int = 3
    bands: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 8:
            msg = f"gis.crop_size {self.crop_size}: a crop needs at least 8 pixels per side"
            raise DataError(msg, fields="gis.crop_size")
        if self.min_lines < 1:
            raise DataError(f"gis.min_lines {self.min_lines}: must be at least 1", fields="gis.min_lines")


def _require_geo() -> tuple[Any, Any, Any]:
    try:
        import pyogrio
        import rasterio
        import shapely
    except ImportError as exc:
        msg = f"raw_format gis needs the optional 'geo' extra ({exc.name}); install it with: {_INSTALL}"
        raise DataError(msg, fields="raw_format") from None
    return rasterio, pyogrio, shapely


def raster_files(root: Path) -> list[Path]:
    """``root`` itself when it is a file, else the rasters directly inside it (sorted)."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


# ------------------------------------------------------------------------------------------------ vectors
@dataclass(frozen=True)
class VectorLayer:
    """Geometries of a vector layer (shapely, vectorised) and the layer's CRS (WKT/``EPSG:n``, or ``None``)."""

    path: Path
    geometries: NDArray[Any]
    crs: str | None


def read_layer(path: Path, layer: str | None) -> VectorLayer:
    """Read every geometry of ``path`` (layer ``layer``) with pyogrio.

    Raises:
        DataError: missing file, unknown layer, unreadable data.
    """
    _, pyogrio, shapely = _require_geo()
    if not path.exists():
        raise DataError(f"{path}: vector file not found")
    try:
        meta, _, geometry, _ = pyogrio.raw.read(path, layer=layer, columns=[], force_2d=True)
    except Exception as exc:  # pyogrio.errors.DataSourceError / DataLayerError, ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read the vector layer ({reason})") from None
    if geometry is None:
        raise DataError(f"{path}: the layer has no geometry column")
    geoms = shapely.from_wkb(geometry)
    return VectorLayer(path, geoms[~shapely.is_missing(geoms)], meta.get("crs"))


def _to_raster_pixels(layer: VectorLayer, ds: Any) -> NDArray[Any]:
    """The layer's geometries in continuous pixel coordinates of the open raster ``ds`` (reprojected if needed)."""
    _, _, shapely = _require_geo()
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp

    inverse = ~ds.transform
    dst = ds.crs
    src = None
    if layer.crs is not None:
        try:
            src = CRS.from_user_input(layer.crs)
        except Exception as exc:
            raise DataError(f"{layer.path}: unknown CRS {layer.crs!r} ({exc})".splitlines()[0]) from None
    if src is not None and dst is None:
        raise DataError(f"{ds.name}: the raster has no CRS, the vector layer {layer.path.name} has one")
    reproject = src is not None and dst is not None and src != dst

    def to_pixels(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        if reproject and len(xy):
            xs, ys = warp(src, dst, x, y)
            x, y = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        col = inverse.a * x + inverse.b * y + inverse.c
        row = inverse.d * x + inverse.e * y + inverse.f
        return np.stack([col, row], axis=1)

    return shapely.transform(layer.geometries, to_pixels)


def line_segments(geometries: NDArray[Any]) -> tuple[NDArray[np.float64], int]:
    """``[L, 4]`` segments of every (Multi)LineString (consecutive vertices) and the count of other geometries."""
    _, _, shapely = _require_geo()
    parts = shapely.get_parts(geometries)
    kind = shapely.get_type_id(parts)
    is_line = (kind == 1) | (kind == 2)  # LineString, LinearRing
    coords, index = shapely.get_coordinates(parts[is_line], return_index=True)
    same = index[1:] == index[:-1]
    segments = np.concatenate([coords[:-1][same], coords[1:][same]], axis=1)
    others = int((~is_line).sum())
    return segments.astype(np.float64), others


# ------------------------------------------------------------------------------------------------ crops
def clip_segments(
    segments: NDArray[np.float64], pairs: NDArray[np.int64], windows: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Clip ``segments[pairs[1]]`` to the rectangles ``windows[pairs[0]]`` (``c0, r0, c1, r1``), vectorised.

    Returns:
        The clipped pieces ``[P, 4]`` and whether each piece is kept (inside and at least :data:`MIN_PIECE_PX`).
    """
    seg = segments[pairs[1]]
    win = windows[pairs[0]]
    x0, y0, x1, y1 = seg.T
    dx, dy = x1 - x0, y1 - y0
    p = np.stack([-dx, dx, -dy, dy])
    q = np.stack([x0 - win[:, 0], win[:, 2] - x0, y0 - win[:, 1], win[:, 3] - y0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = q / p
    t_in = np.max(np.where(p < 0, t, 0.0), axis=0, initial=0.0)
    t_out = np.min(np.where(p > 0, t, 1.0), axis=0, initial=1.0)
    inside = ~((p == 0) & (q < 0)).any(axis=0) & (t_in < t_out)
    pieces = np.stack([x0 + t_in * dx, y0 + t_in * dy, x0 + t_out * dx, y0 + t_out * dy], axis=1)
    # Endpoints inside the window stay bit-identical (t = 0 or 1 exactly only when not clipped).
    pieces[:, :2] = np.where((t_in == 0.0)[:, None], seg[:, :2], pieces[:, :2])
    pieces[:, 2:] = np.where((t_out == 1.0)[:, None], seg[:, 2:], pieces[:, 2:])
    length = np.hypot(pieces[:, 2] - pieces[:, 0], pieces[:, 3] - pieces[:, 1])
    return pieces, inside & (length >= MIN_PIECE_PX)


def grid_windows(height: int, width: int, side: int) -> NDArray[np.int64]:
    """``[N, 3]`` ``row, col, side`` crops covering the raster (last row/column aligned with its edges)."""
    side = min(side, height, width)
    rows = np.unique(np.append(np.arange(0, height - side + 1, side), height - side))
    cols = np.unique(np.append(np.arange(0, width - side + 1, side), width - side))
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel(), np.full(rr.size, side)], axis=1).astype(np.int64)


def footprint_windows(bounds: NDArray[np.float64], height: int, width: int, side: int) -> tuple[NDArray[np.int64], int]:
    """Crops ``[N, 3]`` centred on footprint pixel bounds ``[G, 4]`` (``c0, r0, c1, r1``) and the count outside.

    A crop grows beyond ``side`` to hold the footprint plus its margin; crops are moved inside the raster,
    and identical windows appear once (first footprint's order).
    """
    finite = np.isfinite(bounds).all(axis=1)
    b = bounds[finite]
    overlaps = (b[:, 2] > 0) & (b[:, 0] < width) & (b[:, 3] > 0) & (b[:, 1] < height)
    b = b[overlaps]
    outside = int(len(bounds) - len(b))
    extent = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + 2 * FOOTPRINT_MARGIN)
    sides = np.minimum(np.maximum(side, np.ceil(extent)), min(height, width)).astype(np.int64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    cols = np.clip(np.round(cx - sides / 2), 0, width - sides).astype(np.int64)
    rows = np.clip(np.round(cy - sides / 2), 0, height - sides).astype(np.int64)
    windows = np.stack([rows, cols, sides], axis=1)
    if len(windows) == 0:
        return windows.reshape(0, 3), outside
    _, first = np.unique(windows, axis=0, return_index=True)
    return windows[np.sort(first)], outside


def stripe_splits(
    windows: NDArray[np.int64], height: int, width: int, fractions: tuple[float, float, float]
) -> NDArray[np.int64]:
    """Split index (0 train, 1 valid, 2 test, -1 dropped) of each crop: stripes along the longer raster axis."""
    axis, length = (1, width) if width >= height else (0, height)
    start = windows[:, axis].astype(np.float64)
    end = start + windows[:, 2]
    bounds = np.cumsum(np.asarray(fractions, dtype=np.float64)) * length
    bounds[-1] = math.inf
    first = np.searchsorted(bounds, (start + end) / 2, side="right")
    lo = np.concatenate([[-math.inf], bounds[:-1]])[first]
    hi = bounds[first]
    straddles = (start < lo - 1e-9) | (end > hi + 1e-9)
    return np.where(straddles, -1, first).astype(np.int64)


# ------------------------------------------------------------------------------------------------ reader
class GisReader(SampleReader):
    """An orthophoto (or a folder of them) + a line layer (+ an optional footprints layer)."""

    name = "gis"
    summary = "an orthophoto (GeoTIFF/GDAL raster, or a folder of them) + --lines vector layer [+ --footprints]"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """``root`` is a raster file (by suffix); folders of rasters need ``--format gis``."""
        return root.is_file() and root.suffix.lower() in RASTER_SUFFIXES

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """Cut the crops of every raster and split them spatially."""
        gis = options.gis
        if gis is None:
            msg = "raw_format gis needs gis.lines VECTOR_FILE (the roof lines digitised over the raster)"
            raise DataError(msg, fields=("raw_format", "gis.lines"))
        rasterio, _, shapely = _require_geo()
        rasters = raster_files(root)
        if not rasters:
            raise DataError(f"{root}: no raster files ({', '.join(sorted(RASTER_SUFFIXES))})")
        lines_layer = read_layer(gis.lines, gis.lines_layer)
        foot_layer = read_layer(gis.footprints, gis.footprints_layer) if gis.footprints is not None else None
        side = gis.crop_size or options.image_size
        out = {s: RawSplit(s) for s in SPLITS}
        from roofmapnet.inference.raster.source import georeference_from_rasterio

        for raster in rasters:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = rasterio.open(raster)
            except Exception as exc:
                out["train"].file_errors.append((str(raster), f"cannot open as a raster ({exc})".splitlines()[0]))
                continue
            with ds:
                height, width = int(ds.height), int(ds.width)
                georef = georeference_from_rasterio(ds)
                try:
                    segments, others = line_segments(_to_raster_pixels(lines_layer, ds))
                    if foot_layer is not None:
                        bounds = shapely.bounds(_to_raster_pixels(foot_layer, ds))
                        windows, outside = footprint_windows(bounds, height, width, side)
                    else:
                        windows, outside = grid_windows(height, width, side), 0
                except DataError as exc:
                    out["train"].file_errors.append((str(raster), str(exc)))
                    continue
                if others:
                    out["train"].warnings.append((str(gis.lines), f"{others} non-line geometries ignored"))
                if outside:
                    out["train"].warnings.append((str(raster), f"{outside} footprint(s) outside the raster skipped"))
                self._add_crops(out, raster, windows, segments, georef, gis, options, (height, width))
        wanted = options.splits or SPLITS
        return [out[s] for s in SPLITS if s in wanted]

    @staticmethod
    def _add_crops(
        out: dict[str, RawSplit],
        raster: Path,
        windows: NDArray[np.int64],
        segments: NDArray[np.float64],
        georef: Any,
        gis: GisOptions,
        options: PreprocessOptions,
        hw: tuple[int, int],
    ) -> None:
        import shapely

        if len(windows) == 0 or len(segments) == 0:
            return
        rect = np.stack(
            [windows[:, 1], windows[:, 0], windows[:, 1] + windows[:, 2], windows[:, 0] + windows[:, 2]], axis=1
        ).astype(np.float64)
        tree = shapely.STRtree(shapely.linestrings(segments.reshape(-1, 2, 2)))
        pairs = tree.query(shapely.box(*rect.T), predicate="intersects")
        pieces, keep = clip_segments(segments, pairs, rect)
        pairs, pieces = pairs[:, keep], pieces[keep]
        counts = np.bincount(pairs[0], minlength=len(windows))
        enough = counts >= gis.min_lines
        split_of = stripe_splits(windows, hw[0], hw[1], options.split_fractions)
        dropped = int((enough & (split_of < 0)).sum())
        if dropped:
            out["train"].warnings.append((str(raster), f"{dropped} crop(s) across a split boundary dropped"))
        order = np.argsort(pairs[0], kind="stable")
        pairs, pieces = pairs[:, order], pieces[order]
        starts = np.searchsorted(pairs[0], np.arange(len(windows)))
        gsd = georef.ground_resolution_m(hw[0], hw[1])
        a, b, c, d, e, f = georef.transform
        for k in np.flatnonzero(enough & (split_of >= 0)).tolist():  # one record per written crop
            row, col, s = (int(v) for v in windows[k])
            lines = pieces[starts[k] : starts[k] + counts[k]] - np.array([col, row, col, row], dtype=np.float64)
            split = SPLITS[int(split_of[k])]
            meta = {
                "raster": str(raster),
                "window": [row, col, s, s],
                "crs": georef.crs_name,
                "transform": [a, b, a * col + b * row + c, d, e, d * col + e * row + f],
            }
            net_gsd = None if gsd is None else gsd * s / options.image_size
            out[split].samples.append(
                RawSample(
                    split,
                    f"{raster.stem}_r{row}_c{col}_s{s}",
                    f"{raster.name}[row {row}, col {col}, {s}×{s}]",
                    None,
                    reader="gis",
                    params={
                        "raster": str(raster),
                        "window": (row, col, s),
                        "bands": gis.bands,
                        "lines": lines,
                        "gsd_m": gsd,
                        "meta": {**meta, "source_hw": [s, s], "gsd_m": net_gsd},
                    },
                )
            )

    @classmethod
    def load(cls, sample: RawSample) -> Annotation:
        """Read the crop's window; its lines were clipped when the crops were cut."""
        from roofmapnet.inference.raster.source import Window

        row, col, side = sample.params["window"]
        source = _open_raster(sample.params["raster"], sample.params["bands"])
        pixels = source.read(Window(row, col, side, side))
        rgb = np.rint(pixels.rgb).clip(0, 255).astype(np.uint8)
        if pixels.valid is not None:
            rgb[~pixels.valid] = 0
        meta = {k: v for k, v in sample.params["meta"].items() if k not in ("source_hw", "gsd_m")}
        meta["gsd_m"] = sample.params["gsd_m"]
        return Annotation(np.asarray(sample.params["lines"], dtype=np.float64), meta=meta, rgb=rgb)


@functools.lru_cache(maxsize=4)
def _open_raster(path: str, bands: tuple[int, ...] | None) -> Any:
    """A windowed reader of ``path``, kept open for the crops that follow in this worker process."""
    from roofmapnet.inference.raster.source import RasterioSource

    return RasterioSource(path, bands)
