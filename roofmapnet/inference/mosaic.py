"""Mosaics: a folder of GeoTIFF tiles (or any list of rasters on one grid) as one virtual raster (GDAL VRT).

A city's orthophoto usually comes as hundreds of GeoTIFF tiles.  :func:`build_vrt` writes the GDAL VRT that
``gdalbuildvrt`` would: one raster covering the union of the members' extents, each member a ``SimpleSource`` at
its pixel offset, and a mask band made of the members' own masks, so pixels that no member covers are nodata.
The tiling engine then treats the mosaic as one input: tiles straddle the members' edges and lines crossing them
are merged like any tile seam.  :class:`MosaicIndex` tells which member a pixel of the mosaic comes from (the
``source`` attribute of the vector outputs).

Members must share the CRS, the pixel size (within 1e-6 of a pixel), a north-up transform, the band count and the
data type, and sit on one pixel grid (offsets within 1e-3 pixel of an integer); otherwise :class:`DataError`
names the first member that differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from xml.sax.saxutils import escape

import numpy as np

from roofmapnet.errors import DataError

#: Suffixes of the members of a folder mosaic.
MOSAIC_SUFFIXES: Final = (".tif", ".tiff")
_GDAL_TYPES: Final = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def mosaic_members(folder: str | Path) -> list[Path]:
    """The GeoTIFF files directly in ``folder``, sorted by name (:class:`DataError` when there are none)."""
    folder = Path(folder)
    members = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MOSAIC_SUFFIXES)
    if not members:
        msg = f"{folder}: no GeoTIFF tiles (*.tif, *.tiff) for a mosaic"
        raise DataError(msg)
    return members


@dataclass(frozen=True)
class MosaicIndex:
    """Where each member sits in the mosaic: pixel boxes ``[M, 4]`` (col0, row0, col1, row1) and names."""

    names: tuple[str, ...]
    boxes: np.ndarray

    def member_at(self, xy: np.ndarray) -> np.ndarray:
        """Index of the member covering each mosaic pixel point ``[N, 2]`` (x, y), ``-1`` outside every member;
        where members overlap, the last one (GDAL draws later sources on top)."""
        pts = np.asarray(xy, dtype=np.float64).reshape(-1, 1, 2)
        b = self.boxes[None]
        inside = (pts[..., 0] >= b[..., 0]) & (pts[..., 0] < b[..., 2]) & (pts[..., 1] >= b[..., 1])
        inside &= pts[..., 1] < b[..., 3]
        last = self.boxes.shape[0] - 1 - np.argmax(inside[:, ::-1], axis=1)
        return np.where(inside.any(axis=1), last, -1).astype(np.int64)

    def names_at(self, xy: np.ndarray) -> np.ndarray:
        """The member name at each point (``""`` outside), object array."""
        idx = self.member_at(xy)
        table = np.array([*self.names, ""], dtype=object)
        return table[idx]


def build_vrt(paths: Sequence[str | Path]) -> tuple[str, MosaicIndex]:
    """The VRT XML of a mosaic of ``paths`` and its :class:`MosaicIndex` (module docstring).

    Raises:
        DataError: no member, an unreadable member, or members that do not share one grid.
    """
    from roofmapnet.inference.raster.source import require_rasterio

    if not paths:
        msg = "a mosaic needs at least one raster"
        raise DataError(msg)
    rasterio = require_rasterio(paths[0])
    infos: list[dict[str, Any]] = []
    for p in paths:
        try:
            with rasterio.open(p) as ds:
                infos.append(
                    {
                        "path": Path(p).resolve(),
                        "crs": ds.crs,
                        "transform": ds.transform,
                        "width": ds.width,
                        "height": ds.height,
                        "count": ds.count,
                        "dtype": ds.dtypes[0],
                        "nodata": ds.nodata,
                        "colorinterp": [ci.name for ci in ds.colorinterp],
                    }
                )
        except rasterio.errors.RasterioIOError as exc:
            msg = f"{p}: cannot read as a raster ({str(exc).splitlines()[0]})"
            raise DataError(msg) from None
    ref = infos[0]
    t0 = ref["transform"]
    if t0.b != 0 or t0.d != 0 or t0.a <= 0 or t0.e >= 0:
        msg = f"{ref['path']}: mosaic members must be north-up (no rotation, x right, y down)"
        raise DataError(msg)
    for info in infos[1:]:
        t = info["transform"]
        for key, label in (("crs", "CRS"), ("count", "band count"), ("dtype", "data type")):
            if info[key] != ref[key]:
                msg = f"{info['path']}: {label} {info[key]} differs from {ref['path'].name}'s {ref[key]}"
                raise DataError(msg)
        if t.b != 0 or t.d != 0 or abs(t.a - t0.a) > 1e-6 * abs(t0.a) or abs(t.e - t0.e) > 1e-6 * abs(t0.e):
            msg = f"{info['path']}: pixel size or orientation differs from {ref['path'].name}'s"
            raise DataError(msg)
    a, e = t0.a, t0.e
    west = min(i["transform"].c for i in infos)
    north = max(i["transform"].f for i in infos)
    offsets = []
    for info in infos:
        col = (info["transform"].c - west) / a
        row = (info["transform"].f - north) / e
        if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
            msg = f"{info['path']}: not on the pixel grid of {ref['path'].name} (offset {col:.4f}, {row:.4f} px)"
            raise DataError(msg)
        offsets.append((round(col), round(row)))
    width = max(c + i["width"] for (c, _), i in zip(offsets, infos, strict=True))
    height = max(r + i["height"] for (_, r), i in zip(offsets, infos, strict=True))
    gdal_type = _GDAL_TYPES.get(ref["dtype"], "Float64")

    def source(info: dict[str, Any], off: tuple[int, int], band: str) -> str:
        return (
            "<SimpleSource>"
            f'<SourceFilename relativeToVRT="0">{escape(str(info["path"]))}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand>"
            f'<SrcRect xOff="0" yOff="0" xSize="{info["width"]}" ySize="{info["height"]}"/>'
            f'<DstRect xOff="{off[0]}" yOff="{off[1]}" xSize="{info["width"]}" ySize="{info["height"]}"/>'
            "</SimpleSource>"
        )

    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if ref["crs"] is not None:
        parts.append(f"<SRS>{escape(ref['crs'].to_wkt())}</SRS>")
    parts.append(f"<GeoTransform>{west!r}, {a!r}, 0.0, {north!r}, 0.0, {e!r}</GeoTransform>")
    parts.append('<MaskBand><VRTRasterBand dataType="Byte">')
    parts.extend(source(i, o, "mask,1") for i, o in zip(infos, offsets, strict=True))
    parts.append("</VRTRasterBand></MaskBand>")
    for b in range(1, ref["count"] + 1):
        parts.append(f'<VRTRasterBand dataType="{gdal_type}" band="{b}">')
        interp = ref["colorinterp"][b - 1] if b - 1 < len(ref["colorinterp"]) else "undefined"
        parts.append(f"<ColorInterp>{interp.capitalize()}</ColorInterp>")
        parts.extend(source(i, o, str(b)) for i, o in zip(infos, offsets, strict=True))
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    boxes = np.array(
        [[c, r, c + i["width"], r + i["height"]] for (c, r), i in zip(offsets, infos, strict=True)], dtype=np.float64
    )
    return "".join(parts), MosaicIndex(tuple(i["path"].name for i in infos), boxes)
