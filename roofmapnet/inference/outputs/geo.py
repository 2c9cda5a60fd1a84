"""Outputs of tiled raster inference: JSON (raster pixels), GeoJSON (RFC 7946), GeoPackage and a preview overlay.

Every file is written atomically (:mod:`roofmapnet.utils.io`).  For ``OUT/<stem>``:

``<stem>.json``
    The per-image JSON of :mod:`roofmapnet.inference.outputs.writers` with lines and junctions in **raster pixels**
    (origin top-left, x right, y down), plus ``pieces`` (tile detections merged into each line),
    ``georeference`` (CRS name, EPSG code, WKT, the six affine coefficients), ``raster`` (reader, bands, data
    type, rescaling) and ``tiling`` (tile, overlap, tiles, merge tolerances).  ``postprocess.threshold_px`` is
    the per-tile L-CNN distance (post-processing runs on each tile).

``<stem>.geojson`` (georeferenced raster)
    An RFC 7946 ``FeatureCollection``: one ``LineString`` per line (``kind: "line"``, ``index`` into the JSON's
    lines, ``score``, ``pieces``) and one ``Point`` per junction (``kind: "junction"``, ``index``, ``score``),
    in **map coordinates** from the raster's transform.  ``crs: wgs84`` (default): transformed to WGS 84
    longitude / latitude (PROJ, bundled with rasterio), 9 decimals (0.1 mm), no ``crs`` member, as RFC 7946
    requires.  ``crs: native``: kept in the raster's CRS with the (pre-RFC 7946) ``crs`` member
    ``{"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::<code>"}}`` (the WKT when the CRS has no
    EPSG code), which GDAL / QGIS read; decimals = 1/1000 of a pixel.  A raster with a transform but no CRS
    gets native coordinates without a ``crs`` member.  ``bbox`` covers all positions.  For a raster that is not
    georeferenced (a plain image tiled with ``tile_all``) the GeoJSON is the pixel-coordinate one of
    :func:`roofmapnet.inference.outputs.writers.geojson_record`.

``<stem>.gpkg`` (georeferenced raster, ``gpkg``, default on)
    An OGC GeoPackage 1.3 (a SQLite file) written with the standard library's ``sqlite3``: no binary
    dependency.  Layers ``lines`` (``LINESTRING``; ``score`` REAL, ``pieces`` INTEGER) and ``junctions``
    (``POINT``; ``score`` REAL), in the raster's CRS (``gpkg_spatial_ref_sys`` row from its EPSG code and WKT;
    a CRS without an EPSG code gets ``srs_id`` 100000 / organisation ``NONE``; no CRS: the undefined Cartesian
    SRS −1).  Geometries are GeoPackage binary blobs (``GP`` header, version 0, little-endian, an XY envelope
    for lines, none for points, then ISO WKB) built for all features at once with numpy.

``<stem>_overlay.png``
    :func:`roofmapnet.inference.outputs.writers.render_overlay` on a preview of the raster whose longer side is at most
    :data:`OVERLAY_MAX_SIDE` pixels (a decimated read: the raster is never loaded whole).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from roofmapnet.config.schema import InferConfig
from roofmapnet.inference.outputs.writers import (
    OUTPUT_SUFFIXES,
    RunInfo,
    geojson_record,
    prediction_record,
    write_json,
    write_overlay,
)
from roofmapnet.inference.postprocess import postprocess_threshold_px
from roofmapnet.inference.raster.source import Georeference, RasterSource
from roofmapnet.inference.types import MergedWireframe
from roofmapnet.models.outputs import Wireframe
from roofmapnet.utils.io import atomic_open, atomic_path

#: Suffix of the GeoPackage output.
GPKG_SUFFIX: Final = ".gpkg"
#: Longer side of the overlay preview of a tiled raster.
OVERLAY_MAX_SIDE: Final = 4096
#: Decimals of WGS 84 degrees in the GeoJSON (1e-9° ≈ 0.1 mm).
WGS84_DECIMALS: Final = 9
#: GeoPackage ``application_id`` ("GPKG") and ``user_version`` (1.3.0).
GPKG_APPLICATION_ID: Final = 0x47504B47
GPKG_USER_VERSION: Final = 10300
#: ``srs_id`` given to a CRS without an EPSG code.
CUSTOM_SRS_ID: Final = 100000

_WGS84_WKT: Final = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_SCORE_DECIMALS: Final = 6
_PIXEL_DECIMALS: Final = 3
#: Features (or array rows) serialised / inserted per chunk: writer memory is bounded by a chunk, not the raster.
WRITE_CHUNK: Final = 1 << 13

# GeoPackage geometry blobs (little-endian): header "GP", version 0, flags, srs_id, [envelope], ISO WKB.
_LINE_BLOB = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("flags", "u1"),
        ("srs_id", "<i4"),
        ("envelope", "<f8", (4,)),
        ("byte_order", "u1"),
        ("wkb_type", "<u4"),
        ("n_points", "<u4"),
        ("xy", "<f8", (4,)),
    ]
)
_POINT_BLOB = np.dtype(
    [
        ("magic", "S2"),
        ("version", "u1"),
        ("flags", "u1"),
        ("srs_id", "<i4"),
        ("byte_order", "u1"),
        ("wkb_type", "<u4"),
        ("xy", "<f8", (2,)),
    ]
)
_FLAGS_LE_ENVELOPE_XY: Final = 0b0000_0011  # bit 0: little-endian; bits 1-3 = 1: [minx, maxx, miny, maxy]
_FLAGS_LE_NO_ENVELOPE: Final = 0b0000_0001
_WKB_POINT: Final = 1
_WKB_LINESTRING: Final = 2


# ------------------------------------------------------------------------------------------------ coordinates
def native_decimals(georef: Georeference) -> int:
    """Decimals that keep 1/1000 of a pixel in map units (0 to 12)."""
    size = min(v for v in georef.pixel_size() if v > 0) if any(v > 0 for v in georef.pixel_size()) else 1.0
    return int(min(12, max(0, math.ceil(-math.log10(size / 1000.0)))))


def map_geometry(merged: MergedWireframe, georef: Georeference) -> tuple[np.ndarray, np.ndarray]:
    """Lines ``[L, 2, 2]`` and junctions ``[J, 2]`` in the raster's map coordinates (``X, Y``)."""
    lines = georef.pixel_to_map(merged.lines.reshape(-1, 2, 2))
    junctions = georef.pixel_to_map(merged.junctions.reshape(-1, 2))
    return lines.reshape(-1, 2, 2), junctions.reshape(-1, 2)


def crs_member(georef: Georeference) -> dict[str, Any] | None:
    """The GeoJSON (2008) ``crs`` member naming the raster's CRS, or ``None`` when the CRS is unknown."""
    if georef.epsg is not None:
        name = f"urn:ogc:def:crs:EPSG::{georef.epsg}"
    elif georef.crs_wkt is not None:
        name = georef.crs_wkt
    else:
        return None
    return {"type": "name", "properties": {"name": name}}


def _round(values: np.ndarray, decimals: int) -> list[Any]:
    out: list[Any] = np.round(np.asarray(values, dtype=np.float64), decimals).tolist()
    return out


def _dumps(value: Any) -> str:
    """Compact, strict JSON (no NaN), as :func:`roofmapnet.inference.outputs.writers.write_json`."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _array_items(values: np.ndarray, decimals: int | None) -> Iterator[str]:
    """The JSON text of an array's elements (without the brackets), :data:`WRITE_CHUNK` rows at a time."""
    for lo in range(0, len(values), WRITE_CHUNK):
        chunk = values[lo : lo + WRITE_CHUNK]
        items = chunk.tolist() if decimals is None else _round(chunk, decimals)
        yield _dumps(items)[1:-1]


def write_json_streamed(
    path: str | Path, doc: dict[str, Any], streamed: dict[str, Callable[[], Iterator[str]]]
) -> Path:
    """Write ``doc`` as compact JSON, atomically; the values of ``streamed`` keys are lists whose items come from
    the generators, chunk by chunk (comma-free texts of items), so big lists are never held as Python objects.
    """
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("{")
        for i, (key, value) in enumerate(doc.items()):
            fh.write(("," if i else "") + _dumps(key) + ":")
            if key not in streamed:
                fh.write(_dumps(value))
                continue
            fh.write("[")
            first = True
            for text in streamed[key]():
                if text:
                    fh.write(text if first else "," + text)
                    first = False
            fh.write("]")
        fh.write("}\n")
    return path


def _geojson_parts(
    merged: MergedWireframe, georef: Georeference, crs: str, junctions: bool, image: str | Path
) -> tuple[dict[str, Any], Callable[[], Iterator[str]]]:
    """The GeoJSON skeleton (``features`` empty) and a generator of the features' JSON text, chunk by chunk."""
    lines, points = map_geometry(merged, georef)
    wgs84 = crs == "wgs84" and georef.crs_wkt is not None
    if wgs84:
        flat = georef.to_wgs84(np.concatenate([lines.reshape(-1, 2), points]))
        lines = flat[: lines.shape[0] * 2].reshape(-1, 2, 2)
        points = flat[lines.shape[0] * 2 :]
        decimals = WGS84_DECIMALS
        system = "WGS 84 longitude, latitude (RFC 7946)"
    else:
        decimals = native_decimals(georef)
        system = georef.crs_name or "map coordinates of the raster's geotransform (CRS unknown)"
    if not junctions:
        points = np.zeros((0, 2))
    doc: dict[str, Any] = {"type": "FeatureCollection"}
    if not wgs84:
        member = crs_member(georef)
        if member is not None:
            doc["crs"] = member
    every = np.concatenate([lines.reshape(-1, 2), points])
    if every.shape[0]:
        lo, hi = every.min(axis=0), every.max(axis=0)
        doc["bbox"] = _round(np.array([lo[0], lo[1], hi[0], hi[1]]), decimals)
    doc["features"] = []
    doc["properties"] = {
        "image": str(image),
        "width": merged.width,
        "height": merged.height,
        "coordinate_system": system,
        "georeferenced": True,
        "raster_crs": georef.crs_name,
    }

    def features() -> Iterator[str]:
        for lo in range(0, lines.shape[0], WRITE_CHUNK):
            coords = _round(lines[lo : lo + WRITE_CHUNK], decimals)
            scores = _round(merged.scores[lo : lo + WRITE_CHUNK], _SCORE_DECIMALS)
            pieces = merged.pieces[lo : lo + WRITE_CHUNK].astype(np.int64).tolist()
            chunk = [
                {
                    "type": "Feature",
                    "geometry": {"type": "LineString", "coordinates": c},
                    "properties": {"kind": "line", "index": lo + i, "score": sc, "pieces": k},
                }
                for i, (c, sc, k) in enumerate(zip(coords, scores, pieces, strict=True))
            ]
            yield _dumps(chunk)[1:-1]
        for lo in range(0, points.shape[0], WRITE_CHUNK):
            xy = _round(points[lo : lo + WRITE_CHUNK], decimals)
            scores = _round(merged.junction_scores[lo : lo + WRITE_CHUNK], _SCORE_DECIMALS)
            chunk = [
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": p},
                    "properties": {"kind": "junction", "index": lo + j, "score": sc},
                }
                for j, (p, sc) in enumerate(zip(xy, scores, strict=True))
            ]
            yield _dumps(chunk)[1:-1]

    return doc, features


def geojson_document(
    merged: MergedWireframe,
    georef: Georeference,
    *,
    crs: str = "wgs84",
    junctions: bool = True,
    image: str | Path = "",
) -> dict[str, Any]:
    """The georeferenced GeoJSON FeatureCollection of a merged wireframe (layout in the module docstring).

    Args:
        merged: the raster's merged wireframe (raster pixels).
        georef: the raster's georeference.
        crs: ``wgs84`` (RFC 7946) or ``native``.
        junctions: add the junction Points.
        image: the raster path (recorded in ``properties``).
    """
    doc, features = _geojson_parts(merged, georef, crs, junctions, image)
    doc["features"] = json.loads("[" + ",".join(t for t in features() if t) + "]")
    return doc


def write_geojson(
    path: str | Path,
    merged: MergedWireframe,
    georef: Georeference,
    *,
    crs: str = "wgs84",
    junctions: bool = True,
    image: str | Path = "",
) -> Path:
    """Write :func:`geojson_document` atomically, streaming the features chunk by chunk."""
    doc, features = _geojson_parts(merged, georef, crs, junctions, image)
    return write_json_streamed(path, doc, {"features": features})


# ------------------------------------------------------------------------------------------------ GeoPackage
def linestring_blobs(lines: np.ndarray, srs_id: int) -> list[bytes]:
    """GeoPackage geometry blobs of 2-point LineStrings ``[L, 2, 2]`` (map coordinates), built with numpy."""
    pts = np.asarray(lines, dtype=np.float64).reshape(-1, 2, 2)
    rec = np.zeros(pts.shape[0], dtype=_LINE_BLOB)
    rec["magic"] = b"GP"
    rec["flags"] = _FLAGS_LE_ENVELOPE_XY
    rec["srs_id"] = srs_id
    rec["envelope"] = np.stack(
        [pts[:, :, 0].min(1), pts[:, :, 0].max(1), pts[:, :, 1].min(1), pts[:, :, 1].max(1)], axis=1
    )
    rec["byte_order"] = 1
    rec["wkb_type"] = _WKB_LINESTRING
    rec["n_points"] = 2
    rec["xy"] = pts.reshape(-1, 4)
    blobs: list[bytes] = rec.view(f"V{_LINE_BLOB.itemsize}").tolist()
    return blobs


def point_blobs(points: np.ndarray, srs_id: int) -> list[bytes]:
    """GeoPackage geometry blobs of Points ``[J, 2]`` (no envelope, as the standard recommends for points)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rec = np.zeros(pts.shape[0], dtype=_POINT_BLOB)
    rec["magic"] = b"GP"
    rec["flags"] = _FLAGS_LE_NO_ENVELOPE
    rec["srs_id"] = srs_id
    rec["byte_order"] = 1
    rec["wkb_type"] = _WKB_POINT
    rec["xy"] = pts
    blobs: list[bytes] = rec.view(f"V{_POINT_BLOB.itemsize}").tolist()
    return blobs


def _srs_row(georef: Georeference) -> tuple[str, int, str, int, str, str] | None:
    """The ``gpkg_spatial_ref_sys`` row of the raster's CRS (``None``: use the undefined Cartesian SRS −1)."""
    if georef.crs_wkt is None:
        return None
    name = georef.crs_name or "custom CRS"
    wkt1 = georef.crs_wkt
    if georef.epsg is not None:
        return (name, georef.epsg, "EPSG", georef.epsg, wkt1, f"{name} (from the input raster)")
    return (name, CUSTOM_SRS_ID, "NONE", CUSTOM_SRS_ID, wkt1, "CRS of the input raster (no EPSG code)")


_GPKG_SCHEMA: Final = """
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""


def _layer(
    con: sqlite3.Connection,
    table: str,
    geometry_type: str,
    columns: str,
    srs_id: int,
    identifier: str,
    coords: np.ndarray,
    rows: Iterator[list[tuple[Any, ...]]],
) -> None:
    con.execute(
        f"CREATE TABLE {table} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, geom {geometry_type}, {columns})"
    )
    flat = coords.reshape(-1, 2)
    bounds: tuple[float | None, ...] = (None, None, None, None)
    if flat.shape[0]:
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        bounds = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
    con.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, min_x, min_y, max_x, max_y, srs_id)"
        " VALUES (?, 'features', ?, ?, ?, ?, ?, ?, ?)",
        (table, identifier, f"RoofMapNet {table}", *bounds, srs_id),
    )
    con.execute(
        "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
        (table, geometry_type, srs_id),
    )
    names = ["geom", *(c.split()[0] for c in columns.split(","))]
    sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    for chunk in rows:
        con.executemany(sql, chunk)


def write_geopackage(
    path: str | Path,
    merged: MergedWireframe,
    georef: Georeference,
    *,
    junctions: bool = True,
    name: str = "roofmap",
) -> Path:
    """Write the ``lines`` and ``junctions`` layers of a merged wireframe as a GeoPackage, atomically.

    Args:
        path: the ``.gpkg`` file to write (replaced if it exists).
        merged: the merged wireframe (raster pixels; mapped through ``georef``).
        georef: the raster's georeference (CRS and transform).
        junctions: write the junctions layer's features (the layer exists either way).
        name: prefix of the layers' ``identifier`` in ``gpkg_contents``.
    """
    path = Path(path)
    lines, points = map_geometry(merged, georef)
    srs = _srs_row(georef)
    srs_id = -1 if srs is None else srs[1]
    if not junctions:
        points = np.zeros((0, 2))

    def line_rows() -> Iterator[list[tuple[Any, ...]]]:
        for lo in range(0, lines.shape[0], WRITE_CHUNK):
            hi = lo + WRITE_CHUNK
            blobs = linestring_blobs(lines[lo:hi], srs_id)
            scores = merged.scores[lo:hi].astype(np.float64).tolist()
            yield list(zip(blobs, scores, merged.pieces[lo:hi].astype(np.int64).tolist(), strict=True))

    def point_rows() -> Iterator[list[tuple[Any, ...]]]:
        for lo in range(0, points.shape[0], WRITE_CHUNK):
            hi = lo + WRITE_CHUNK
            blobs = point_blobs(points[lo:hi], srs_id)
            yield list(zip(blobs, merged.junction_scores[lo:hi].astype(np.float64).tolist(), strict=True))

    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA journal_mode = MEMORY")
            con.execute(f"PRAGMA application_id = {GPKG_APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {GPKG_USER_VERSION}")
            con.executescript(_GPKG_SCHEMA)
            con.executemany(
                "INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        "WGS 84 geodetic",
                        4326,
                        "EPSG",
                        4326,
                        _WGS84_WKT,
                        "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid",
                    ),
                    (
                        "Undefined cartesian SRS",
                        -1,
                        "NONE",
                        -1,
                        "undefined",
                        "undefined cartesian coordinate reference system",
                    ),
                    (
                        "Undefined geographic SRS",
                        0,
                        "NONE",
                        0,
                        "undefined",
                        "undefined geographic coordinate reference system",
                    ),
                ],
            )
            if srs is not None:
                con.execute("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs)
            _layer(
                con, "lines", "LINESTRING", "score REAL, pieces INTEGER", srs_id, f"{name} lines", lines, line_rows()
            )
            _layer(con, "junctions", "POINT", "score REAL", srs_id, f"{name} junctions", points, point_rows())
            con.commit()
        finally:
            con.close()
    return path


# ------------------------------------------------------------------------------------------------ all outputs
def merged_to_wireframe(merged: MergedWireframe, size: tuple[int, int] | None = None) -> Wireframe:
    """``merged`` as a :class:`Wireframe` whose image frame is the raster (or ``size`` = (H, W), e.g. a preview)."""
    xy = merged.lines.reshape(-1, 2, 2)
    yx = torch.from_numpy(xy[:, :, ::-1].copy())  # copy: positive strides even when empty
    junc = torch.from_numpy(merged.junctions.reshape(-1, 2)[:, ::-1].copy())
    return Wireframe(
        lines=yx.to(torch.float64),
        scores=torch.from_numpy(merged.scores.astype(np.float64)),
        junctions=junc.to(torch.float64),
        junction_scores=torch.from_numpy(merged.junction_scores.astype(np.float64)),
        heatmap_size=(merged.height, merged.width),
        image_size=size or (merged.height, merged.width),
    )


def raster_json(
    merged: MergedWireframe, source: RasterSource, info: RunInfo, options: InferConfig, tiling: dict[str, Any]
) -> dict[str, Any]:
    """The per-raster JSON document (raster pixels, plus georeference, reader and ``tiling`` records)."""
    doc, streamed = _raster_json_parts(merged, source, info, options, tiling)
    for key, items in streamed.items():
        doc[key] = json.loads("[" + ",".join(t for t in items() if t) + "]")
    return doc


def _raster_json_parts(
    merged: MergedWireframe, source: RasterSource, info: RunInfo, options: InferConfig, tiling: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Callable[[], Iterator[str]]]]:
    """The JSON skeleton (big lists empty) and the generators of those lists' items."""
    empty = MergedWireframe.empty(merged.height, merged.width)
    doc = prediction_record(merged_to_wireframe(empty), source.path, info)
    tile = int(tiling["tile"])
    if options.postprocess:
        doc["postprocess"]["threshold_px"] = round(postprocess_threshold_px(options.postprocess_t, tile, tile), 3)
    doc["pieces"] = []
    doc["georeference"] = source.georef.record() if source.georef.georeferenced else None
    doc["raster"] = source.description
    doc["tiling"] = tiling
    streamed: dict[str, Callable[[], Iterator[str]]] = {
        "lines": lambda: _array_items(merged.lines, _PIXEL_DECIMALS),
        "scores": lambda: _array_items(merged.scores, _SCORE_DECIMALS),
        "junctions": lambda: _array_items(merged.junctions, _PIXEL_DECIMALS),
        "junction_scores": lambda: _array_items(merged.junction_scores, _SCORE_DECIMALS),
        "pieces": lambda: _array_items(merged.pieces.astype(np.int64), None),
    }
    return doc, streamed


def write_raster_outputs(
    out_dir: str | Path,
    stem: str,
    merged: MergedWireframe,
    source: RasterSource,
    info: RunInfo,
    options: InferConfig,
    *,
    tiling: dict[str, Any],
) -> list[Path]:
    """Write the outputs of one tiled raster (module docstring); returns the files written.

    Args:
        out_dir: output folder.
        stem: base name of the files.
        merged: the raster's merged wireframe (raster pixels).
        source: the raster it came from (georeference, reader record, preview).
        info: the run's record.
        options: which outputs, GeoJSON junctions, post-processing, and ``raster.crs`` / ``raster.gpkg``.
        tiling: the JSON's ``tiling`` object (at least ``tile``).
    """
    out = Path(out_dir)
    raster = options.raster
    georef = source.georef
    written: list[Path] = []
    if "json" in options.outputs:
        doc, streamed = _raster_json_parts(merged, source, info, options, tiling)
        written.append(write_json_streamed(out / f"{stem}{OUTPUT_SUFFIXES['json']}", doc, streamed))
    if "geojson" in options.outputs:
        path = out / f"{stem}{OUTPUT_SUFFIXES['geojson']}"
        if georef.georeferenced:
            written.append(
                write_geojson(
                    path, merged, georef, crs=raster.crs, junctions=options.geojson_junctions, image=source.path
                )
            )
        else:
            doc = geojson_record(merged_to_wireframe(merged), source.path, junctions=options.geojson_junctions)
            written.append(write_json(path, doc))
    if raster.gpkg and georef.georeferenced:
        written.append(write_geopackage(out / f"{stem}{GPKG_SUFFIX}", merged, georef, name=stem))
    if "overlay" in options.outputs:
        preview = source.preview(OVERLAY_MAX_SIDE)
        wf = merged_to_wireframe(merged, size=(int(preview.shape[0]), int(preview.shape[1])))
        written.append(write_overlay(out / f"{stem}{OUTPUT_SUFFIXES['overlay']}", preview, wf, info.threshold))
    return written
