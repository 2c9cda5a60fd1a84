"""Per-image outputs of ``roofmap infer``: JSON, GeoJSON and an overlay PNG, each written atomically.

All coordinates are **image pixels of the original image**: origin at the top-left corner, x to the right,
y *down*, continuous with pixel edges at integers (pixel column ``c`` covers ``[c, c+1)``).  Values are
rounded to 1/1000 pixel and scores to 6 decimals.

JSON (``<stem>.json``)::

    {"image": "<path as given>", "width": W, "height": H,
     "lines": [[x1, y1, x2, y2], ...], "scores": [...],          # score-descending
     "junctions": [[x, y], ...], "junction_scores": [...],
     "model": {"checkpoint": ..., "config": {"sha256": ..., "image_size": ..., "heatmap_size": ...},
               "roofmapnet_version": ...},
     "threshold": 0.1, "junction_threshold": 0.008, "max_lines": null,
     "postprocess": {"enabled": true, "t": 0.01, "threshold_px": 8.0},
     "coordinate_system": "image pixels, origin top-left, x right, y down"}

GeoJSON (``<stem>.geojson``): an RFC 7946 ``FeatureCollection``; one ``LineString`` Feature per line
(``properties``: ``kind: "line"``, ``index`` into the JSON's ``lines``, ``score``) and, unless disabled, one
``Point`` Feature per junction (``kind: "junction"``, ``index``, ``score``).  Positions are ``[x, y]`` in
pixels with y down: the file is **not georeferenced** (the collection's ``properties`` say so); GIS tools
show it upside down unless the layer is flipped.

Overlay (``<stem>_overlay.png``): the image (same size as the input) with the lines coloured by score,
blue → cyan → yellow → red from the score threshold to 1 (higher scores drawn on top), line width growing
with the image size, and junctions as white dots with a black rim.  Rasterisation is vectorised with numpy
(line samples every ≤ 0.5 px, ``np.maximum.at`` so the highest score wins a pixel, then a square max filter
for the width); there is no anti-aliasing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

from roofmapnet import __version__
from roofmapnet.config.schema import DEFAULT_OUTPUTS, OUTPUT_KINDS, ModelConfig
from roofmapnet.inference.postprocess import postprocess_threshold_px
from roofmapnet.models.outputs import Wireframe
from roofmapnet.utils.io import atomic_path, atomic_write_text

COORDINATE_SYSTEM: Final = "image pixels, origin top-left, x right, y down"
#: Output kinds accepted by ``--outputs``, in writing order.
OUTPUT_SUFFIXES: Final = {"json": ".json", "geojson": ".geojson", "overlay": "_overlay.png", "facets": "_facets.json"}
#: Facet snapping tolerance of a plain image, in heatmap cells (as the raster merge's ``distance``).
FACET_SNAP_CELLS: Final = 1.5

_COORD_DECIMALS = 3
_SCORE_DECIMALS = 6
#: Colormap stops (position, RGB): blue → cyan → yellow → red.
_CMAP_STOPS = ((0.0, (0, 0, 255)), (1 / 3, (0, 255, 255)), (2 / 3, (255, 255, 0)), (1.0, (255, 0, 0)))
_CMAP_LEVELS = 256
#: Line samples rasterised per chunk (bounds the overlay's temporary memory on huge images).
_RASTER_CHUNK = 1 << 21


@dataclass(frozen=True)
class RunInfo:
    """Settings shared by every image of a run, recorded in each JSON.

    Attributes:
        checkpoint: the checkpoint path as given.
        model: the model section of the config used (summarised + hashed in the JSON).
        threshold: minimum line score.
        junction_threshold: junction proposal threshold.
        max_lines: cap on lines per image (``None``: no cap).
        postprocess_t: L-CNN post-processing factor ``t`` (τ = t·diagonal), ``None`` when disabled.
        geojson_junctions: add junction Point features to the GeoJSON.
    """

    checkpoint: str
    model: ModelConfig
    threshold: float
    junction_threshold: float
    max_lines: int | None = None
    postprocess_t: float | None = 0.01
    geojson_junctions: bool = True

    def model_summary(self) -> dict[str, Any]:
        """The JSON's ``model.config``: the SHA-256 of the model section (canonical JSON) and its key sizes."""
        dump = self.model.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(dump, sort_keys=True).encode("utf-8")).hexdigest()
        return {
            "sha256": digest,
            "image_size": self.model.image_size,
            "heatmap_size": self.model.heatmap_size,
            "num_stacks": self.model.num_stacks,
            "depth": self.model.depth,
        }

    def model_record(self) -> dict[str, Any]:
        """The JSON's ``model`` object."""
        return {
            "checkpoint": self.checkpoint,
            "config": self.model_summary(),
            "roofmapnet_version": __version__,
        }


def _round(values: np.ndarray, decimals: int) -> list[Any]:
    out: list[Any] = np.round(np.asarray(values, dtype=np.float64), decimals).tolist()
    return out


def wireframe_arrays(wf: Wireframe) -> dict[str, np.ndarray]:
    """Image-space numpy views of a wireframe: ``lines`` [L,4] xyxy, ``scores`` [L], ``junctions`` [J,2] xy,
    ``junction_scores`` [J]."""
    return {
        "lines": wf.lines_xyxy(),
        "scores": wf.scores.detach().double().cpu().numpy().reshape(-1),
        "junctions": wf.junctions_xy(),
        "junction_scores": wf.junction_scores.detach().double().cpu().numpy().reshape(-1),
    }


def prediction_record(wf: Wireframe, image: str | Path, info: RunInfo) -> dict[str, Any]:
    """The JSON document of one image (layout in the module docstring)."""
    arr = wireframe_arrays(wf)
    height, width = (int(v) for v in wf.image_size)
    t = info.postprocess_t
    return {
        "image": str(image),
        "width": width,
        "height": height,
        "lines": _round(arr["lines"], _COORD_DECIMALS),
        "scores": _round(arr["scores"], _SCORE_DECIMALS),
        "junctions": _round(arr["junctions"], _COORD_DECIMALS),
        "junction_scores": _round(arr["junction_scores"], _SCORE_DECIMALS),
        "model": info.model_record(),
        "threshold": info.threshold,
        "junction_threshold": info.junction_threshold,
        "max_lines": info.max_lines,
        "postprocess": {
            "enabled": t is not None,
            "t": t,
            "threshold_px": None if t is None else round(postprocess_threshold_px(t, width, height), _COORD_DECIMALS),
        },
        "coordinate_system": COORDINATE_SYSTEM,
    }


def geojson_record(wf: Wireframe, image: str | Path, *, junctions: bool = True) -> dict[str, Any]:
    """The GeoJSON FeatureCollection of one image (layout in the module docstring)."""
    arr = wireframe_arrays(wf)
    height, width = (int(v) for v in wf.image_size)
    lines = _round(arr["lines"].reshape(-1, 2, 2), _COORD_DECIMALS)
    scores = _round(arr["scores"], _SCORE_DECIMALS)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"kind": "line", "index": i, "score": s},
        }
        for i, (coords, s) in enumerate(zip(lines, scores, strict=True))
    ]
    if junctions:
        pts = _round(arr["junctions"], _COORD_DECIMALS)
        jscores = _round(arr["junction_scores"], _SCORE_DECIMALS)
        features.extend(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": xy},
                "properties": {"kind": "junction", "index": j, "score": s},
            }
            for j, (xy, s) in enumerate(zip(pts, jscores, strict=True))
        )
    return {
        "type": "FeatureCollection",
        "features": features,
        "properties": {
            "image": str(image),
            "width": width,
            "height": height,
            "coordinate_system": COORDINATE_SYSTEM,
            "georeferenced": False,
            "note": "positions are [x, y] image pixels with y down, not geographic coordinates",
        },
    }


def write_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Write a JSON / GeoJSON document atomically (compact, strict: no NaN)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(document, separators=(",", ":"), allow_nan=False) + "\n")
    return path


def _colormap() -> np.ndarray:
    """[_CMAP_LEVELS, 3] uint8 lookup table of the score colormap."""
    pos = np.array([p for p, _ in _CMAP_STOPS])
    rgb = np.array([c for _, c in _CMAP_STOPS], dtype=np.float64)
    t = np.linspace(0.0, 1.0, _CMAP_LEVELS)
    table = np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=1)
    return np.rint(table).astype(np.uint8)


_LUT: Final = _colormap()


def score_levels(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Colormap level (0 … 255) of each score: linear from ``threshold`` (level 0) to 1 (level 255)."""
    span = max(1.0 - float(threshold), 1e-12)
    t = np.clip((np.asarray(scores, dtype=np.float64) - threshold) / span, 0.0, 1.0)
    return np.rint(t * (_CMAP_LEVELS - 1)).astype(np.int16)


def overlay_line_width(height: int, width: int) -> int:
    """Line width in pixels for an image of this size (odd; 1 below ~256 px, 3 at 512 px, grows linearly)."""
    return 2 * int(min(height, width) / 512 + 0.5) + 1


def _rasterise_lines(canvas: np.ndarray, xyxy: np.ndarray, levels: np.ndarray) -> None:
    """Write ``max(level)`` of the lines through each pixel into ``canvas`` [H, W] (in place)."""
    h, w = canvas.shape
    if xyxy.shape[0] == 0:
        return
    p0, p1 = xyxy[:, :2], xyxy[:, 2:]
    n = np.ceil(2.0 * np.hypot(*(p1 - p0).T)).astype(np.int64) + 1
    ends = np.cumsum(n)
    flat = canvas.reshape(-1)
    # Chunks of whole lines, each with at most ~_RASTER_CHUNK samples (a loop over chunks, not lines).
    bounds = np.unique(
        np.concatenate([[0], np.searchsorted(ends, np.arange(_RASTER_CHUNK, ends[-1], _RASTER_CHUNK)), [len(n)]])
    )
    for lo, hi in itertools.pairwise(bounds):
        if hi <= lo:
            continue
        cn = n[lo:hi]
        line_id = np.repeat(np.arange(lo, hi), cn)
        start = np.repeat(np.cumsum(cn) - cn, cn)
        k = np.arange(line_id.size) - start
        t = k / np.maximum(n[line_id] - 1, 1)
        pts = p0[line_id] + t[:, None] * (p1 - p0)[line_id]
        x, y = pts[:, 0], pts[:, 1]
        inside = (x >= 0) & (x <= w) & (y >= 0) & (y <= h)
        cols = np.minimum(np.floor(x[inside]).astype(np.int64), w - 1)
        rows = np.minimum(np.floor(y[inside]).astype(np.int64), h - 1)
        np.maximum.at(flat, rows * w + cols, levels[line_id[inside]])


def _disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.arange(-radius, radius + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = dy**2 + dx**2 <= radius * radius + radius
    return dy[keep], dx[keep]


def _stamp(out: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: int, colour: tuple[int, int, int]) -> None:
    h, w = out.shape[:2]
    dy, dx = _disc_offsets(radius)
    rr = (rows[:, None] + dy[None]).reshape(-1)
    cc = (cols[:, None] + dx[None]).reshape(-1)
    ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
    out[rr[ok], cc[ok]] = colour


def render_overlay(image: np.ndarray, wf: Wireframe, threshold: float) -> np.ndarray:
    """The overlay of ``wf`` on ``image`` (RGB uint8 [H, W, 3], the original image), as RGB uint8.

    Args:
        image: the original image; must match ``wf.image_size``.
        wf: the wireframe to draw.
        threshold: the score mapped to the colormap's low end (the run's ``--threshold``).
    """
    h, w = image.shape[:2]
    if (h, w) != tuple(wf.image_size):
        msg = f"overlay: image is {w}×{h} but the wireframe refers to {wf.image_size[1]}×{wf.image_size[0]}"
        raise ValueError(msg)
    arr = wireframe_arrays(wf)
    out = np.array(image, dtype=np.uint8, copy=True)
    canvas = np.full((h, w), -1, dtype=np.int16)
    # Draw finite lines only; levels are ascending in score so np.maximum keeps the best line on top.
    finite = np.isfinite(arr["lines"]).all(axis=1) & np.isfinite(arr["scores"])
    _rasterise_lines(canvas, arr["lines"][finite], score_levels(arr["scores"][finite], threshold))
    width = overlay_line_width(h, w)
    if width > 1:
        from scipy import ndimage  # imported on first use (0.4 s)

        canvas = ndimage.maximum_filter(canvas, size=width, mode="constant", cval=-1)
    drawn = canvas >= 0
    out[drawn] = _LUT[canvas[drawn]]
    junc = arr["junctions"]
    junc = junc[np.isfinite(junc).all(axis=1)]
    if junc.shape[0]:
        cols = np.clip(np.floor(junc[:, 0]).astype(np.int64), 0, w - 1)
        rows = np.clip(np.floor(junc[:, 1]).astype(np.int64), 0, h - 1)
        radius = width // 2 + 1
        _stamp(out, rows, cols, radius + 1, (0, 0, 0))
        _stamp(out, rows, cols, radius, (255, 255, 255))
    return out


def write_overlay(
    path: str | Path, image: np.ndarray, wf: Wireframe, threshold: float, *, compress_level: int = 1
) -> Path:
    """Render the overlay (see :func:`render_overlay`) and write it as PNG atomically.

    ``compress_level`` is zlib's level (1: fast, larger files; 9: slow, smallest).
    """
    path = Path(path)
    rgb = render_overlay(image, wf, threshold)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", compress_level=compress_level)
    return path


def facets_document(facets: Any, image_path: str | Path, width: int, height: int) -> dict[str, Any]:
    """The ``<stem>_facets.json`` document: roof facets as pixel polygons.

    ``facets``: one object per facet with ``building`` (connected component of the wireframe), ``area`` (px²),
    ``edges`` (corners), ``exterior`` (closed ring ``[[x, y], ...]``, positive signed area in x-right / y-down
    pixel coordinates, i.e. clockwise on screen) and ``interiors`` (holes); see :mod:`roofmapnet.inference.facets`.
    """
    return {
        "image": str(image_path),
        "width": int(width),
        "height": int(height),
        "coordinate_system": "image pixels (origin top-left, x right, y down, pixel edges at integers)",
        "buildings": int(facets.buildings),
        "facets": facets.record(),
    }


def output_paths(out_dir: str | Path, stem: str, kinds: Collection[str] = OUTPUT_KINDS) -> dict[str, Path]:
    """``{kind: <out_dir>/<stem><suffix>}`` for the requested output kinds (in :data:`OUTPUT_KINDS` order)."""
    out_dir = Path(out_dir)
    return {k: out_dir / f"{stem}{OUTPUT_SUFFIXES[k]}" for k in OUTPUT_KINDS if k in kinds}


def write_outputs(
    out_dir: str | Path,
    stem: str,
    wf: Wireframe,
    image_path: str | Path,
    info: RunInfo,
    *,
    kinds: Collection[str] = DEFAULT_OUTPUTS,
    image: np.ndarray | None = None,
) -> list[Path]:
    """Write the requested outputs of one image; returns the files written.

    Args:
        out_dir: output folder (created if needed).
        stem: base name (:func:`roofmapnet.inference.images.output_stems`).
        wf: the image's wireframe (``image_size`` = the original image's size).
        image_path: the input path as given (recorded in the outputs).
        info: the run's settings.
        kinds: any of ``json``, ``geojson``, ``overlay``, ``facets`` (roof-face polygons in image pixels).
        image: the original RGB image; required for ``overlay``.
    """
    written: list[Path] = []
    for kind, path in output_paths(out_dir, stem, kinds).items():
        if kind == "json":
            written.append(write_json(path, prediction_record(wf, image_path, info)))
        elif kind == "geojson":
            written.append(write_json(path, geojson_record(wf, image_path, junctions=info.geojson_junctions)))
        elif kind == "facets":
            from roofmapnet.inference.facets import polygonize_wireframe

            h, w = wf.image_size
            cell = max(h / wf.heatmap_size[0], w / wf.heatmap_size[1])
            facets = polygonize_wireframe(wf.lines_xyxy(), snap=FACET_SNAP_CELLS * cell)
            written.append(write_json(path, facets_document(facets, image_path, w, h)))
        else:
            if image is None:
                msg = "write_outputs: the overlay needs the original image"
                raise ValueError(msg)
            written.append(write_overlay(path, image, wf, info.threshold))
    return written
