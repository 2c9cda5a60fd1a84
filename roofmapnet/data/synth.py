"""Synthetic top-down roof crops with exact wireframe ground truth (the data behind ``roofmap synth``).

Every sample is a small orthophoto-like scene: ground texture, an optional road and paved patches, 1-3 whole
buildings plus partial neighbours cut by the image border, cast shadows from a random sun, tree crowns that
occlude some roof edges, colour jitter, blur and noise.  Roofs are built from planar facets (flat, gable, hip,
pyramid, L-shaped hip roofs and T / cross compositions with valleys) so the ground truth is exact: the GT lines
are the facet boundaries that the renderer fills, split at every roof junction, clipped to the image.

The output is the raw annotation format of ``docs/internals.md`` (``train.json`` / ``valid.json`` /
``test.json`` + ``images/``), so a synthetic dataset goes through the same ``roofmap preprocess`` path as real
annotations.

Geometry conventions: image pixels, ``x`` right, ``y`` down, continuous with pixel edges at integers (pixel
``c`` covers ``[c, c+1)``, its centre is ``c + 0.5``); lines are ``[x1, y1, x2, y2]``; heights ``z`` point up.

GT graph guarantees (tested): no zero-length or duplicate lines; every endpoint either lies on the image border
(a clipped line) or is shared by at least two lines; no endpoint lies inside another line (T-junctions are split)
and no two lines cross.  Tree crowns do not remove GT: occluded roof edges stay annotated.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from scipy import ndimage
from scipy.spatial import ConvexHull

from roofmapnet import __version__
from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.utils.io import atomic_path, atomic_write_text

__all__ = [
    "DEFAULT_COUNTS",
    "ROOF_TYPES",
    "SPLITS",
    "LineKind",
    "SynthParams",
    "SynthScene",
    "SynthSummary",
    "generate_dataset",
    "parse_image_size",
    "render_sample",
    "render_scene",
    "sample_rng",
]

FloatArray = NDArray[np.floating[Any]]

#: Splits written by :func:`generate_dataset`, in order; the index is part of every sample's seed.
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Default number of images per split.
DEFAULT_COUNTS: dict[str, int] = {"train": 1000, "valid": 100, "test": 100}
#: Roof types the generator draws from.
ROOF_TYPES: tuple[str, ...] = ("flat", "gable", "hip", "pyramid", "l_shape", "t_shape")
#: Smallest and largest accepted image side.
MIN_SIDE, MAX_SIDE = 32, 8192
#: Version of the generator's output; bump when the same seed would give different images.
FORMAT_VERSION = 1
#: Decimals kept for line coordinates (1/1000 px).
DECIMALS = 3

_IMAGE_NAME = re.compile(r"^(?:train|valid|test)_\d{6}\.png$")


class LineKind(IntEnum):
    """What a GT line is on the roof."""

    OUTLINE = 0  # eave or gable edge: roof / ground boundary
    RIDGE = 1  # horizontal convex crease
    HIP = 2  # sloped convex crease
    VALLEY = 3  # concave crease


@dataclass(frozen=True)
class SynthParams:
    """Knobs of the scene generator (defaults produce the embedded dataset).

    Sizes are fractions of the shorter image side ``S``.

    Attributes:
        buildings: Inclusive range of whole buildings per image.
        neighbours: Inclusive range of partial neighbours (buildings cut by the border) per image.
        roof_size: Range of a building's footprint extent (longer side of its bounding box) as a fraction of ``S``.
        roof_types: Roof types to draw from.
        roof_type_weights: Relative frequency of each entry of ``roof_types``.
        trees: Mean number of tree crowns per image (Poisson; 0 disables trees).
        tree_on_edge: Probability that a crown is centred on a roof outline (occluding it).
        road_prob: Probability of a road band crossing the image.
        patches: Inclusive range of paved patches (straight-edged distractors) per image.
        sun_elevation_deg: Range of the sun's elevation in degrees.
        noise_std: Range of the additive Gaussian noise (0-255 scale).
        blur_sigma: Range of the Gaussian blur in pixels.
    """

    buildings: tuple[int, int] = (1, 3)
    neighbours: tuple[int, int] = (0, 3)
    roof_size: tuple[float, float] = (0.25, 0.6)
    roof_types: tuple[str, ...] = ROOF_TYPES
    roof_type_weights: tuple[float, ...] = (0.14, 0.2, 0.2, 0.1, 0.16, 0.2)
    trees: float = 2.5
    tree_on_edge: float = 0.6
    road_prob: float = 0.4
    patches: tuple[int, int] = (0, 2)
    sun_elevation_deg: tuple[float, float] = (30.0, 70.0)
    noise_std: tuple[float, float] = (1.5, 5.0)
    blur_sigma: tuple[float, float] = (0.35, 0.9)

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.buildings[0] <= self.buildings[1]:
            problems.append(f"buildings: need 1 <= min <= max, got {self.buildings}")
        if not 0 <= self.neighbours[0] <= self.neighbours[1]:
            problems.append(f"neighbours: need 0 <= min <= max, got {self.neighbours}")
        if not 0.05 <= self.roof_size[0] <= self.roof_size[1] <= 0.9:
            problems.append(f"roof_size: need 0.05 <= min <= max <= 0.9, got {self.roof_size}")
        unknown = sorted(set(self.roof_types) - set(ROOF_TYPES))
        if unknown or not self.roof_types:
            problems.append(
                f"roof_types: unknown or empty {unknown or list(self.roof_types)}; choose from {ROOF_TYPES}"
            )
        if len(self.roof_type_weights) != len(self.roof_types) or min(self.roof_type_weights, default=0) < 0:
            problems.append("roof_type_weights: need one non-negative weight per roof type")
        elif sum(self.roof_type_weights) <= 0:
            problems.append("roof_type_weights: need a positive sum")
        if self.trees < 0 or not 0 <= self.tree_on_edge <= 1 or not 0 <= self.road_prob <= 1:
            problems.append("trees must be >= 0; tree_on_edge and road_prob must lie in [0, 1]")
        if not 0 <= self.patches[0] <= self.patches[1]:
            problems.append(f"patches: need 0 <= min <= max, got {self.patches}")
        if not 5 <= self.sun_elevation_deg[0] <= self.sun_elevation_deg[1] <= 89:
            problems.append(f"sun_elevation_deg: need 5 <= min <= max <= 89, got {self.sun_elevation_deg}")
        if min(self.noise_std) < 0 or min(self.blur_sigma) < 0:
            problems.append("noise_std and blur_sigma must be >= 0")
        if problems:
            raise RoofMapError("synthetic data parameters: " + "; ".join(problems))


@dataclass(frozen=True)
class SynthScene:
    """One rendered sample with its ground truth.

    Attributes:
        image: ``uint8 [H, W, 3]`` RGB image.
        lines: ``float64 [L, 4]`` GT lines ``x1, y1, x2, y2`` in pixels, rounded to :data:`DECIMALS`.
        kinds: ``int8 [L]`` :class:`LineKind` of every line.
        roof_types: Roof type of every placed building (whole buildings first, then neighbours).
        occluder_mask: ``bool [H, W]``: pixels covered by a tree crown (alpha >= 0.5).
    """

    image: NDArray[np.uint8]
    lines: FloatArray
    kinds: NDArray[np.int8]
    roof_types: tuple[str, ...]
    occluder_mask: NDArray[np.bool_]


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` wrote.

    Attributes:
        out_dir: The raw dataset folder.
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Base seed.
        counts: Images per split.
        lines: GT lines per split.
        seconds: Wall time of the generation.
    """

    out_dir: Path
    height: int
    width: int
    seed: int
    counts: dict[str, int]
    lines: dict[str, int]
    seconds: float = field(compare=False)


# ---------------------------------------------------------------------------------------------------------------
# Roof templates: planar facets in a local frame (x along the main ridge), normalised to a unit footprint extent.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Roof:
    """A roof in its local frame: facets ``[k, 3]`` (x, y, z), convex footprint parts ``[4, 2]``, wall height."""

    kind: str
    facets: list[FloatArray]
    parts: FloatArray
    wall: float


def _rect(x0: float, y0: float, x1: float, y1: float) -> FloatArray:
    return np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], dtype=np.float64)


def _end_inset(rng: np.random.Generator, width: float, hip_prob: float) -> float:
    """Ridge inset of a roof end: 0 for a gable end, else a hip whose end face is at least as steep as the sides."""
    return float(rng.uniform(0.6, 1.0) * width / 2) if rng.random() < hip_prob else 0.0


def _wing(length: float, width: float, height: float, d_left: float, d_right: float) -> list[FloatArray]:
    """Facets of a straight roof on ``[-L/2, L/2] × [-W/2, W/2]`` with its ridge on ``y = 0``.

    ``d_left`` / ``d_right`` are the ridge insets of the two ends: 0 makes a gable end, > 0 a hip end.
    """
    hl, hw = length / 2, width / 2
    facets = [
        [(-hl, -hw, 0.0), (hl, -hw, 0.0), (hl - d_right, 0.0, height), (-hl + d_left, 0.0, height)],
        [(-hl, hw, 0.0), (-hl + d_left, 0.0, height), (hl - d_right, 0.0, height), (hl, hw, 0.0)],
    ]
    if d_left > 0:
        facets.append([(-hl, -hw, 0.0), (-hl + d_left, 0.0, height), (-hl, hw, 0.0)])
    if d_right > 0:
        facets.append([(hl, -hw, 0.0), (hl, hw, 0.0), (hl - d_right, 0.0, height)])
    return [np.array(f, dtype=np.float64) for f in facets]


def _t_side(
    length: float,
    width: float,
    height: float,
    d_left: float,
    d_right: float,
    wing: tuple[float, float, float, float] | None,
) -> tuple[list[FloatArray], list[FloatArray]]:
    """The ``y >= 0`` slope of a main roof, with an optional perpendicular wing attached on that side.

    The wing ``(x0, width_b, length_b, inset_b)`` spans ``x in [x0, x0 + width_b]``, starts at the main ridge and
    reaches ``length_b`` beyond the main eave; it has the main roof's pitch, so where its roof rises above the main
    slope it cuts a V-shaped notch bounded by two valleys that meet its ridge at ``y = (W - width_b) / 2``.
    Requires ``x0 >= -L/2 + d_left`` and ``x0 + width_b <= L/2 - d_right`` (the notch stays off the hip ends).

    Returns:
        (facets, extra footprint parts)
    """
    hl, hw = length / 2, width / 2
    side = [(-hl, hw, 0.0), (-hl + d_left, 0.0, height), (hl - d_right, 0.0, height), (hl, hw, 0.0)]
    if wing is None:
        return [np.array(side, dtype=np.float64)], []
    x0, wb, lb, db = wing
    hb = height * wb / width
    xc, apex_y, y_end = x0 + wb / 2, hw - wb / 2, hw + lb
    side += [(x0 + wb, hw, 0.0), (xc, apex_y, hb), (x0, hw, 0.0)]
    facets = [
        side,
        [(x0, hw, 0.0), (xc, apex_y, hb), (xc, y_end - db, hb), (x0, y_end, 0.0)],
        [(x0 + wb, hw, 0.0), (x0 + wb, y_end, 0.0), (xc, y_end - db, hb), (xc, apex_y, hb)],
    ]
    if db > 0:
        facets.append([(x0, y_end, 0.0), (xc, y_end - db, hb), (x0 + wb, y_end, 0.0)])
    return [np.array(f, dtype=np.float64) for f in facets], [_rect(x0, hw, x0 + wb, y_end)]


def _t_roof(rng: np.random.Generator, slope: float) -> tuple[list[FloatArray], list[FloatArray], float]:
    """Main roof with one (T, or L when flush with a gable end) or two (cross) perpendicular wings."""
    length, width = 1.0, float(rng.uniform(0.28, 0.42))
    height = slope * width / 2
    d_left, d_right = _end_inset(rng, width, 0.5), _end_inset(rng, width, 0.5)
    margin = 0.12 * width
    cross = rng.random() < 0.3
    facets: list[FloatArray] = []
    parts = [_rect(-length / 2, -width / 2, length / 2, width / 2)]
    for side in (1.0, -1.0) if cross else (1.0,):
        wb = width if rng.random() < 0.35 else float(rng.uniform(0.55, 0.8)) * width
        lb = float(rng.uniform(0.35, 0.6 if cross else 0.9)) * width
        db = _end_inset(rng, wb, 0.5)
        lo, hi = -length / 2 + d_left + margin, length / 2 - d_right - margin - wb
        flush = rng.random()
        if d_right == 0 and flush < 0.25:
            x0 = length / 2 - wb
        elif d_left == 0 and flush > 0.75:
            x0 = -length / 2
        else:
            x0 = float(rng.uniform(lo, hi))
        side_facets, side_parts = _t_side(length, width, height, d_left, d_right, (x0, wb, lb, db))
        mirror = np.array([1.0, side, 1.0])
        facets += [f * mirror for f in side_facets]
        parts += [p * mirror[:2] for p in side_parts]
    if not cross:
        plain, _ = _t_side(length, width, height, d_left, d_right, None)
        facets += [f * np.array([1.0, -1.0, 1.0]) for f in plain]
    ends = _wing(length, width, height, d_left, d_right)[2:]
    return facets + ends, parts, width


def _l_roof(rng: np.random.Generator, slope: float) -> tuple[list[FloatArray], list[FloatArray], float]:
    """L-shaped roof of two equal-width wings: a hip at the outer corner, a valley at the inner corner."""
    la, w = 1.0, float(rng.uniform(0.3, 0.45))
    lt = float(rng.uniform(0.7, 1.1))
    h = slope * w / 2
    da, db = _end_inset(rng, w, 0.6), _end_inset(rng, w, 0.6)
    m = (la - w / 2, w / 2, h)  # where the ridges, the hip and the valley meet
    facets = [
        [(0.0, 0.0, 0.0), (la, 0.0, 0.0), m, (da, w / 2, h)],
        [(la, 0.0, 0.0), (la, lt, 0.0), (la - w / 2, lt - db, h), m],
        [(0.0, w, 0.0), (da, w / 2, h), m, (la - w, w, 0.0)],
        [(la - w, w, 0.0), m, (la - w / 2, lt - db, h), (la - w, lt, 0.0)],
    ]
    if da > 0:
        facets.append([(0.0, 0.0, 0.0), (da, w / 2, h), (0.0, w, 0.0)])
    if db > 0:
        facets.append([(la - w, lt, 0.0), (la - w / 2, lt - db, h), (la, lt, 0.0)])
    parts = [_rect(0.0, 0.0, la, w), _rect(la - w, w, la, lt)]
    return [np.array(f, dtype=np.float64) for f in facets], parts, w


def _sample_roof(rng: np.random.Generator, kind: str) -> _Roof:
    """Draw a roof of ``kind`` in its local frame, centred, with footprint extent 1 and a random mirror."""
    slope = math.tan(math.radians(rng.uniform(20.0, 42.0)))
    if kind in ("gable", "hip"):
        width = float(rng.uniform(0.35, 0.8 if kind == "gable" else 0.7))
        hip_prob = 0.0 if kind == "gable" else 1.0
        d_left, d_right = _end_inset(rng, width, hip_prob), _end_inset(rng, width, hip_prob)
        if kind == "hip" and rng.random() < 0.2:  # a hip roof with one gable end
            d_left = 0.0
        facets = _wing(1.0, width, slope * width / 2, d_left, d_right)
        parts = [_rect(-0.5, -width / 2, 0.5, width / 2)]
    elif kind == "pyramid":
        width = float(rng.uniform(0.85, 1.0))
        apex = (0.0, 0.0, slope * width / 2)
        c = [(-0.5, -width / 2, 0.0), (0.5, -width / 2, 0.0), (0.5, width / 2, 0.0), (-0.5, width / 2, 0.0)]
        facets = [np.array([c[i], c[(i + 1) % 4], apex], dtype=np.float64) for i in range(4)]
        parts = [_rect(-0.5, -width / 2, 0.5, width / 2)]
    elif kind == "flat":
        width = float(rng.uniform(0.4, 1.0))
        hw = width / 2
        if rng.random() < 0.3:  # L-shaped flat roof
            cx, cy = float(rng.uniform(-0.15, 0.2)), float(rng.uniform(-hw + 0.35 * width, hw - 0.3 * width))
            outline = [(-0.5, -hw), (0.5, -hw), (0.5, hw), (cx, hw), (cx, cy), (-0.5, cy)]
            parts = [_rect(-0.5, -hw, 0.5, cy), _rect(cx, cy, 0.5, hw)]
        else:
            outline = [(-0.5, -hw), (0.5, -hw), (0.5, hw), (-0.5, hw)]
            parts = [_rect(-0.5, -hw, 0.5, hw)]
        facets = [np.array([(x, y, 0.0) for x, y in outline], dtype=np.float64)]
    elif kind == "l_shape":
        facets, parts, width = _l_roof(rng, slope)
    else:
        facets, parts, width = _t_roof(rng, slope)
    wall = width * float(rng.uniform(0.2, 0.6) if kind == "flat" else rng.uniform(0.15, 0.35))
    # Centre, normalise the extent to 1 and mirror at random (both chiralities of L / T shapes).
    xy = np.concatenate([f[:, :2] for f in facets])
    lo, hi = xy.min(0), xy.max(0)
    scale = 1.0 / float((hi - lo).max())
    centre = (lo + hi) / 2
    flip = np.array([-1.0 if rng.random() < 0.5 else 1.0, 1.0])
    facets = [np.column_stack([(f[:, :2] - centre) * scale * flip, f[:, 2] * scale]) for f in facets]
    return _Roof(kind, facets, (np.stack(parts) - centre) * scale * flip, wall * scale)


# ---------------------------------------------------------------------------------------------------------------
# Geometry helpers (vectorised).
# ---------------------------------------------------------------------------------------------------------------


def _points_in_polygon(px: FloatArray, py: FloatArray, poly: FloatArray) -> NDArray[np.bool_]:
    """Even-odd test of points (broadcastable ``px``, ``py``) against a simple polygon ``[k, 2]``."""
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    shape = np.broadcast_shapes(np.shape(px), np.shape(py))
    ex = (slice(None),) + (None,) * len(shape)  # edges on a new leading axis
    dy = y2 - y1
    slope = ((x2 - x1) / np.where(dy == 0, 1.0, dy))[ex]
    straddle = (y1[ex] > py) != (y2[ex] > py)
    return np.logical_xor.reduce(straddle & (px < x1[ex] + (py - y1[ex]) * slope), axis=0).reshape(shape)


def _clear(parts: FloatArray, others: FloatArray, gap: float) -> bool:
    """Whether every quadrilateral of ``parts`` ``[P, 4, 2]`` is at least ``gap`` away from all of ``others``.

    Separating-axis test on the edge normals of both, all pairs at once (conservative: a pair counts as apart when
    its projections on one axis are ``gap`` apart).
    """
    centre_p, centre_o = parts.mean(1), others.mean(1)
    radius_p = np.linalg.norm(parts - centre_p[:, None], axis=2).max(1)
    radius_o = np.linalg.norm(others - centre_o[:, None], axis=2).max(1)
    gaps = np.linalg.norm(centre_p[:, None] - centre_o[None], axis=2) - radius_p[:, None] - radius_o[None]
    close_p, close_o = np.nonzero(gaps < gap)  # only pairs whose bounding circles come close need the full test
    if len(close_p) == 0:
        return True
    a, b = parts[close_p][:, None], others[close_o][:, None]
    edges = np.concatenate([np.roll(a, -1, 2) - a, np.roll(b, -1, 2) - b], 2)
    axes = np.stack([-edges[..., 1], edges[..., 0]], -1)
    axes /= np.maximum(np.linalg.norm(axes, axis=-1, keepdims=True), 1e-12)
    pa = np.einsum("nkvd,nkad->nkva", a, axes)
    pb = np.einsum("nkvd,nkad->nkva", b, axes)
    apart = (pa.max(2) + gap <= pb.min(2)) | (pb.max(2) + gap <= pa.min(2))
    return bool(apart.any(2).all())


def _facet_planes(facets: list[FloatArray]) -> FloatArray:
    """Least-squares plane ``z = a x + b y + c`` of every facet, ``[F, 3]``."""
    rows = [np.linalg.lstsq(np.column_stack([f[:, :2], np.ones(len(f))]), f[:, 2], rcond=None)[0] for f in facets]
    return np.array(rows).reshape(-1, 3)


def _wireframe(
    facets: list[FloatArray], planes: FloatArray, scale: float
) -> tuple[FloatArray, NDArray[np.int8], NDArray[np.bool_]]:
    """The facet boundaries of one building as a wireframe graph.

    Facet edges are split at every vertex lying inside them (T-junctions), de-duplicated (an edge shared by two
    facets is one line) and classified: one adjacent facet = outline, two = ridge / hip (convex) or valley.

    Args:
        facets: Facets ``[k, 3]`` in image pixels.
        planes: Their planes (:func:`_facet_planes`).
        scale: Building size in pixels (sets the tolerances).

    Returns:
        ``(segments [n, 4] x1 y1 x2 y2, kinds [n], crease)``: ``crease`` flags, for every facet edge in facet
        order (edge ``i`` of a facet runs from its vertex ``i`` to ``i + 1``), whether it is shared with another facet.
    """
    tol = 1e-7 * scale
    counts = np.array([len(f) for f in facets])
    verts = np.concatenate([f[:, :2] for f in facets])
    # Snap coincident vertices to one representative so that shared endpoints are bitwise identical.
    _, first, inverse = np.unique(np.round(verts / tol), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    points = verts[first]
    ia = np.arange(len(verts))
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    ib = starts + (ia - starts + 1) % np.repeat(counts, counts)
    fid_all = np.repeat(np.arange(len(facets)), counts)
    edge_ids = np.nonzero(inverse[ia] != inverse[ib])[0]  # drop zero-length edges
    va, vb, fid = inverse[edge_ids], inverse[ib[edge_ids]], fid_all[edge_ids]
    # Split at vertices lying strictly inside an edge.
    a, b = points[va], points[vb]
    d = b - a
    len2 = (d**2).sum(1)
    rel = points[None, :, :] - a[:, None, :]
    t = (rel * d[:, None, :]).sum(2) / len2[:, None]
    dist = np.abs(rel[..., 0] * d[:, None, 1] - rel[..., 1] * d[:, None, 0]) / np.sqrt(len2)[:, None]
    on_e, on_p = np.nonzero((dist < 10 * tol) & (t > 1e-9) & (t < 1 - 1e-9))
    n = len(va)
    edge = np.concatenate([np.arange(n), np.arange(n), on_e])
    param = np.concatenate([np.zeros(n), np.ones(n), t[on_e, on_p]])
    point = np.concatenate([va, vb, on_p])
    order = np.lexsort((param, edge))
    edge, point = edge[order], point[order]
    same = edge[:-1] == edge[1:]
    piece_edge = edge[:-1][same]
    pa, pb, pf = point[:-1][same], point[1:][same], fid[piece_edge]
    # One line per pair of points, whatever its direction; collect the adjacent facets.
    uniq, inv = np.unique(np.sort(np.stack([pa, pb], 1), axis=1), axis=0, return_inverse=True)
    inv = inv.ravel()
    f_lo = np.full(len(uniq), len(facets))
    f_hi = np.full(len(uniq), -1)
    np.minimum.at(f_lo, inv, pf)
    np.maximum.at(f_hi, inv, pf)
    interior = f_lo != f_hi
    crease = np.zeros(len(verts), dtype=bool)
    np.logical_or.at(crease, edge_ids[piece_edge], interior[inv])
    p, q = points[uniq[:, 0]], points[uniq[:, 1]]
    kinds = np.full(len(uniq), LineKind.OUTLINE, dtype=np.int8)
    if interior.any():
        mid = (p + q)[interior] / 2
        direction = (q - p)[interior]
        normal = np.stack([-direction[:, 1], direction[:, 0]], 1) / np.linalg.norm(direction, axis=1, keepdims=True)
        plus, minus = mid + 1e-4 * scale * normal, mid - 1e-4 * scale * normal
        lo_i, hi_i = f_lo[interior], f_hi[interior]
        lo_on_plus = np.zeros(len(mid), dtype=bool)
        for f in np.unique(lo_i):  # a handful of facets per building
            sel = lo_i == f
            lo_on_plus[sel] = _points_in_polygon(plus[sel, 0], plus[sel, 1], facets[f][:, :2])

        def z(f: NDArray[np.int64], xy: FloatArray) -> FloatArray:
            return planes[f, 0] * xy[:, 0] + planes[f, 1] * xy[:, 1] + planes[f, 2]

        z_plus = z(np.where(lo_on_plus, lo_i, hi_i), plus)
        z_minus = z(np.where(lo_on_plus, hi_i, lo_i), minus)
        convex = z_plus + z_minus < 2 * z(lo_i, mid)
        level = np.abs(z(lo_i, p[interior]) - z(lo_i, q[interior])) < 1e-6 * scale
        kinds[interior] = np.where(convex, np.where(level, LineKind.RIDGE, LineKind.HIP), LineKind.VALLEY)
    return np.concatenate([p, q], 1), kinds, crease


def _clip_lines(lines: FloatArray, height: int, width: int) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Liang-Barsky clipping of ``[n, 4]`` segments to ``[0, width] × [0, height]``.

    Endpoints inside the image are kept bit for bit; clipped endpoints land on the border.

    Returns:
        ``(clipped [n, 4], kept [n])``: rows of ``clipped`` are valid where ``kept``.
    """
    a, b = lines[:, :2], lines[:, 2:]
    d = b - a
    p = np.stack([-d[:, 0], d[:, 0], -d[:, 1], d[:, 1]], 1)
    q = np.stack([a[:, 0], width - a[:, 0], a[:, 1], height - a[:, 1]], 1)
    parallel = p == 0
    ratio = q / np.where(parallel, 1.0, p)
    t0 = np.where(p < 0, ratio, 0.0).max(1)
    t1 = np.where(p > 0, ratio, 1.0).min(1)
    kept = (t0 < t1) & ~np.any(parallel & (q < 0), axis=1)
    start = np.where((t0 > 0)[:, None], a + t0[:, None] * d, a)
    end = np.where((t1 < 1)[:, None], a + t1[:, None] * d, b)
    out = np.concatenate([start, end], 1)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    return out, kept


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> NDArray[np.float32]:
    """Smooth value noise of unit-ish amplitude and feature size ``cell`` pixels.

    A random grid is upsampled bicubically to quarter size, then bilinearly to full size (cheap and smooth).
    """
    cell = max(cell, 1.0)
    grid = rng.standard_normal((math.ceil(height / cell) + 1, math.ceil(width / cell) + 1)).astype(np.float32)
    field = Image.fromarray(grid).resize((max(width // 4, 2), max(height // 4, 2)), Image.Resampling.BICUBIC)
    return np.asarray(field.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Scene layout.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Building:
    """A placed roof: facets in image pixels (``z`` in pixels), their planes, footprint quadrilaterals, wall height."""

    kind: str
    facets: list[FloatArray]
    planes: FloatArray
    parts: FloatArray
    wall: float
    size: float


def _fits_border(vertices: FloatArray, height: int, width: int, margin: float, partial: bool) -> bool:
    """Vertices keep ``margin`` from the border (no tiny clipped pieces); all inside, or some in and some out."""
    x, y = vertices[:, 0], vertices[:, 1]
    inside = (x > 0) & (x < width) & (y > 0) & (y < height)
    depth = np.minimum(np.minimum(x, width - x), np.minimum(y, height - y))
    away = np.hypot(np.maximum(np.maximum(-x, x - width), 0), np.maximum(np.maximum(-y, y - height), 0))
    if np.any(inside & (depth < margin)) or np.any(~inside & (away < margin)):
        return False
    return bool(inside.any() and not inside.all()) if partial else bool(inside.all())


def _place_buildings(
    rng: np.random.Generator, height: int, width: int, params: SynthParams
) -> tuple[list[_Building], FloatArray]:
    """Whole buildings, then partial neighbours, never closer to each other than a gap.

    Returns:
        ``(buildings, their footprint quadrilaterals [P, 4, 2])``: roads and patches keep clear of the latter.
    """
    side = min(height, width)
    margin = max(2.0, 0.02 * side)
    gap = 0.03 * side
    weights = np.asarray(params.roof_type_weights, dtype=np.float64)
    weights /= weights.sum()
    n_main = int(rng.integers(params.buildings[0], params.buildings[1] + 1))
    n_nb = int(rng.integers(params.neighbours[0], params.neighbours[1] + 1))
    placed: list[_Building] = []
    taken = np.zeros((0, 4, 2))
    for index in range(n_main + n_nb):
        partial = index >= n_main
        for attempt in range(60):
            if attempt % 4 == 0:  # a new roof every few tries, a new pose every try
                roof = _sample_roof(rng, params.roof_types[rng.choice(len(weights), p=weights)])
            extent = float(rng.uniform(*params.roof_size)) * side
            if index == 0 and attempt >= 30:  # the first building always fits: shrink it until it does
                extent *= 0.97 ** (attempt - 29)
            angle = float(rng.uniform(0, 2 * math.pi))
            rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]) * extent
            verts = np.concatenate([f[:, :2] for f in roof.facets]) @ rot
            lo, hi = verts.min(0), verts.max(0)
            if partial:
                centre = rng.uniform(-0.45 * (hi - lo), np.array([width, height]) + 0.45 * (hi - lo))
            else:
                low, high = margin - lo, np.array([width, height]) - margin - hi
                if np.any(low >= high):
                    continue
                centre = rng.uniform(low, high)
            parts = roof.parts @ rot + centre
            if _fits_border(verts + centre, height, width, margin, partial) and _clear(parts, taken, gap):
                facets = [np.column_stack([f[:, :2] @ rot + centre, f[:, 2] * extent]) for f in roof.facets]
                placed.append(_Building(roof.kind, facets, _facet_planes(facets), parts, roof.wall * extent, extent))
                taken = np.concatenate([taken, parts])
                break
    return placed, taken


def _free_rectangles(
    rng: np.random.Generator,
    count: int,
    taken: FloatArray,
    half_width: tuple[float, float],
    half_length: tuple[float, float],
    height: int,
    width: int,
) -> list[FloatArray]:
    """Up to ``count`` rotated rectangles (roads, paved patches; sizes as fractions of ``S``) clear of ``taken``."""
    side = min(height, width)
    out: list[FloatArray] = []
    for _ in range(count):
        for _attempt in range(10):
            angle = float(rng.uniform(0, math.pi))
            u = np.array([math.cos(angle), math.sin(angle)]) * float(rng.uniform(*half_length)) * side
            v = np.array([-math.sin(angle), math.cos(angle)]) * float(rng.uniform(*half_width)) * side
            c = rng.uniform([0, 0], [width, height])
            rect = np.array([c - u - v, c + u - v, c + u + v, c - u + v])
            if _clear(rect[None], taken, 0.02 * side):
                out.append(rect)
                break
    return out


# ---------------------------------------------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------------------------------------------

_GROUND = np.array(
    [(92, 118, 62), (120, 136, 74), (150, 140, 102), (128, 110, 86), (118, 118, 112), (84, 100, 60)], np.float32
)
_PITCHED = np.array(
    [(172, 84, 58), (142, 62, 46), (72, 74, 80), (96, 100, 110), (112, 86, 66), (164, 162, 156), (74, 102, 82)],
    np.float32,
)
_FLAT = np.array([(196, 196, 190), (152, 148, 138), (84, 84, 86), (176, 170, 158)], np.float32)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _bbox(lo: FloatArray, hi: FloatArray, height: int, width: int, pad: float) -> tuple[slice, slice] | None:
    """Pixel rows / columns touched by the box ``[lo, hi]`` grown by ``pad``, or ``None`` outside the image."""
    c0, c1 = max(math.floor(lo[0] - pad), 0), min(math.ceil(hi[0] + pad), width)
    r0, r1 = max(math.floor(lo[1] - pad), 0), min(math.ceil(hi[1] + pad), height)
    return (slice(r0, r1), slice(c0, c1)) if c0 < c1 and r0 < r1 else None


def _centres(region: tuple[slice, slice]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Pixel-centre coordinates ``(x [1, w], y [h, 1])`` of a region."""
    rows, cols = region
    x = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + np.float32(0.5)
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] + np.float32(0.5)
    return x, y


def _fill(img: NDArray[np.float32], poly: FloatArray, colour: NDArray[np.float32]) -> None:
    """Paint a polygon (pixel-centre sampling) in place."""
    region = _bbox(poly.min(0), poly.max(0), img.shape[0], img.shape[1], 0)
    if region is not None:
        x, y = _centres(region)
        img[region][_points_in_polygon(x, y, poly.astype(np.float32))] = colour


def _facet_pixels(
    poly: FloatArray, region: tuple[slice, slice], band: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float32], NDArray[np.bool_], NDArray[np.float32]]:
    """The pixels a facet covers in ``region``, with anti-aliased coverage and edge distances near its boundary.

    Coverage is ``clip(0.5 + signed distance to the boundary, 0, 1)``, so two facets sharing an edge sum to 1
    along it (no seam, no halo).  Distances are only computed within ``band`` pixels of the boundary.

    Returns:
        ``(rows, cols, coverage, near, distance)``: pixel indices within ``region``, their coverage, whether they are
        near the boundary, and for those the distance to every facet edge ``[E, n_near]``.
    """
    x, y = _centres(region)
    a = poly.astype(np.float32)
    inside = _points_in_polygon(x, y, a)
    edge = np.zeros_like(inside)
    for axis in (0, 1):
        flip = np.diff(inside, axis=axis)
        lead = (slice(None, -1), slice(None)) if axis == 0 else (slice(None), slice(None, -1))
        trail = (slice(1, None), slice(None)) if axis == 0 else (slice(None), slice(1, None))
        edge[lead] |= flip
        edge[trail] |= flip
    near_map = ndimage.maximum_filter(edge.view(np.uint8), size=2 * band + 1).view(bool)
    rows, cols = np.nonzero(inside | near_map)
    coverage = inside[rows, cols].astype(np.float32)
    near = near_map[rows, cols]
    px, py = x[0, cols[near]], y[rows[near], 0]
    ab = np.roll(a, -1, 0) - a
    ax, ay = px - a[:, :1], py - a[:, 1:]
    t = np.clip((ax * ab[:, :1] + ay * ab[:, 1:]) / np.maximum((ab**2).sum(1, keepdims=True), 1e-12), 0, 1)
    dist = np.hypot(ax - t * ab[:, :1], ay - t * ab[:, 1:])
    nearest = dist.min(0) if len(dist) else np.zeros(0, np.float32)
    coverage[near] = np.clip(0.5 + np.where(coverage[near] > 0, nearest, -nearest), 0, 1)
    return rows, cols, coverage, near, dist


def _ground(rng: np.random.Generator, height: int, width: int) -> NDArray[np.float32]:
    """Grass / soil / pavement texture: two colours blended by smooth noise, plus grain."""
    side = min(height, width)
    colours = _GROUND[rng.choice(len(_GROUND), 2, replace=False)] * rng.uniform(0.94, 1.06, (2, 3)).astype(np.float32)
    blend = _smooth_noise(rng, height, width, side / 5) + 0.5 * _smooth_noise(rng, height, width, side / 20)
    t = 1 / (1 + np.exp(-2.5 * blend))
    shade = 1 + 0.05 * rng.standard_normal((height, width), np.float32)
    return colours[0] * shade[..., None] + (colours[1] - colours[0]) * (t * shade)[..., None]


def _blob_alpha(
    centre: FloatArray, radius: float, lobes: FloatArray, height: int, width: int
) -> tuple[tuple[slice, slice], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]] | None:
    """Anti-aliased alpha of an irregular round crown, with the pixel offsets ``dx``, ``dy`` from its centre."""
    region = _bbox(centre, centre, height, width, radius * 1.35 + 1)
    if region is None:
        return None
    x, y = _centres(region)
    dx, dy = x - np.float32(centre[0]), y - np.float32(centre[1])
    phi = np.arctan2(dy, dx)
    k = len(lobes) // 2
    wobble = sum(lobes[i] * np.sin((3 + i) * phi + 6.3 * lobes[k + i]) for i in range(k))
    alpha = np.clip(radius * (1 + wobble) - np.hypot(dx, dy) + 0.5, 0, 1).astype(np.float32)
    return region, alpha, dx, dy


def _render(
    rng: np.random.Generator,
    height: int,
    width: int,
    params: SynthParams,
    buildings: list[_Building],
    creases: list[NDArray[np.bool_]],
    taken: FloatArray,
    outline: FloatArray,
) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
    """Paint a scene: ground, road / patches, shadows, shaded roofs, tree crowns, sensor effects."""
    side = min(height, width)
    azimuth = float(rng.uniform(0, 2 * math.pi))
    elevation = math.radians(float(rng.uniform(*params.sun_elevation_deg)))
    sun = np.array([math.cos(azimuth) * math.cos(elevation), math.sin(azimuth) * math.cos(elevation)])
    sun = np.append(sun, math.sin(elevation))
    shadow_dir = -sun[:2] / math.tan(elevation)  # ground offset per unit of height

    img = _ground(rng, height, width)
    # Road and paved patches: straight-edged distractors that are not roofs.
    grey = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    if rng.random() < params.road_prob:
        for road in _free_rectangles(rng, 1, taken, (0.03, 0.05), (1.5, 1.5), height, width):
            _fill(img, road, grey * float(rng.uniform(70, 105)))
    n_patches = int(rng.integers(params.patches[0], params.patches[1] + 1))
    for patch in _free_rectangles(rng, n_patches, taken, (0.03, 0.08), (0.05, 0.15), height, width):
        _fill(img, patch, grey * float(rng.uniform(110, 190)))

    # Trees: crowns hide roof edges (drawn last); their shadows go with the buildings' shadows.
    n_trees = min(int(rng.poisson(params.trees)), 10) if params.trees > 0 else 0
    seg_len = np.hypot(outline[:, 2] - outline[:, 0], outline[:, 3] - outline[:, 1])
    trees = []
    for _ in range(n_trees):
        radius = float(rng.uniform(0.025, 0.06)) * side
        if len(outline) and rng.random() < params.tree_on_edge:
            s = outline[rng.choice(len(outline), p=seg_len / seg_len.sum())]
            centre = s[:2] + rng.random() * (s[2:] - s[:2]) + rng.normal(0, 0.25 * radius, 2)
        else:
            centre = rng.uniform([0, 0], [width, height])
        lobes = np.concatenate([rng.normal(0, 0.035, 4), rng.random(4)])
        trees.append((centre, radius, lobes, float(rng.uniform(0.8, 1.8)) * radius))

    # Cast shadows: per facet, the hull of its footprint and of its top projected along the sun rays.
    shadow = np.zeros((height, width), dtype=np.float32)
    for b in buildings:
        for f in b.facets:
            pts = np.concatenate([f[:, :2], f[:, :2] + (f[:, 2:3] + b.wall) * shadow_dir])
            _fill(shadow, pts[ConvexHull(pts).vertices], np.float32(1))
    shadow = ndimage.gaussian_filter(shadow, 0.8, truncate=3.0)
    for centre, radius, lobes, tree_height in trees:
        blob = _blob_alpha(centre + tree_height * shadow_dir, radius, lobes, height, width)
        if blob is not None:
            shadow[blob[0]] = np.maximum(shadow[blob[0]], blob[1])
    tint = np.clip(float(rng.uniform(0.42, 0.62)) * np.array([0.92, 0.97, 1.1]), 0, 1).astype(np.float32)
    img *= 1 - shadow[..., None] * (1 - tint)

    # Roofs: Lambert-shaded facets with anti-aliased coverage, ridge / hip / valley caps, gutters, tile rows and
    # weathering, composited premultiplied.
    ground_luma = float(img.reshape(-1, 3).mean(0) @ _LUMA)
    ambient = float(rng.uniform(0.25, 0.4))
    cap_width = max(1.0, side / 300)
    band = math.ceil(cap_width / 2 + 1)
    stains = _smooth_noise(rng, height, width, side / 12)
    premult = np.zeros_like(img)
    alpha = np.zeros((height, width), dtype=np.float32)
    for b, crease in zip(buildings, creases, strict=True):
        palette = _FLAT if b.kind == "flat" else _PITCHED
        for _ in range(8):  # keep the roof distinguishable from the ground
            albedo = palette[rng.integers(len(palette))] * rng.uniform(0.88, 1.12, 3).astype(np.float32)
            if abs(float(albedo @ _LUMA) - ground_luma) > 25:
                break
        cap_tint, gutter_tint = float(rng.uniform(0.78, 1.18)), float(rng.uniform(0.7, 1.0))
        rows_amp = 0.0 if b.kind == "flat" else float(rng.uniform(0.02, 0.07))
        period = float(rng.uniform(0.007, 0.014)) * side
        stain_amp = float(rng.uniform(0.02, 0.08))
        planes = b.planes
        normals = np.column_stack([-planes[:, :2], np.ones(len(planes))])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        lambert = np.clip(ambient + (1 - ambient) * (normals @ sun) / sun[2], 0.2, 1.6)
        lambert *= rng.uniform(0.96, 1.04, len(planes))
        downhill = -planes[:, :2] / np.maximum(np.linalg.norm(planes[:, :2], axis=1, keepdims=True), 1e-12)
        start = 0
        for i, f in enumerate(b.facets):  # a handful of facets per building, each vectorised over its pixels
            is_crease = crease[start : start + len(f)]
            start += len(f)
            region = _bbox(f[:, :2].min(0), f[:, :2].max(0), height, width, band + 1)
            if region is None:
                continue
            rows, cols, cov, near, dist = _facet_pixels(f[:, :2], region, band)
            x = cols.astype(np.float32) + np.float32(region[1].start + 0.5)
            y = rows.astype(np.float32) + np.float32(region[0].start + 0.5)
            phase = (2 * math.pi / period) * (x * downhill[i, 0] + y * downhill[i, 1])
            shade = (1 + rows_amp * np.sin(phase)) * (1 + stain_amp * stains[region][rows, cols])
            edge_shade = np.ones(int(near.sum()), np.float32)
            if is_crease.any():
                edge_shade *= 1 + (cap_tint - 1) * np.clip(cap_width / 2 + 0.5 - dist[is_crease].min(0), 0, 1)
            if not is_crease.all():
                edge_shade *= 1 + (gutter_tint - 1) * np.clip(1.0 - dist[~is_crease].min(0), 0, 1)
            shade[near] *= edge_shade
            premult[region][rows, cols] += (cov * shade)[:, None] * (albedo * np.float32(lambert[i]))
            alpha[region][rows, cols] += cov
    img = img * (1 - np.minimum(alpha, 1))[..., None] + premult

    # Tree crowns on top: they hide roof edges, the GT keeps them.
    crowns = np.zeros((height, width), dtype=bool)
    sun_h = sun[:2] / np.linalg.norm(sun[:2])
    for centre, radius, lobes, _ in trees:
        blob = _blob_alpha(centre, radius, lobes, height, width)
        if blob is None:
            continue
        region, a, dx, dy = blob
        lit = np.clip(0.5 + 0.5 * (dx * sun_h[0] + dy * sun_h[1]) / radius, 0, 1)
        leaves = ndimage.gaussian_filter(rng.standard_normal(a.shape, np.float32), 1.0, truncate=3.0) * 2.0
        base = np.array([rng.uniform(35, 60), rng.uniform(62, 95), rng.uniform(28, 48)], dtype=np.float32)
        crown = base * ((0.65 + 0.6 * lit) * (1 + 0.25 * leaves))[..., None]
        img[region] = img[region] * (1 - a)[..., None] + crown * a[..., None]
        crowns[region] |= a >= 0.5

    # Sensor: colour balance, blur, noise; round half up to 8 bits.
    img *= np.float32(rng.uniform(0.9, 1.1)) * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    sigma = float(rng.uniform(*params.blur_sigma))
    if sigma > 0:
        for axis in (0, 1):
            img = ndimage.gaussian_filter1d(img, sigma, axis=axis, truncate=2.5)
    img += rng.standard_normal(img.shape, np.float32) * np.float32(rng.uniform(*params.noise_std))
    img += np.float32(0.5)
    return np.clip(img, 0, 255).astype(np.uint8), crowns


def _clean_lines(
    lines: FloatArray, kinds: NDArray[np.int8], height: int, width: int, min_length: float
) -> tuple[FloatArray, NDArray[np.int8]]:
    """Clip to the image, round, drop pieces shorter than ``min_length`` and exact duplicates."""
    clipped, kept = _clip_lines(lines, height, width)
    clipped = np.round(clipped, DECIMALS)
    length = np.hypot(clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1])
    keep = kept & (length >= min_length)
    clipped, kinds = clipped[keep], kinds[keep]
    _, first = np.unique(clipped, axis=0, return_index=True)
    first.sort()
    return clipped[first], kinds[first]


def render_scene(rng: np.random.Generator, height: int, width: int, params: SynthParams | None = None) -> SynthScene:
    """Render one synthetic roof scene with its exact wireframe ground truth.

    Args:
        rng: Random generator; the scene is a pure function of its state (see :func:`sample_rng`).
        height: Image height in pixels.
        width: Image width in pixels.
        params: Generator knobs (default: :class:`SynthParams`).

    Returns:
        The image, the GT lines (``x1, y1, x2, y2``; split at junctions, clipped to the image) and their kinds.

    Raises:
        RoofMapError: A side outside ``MIN_SIDE..MAX_SIDE``.
    """
    params = params or SynthParams()
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise RoofMapError(f"image size {width}x{height}: each side must be within {MIN_SIDE}..{MAX_SIDE} pixels")
    buildings, taken = _place_buildings(rng, height, width, params)
    segments: list[FloatArray] = [np.zeros((0, 4))]
    kinds: list[NDArray[np.int8]] = [np.zeros(0, np.int8)]
    creases: list[NDArray[np.bool_]] = []
    for b in buildings:
        seg, kind, crease = _wireframe(b.facets, b.planes, b.size)
        segments.append(seg)
        kinds.append(kind)
        creases.append(crease)
    min_length = max(1.0, 0.004 * min(height, width))
    lines, line_kinds = _clean_lines(np.concatenate(segments), np.concatenate(kinds), height, width, min_length)
    outline = lines[line_kinds == LineKind.OUTLINE]
    image, crowns = _render(rng, height, width, params, buildings, creases, taken, outline)
    return SynthScene(image, lines, line_kinds, tuple(b.kind for b in buildings), crowns)


def render_sample(
    rng: np.random.Generator, height: int, width: int, params: SynthParams | None = None
) -> tuple[NDArray[np.uint8], FloatArray]:
    """Render one sample: ``(image uint8 [H, W, 3], lines float64 [L, 4] x1 y1 x2 y2)``.

    See :func:`render_scene` for the arguments, the line kinds and the occlusion mask.
    """
    scene = render_scene(rng, height, width, params)
    return scene.image, scene.lines


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``split``: independent of worker count and of the other splits."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index)))


# ---------------------------------------------------------------------------------------------------------------
# Dataset writer.
# ---------------------------------------------------------------------------------------------------------------


def parse_image_size(size: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``512`` → ``(512, 512)``; ``"320x256"`` (width × height) → ``(256, 320)``; a pair is ``(height, width)``.

    Returns:
        ``(height, width)``.

    Raises:
        RoofMapError: Malformed or out of ``MIN_SIDE..MAX_SIDE``.
    """
    if isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", size)
        if m is None:
            raise RoofMapError(f"image size {size!r}: expected N (square) or WIDTHxHEIGHT, e.g. 512 or 320x256")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
    elif isinstance(size, int):
        h = w = size
    else:
        h, w = (int(v) for v in size)
    if not (MIN_SIDE <= h <= MAX_SIDE and MIN_SIDE <= w <= MAX_SIDE):
        raise RoofMapError(
            f"image size {w}x{h} (width x height): each side must be within {MIN_SIDE}..{MAX_SIDE} pixels"
        )
    return h, w


@dataclass(frozen=True)
class _Task:
    images: Path
    split: str
    index: int
    seed: int
    height: int
    width: int
    params: SynthParams


def _image_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.png"


def _make_sample(task: _Task) -> dict[str, Any]:
    """Render sample ``task`` and write its PNG atomically; return its annotation record."""
    scene = render_scene(sample_rng(task.seed, task.split, task.index), task.height, task.width, task.params)
    name = _image_name(task.split, task.index)
    with atomic_path(task.images / name) as tmp:
        Image.fromarray(scene.image).save(tmp, format="PNG", compress_level=1)
    return {"filename": name, "lines": scene.lines.tolist(), "height": task.height, "width": task.width}


def _results(tasks: list[_Task], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_make_sample, tasks)
        return
    chunk = max(1, min(16, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_make_sample, tasks, chunksize=chunk)


def _records_json(records: list[dict[str, Any]]) -> str:
    """A JSON list with one record per line (readable, diff-friendly, still plain JSON)."""
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in records) + "\n]\n"


def generate_dataset(
    out_dir: str | Path,
    *,
    counts: Mapping[str, int] | None = None,
    image_size: int | str | tuple[int, int] = 512,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    params: SynthParams | None = None,
) -> SynthSummary:
    """Write a synthetic raw dataset: ``train.json`` / ``valid.json`` / ``test.json``, ``images/``, ``synth.json``.

    Sample ``i`` of split ``s`` is rendered from ``SeedSequence(seed, spawn_key=(split index, i))``, so the bytes
    written do not depend on ``workers``; every file is written atomically.

    Args:
        out_dir: Output folder (created if missing).
        counts: Images per split (keys among :data:`SPLITS`; missing splits get 0). Default :data:`DEFAULT_COUNTS`.
        image_size: ``N`` (square), ``(height, width)`` or ``"WIDTHxHEIGHT"``.
        seed: Base seed (>= 0).
        workers: Processes rendering in parallel (1 = in this process).
        progress: Show a rich progress bar on stderr.
        overwrite: Allow writing into a non-empty folder (stale ``<split>_NNNNNN.png`` images of an earlier run
            are removed; nothing else is).
        params: Scene generator knobs.

    Returns:
        What was written.

    Raises:
        DataError: ``out_dir`` is a file, or a non-empty folder without ``overwrite``.
        RoofMapError: Bad counts, size, seed or workers.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    asked = dict(DEFAULT_COUNTS if counts is None else counts)
    unknown = sorted(set(asked) - set(SPLITS))
    if unknown:
        raise RoofMapError(f"counts: unknown split(s) {unknown}; expected {list(SPLITS)}")
    n_images = {s: int(asked.get(s, 0)) for s in SPLITS}
    if any(n < 0 for n in n_images.values()):
        raise RoofMapError(f"counts: must be >= 0, got {n_images}")
    if seed < 0 or workers < 1:
        raise RoofMapError(f"seed must be >= 0 and workers >= 1 (got seed={seed}, workers={workers})")
    height, width = parse_image_size(image_size)
    params = params or SynthParams()
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: folder is not empty (set overwrite to write into it)", fields="overwrite")

    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    tasks = [_Task(images, s, i, seed, height, width, params) for s in SPLITS for i in range(n_images[s])]
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        job = bar.add_task("synth", total=len(tasks))
        for task, record in zip(tasks, _results(tasks, workers), strict=True):
            records[task.split].append(record)
            bar.advance(job)

    for s in SPLITS:  # after the images, so a split file never names an image not yet written
        atomic_write_text(out / f"{s}.json", _records_json(records[s]))
    lines = {s: sum(len(r["lines"]) for r in records[s]) for s in SPLITS}
    meta = {
        "generator": "roofmapnet.data.synth",
        "format_version": FORMAT_VERSION,
        "roofmapnet_version": __version__,
        "seed": seed,
        "counts": n_images,
        "height": height,
        "width": width,
        "lines": lines,
        "params": asdict(params),
    }
    atomic_write_text(out / "synth.json", json.dumps(meta, indent=2) + "\n")
    # Images of an earlier, larger run (only our own names), once no split file refers to them any more.
    written = {_image_name(t.split, t.index) for t in tasks}
    for stale in images.iterdir():
        if _IMAGE_NAME.match(stale.name) and stale.name not in written:
            stale.unlink()
    return SynthSummary(out, height, width, seed, n_images, lines, time.perf_counter() - started)
