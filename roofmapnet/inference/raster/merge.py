"""The merge of per-tile detections across tile seams into one wireframe (numpy and scipy only).

Merge rule (:func:`merge_tiles`), all in raster pixels
    1. Nodata: a line with half or more of its 16 samples on nodata (or padding, dilated by one pixel) is dropped,
       as is a junction on a nodata pixel.
    2. Ownership: a line whose two endpoints lie in the core of one same *other* tile is dropped (that tile saw
       it with more context).  A junction is kept only from the tile that owns it.
    3. Seam candidates: only lines whose bounding box meets an overlap strip (widened by ``distance``) are
       compared, and only with lines of other tiles in the same strip section.
    4. Two lines from different tiles are *collinear* when their directions differ by at most ``angle_deg`` and
       both endpoints of the shorter lie within ``distance`` of the longer's supporting line.  Collinear lines
       whose projections overlap by more than ``gap`` are duplicates (or the two halves of a line cut by a tile
       border, which overlap in the overlap strip) and are merged.  Collinear lines that overlap by at most ``gap``
       or leave a gap of at most ``gap`` (they *touch*) are joined only when the touching ends are within
       ``distance + gap`` of each other and *both* look cut by their own tile's border (extended outwards along
       the line by ``border``, the end leaves its tile through an interior border), so two roof edges that meet
       at a real junction are not fused.
    5. Merged groups are the connected components of these pairs.  A group becomes one line from the endpoint
       with the lowest to the endpoint with the highest projection on the group's longest member; its score is
       the highest score of its members and ``pieces`` counts them.  A lone piece shorter than ``gap`` with an
       end cut by its tile's border is a fragment of a line clipped at a tile corner and is dropped.
    6. Junctions of different tiles closer than ``distance`` are duplicates; the lower score is dropped.

    Defaults (:meth:`MergeParams.for_tile`): ``distance = 1.5`` heatmap cells, ``gap = 2`` cells and
    ``border = 1`` cell, a cell being ``tile / heatmap_size`` raster pixels (6, 8 and 4 px for the default
    512 / 128 model), ``angle_deg = 10``.
    Every step is vectorised with numpy / scipy (the only Python loops are over tiles and over chunks of at most
    ~1M candidate pairs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from roofmapnet.inference.raster.grid import TileGrid
from roofmapnet.inference.types import MergedWireframe, TileDetections

#: Candidate pairs examined per vectorised chunk of the merge (bounds its temporary memory).
PAIR_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class MergeParams:
    """Tolerances of :func:`merge_tiles`, in raster pixels (rule in the module docstring).

    Attributes:
        distance: largest offset of a collinear line from the other's supporting line; junction dedupe radius.
        gap: largest gap (or smallest overlap) of two pieces that touch at a tile border.
        border: how far from an interior tile border a line end may stop and still count as cut by it.
        angle_deg: largest angle between collinear lines.
    """

    distance: float
    gap: float
    border: float = 0.0
    angle_deg: float = 10.0

    def __post_init__(self) -> None:
        if self.border <= 0:
            object.__setattr__(self, "border", self.gap / 2)

    @classmethod
    def for_tile(cls, tile: int, heatmap_size: int, image_size: int) -> MergeParams:
        """Defaults for a tile of ``tile`` raster pixels seen by a model with the given input / heatmap sizes."""
        del image_size  # the heatmap cell in raster pixels depends only on tile / heatmap size
        cell = tile / heatmap_size
        return cls(distance=1.5 * cell, gap=2.0 * cell, border=cell)


def _pairs_in_groups(keys: np.ndarray, members: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs of ``members`` sharing a key, in chunks of at most ~:data:`PAIR_CHUNK` pairs."""
    if keys.size < 2:
        return
    order = np.argsort(keys, kind="stable")
    k, m = keys[order], members[order]
    n = k.size
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    sizes = np.diff(np.concatenate([starts, [n]]))
    end = np.repeat(starts + sizes, sizes)
    count = end - np.arange(n) - 1
    cum = np.cumsum(count)
    # Chunk boundaries on elements so that each chunk holds at most ~PAIR_CHUNK pairs.
    cuts = np.unique(np.concatenate([[0], np.searchsorted(cum, np.arange(PAIR_CHUNK, cum[-1], PAIR_CHUNK)), [n]]))
    for lo, hi in itertools.pairwise(cuts):
        cnt = count[lo:hi]
        total = int(cnt.sum())
        if total == 0:
            continue
        a = np.repeat(np.arange(lo, hi), cnt)
        offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        yield m[a], m[a + 1 + offs]


def _seam_incidences(grid: TileGrid, lines: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(line index, seam-section key) for every overlap-strip section a line's bounding box meets."""
    bx0 = np.minimum(lines[:, 0], lines[:, 2])
    bx1 = np.maximum(lines[:, 0], lines[:, 2])
    by0 = np.minimum(lines[:, 1], lines[:, 3])
    by1 = np.maximum(lines[:, 1], lines[:, 3])
    idx_parts: list[np.ndarray] = []
    key_parts: list[np.ndarray] = []
    # axis 0: vertical strips between tile columns, sectioned by tile rows; axis 1: the transpose.
    specs = (
        (grid.xs, grid.read_width, grid.ys, grid.read_height, bx0, bx1, by0, by1),
        (grid.ys, grid.read_height, grid.xs, grid.read_width, by0, by1, bx0, bx1),
    )
    offset = 0
    for origins, span, cross_origins, cross_span, a0, a1, c0, c1 in specs:
        n_strips = origins.size - 1
        n_sections = cross_origins.size
        if n_strips < 1:
            continue
        lo = origins[1:].astype(np.float64) - tol
        hi = origins[:-1].astype(np.float64) + span + tol
        s_lo = np.searchsorted(hi, a0, side="left")
        s_hi = np.searchsorted(lo, a1, side="right") - 1
        c_lo_edge = cross_origins.astype(np.float64) - tol
        c_hi_edge = cross_origins.astype(np.float64) + cross_span + tol
        r_lo = np.searchsorted(c_hi_edge, c0, side="left")
        r_hi = np.searchsorted(c_lo_edge, c1, side="right") - 1
        ns = np.maximum(s_hi - s_lo + 1, 0)
        nr = np.maximum(r_hi - r_lo + 1, 0)
        count = ns * nr
        total = int(count.sum())
        if total:
            line = np.repeat(np.arange(lines.shape[0]), count)
            k = np.arange(total) - np.repeat(np.cumsum(count) - count, count)
            nr_l = nr[line]
            strip = s_lo[line] + k // nr_l
            section = r_lo[line] + k % nr_l
            idx_parts.append(line)
            key_parts.append(offset + strip * n_sections + section)
        offset += n_strips * n_sections
    if not idx_parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(idx_parts), np.concatenate(key_parts)


def _cut_ends(grid: TileGrid, lines: np.ndarray, tiles: np.ndarray, tol: float) -> np.ndarray:
    """``[N, 2]`` bool: the endpoint looks cut by its tile's border.

    Extended outwards along the line by ``tol``, the endpoint leaves its tile through an interior border (not
    the raster's edge).  A line running along a border, or ending farther than ``tol`` from it, is not cut.
    """
    ext = grid.extents(tiles)
    ends = lines.reshape(-1, 2, 2)
    d = ends[:, 1] - ends[:, 0]
    u = d / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)[:, None]
    out = np.zeros((lines.shape[0], 2), dtype=bool)
    for e, sign in ((0, -1.0), (1, 1.0)):
        x = ends[:, e, 0] + sign * tol * u[:, 0]
        y = ends[:, e, 1] + sign * tol * u[:, 1]
        out[:, e] = (
            ((x < ext[:, 0]) & (ext[:, 0] > 0))
            | ((x > ext[:, 2]) & (ext[:, 2] < grid.width))
            | ((y < ext[:, 1]) & (ext[:, 1] > 0))
            | ((y > ext[:, 3]) & (ext[:, 3] < grid.height))
        )
    return out


def _link_pairs(
    a: np.ndarray,
    b: np.ndarray,
    lines: np.ndarray,
    tiles: np.ndarray,
    cut: np.ndarray,
    params: MergeParams,
) -> np.ndarray:
    """Which candidate pairs ``(a, b)`` are merged (collinear and overlapping, or touching at a tile border)."""
    reach = params.distance + params.gap
    x1, y1, x2, y2 = lines[:, 0], lines[:, 1], lines[:, 2], lines[:, 3]
    # Cheap pre-filter: other tile, and bounding boxes closer than distance + gap.
    near = (tiles[a] != tiles[b]) & (
        (np.minimum(x1[a], x2[a]) <= np.maximum(x1[b], x2[b]) + reach)
        & (np.minimum(x1[b], x2[b]) <= np.maximum(x1[a], x2[a]) + reach)
        & (np.minimum(y1[a], y2[a]) <= np.maximum(y1[b], y2[b]) + reach)
        & (np.minimum(y1[b], y2[b]) <= np.maximum(y1[a], y2[a]) + reach)
    )
    linked = np.zeros(a.size, dtype=bool)
    k = np.flatnonzero(near)
    if k.size == 0:
        return linked
    a, b = a[k], b[k]
    dx, dy = x2 - x1, y2 - y1
    length = np.hypot(dx, dy)
    swap = length[a] < length[b]
    li = np.where(swap, b, a)  # the longer line of the pair
    sj = np.where(swap, a, b)
    ux, uy = dx[li] / length[li], dy[li] / length[li]
    # Offsets of the shorter line's endpoints from the longer's first endpoint: along (t) and across (n) it.
    px, py = x1[sj] - x1[li], y1[sj] - y1[li]
    qx, qy = x2[sj] - x1[li], y2[sj] - y1[li]
    t1, t2 = px * ux + py * uy, qx * ux + qy * uy
    dist = np.maximum(np.abs(py * ux - px * uy), np.abs(qy * ux - qx * uy))
    cos = np.abs(ux * dx[sj] + uy * dy[sj]) / length[sj]
    overlap = np.minimum(np.maximum(t1, t2), length[li]) - np.maximum(np.minimum(t1, t2), 0.0)
    collinear = (cos >= math.cos(math.radians(params.angle_deg))) & (dist <= params.distance)
    duplicate = collinear & (overlap > params.gap)
    touching = collinear & (overlap <= params.gap) & (overlap >= -params.gap)
    t = np.flatnonzero(touching)
    if t.size:
        ends_l = lines[li[t]].reshape(-1, 2, 2)
        ends_s = lines[sj[t]].reshape(-1, 2, 2)
        gaps = np.linalg.norm(ends_l[:, :, None, :] - ends_s[:, None, :, :], axis=-1)  # [T, 2, 2]
        at_border = cut[li[t]][:, :, None] & cut[sj[t]][:, None, :]
        touching[t] = ((gaps <= reach) & at_border).any(axis=(1, 2))
    linked[k] = duplicate | touching
    return linked


def _merge_groups(
    lines: np.ndarray, scores: np.ndarray, labels: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One line per group: extreme endpoints along the longest member, max score, member count."""
    d = lines[:, 2:] - lines[:, :2]
    length = np.hypot(d[:, 0], d[:, 1])
    by_len = np.lexsort((length, labels))
    group_end = np.searchsorted(labels[by_len], np.arange(n_groups), side="right") - 1
    ref = by_len[group_end]
    u = d[ref] / length[ref][:, None]
    ends = lines.reshape(-1, 2, 2)
    proj = (ends * u[labels][:, None, :]).sum(-1).reshape(-1)
    owner = np.repeat(labels, 2)
    order = np.lexsort((proj, owner))
    first = np.searchsorted(owner[order], np.arange(n_groups), side="left")
    last = np.searchsorted(owner[order], np.arange(n_groups), side="right") - 1
    flat_ends = ends.reshape(-1, 2)
    merged = np.concatenate([flat_ends[order[first]], flat_ends[order[last]]], axis=1)
    best = np.full(n_groups, -np.inf)
    np.maximum.at(best, labels, scores)
    pieces = np.bincount(labels, minlength=n_groups)
    return merged, best, pieces


def import_merge_deps() -> None:
    """Import the scipy modules of the merge and the nodata rule (0.1-0.5 s once per process)."""
    import scipy.ndimage
    import scipy.sparse.csgraph
    import scipy.spatial  # noqa: F401


def merge_tiles(grid: TileGrid, det: TileDetections, params: MergeParams) -> MergedWireframe:
    """Merge per-tile detections (raster pixels) into one wireframe (rule in the module docstring, steps 2-6).

    Step 1 (nodata) is applied per tile by the engine before this.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    lines = np.asarray(det.lines, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    tiles = np.asarray(det.tiles, dtype=np.int64).reshape(-1)
    length = np.hypot(lines[:, 2] - lines[:, 0], lines[:, 3] - lines[:, 1])
    o1 = grid.owner(lines[:, 0], lines[:, 1])
    o2 = grid.owner(lines[:, 2], lines[:, 3])
    keep = ~((o1 == o2) & (o1 != tiles)) & (length > 1e-9) & np.isfinite(lines).all(axis=1)
    lines, scores, tiles = lines[keep], scores[keep], tiles[keep]
    n = lines.shape[0]

    links_a: list[np.ndarray] = []
    links_b: list[np.ndarray] = []
    cut = _cut_ends(grid, lines, tiles, params.border) if len(grid) > 1 else np.zeros((n, 2), dtype=bool)
    if n > 1 and len(grid) > 1:
        idx, keys = _seam_incidences(grid, lines, max(params.distance, params.gap))
        for a, b in _pairs_in_groups(keys, idx):
            linked = _link_pairs(a, b, lines, tiles, cut, params)
            links_a.append(a[linked])
            links_b.append(b[linked])
    if links_a and sum(x.size for x in links_a):
        ea, eb = np.concatenate(links_a), np.concatenate(links_b)
        graph = coo_matrix((np.ones(ea.size, dtype=np.int8), (ea, eb)), shape=(n, n))
        n_groups, labels = connected_components(graph, directed=False)
    else:
        n_groups, labels = n, np.arange(n)
    if n:
        labels = labels.astype(np.int64)
        merged, best, pieces = _merge_groups(lines, scores, labels, int(n_groups))
        fragment = np.zeros(int(n_groups), dtype=bool)
        fragment[labels] = (length[keep] < params.gap) & cut.any(axis=1)
        fragment &= pieces == 1
        merged, best, pieces = merged[~fragment], best[~fragment], pieces[~fragment]
    else:
        merged, best, pieces = np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.argsort(-best, kind="stable")

    junc = np.asarray(det.junctions, dtype=np.float64).reshape(-1, 2)
    jsc = np.asarray(det.junction_scores, dtype=np.float64).reshape(-1)
    jt = np.asarray(det.junction_tiles, dtype=np.int64).reshape(-1)
    jkeep = (grid.owner(junc[:, 0], junc[:, 1]) == jt) & np.isfinite(junc).all(axis=1)
    junc, jsc, jt = junc[jkeep], jsc[jkeep], jt[jkeep]
    if junc.shape[0] > 1 and len(grid) > 1:
        pairs = cKDTree(junc).query_pairs(params.distance, output_type="ndarray")
        pairs = pairs[jt[pairs[:, 0]] != jt[pairs[:, 1]]]
        if pairs.size:
            i, j = pairs[:, 0], pairs[:, 1]
            lower = np.where((jsc[i] < jsc[j]) | ((jsc[i] == jsc[j]) & (i > j)), i, j)
            drop = np.zeros(junc.shape[0], dtype=bool)
            drop[lower] = True
            junc, jsc = junc[~drop], jsc[~drop]
    jorder = np.argsort(-jsc, kind="stable")
    return MergedWireframe(
        lines=merged[order],
        scores=best[order],
        pieces=pieces[order].astype(np.int64),
        junctions=junc[jorder],
        junction_scores=jsc[jorder],
        height=grid.height,
        width=grid.width,
    )
