"""Reading rasters for tiled inference: GeoTIFF detection, windowed reads, band selection, rescaling, nodata.

Large orthophotos are never read whole: :class:`RasterioSource` reads one window (one tile) at a time with
rasterio (the optional ``geo`` extra: ``pip install 'roofmapnet[geo]'``), so the memory used for pixels is bounded
by the tiles in flight, whatever the raster size.  Plain images tiled (``infer.raster.tile_all``) are decoded once by Pillow
(:func:`roofmapnet.inference.images.read_image`) and served by :class:`ArraySource`.

Which files need rasterio (:func:`needs_raster_reader`)
    A TIFF whose first IFD carries a GeoTIFF tag (``ModelPixelScale`` 33550, ``ModelTiepoint`` 33922,
    ``ModelTransformation`` 34264, ``GeoKeyDirectory`` 34735) or that has a world file next to it (``.tfw``,
    ``.tifw``, ``.tiffw``, ``.wld``), and files with a GDAL-only raster suffix (:data:`GDAL_RASTER_SUFFIXES`:
    ``.vrt``, ``.jp2``, ``.img``, ...).  The TIFF header is parsed here (classic TIFF and BigTIFF), so the check
    works without rasterio and without decoding pixels; without the extra such a file is reported with the
    command that installs it.

Band selection (``infer.raster.bands``)
    1-based band indexes, one band (grey, replicated to RGB) or three (R, G, B in that order).  Default: the
    bands whose colour interpretation is red, green and blue; else bands 1, 2, 3; else band 1.  A palette
    band is expanded through its colour table.

Rescaling rule (non-8-bit data)
    ``uint8`` bands are used as stored.  Any other type (``uint16``, ``int16``, ``float32``, ...) is stretched
    linearly per band: ``v' = clip(255·(v − lo)/(hi − lo), 0, 255)`` with ``lo``, ``hi`` the 2nd and 98th
    percentiles of the band's valid values (QGIS' default "cumulative count cut"), computed once per raster on
    a decimated read of at most 1024 × 1024 pixels (GDAL uses the overviews when the file has them), so every
    tile gets the same mapping.  When the percentiles coincide the band's min and max are used; a constant band
    becomes 0.

Nodata
    A pixel is nodata when any selected band says so through GDAL's mask (the band's nodata value, an internal
    or external mask, an alpha band) or, for floating-point bands, when it is NaN or infinite.  The tiling
    engine fills nodata pixels with the normalisation mean (a zero network input), skips tiles with no valid
    pixel and drops detections that lie on nodata (:mod:`roofmapnet.inference.raster.run`).

Georeferencing (:class:`Georeference`)
    The raster's affine transform maps continuous pixel coordinates (pixel edges at integers, as everywhere
    in this package) to map coordinates: ``X = a·x + b·y + c``, ``Y = d·x + e·y + f``.  A raster with only
    ground control points gets the first-order (affine) fit of its GCPs.
"""

from __future__ import annotations

import math
import struct
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from roofmapnet.config.schema import DEFAULT_STRETCH, check_bands
from roofmapnet.errors import DataError
from roofmapnet.inference.images import read_image

#: The optional dependency group that provides rasterio.
GEO_EXTRA: Final = "geo"
#: How to install it (quoted in the messages).
GEO_INSTALL_HINT: Final = "pip install 'roofmapnet[geo]'"
#: Suffixes of raster formats that Pillow cannot read but GDAL can (always routed to rasterio).
GDAL_RASTER_SUFFIXES: Final = frozenset(
    {".vrt", ".jp2", ".j2k", ".img", ".ecw", ".sid", ".kea", ".ntf", ".nitf", ".bil", ".dem", ".hgt", ".rst"}
)
#: TIFF suffixes (checked for GeoTIFF tags).
TIFF_SUFFIXES: Final = frozenset({".tif", ".tiff", ".gtif", ".gtiff"})
#: World-file suffixes that georeference a TIFF from the outside.
WORLD_FILE_SUFFIXES: Final = (".tfw", ".tifw", ".tiffw", ".wld")
#: GeoTIFF tags: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory.
GEOTIFF_TAGS: Final = frozenset({33550, 33922, 34264, 34735})
#: Percentiles of the default stretch of non-8-bit bands.
#: Longest side of the decimated read used for the stretch statistics.
STATS_MAX_SIDE: Final = 1024

#: The option a band selection comes from (named in messages).
BANDS_FIELD: Final = "infer.raster.bands"
_IDENTITY: Final = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_METRES_PER_DEGREE: Final = 111_319.490793  # WGS 84 equatorial arc of one degree


# ------------------------------------------------------------------------------------------------ detection
def tiff_tag_ids(path: str | Path) -> frozenset[int] | None:
    """The tag numbers of a TIFF file's first IFD (classic TIFF or BigTIFF), or ``None`` if it is not a TIFF.

    Only the header and the first directory are read (a few hundred bytes), whatever the file size.
    """
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(16)
            if len(head) < 8 or head[:2] not in (b"II", b"MM"):
                return None
            end = "<" if head[:2] == b"II" else ">"
            (magic,) = struct.unpack(end + "H", head[2:4])
            if magic == 42:
                (offset,) = struct.unpack(end + "I", head[4:8])
                count_fmt, entry_size = "H", 12
            elif magic == 43 and len(head) >= 16:
                (offset,) = struct.unpack(end + "Q", head[8:16])
                count_fmt, entry_size = "Q", 20
            else:
                return None
            fh.seek(offset)
            raw = fh.read(struct.calcsize(count_fmt))
            if len(raw) != struct.calcsize(count_fmt):
                return None
            (count,) = struct.unpack(end + count_fmt, raw)
            if count > 4096:
                return None
            entries = fh.read(int(count) * entry_size)
    except OSError:
        return None
    n = len(entries) // entry_size
    if n == 0:
        return frozenset()
    words = np.frombuffer(entries[: n * entry_size], dtype=np.dtype(end + "u2")).reshape(n, entry_size // 2)
    return frozenset(int(t) for t in words[:, 0])


def has_world_file(path: str | Path) -> bool:
    """Whether a world file (``.tfw``, ``.wld``, ...) sits next to ``path``."""
    path = Path(path)
    return any(path.with_suffix(s).is_file() or path.with_suffix(s.upper()).is_file() for s in WORLD_FILE_SUFFIXES)


def is_geotiff(path: str | Path) -> bool:
    """Whether ``path`` is a TIFF with GeoTIFF georeferencing tags or a world file."""
    tags = tiff_tag_ids(path)
    if tags is None:
        return False
    return bool(tags & GEOTIFF_TAGS) or has_world_file(path)


def needs_raster_reader(path: str | Path) -> bool:
    """Whether ``path`` must go through rasterio: a GeoTIFF or a GDAL-only raster format (module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in GDAL_RASTER_SUFFIXES:
        return True
    if suffix in TIFF_SUFFIXES or suffix not in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}:
        return is_geotiff(path)
    return False


def rasterio_available() -> bool:
    """Whether the ``geo`` extra (rasterio) can be imported."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return False
    return True


def require_rasterio(path: str | Path) -> ModuleType:
    """Import rasterio or raise a :class:`DataError` naming the file and the extra to install."""
    try:
        import rasterio
    except ImportError:
        msg = (
            f"{path}: a georeferenced raster needs the optional '{GEO_EXTRA}' extra (rasterio); "
            f"install it with: {GEO_INSTALL_HINT}"
        )
        raise DataError(msg) from None
    return rasterio


# ------------------------------------------------------------------------------------------------ georeference
@dataclass(frozen=True)
class Window:
    """A pixel window of a raster: ``rows [row, row + height)``, ``cols [col, col + width)``."""

    row: int
    col: int
    height: int
    width: int

    @property
    def size(self) -> int:
        """Pixels in the window."""
        return self.height * self.width


@dataclass(frozen=True)
class Georeference:
    """Where a raster's pixels are on the ground.

    Attributes:
        transform: affine coefficients ``(a, b, c, d, e, f)``: ``X = a·x + b·y + c``, ``Y = d·x + e·y + f`` for
            continuous pixel coordinates ``(x, y)`` (column, row; pixel edges at integers).
        crs_wkt: the coordinate reference system as WKT (``None``: unknown).
        epsg: its EPSG code when it has one.
        crs_name: a short human-readable name (``EPSG:32632`` or the CRS's own name).
        geographic: whether the CRS is geographic (degrees) rather than projected.
        metres_per_unit: metres per CRS unit for a projected CRS (``None`` otherwise).
    """

    transform: tuple[float, float, float, float, float, float] = _IDENTITY
    crs_wkt: str | None = None
    epsg: int | None = None
    crs_name: str | None = None
    geographic: bool = False
    metres_per_unit: float | None = None

    @property
    def has_transform(self) -> bool:
        """Whether the pixel → map transform is other than the identity."""
        return tuple(self.transform) != _IDENTITY

    @property
    def georeferenced(self) -> bool:
        """Whether the raster has a CRS or a non-identity transform (map outputs make sense)."""
        return self.has_transform or self.crs_wkt is not None

    def pixel_to_map(self, xy: np.ndarray) -> np.ndarray:
        """Map coordinates of pixel coordinates ``[..., 2]`` (``x, y``), vectorised, float64."""
        a, b, c, d, e, f = self.transform
        pts = np.asarray(xy, dtype=np.float64)
        x, y = pts[..., 0], pts[..., 1]
        return np.stack([a * x + b * y + c, d * x + e * y + f], axis=-1)

    def pixel_size(self) -> tuple[float, float]:
        """Map-unit length of one pixel step along x (columns) and along y (rows)."""
        a, b, _, d, e, _ = self.transform
        return math.hypot(a, d), math.hypot(b, e)

    def ground_resolution_m(self, height: int, width: int) -> float | None:
        """The ground sampling distance in metres per pixel (geometric mean of the two axes), if known.

        Projected CRS: pixel size × metres per unit.  Geographic CRS: degrees converted at the raster centre's
        latitude (spherical approximation).  ``None`` when the CRS is unknown.
        """
        sx, sy = self.pixel_size()
        if self.crs_wkt is None or sx <= 0 or sy <= 0:
            return None
        if self.geographic:
            _, lat = self.pixel_to_map(np.array([width / 2.0, height / 2.0]))
            mx = sx * _METRES_PER_DEGREE * math.cos(math.radians(float(lat)))
            my = sy * _METRES_PER_DEGREE
            return math.sqrt(abs(mx * my)) if mx > 0 else None
        if self.metres_per_unit is None:
            return None
        return math.sqrt(sx * sy) * self.metres_per_unit

    def to_wgs84(self, xy: np.ndarray) -> np.ndarray:
        """Transform map coordinates ``[N, 2]`` in this CRS to WGS 84 ``[N, 2]`` (longitude, latitude).

        Raises:
            DataError: when the CRS is unknown (or rasterio is missing).
        """
        if self.crs_wkt is None:
            msg = "the raster has no coordinate reference system; cannot transform to WGS 84"
            raise DataError(msg)
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if self.epsg == 4326 or pts.shape[0] == 0:
            return pts.copy()
        require_rasterio("<crs>")
        from rasterio.crs import CRS
        from rasterio.warp import transform

        xs, ys = transform(CRS.from_wkt(self.crs_wkt), CRS.from_epsg(4326), pts[:, 0], pts[:, 1])
        return np.stack([np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)], axis=1)

    def record(self) -> dict[str, Any]:
        """The JSON description: CRS name / EPSG / WKT and the transform."""
        return {
            "crs": self.crs_name,
            "epsg": self.epsg,
            "crs_wkt": self.crs_wkt,
            "transform": [float(v) for v in self.transform],
            "transform_rule": "X = a*x + b*y + c, Y = d*x + e*y + f for pixel (x, y) = (column, row), edges at integers",
        }


def georeference_from_rasterio(dataset: Any) -> Georeference:
    """The :class:`Georeference` of an open rasterio dataset (transform, or the affine fit of its GCPs)."""
    transform = tuple(float(v) for v in tuple(dataset.transform)[:6])
    crs = dataset.crs
    if transform == _IDENTITY:
        gcps, gcp_crs = dataset.gcps
        if gcps:
            from rasterio.transform import from_gcps

            transform = tuple(float(v) for v in tuple(from_gcps(gcps))[:6])
            crs = gcp_crs or crs
    if crs is None:
        return Georeference(transform=transform)  # type: ignore[arg-type]
    epsg = crs.to_epsg()
    geographic = bool(crs.is_geographic)
    metres: float | None = None
    if crs.is_projected:
        try:
            metres = float(crs.linear_units_factor[1])
        except Exception:  # an exotic unit without a factor: the GSD stays unknown
            metres = None
    name = f"EPSG:{epsg}" if epsg is not None else (crs.to_string() or "custom CRS")
    return Georeference(
        transform=transform,  # type: ignore[arg-type]
        crs_wkt=crs.to_wkt(),
        epsg=epsg,
        crs_name=name,
        geographic=geographic,
        metres_per_unit=metres,
    )


# ------------------------------------------------------------------------------------------------ sources
@dataclass
class TilePixels:
    """The pixels of one window.

    Attributes:
        rgb: ``float32 [h, w, 3]`` in the 0-255 scale.
        valid: ``bool [h, w]`` valid-data mask, ``None`` when every pixel is valid.
    """

    rgb: np.ndarray
    valid: np.ndarray | None = None


@dataclass
class RasterSource(ABC):
    """Base of the window readers (:class:`ArraySource`, :class:`RasterioSource`).

    Attributes:
        path: the input file.
        height: raster rows.
        width: raster columns.
        georef: the georeference (identity for plain images).
        bands: 1-based band indexes read, in R, G, B order (one band: grey).
        description: what was read and how, recorded in the JSON output.
    """

    path: Path
    height: int
    width: int
    georef: Georeference = field(default_factory=Georeference)
    bands: tuple[int, ...] = (1, 2, 3)
    description: dict[str, Any] = field(default_factory=dict)

    @abstractmethod
    def read(self, window: Window) -> TilePixels:
        """The pixels of ``window`` (must lie inside the raster)."""

    @abstractmethod
    def preview(self, max_side: int) -> np.ndarray:
        """The whole raster decimated so that its longer side is at most ``max_side``: RGB ``uint8``."""

    @abstractmethod
    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, window: Window) -> None:
        if (
            window.row < 0
            or window.col < 0
            or window.height < 1
            or window.width < 1
            or window.row + window.height > self.height
            or window.col + window.width > self.width
        ):
            msg = f"{self.path}: window {window} is outside the {self.width}×{self.height} raster"
            raise ValueError(msg)


def _preview_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class ArraySource(RasterSource):
    """An image held in memory (plain images tiled with ``infer.raster.tile_all``); ``bands`` select among its R, G, B.

    Args:
        path: the file the image came from.
        rgb: ``uint8 [H, W, 3]``.
        bands: 1-based channels to use (default 1, 2, 3).
    """

    def __init__(self, path: str | Path, rgb: np.ndarray, bands: tuple[int, ...] | None = None) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            msg = f"{path}: expected an [H, W, 3] image, got shape {tuple(rgb.shape)}"
            raise DataError(msg)
        chosen = bands or (1, 2, 3)
        text = f"{BANDS_FIELD} {','.join(map(str, chosen))}"
        try:
            check_bands(chosen)
        except ValueError as exc:
            raise DataError(f"{path}: {text}: {exc}", fields=BANDS_FIELD) from None
        if max(chosen) > 3:
            raise DataError(f"{path}: {text}: the image has 3 bands (R, G, B)", fields=BANDS_FIELD)
        super().__init__(
            path=Path(path),
            height=int(rgb.shape[0]),
            width=int(rgb.shape[1]),
            bands=chosen,
            description={"reader": "pillow", "bands": list(chosen), "dtype": "uint8", "rescale": None},
        )
        self._rgb = rgb
        self._index = np.array([b - 1 for b in chosen] * (3 if len(chosen) == 1 else 1))

    @classmethod
    def from_file(cls, path: str | Path, bands: tuple[int, ...] | None = None) -> ArraySource:
        """Decode ``path`` with the plain-image reading rule (:func:`~roofmapnet.inference.images.read_image`)."""
        return cls(path, read_image(path), bands)

    def read(self, window: Window) -> TilePixels:
        """The window's pixels (all valid)."""
        self._check(window)
        tile = self._rgb[window.row : window.row + window.height, window.col : window.col + window.width]
        return TilePixels(rgb=tile[:, :, self._index].astype(np.float32))

    def preview(self, max_side: int) -> np.ndarray:
        """The image decimated by striding to a longer side of at most ``max_side``."""
        step = max(1, math.ceil(max(self.height, self.width) / max_side))
        return np.ascontiguousarray(self._rgb[::step, ::step][:, :, self._index])

    def close(self) -> None:
        """Nothing to release (the image is held by the caller's reference)."""


class RasterioSource(RasterSource):
    """Windowed reader of any rasterio-readable raster (GeoTIFF, VRT, JPEG 2000, ...).

    Args:
        path: the raster file.
        bands: 1-based band indexes (default: the rule in the module docstring).
        stretch: percentiles of the linear stretch of non-8-bit bands.

    Raises:
        DataError: the extra is missing, the file cannot be opened, or ``bands`` does not fit the raster.
    """

    def __init__(
        self,
        path: str | Path,
        bands: tuple[int, ...] | None = None,
        stretch: tuple[float, float] = DEFAULT_STRETCH,
    ) -> None:
        path = Path(path)
        rasterio = require_rasterio(path)
        from rasterio.enums import ColorInterp, MaskFlags
        from rasterio.windows import Window as RioWindow

        self._rio_window = RioWindow
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NotGeoreferencedWarning: plain rasters are fine here
                ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{path}: cannot open as a raster ({reason})") from None
        self._ds = ds
        try:
            chosen = self._choose_bands(path, ds, bands, ColorInterp)
            georef = georeference_from_rasterio(ds)
        except BaseException:
            ds.close()
            raise
        dtypes = {ds.dtypes[b - 1] for b in chosen}
        super().__init__(path=path, height=int(ds.height), width=int(ds.width), georef=georef, bands=chosen)
        self._float = any(np.issubdtype(np.dtype(dt), np.floating) for dt in dtypes)
        self._needs_mask = any(list(ds.mask_flag_enums[b - 1]) != [MaskFlags.all_valid] for b in chosen)
        self._palette = self._palette_table(ds, chosen, ColorInterp)
        self._lo, self._scale = self._stretch(ds, chosen, stretch)
        self.description = {
            "reader": "rasterio",
            "driver": ds.driver,
            "bands": list(chosen),
            "dtype": sorted(dtypes),
            "rescale": None
            if self._lo is None
            else {
                "rule": f"linear per band, percentiles {stretch[0]:g}-{stretch[1]:g} of valid values → 0-255",
                "low": [float(v) for v in self._lo],
                "high": [float(lo + 255.0 / s) for lo, s in zip(self._lo, self._scale, strict=True)],  # type: ignore[arg-type]
            },
            "nodata_mask": self._needs_mask or self._float,
        }

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _choose_bands(path: Path, ds: Any, bands: tuple[int, ...] | None, colour: Any) -> tuple[int, ...]:
        count = int(ds.count)
        if bands is not None:
            text = f"{BANDS_FIELD} {','.join(map(str, bands))}"
            try:
                check_bands(bands)
            except ValueError as exc:
                raise DataError(f"{path}: {text}: {exc}", fields=BANDS_FIELD) from None
            if max(bands) > count:
                raise DataError(f"{path}: {text}: the raster has {count} band(s)", fields=BANDS_FIELD)
            return bands
        interp = list(ds.colorinterp)
        rgb = [colour.red, colour.green, colour.blue]
        if all(c in interp for c in rgb):
            return tuple(interp.index(c) + 1 for c in rgb)
        if count >= 3:
            return (1, 2, 3)
        return (1,)

    @staticmethod
    def _palette_table(ds: Any, bands: tuple[int, ...], colour: Any) -> np.ndarray | None:
        if len(bands) != 1 or ds.colorinterp[bands[0] - 1] != colour.palette:
            return None
        try:
            cmap = ds.colormap(bands[0])
        except ValueError:
            return None
        table = np.zeros((max(256, max(cmap) + 1), 3), dtype=np.float32)
        keys = np.fromiter(cmap.keys(), dtype=np.int64)
        vals = np.array([cmap[int(k)][:3] for k in keys], dtype=np.float32)
        table[keys] = vals
        return table

    def _stretch(
        self, ds: Any, bands: tuple[int, ...], stretch: tuple[float, float]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        if all(ds.dtypes[b - 1] == "uint8" for b in bands) or self._palette is not None:
            return None, None
        p_lo, p_hi = stretch
        if not 0.0 <= p_lo < p_hi <= 100.0:
            msg = f"{self.path}: stretch percentiles must satisfy 0 <= low < high <= 100, got {stretch}"
            raise DataError(msg)
        h, w = _preview_shape(int(ds.height), int(ds.width), STATS_MAX_SIDE)
        data = ds.read(list(bands), out_shape=(len(bands), h, w), masked=True)
        lo = np.zeros(len(bands))
        hi = np.ones(len(bands))
        for k in range(len(bands)):  # per band (1 or 3), not per pixel
            band = data[k]
            values = np.asarray(band.compressed() if np.ma.isMaskedArray(band) else band, dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            a, b = np.percentile(values, [p_lo, p_hi])
            if b <= a:
                a, b = float(values.min()), float(values.max())
            lo[k], hi[k] = a, (b if b > a else a + 1.0)
        scale = 255.0 / (hi - lo)
        return lo.astype(np.float64), scale.astype(np.float64)

    # ------------------------------------------------------------------ reading
    def _to_rgb(self, data: np.ndarray) -> np.ndarray:
        """``[k, h, w]`` raw band values → ``float32 [h, w, 3]`` in 0-255 (palette, stretch, grey → RGB)."""
        if self._palette is not None:
            idx = np.clip(data[0].astype(np.int64), 0, self._palette.shape[0] - 1)
            return self._palette[idx]
        values = data.astype(np.float32)
        if self._lo is not None and self._scale is not None:
            lo = self._lo.astype(np.float32)[:, None, None]
            scale = self._scale.astype(np.float32)[:, None, None]
            values = np.clip((values - lo) * scale, 0.0, 255.0)
            values[~np.isfinite(values)] = 0.0
        hwc = np.moveaxis(values, 0, -1)
        if hwc.shape[2] == 1:
            hwc = np.repeat(hwc, 3, axis=2)
        return np.ascontiguousarray(hwc)

    def read(self, window: Window) -> TilePixels:
        """The window's pixels and validity, read from the file (only this window is read)."""
        self._check(window)
        rio_window = self._rio_window(window.col, window.row, window.width, window.height)
        data = self._ds.read(list(self.bands), window=rio_window)
        valid: np.ndarray | None = None
        if self._needs_mask:
            masks = self._ds.read_masks(list(self.bands), window=rio_window)
            valid = (masks > 0).all(axis=0)
        if self._float:
            finite = np.isfinite(data).all(axis=0)
            valid = finite if valid is None else valid & finite
        if valid is not None and bool(valid.all()):
            valid = None
        return TilePixels(rgb=self._to_rgb(data), valid=valid)

    def preview(self, max_side: int) -> np.ndarray:
        """A decimated RGB ``uint8`` read of the whole raster (average resampling), nodata black."""
        from rasterio.enums import Resampling

        h, w = _preview_shape(self.height, self.width, max_side)
        data = self._ds.read(
            list(self.bands), out_shape=(len(self.bands), h, w), resampling=Resampling.average, masked=True
        )
        mask = np.ma.getmaskarray(data).any(axis=0)
        rgb = self._to_rgb(np.ma.filled(data, 0))
        rgb[mask] = 0.0
        return np.rint(rgb).clip(0, 255).astype(np.uint8)

    def close(self) -> None:
        """Close the dataset."""
        self._ds.close()


def open_source(
    path: str | Path,
    *,
    bands: tuple[int, ...] | None = None,
    stretch: tuple[float, float] = DEFAULT_STRETCH,
    prefer_rasterio: bool | None = None,
) -> RasterSource:
    """Open ``path`` for windowed reading.

    GeoTIFFs and GDAL-only formats use rasterio (and need the ``geo`` extra).  Other files use rasterio for
    TIFFs when it is installed (windowed reads of big plain TIFFs), and Pillow otherwise (the plain-image
    reading rule of :mod:`roofmapnet.inference.images`).

    Args:
        path: the raster or image.
        bands: 1-based band selection (``None``: default rule).
        stretch: percentiles of the non-8-bit stretch.
        prefer_rasterio: force (``True``) or forbid (``False``) rasterio for files that do not need it.

    Raises:
        DataError: a one-line reason naming the file.
    """
    path = Path(path)
    if needs_raster_reader(path):
        return RasterioSource(path, bands, stretch)
    use_rio = prefer_rasterio
    if use_rio is None:
        use_rio = path.suffix.lower() in TIFF_SUFFIXES and rasterio_available()
    if use_rio:
        return RasterioSource(path, bands, stretch)
    return ArraySource.from_file(path, bands)
