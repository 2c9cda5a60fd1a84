"""Vector outputs through GDAL (pyogrio): GeoPackage, FlatGeobuf, Shapefile, GeoJSON (RFC 7946) and GeoParquet.

One entry point, :func:`write_vectors`, writes :class:`VectorLayer` s (shapely geometries + attribute columns)
in the format named by the path's suffix or by ``fmt`` (:data:`VECTOR_FORMATS`):

========== ================ ========= =========================================================================
name       GDAL driver      suffix    layout
========== ================ ========= =========================================================================
``gpkg``   GPKG             .gpkg     one file, one table per layer; the frame in each layer's metadata
``fgb``    FlatGeobuf       .fgb      one file per layer, ``<stem>_<layer>.fgb``, + ``<stem>_frame.json``
``shp``    ESRI Shapefile   .shp      one Shapefile per layer, ``<stem>_<layer>.shp`` (+ .shx .dbf .prj .cpg),
                                      + ``<stem>_frame.json``
``parquet`` Parquet         .parquet  GeoParquet, one file per layer, + ``<stem>_frame.json`` (only where the
                                      GDAL in use has the Parquet driver: pyogrio's wheels do not)
``geojson`` GeoJSON         .geojson  one ``FeatureCollection`` of all layers (a ``kind`` property tells them
                                      apart); RFC 7946 (WGS 84 longitude / latitude, counter-clockwise rings,
                                      no ``crs`` member) unless ``rfc7946=False`` (native CRS, GeoJSON 2008 ``crs``
                                      member); the frame and ``collection_properties`` as foreign members
========== ================ ========= =========================================================================

**Frame** (:class:`VectorFrame`): the map CRS (WKT, name) *and* the image-pixel frame (the affine
pixel → map transform, the raster size, the source) are recorded with every output, so pixel coordinates can be
recovered from map ones and the other way round.

**Atomic**: everything is written into a temporary folder next to the outputs
(:func:`roofmapnet.utils.io.atomic_files`) and moved into place only when all files are complete; a failure leaves
nothing behind.  Needs pyogrio and shapely (the ``geo`` extra).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from roofmapnet.errors import DataError
from roofmapnet.utils.io import atomic_files, atomic_write_text


@dataclass(frozen=True)
class VectorFormat:
    """A vector format: our name, the GDAL driver, the suffix, whether one file holds several layers."""

    name: str
    driver: str
    suffix: str
    multi_layer: bool
    title: str


#: The formats :func:`write_vectors` knows, by name.
VECTOR_FORMATS: Final[dict[str, VectorFormat]] = {
    f.name: f
    for f in (
        VectorFormat("gpkg", "GPKG", ".gpkg", True, "OGC GeoPackage"),
        VectorFormat("fgb", "FlatGeobuf", ".fgb", False, "FlatGeobuf"),
        VectorFormat("shp", "ESRI Shapefile", ".shp", False, "ESRI Shapefile"),
        VectorFormat("geojson", "GeoJSON", ".geojson", True, "GeoJSON (RFC 7946)"),
        VectorFormat("parquet", "Parquet", ".parquet", False, "GeoParquet"),
    )
}
#: Suffix → format name (``.json`` is not one: it is the pixel JSON of ``roofmap infer``).
SUFFIX_FORMATS: Final = {f.suffix: f.name for f in VECTOR_FORMATS.values()} | {".geoparquet": "parquet"}
#: The feature ``kind`` of each layer in a single-collection GeoJSON.
LAYER_KINDS: Final = {"lines": "line", "junctions": "junction", "facets": "facet"}


def require_pyogrio() -> ModuleType:
    """The ``pyogrio`` module, or a one-line :class:`DataError` naming the extra that installs it."""
    try:
        import pyogrio
    except ImportError as exc:  # pragma: no cover - pyogrio is in the geo and dev extras
        msg = "vector outputs need the optional 'geo' extra (pyogrio); install it with: pip install 'roofmapnet[geo]'"
        raise DataError(msg) from exc
    return pyogrio


def writable_formats() -> list[str]:
    """Names of the formats whose GDAL driver can write in this installation."""
    drivers = require_pyogrio().list_drivers(write=True)
    return [name for name, f in VECTOR_FORMATS.items() if f.driver in drivers]


def resolve_format(path: str | Path, fmt: str | None = None) -> VectorFormat:
    """The format named by ``fmt`` or, without it, by ``path``'s suffix; checks that GDAL can write it.

    Raises:
        DataError: unknown format / suffix, or a driver this GDAL lacks (one line naming the path).
    """
    path = Path(path)
    if fmt is None:
        name = SUFFIX_FORMATS.get(path.suffix.lower())
        if name is None:
            known = ", ".join(sorted(SUFFIX_FORMATS))
            msg = f"{path}: unknown vector suffix '{path.suffix}' (one of {known}, or give the format)"
            raise DataError(msg)
    else:
        name = fmt.lower()
        if name not in VECTOR_FORMATS:
            msg = f"{path}: unknown vector format '{fmt}' (one of {', '.join(VECTOR_FORMATS)})"
            raise DataError(msg)
    vf = VECTOR_FORMATS[name]
    if name not in writable_formats():
        pyogrio = require_pyogrio()
        msg = (
            f"{path}: the GDAL {pyogrio.__gdal_version_string__} in use has no writable '{vf.driver}' driver for "
            f"{vf.title}; choose one of {', '.join(writable_formats())}"
        )
        raise DataError(msg)
    return vf


@dataclass(frozen=True)
class VectorFrame:
    """The coordinate frames of the features: the map CRS and the image-pixel frame.

    Attributes:
        crs_wkt: the map CRS as WKT (``None``: unknown; the features are then in the transform's units or pixels).
        crs_name: a short name (``EPSG:2056``).
        transform: pixel → map affine ``(a, b, c, d, e, f)``: ``X = a·x + b·y + c``, ``Y = d·x + e·y + f`` for
            pixel ``(x, y)`` = (column, row), pixel edges at integers.
        width: raster width (pixels).
        height: raster height (pixels).
        source: the raster the features come from.
    """

    crs_wkt: str | None
    crs_name: str | None
    transform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    source: str

    def record(self) -> dict[str, Any]:
        """JSON-ready description of both frames."""
        return {
            "map_crs": self.crs_name,
            "map_crs_wkt": self.crs_wkt,
            "pixel_to_map": [float(v) for v in self.transform],
            "pixel_to_map_rule": "X = a*x + b*y + c, Y = d*x + e*y + f for pixel (x, y) = (column, row), edges at integers",
            "raster_width": int(self.width),
            "raster_height": int(self.height),
            "source": self.source,
        }

    def metadata(self) -> dict[str, str]:
        """The record as GDAL metadata items (string values)."""
        return {
            f"roofmap_{k}": v if isinstance(v, str) else json.dumps(v)
            for k, v in self.record().items()
            if v is not None
        }


@dataclass(frozen=True)
class VectorLayer:
    """One layer: geometries and attribute columns of equal length.

    Attributes:
        name: layer name (``lines``, ``junctions``, ``facets``).
        geometry_type: ``LineString``, ``Point`` or ``Polygon`` (what GDAL declares for the layer).
        geometry: ``[N]`` shapely geometries (object array).
        fields: column name → ``[N]`` array (float NaN and a masked entry are written as null).
        masks: column name → ``[N]`` bool, True where the value is null (integer and string columns).
    """

    name: str
    geometry_type: str
    geometry: np.ndarray
    fields: Mapping[str, np.ndarray] = field(default_factory=dict)
    masks: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self)
        for key, values in self.fields.items():
            if np.asarray(values).shape != (n,):
                msg = f"layer {self.name}: field {key} has shape {np.asarray(values).shape}, expected ({n},)"
                raise ValueError(msg)

    def __len__(self) -> int:
        return int(np.asarray(self.geometry).shape[0])


def _wkb(geometry: np.ndarray) -> np.ndarray:
    from roofmapnet.inference.facets import require_shapely

    shapely = require_shapely()
    return np.asarray(shapely.to_wkb(np.asarray(geometry, dtype=object), output_dimension=2), dtype=object)


def _columns(layer: VectorLayer) -> tuple[list[np.ndarray], list[str], list[np.ndarray | None]]:
    data, names, masks = [], [], []
    for key, values in layer.fields.items():
        arr = np.asarray(values)
        if arr.dtype.kind in "US":
            arr = arr.astype(object)
        data.append(arr)
        names.append(key)
        masks.append(layer.masks.get(key))
    return data, names, masks


def _write_layer(
    pyogrio: ModuleType,
    path: Path,
    layer: VectorLayer,
    vf: VectorFormat,
    crs: str | None,
    *,
    append: bool = False,
    metadata: dict[str, str] | None = None,
    layer_options: dict[str, str] | None = None,
) -> None:
    data, names, masks = _columns(layer)
    with warnings.catch_warnings():
        # A pixel-frame output (no CRS) is intended; the frame is recorded beside it.
        warnings.filterwarnings("ignore", message=".*'crs' was not provided.*")
        _raw_write(pyogrio, path, layer, vf, crs, data, names, masks, append, metadata, layer_options)


def _raw_write(
    pyogrio: ModuleType,
    path: Path,
    layer: VectorLayer,
    vf: VectorFormat,
    crs: str | None,
    data: list[np.ndarray],
    names: list[str],
    masks: list[np.ndarray | None],
    append: bool,
    metadata: dict[str, str] | None,
    layer_options: dict[str, str] | None,
) -> None:
    pyogrio.raw.write(
        str(path),
        _wkb(layer.geometry),
        data,
        names,
        field_mask=masks if any(m is not None for m in masks) else None,
        layer=layer.name,
        driver=vf.driver,
        geometry_type=layer.geometry_type,
        crs=crs,
        append=append,
        layer_metadata=metadata,
        layer_options=layer_options,
        promote_to_multi=False,
    )


def _collection(layers: Sequence[VectorLayer]) -> VectorLayer:
    """All layers as one mixed-geometry layer: ``kind`` and ``index`` columns, the union of the fields (null where
    a layer lacks one)."""
    n = sum(len(la) for la in layers)
    geometry = np.concatenate([np.asarray(la.geometry, dtype=object) for la in layers]) if layers else np.empty(0)
    kinds = np.concatenate([np.full(len(la), LAYER_KINDS.get(la.name, la.name), dtype=object) for la in layers])
    index = np.concatenate([np.arange(len(la), dtype=np.int64) for la in layers])
    fields: dict[str, np.ndarray] = {"kind": kinds, "index": index}
    masks: dict[str, np.ndarray] = {}
    names = [k for k in dict.fromkeys(k for la in layers for k in la.fields) if k not in fields]
    for key in names:
        sample = next(np.asarray(la.fields[key]) for la in layers if key in la.fields)
        if sample.dtype.kind == "f":
            col = np.full(n, np.nan)
        elif sample.dtype.kind in "iub":
            col = np.zeros(n, dtype=np.int64)
        else:
            col = np.full(n, None, dtype=object)
        null = np.ones(n, dtype=bool)
        lo = 0
        for la in layers:
            if key in la.fields:
                col[lo : lo + len(la)] = np.asarray(la.fields[key])
                own = la.masks.get(key)
                null[lo : lo + len(la)] = own if own is not None else False
            lo += len(la)
        fields[key] = col
        if null.any() and col.dtype.kind != "f":
            masks[key] = null
        elif col.dtype.kind == "f":
            col[null] = np.nan
    return VectorLayer("features", "Unknown", geometry, fields, masks)


def write_vectors(
    path: str | Path,
    layers: Sequence[VectorLayer],
    frame: VectorFrame,
    *,
    fmt: str | None = None,
    rfc7946: bool = True,
    decimals: int | None = None,
    collection_properties: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``layers`` to ``path`` in the format of its suffix (or ``fmt``), atomically (module docstring).

    Args:
        path: the output; for one-file-per-layer formats, ``<stem>_<layer><suffix>`` next to it.
        layers: the layers (geometries in ``frame``'s map CRS).
        frame: the map CRS and image-pixel frame, recorded with the output.
        fmt: format name (:data:`VECTOR_FORMATS`) overriding the suffix.
        rfc7946: GeoJSON only: WGS 84 longitude / latitude (RFC 7946); False keeps the map CRS (2008 ``crs``
            member).  Without a CRS the coordinates are written as they are.
        decimals: GeoJSON only: coordinate decimals (default: 9 in WGS 84 (0.1 mm), GDAL's otherwise).
        collection_properties: GeoJSON only: written as the collection's ``properties`` foreign member.

    Returns:
        The files written (the main files; a Shapefile's sidecars are written beside each ``.shp``).
    """
    pyogrio = require_pyogrio()
    path = Path(path)
    vf = resolve_format(path, fmt)
    if path.suffix.lower() != vf.suffix and fmt is not None:
        path = path.with_suffix(vf.suffix)
    crs = frame.crs_wkt
    written: list[Path] = []
    with atomic_files(path.parent) as tmp:
        if vf.name == "geojson":
            options = {"RFC7946": "YES" if rfc7946 and crs is not None else "NO", "WRITE_BBOX": "YES"}
            places = decimals if decimals is not None else (9 if options["RFC7946"] == "YES" else None)
            if places is not None:
                options["COORDINATE_PRECISION"] = str(places)
            members = {"properties": dict(collection_properties or {}), "roofmap_frame": frame.record()}
            options["FOREIGN_MEMBERS_COLLECTION"] = json.dumps(members, allow_nan=False)
            _write_layer(pyogrio, tmp / path.name, _collection(layers), vf, crs, layer_options=options)
            written.append(path)
        elif vf.multi_layer:
            for i, layer in enumerate(layers):
                _write_layer(pyogrio, tmp / path.name, layer, vf, crs, append=i > 0, metadata=frame.metadata())
            written.append(path)
        else:
            for layer in layers:
                name = f"{path.stem}_{layer.name}{vf.suffix}"
                encoding = {"ENCODING": "UTF-8"} if vf.name == "shp" else None
                _write_layer(pyogrio, tmp / name, layer, vf, crs, layer_options=encoding)
                written.append(path.parent / name)
            sidecar = f"{path.stem}_frame.json"
            doc = {
                **frame.record(),
                "format": vf.title,
                "layers": {la.name: f"{path.stem}_{la.name}{vf.suffix}" for la in layers},
            }
            atomic_write_text(tmp / sidecar, json.dumps(doc, indent=2) + "\n")
            written.append(path.parent / sidecar)
    return written


# ------------------------------------------------------------------------------------------------ wireframe layers
#: Metres per degree of latitude (spherical Earth, as :meth:`Georeference.ground_resolution_m`).
_METRES_PER_DEGREE: Final = 111_319.49


class _Frame:
    """Pixel → map → metres for one raster (vectorised)."""

    def __init__(self, georef: Any) -> None:
        self.georef = georef
        a, b, _, d, e, _ = georef.transform
        self.det = abs(a * e - b * d)

    def metres_per_unit(self, xy_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metres per map unit along X and Y at map points ``[N, 2]`` (NaN when the CRS is unknown)."""
        n = xy_map.shape[0]
        g = self.georef
        if g.crs_wkt is None:
            return np.full(n, np.nan), np.full(n, np.nan)
        if g.geographic:
            return _METRES_PER_DEGREE * np.cos(np.radians(xy_map[:, 1])), np.full(n, _METRES_PER_DEGREE)
        m = np.nan if g.metres_per_unit is None else float(g.metres_per_unit)
        return np.full(n, m), np.full(n, m)


def line_measures(lines_px: np.ndarray, georef: Any) -> dict[str, np.ndarray]:
    """``length_px``, ``length_m`` (NaN without a CRS) and ``azimuth`` (degrees clockwise from map north, or
    from image up without a georeference, in ``[0, 180)``: lines are undirected) of pixel lines ``[L, 4]``."""
    seg = np.asarray(lines_px, dtype=np.float64).reshape(-1, 2, 2)
    length_px = np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1)
    if not georef.georeferenced:
        dx, dy = seg[:, 1, 0] - seg[:, 0, 0], -(seg[:, 1, 1] - seg[:, 0, 1])
        return {
            "length_px": length_px,
            "length_m": np.full(seg.shape[0], np.nan),
            "azimuth": np.degrees(np.arctan2(dx, dy)) % 180.0,
        }
    world = georef.pixel_to_map(seg)
    mid = world.mean(axis=1)
    mx, my = _Frame(georef).metres_per_unit(mid)
    dX, dY = world[:, 1, 0] - world[:, 0, 0], world[:, 1, 1] - world[:, 0, 1]
    east = dX * np.where(np.isnan(mx), 1.0, mx)
    north = dY * np.where(np.isnan(my), 1.0, my)
    return {
        "length_px": length_px,
        "length_m": np.hypot(dX * mx, dY * my),
        "azimuth": np.degrees(np.arctan2(east, north)) % 180.0,
    }


def junction_degree(junctions_px: np.ndarray, lines_px: np.ndarray, tol: float) -> np.ndarray:
    """Number of line endpoints within ``tol`` pixels of each junction ``[J, 2]`` (its degree in the graph)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(junctions_px, dtype=np.float64).reshape(-1, 2)
    ends = np.asarray(lines_px, dtype=np.float64).reshape(-1, 2)
    if not pts.shape[0] or not ends.shape[0]:
        return np.zeros(pts.shape[0], dtype=np.int64)
    return np.asarray(cKDTree(ends).query_ball_point(pts, tol, return_length=True), dtype=np.int64)


def wireframe_layers(
    lines_px: np.ndarray,
    scores: np.ndarray,
    junctions_px: np.ndarray,
    junction_scores: np.ndarray,
    georef: Any,
    *,
    pieces: np.ndarray | None = None,
    tiles: np.ndarray | None = None,
    sources: np.ndarray | None = None,
    facets: Any | None = None,
    junction_tol: float = 2.0,
) -> list[VectorLayer]:
    """The ``lines``, ``junctions`` (and ``facets``) layers of a wireframe in pixels, mapped through ``georef``.

    Args:
        lines_px: ``[L, 4]`` lines ``x1, y1, x2, y2`` (raster pixels).
        scores: ``[L]`` line scores.
        junctions_px: ``[J, 2]`` junctions (raster pixels).
        junction_scores: ``[J]``.
        georef: the raster's :class:`~roofmapnet.inference.raster.source.Georeference` (identity: pixel frame).
        pieces: ``[L]`` tile detections merged into each line.
        tiles: ``[L]`` id of the tile that owns each line (``-1``: none).
        sources: ``[L]`` name of the source file of each line (a mosaic's tile file).
        facets: :class:`~roofmapnet.inference.facets.Facets` in pixels (None: no ``facets`` layer).
        junction_tol: endpoint distance (pixels) counted into a junction's ``degree``.

    Every layer has ``index``, the feature's position in the inputs (FlatGeobuf reorders features along its
    spatial index).  Attributes (what users filter on in QGIS): lines ``score``, ``length_m``, ``length_px``, ``azimuth``,
    ``pieces``, ``tile``, ``source``; junctions ``score``, ``degree``; facets ``area_m2``, ``area_px``,
    ``edges``, ``building``.
    """
    from roofmapnet.inference.facets import require_shapely

    shapely = require_shapely()
    seg = np.asarray(lines_px, dtype=np.float64).reshape(-1, 2, 2)
    pts = np.asarray(junctions_px, dtype=np.float64).reshape(-1, 2)
    n = seg.shape[0]
    world = georef.pixel_to_map(seg) if n else np.zeros((0, 2, 2))
    line_fields: dict[str, np.ndarray] = {
        "index": np.arange(n, dtype=np.int64),
        "score": np.asarray(scores, dtype=np.float64).reshape(n),
    }
    line_fields.update(line_measures(seg.reshape(-1, 4), georef))
    line_fields["pieces"] = (np.ones(n, np.int64) if pieces is None else np.asarray(pieces, dtype=np.int64)).reshape(n)
    line_fields["tile"] = (np.full(n, -1, np.int64) if tiles is None else np.asarray(tiles, dtype=np.int64)).reshape(n)
    src = np.full(n, "", dtype=object) if sources is None else np.asarray(sources, dtype=object).reshape(n)
    line_fields["source"] = src
    layers = [VectorLayer("lines", "LineString", shapely.linestrings(world), line_fields)]
    jworld = georef.pixel_to_map(pts) if pts.shape[0] else np.zeros((0, 2))
    layers.append(
        VectorLayer(
            "junctions",
            "Point",
            shapely.points(jworld),
            {
                "index": np.arange(pts.shape[0], dtype=np.int64),
                "score": np.asarray(junction_scores, dtype=np.float64).reshape(pts.shape[0]),
                "degree": junction_degree(pts, seg, junction_tol),
            },
        )
    )
    if facets is not None:
        polys = np.asarray(facets.polygons, dtype=object)
        if polys.shape[0]:
            polys = shapely.transform(polys, lambda xy: georef.pixel_to_map(xy))
            if georef.georeferenced:
                centre = shapely.get_coordinates(shapely.centroid(polys))
                mx, my = _Frame(georef).metres_per_unit(centre)
                area_m2 = facets.area * _Frame(georef).det * mx * my
            else:
                area_m2 = np.full(polys.shape[0], np.nan)
            if hasattr(shapely, "orient_polygons"):
                polys = shapely.orient_polygons(polys)
        else:
            area_m2 = np.zeros(0)
        layers.append(
            VectorLayer(
                "facets",
                "Polygon",
                polys,
                {
                    "index": np.arange(polys.shape[0], dtype=np.int64),
                    "area_m2": area_m2,
                    "area_px": np.asarray(facets.area, dtype=np.float64),
                    "edges": np.asarray(facets.edges, dtype=np.int64),
                    "building": np.asarray(facets.building, dtype=np.int64),
                },
            )
        )
    return layers
