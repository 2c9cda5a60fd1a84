"""Outputs of tiled raster inference: JSON (raster pixels), GeoJSON (RFC 7946), vector files, facets, a preview.

Every file is written atomically (:mod:`roofmapnet.utils.io`).  For ``OUT/<stem>``:

``<stem>.json``
    The per-image JSON of :mod:`roofmapnet.inference.outputs.writers` with lines and junctions in **raster pixels**
    (origin top-left, x right, y down), plus ``pieces`` (tile detections merged into each line),
    ``georeference`` (CRS name, EPSG code, WKT, the six affine coefficients), ``raster`` (reader, bands, data
    type, rescaling) and ``tiling`` (tile, overlap, tiles, merge tolerances).  ``postprocess.threshold_px`` is
    the per-tile L-CNN distance (post-processing runs on each tile).

``<stem>.geojson`` (georeferenced raster; written by GDAL through :mod:`roofmapnet.inference.vectors`)
    One ``FeatureCollection`` of every layer: ``LineString`` lines (``kind: "line"``, ``index`` into the JSON's
    lines, ``score``, ``pieces``, ``length_m``, ``length_px``, ``azimuth``, ``tile``, ``source``), ``Point``
    junctions (``kind: "junction"``, ``score``, ``degree``; left out with ``--no-geojson-junctions``) and
    ``Polygon`` facets (``kind: "facet"``, ``area_m2``, ``area_px``, ``edges``, ``building``).  ``--crs wgs84``
    (default): RFC 7946 — WGS 84 longitude / latitude, 9 decimals (0.1 mm), no ``crs`` member.  ``--crs
    native``: the raster's CRS with the (pre-RFC 7946) ``crs`` member, decimals = 1/1000 of a pixel.  ``bbox``,
    the raster's ``properties`` and the ``roofmap_frame`` (map CRS and pixel → map transform) are members of the
    collection.  For a raster that is not georeferenced (a plain image tiled with ``--tile``) the GeoJSON is the
    pixel-coordinate one of :func:`roofmapnet.inference.writers.geojson_record`.

Vector files (georeferenced raster, ``--vector-format``, default ``gpkg``)
    ``<stem>.gpkg``, ``<stem>_<layer>.fgb`` / ``.shp`` / ``.parquet``: layers ``lines``, ``junctions``, ``facets``
    in the raster's CRS, written by GDAL (:func:`roofmapnet.inference.vectors.write_vectors`).

``<stem>_facets.json`` (``--outputs facets``)
    The roof facets in raster pixels (:func:`roofmapnet.inference.writers.facets_document`).

``<stem>_overlay.png``
    :func:`roofmapnet.inference.outputs.writers.render_overlay` on a preview of the raster whose longer side is at most
    :data:`OVERLAY_MAX_SIDE` pixels (a decimated read: the raster is never loaded whole).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch

from roofmapnet.config.schema import InferConfig
from roofmapnet.inference.outputs.writers import (
    OUTPUT_SUFFIXES,
    RunInfo,
    facets_document,
    geojson_record,
    prediction_record,
    write_json,
    write_overlay,
)
from roofmapnet.inference.postprocess import postprocess_threshold_px
from roofmapnet.inference.raster.source import Georeference, RasterSource
from roofmapnet.inference.types import MergedWireframe
from roofmapnet.models.outputs import Wireframe
from roofmapnet.utils.io import atomic_open

if TYPE_CHECKING:
    from roofmapnet.inference.facets import Facets
    from roofmapnet.inference.raster.run import RasterPrediction
    from roofmapnet.inference.vectors import VectorFrame, VectorLayer

#: Longer side of the overlay preview of a tiled raster.
OVERLAY_MAX_SIDE: Final = 4096
#: Decimals of WGS 84 degrees in the GeoJSON (1e-9° ≈ 0.1 mm).
WGS84_DECIMALS: Final = 9
_SCORE_DECIMALS: Final = 6
_PIXEL_DECIMALS: Final = 3
#: Array rows serialised per chunk in the pixel JSON: writer memory is bounded by a chunk, not the raster.
WRITE_CHUNK: Final = 1 << 13


# ------------------------------------------------------------------------------------------------ coordinates
def native_decimals(georef: Georeference) -> int:
    """Decimals that keep 1/1000 of a pixel in map units (0 to 12)."""
    size = min(v for v in georef.pixel_size() if v > 0) if any(v > 0 for v in georef.pixel_size()) else 1.0
    return int(min(12, max(0, math.ceil(-math.log10(size / 1000.0)))))


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


def raster_facets(prediction: RasterPrediction) -> Facets:
    """The facets of a raster's merged lines, in raster pixels (snapping tolerance: the merge's ``distance``)."""
    from roofmapnet.inference.facets import polygonize_wireframe

    return polygonize_wireframe(prediction.merged.lines, snap=prediction.params.distance)


def raster_vector_layers(
    prediction: RasterPrediction, source: RasterSource, facets: Facets | None = None
) -> list[VectorLayer]:
    """The ``lines``, ``junctions`` (and ``facets``) layers of a tiled raster, in its map coordinates
    (:func:`roofmapnet.inference.vectors.wireframe_layers`).

    ``tile`` is the tile that owns each line's midpoint (its core holds it), ``source`` the raster's file name,
    or for a mosaic the member file under the midpoint; ``facets`` (raster pixels, :func:`raster_facets`) become
    the ``facets`` layer.
    """
    from roofmapnet.inference.vectors import wireframe_layers

    merged = prediction.merged
    seg = merged.lines.reshape(-1, 2, 2)
    mid = seg.mean(axis=1)
    tiles = prediction.grid.owner(mid[:, 0], mid[:, 1]) if seg.shape[0] else np.zeros(0, dtype=np.int64)
    index = getattr(source, "mosaic", None)
    names = index.names_at(mid) if index is not None else np.full(seg.shape[0], Path(source.path).name, dtype=object)
    return wireframe_layers(
        merged.lines,
        merged.scores,
        merged.junctions,
        merged.junction_scores,
        source.georef,
        pieces=merged.pieces,
        tiles=tiles,
        sources=names,
        facets=facets,
        junction_tol=prediction.params.distance,
    )


def vector_frame(source: RasterSource) -> VectorFrame:
    """The :class:`~roofmapnet.inference.vectors.VectorFrame` of a raster: its CRS and pixel → map transform."""
    from roofmapnet.inference.vectors import VectorFrame

    g = source.georef
    return VectorFrame(g.crs_wkt, g.crs_name, g.transform, source.width, source.height, str(source.path))


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
    prediction: RasterPrediction | None = None,
) -> list[Path]:
    """Write the outputs of one tiled raster (module docstring); returns the files written.

    Args:
        out_dir: output folder.
        stem: base name of the files.
        merged: the raster's merged wireframe (raster pixels).
        source: the raster it came from (georeference, reader record, preview).
        info: the run's record.
        options: which outputs, GeoJSON junctions, post-processing, and ``raster.crs`` / ``raster.vector_formats``.
        tiling: the JSON's ``tiling`` object (at least ``tile``).
        prediction: the raster's prediction (grid and merge tolerances: each line's ``tile``, facet snapping);
            needed for the vector files and facets.
    """
    from roofmapnet.inference.vectors import VECTOR_FORMATS, write_vectors

    out = Path(out_dir)
    raster = options.raster
    georef = source.georef
    written: list[Path] = []
    if "json" in options.outputs:
        doc, streamed = _raster_json_parts(merged, source, info, options, tiling)
        written.append(write_json_streamed(out / f"{stem}{OUTPUT_SUFFIXES['json']}", doc, streamed))
    vector_formats = [f for f in raster.vector_formats if f != "geojson"] if georef.georeferenced else []
    want_geojson = "geojson" in options.outputs or "geojson" in raster.vector_formats
    layers: list[VectorLayer] = []
    facets: Facets | None = None
    if prediction is None:
        vector_formats, want_geojson = [], want_geojson and not georef.georeferenced
    elif vector_formats or (want_geojson and georef.georeferenced) or "facets" in options.outputs:
        facets = raster_facets(prediction)
        layers = raster_vector_layers(prediction, source, facets)
    if want_geojson:
        path = out / f"{stem}{OUTPUT_SUFFIXES['geojson']}"
        if georef.georeferenced:
            props = {
                "image": str(source.path),
                "width": merged.width,
                "height": merged.height,
                "georeferenced": True,
                "raster_crs": georef.crs_name,
            }
            chosen = layers if options.geojson_junctions else [la for la in layers if la.name != "junctions"]
            written += write_vectors(
                path,
                chosen,
                vector_frame(source),
                fmt="geojson",
                rfc7946=raster.crs == "wgs84",
                decimals=WGS84_DECIMALS if raster.crs == "wgs84" else native_decimals(georef),
                collection_properties=props,
            )
        else:
            doc = geojson_record(merged_to_wireframe(merged), source.path, junctions=options.geojson_junctions)
            written.append(write_json(path, doc))
    for fmt in vector_formats:
        written += write_vectors(out / f"{stem}{VECTOR_FORMATS[fmt].suffix}", layers, vector_frame(source), fmt=fmt)
    if "facets" in options.outputs and facets is not None:
        written.append(write_facets_json(out / f"{stem}{OUTPUT_SUFFIXES['facets']}", facets, source))
    if "overlay" in options.outputs:
        preview = source.preview(OVERLAY_MAX_SIDE)
        wf = merged_to_wireframe(merged, size=(int(preview.shape[0]), int(preview.shape[1])))
        written.append(write_overlay(out / f"{stem}{OUTPUT_SUFFIXES['overlay']}", preview, wf, info.threshold))
    return written


def write_facets_json(path: Path, facets: Facets, source: RasterSource) -> Path:
    """``<stem>_facets.json``: the facets in raster pixels (:meth:`Facets.record`)."""
    return write_json(path, facets_document(facets, source.path, source.width, source.height))
