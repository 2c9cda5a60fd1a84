"""Partial results of a raster sharded over processes: per-rank vector files of tile detections, and their merge.

In a multi-process run (:mod:`roofmapnet.inference.distributed`) rank ``r`` of ``N`` predicts the tiles
``r, r + N, ...`` of a raster and writes what they detected, before the merge across seams, to
``<out>/<stem>.part-<r>-of-<N>.gpkg``: layers ``tile_lines`` (LineString; ``score``, ``tile``) and
``tile_junctions`` (Point; ``score``, ``tile``) in **raster pixels** (float64, exact), the raster's frame in the
layer metadata.  The merge step (:func:`read_parts`) reads every part, orders the detections by tile exactly as a
single process collects them, and the ordinary seam merge then gives the same layers feature for feature.
Parts are written atomically; a missing part is a one-line error naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from roofmapnet.errors import DataError
from roofmapnet.inference.types import TileDetections
from roofmapnet.inference.vectors import VectorFrame, VectorLayer, require_pyogrio, write_vectors

#: Suffix of a partial result.
PART_SUFFIX: Final = ".gpkg"


def part_path(out_dir: str | Path, stem: str, rank: int, world: int) -> Path:
    """Where rank ``rank`` of ``world`` writes its part of raster ``stem``."""
    return Path(out_dir) / f"{stem}.part-{rank:05d}-of-{world:05d}{PART_SUFFIX}"


def write_part(path: str | Path, det: TileDetections, width: int, height: int, source: str) -> Path:
    """Write one rank's tile detections (raster pixels) as a GeoPackage, atomically."""
    from roofmapnet.inference.facets import require_shapely

    shapely = require_shapely()
    frame = VectorFrame(None, None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), width, height, source)
    layers = [
        VectorLayer(
            "tile_lines",
            "LineString",
            shapely.linestrings(det.lines.reshape(-1, 2, 2)),
            {"score": det.scores.astype(np.float64), "tile": det.tiles.astype(np.int64)},
        ),
        VectorLayer(
            "tile_junctions",
            "Point",
            shapely.points(det.junctions.reshape(-1, 2)),
            {"score": det.junction_scores.astype(np.float64), "tile": det.junction_tiles.astype(np.int64)},
        ),
    ]
    (written,) = write_vectors(path, layers, frame, fmt="gpkg")
    return written


def _read_layer(path: Path, layer: str, n_coords: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from roofmapnet.inference.facets import require_shapely

    shapely = require_shapely()
    pyogrio = require_pyogrio()
    meta, _, geometry, fields = pyogrio.raw.read(path, layer=layer)
    names = list(meta["fields"])
    coords = shapely.get_coordinates(shapely.from_wkb(geometry)) if len(geometry) else np.zeros((0, 2))
    score = np.asarray(fields[names.index("score")], dtype=np.float64)
    tile = np.asarray(fields[names.index("tile")], dtype=np.int64)
    return coords.reshape(-1, n_coords), score, tile


def read_parts(paths: Sequence[str | Path]) -> TileDetections:
    """The tile detections of all parts, ordered by tile (stable), as one process would have collected them.

    Raises:
        DataError: a part is missing or unreadable (one line naming it).
    """
    lines, scores, tiles, junc, jsc, jtiles = [], [], [], [], [], []
    for p in map(Path, paths):
        if not p.is_file():
            msg = f"{p}: partial result missing (did every rank finish?)"
            raise DataError(msg)
        try:
            ln, sc, tl = _read_layer(p, "tile_lines", 4)
            jn, js, jt = _read_layer(p, "tile_junctions", 2)
        except Exception as exc:
            if type(exc).__module__.startswith("pyogrio"):
                msg = f"{p}: unreadable partial result ({str(exc).splitlines()[0]})"
                raise DataError(msg) from None
            raise
        lines.append(ln)
        scores.append(sc)
        tiles.append(tl)
        junc.append(jn)
        jsc.append(js)
        jtiles.append(jt)
    if not lines:
        return TileDetections()
    t = np.concatenate(tiles)
    jt_all = np.concatenate(jtiles)
    order = np.argsort(t, kind="stable")
    jorder = np.argsort(jt_all, kind="stable")
    return TileDetections(
        lines=np.concatenate(lines)[order],
        scores=np.concatenate(scores)[order],
        tiles=t[order],
        junctions=np.concatenate(junc)[jorder],
        junction_scores=np.concatenate(jsc)[jorder],
        junction_tiles=jt_all[jorder],
    )
