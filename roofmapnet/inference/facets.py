"""Roof facets: polygonise a roof wireframe into the faces of its planar graph (the step towards LoD2 planes).

A roof wireframe drawn from above is a planar graph: its bounded faces are the roof's facets (a hip roof's four
planes, a gable's two, each wing of an L-shaped roof...).  :func:`polygonize_wireframe` recovers them:

1. **Snap** (tolerance ``snap``, in the lines' units): endpoints closer than ``snap`` are one junction (their
   mean, so they coincide exactly); an endpoint within ``snap`` of another line's interior (a T-junction that
   stops short of, or overshoots, the line it meets) is moved onto that line and extended by a hair so that the
   two cross.
2. **Node**: the union of the segments (GEOS) splits every segment at every crossing.
3. **Polygonise** (GEOS ``polygonize_full``): the bounded faces of the noded graph.  Dangles (edges with a free
   end, e.g. the hair of step 1 or a ridge that reaches no eave) and cut edges (bridges between two faces or
   loops) bound no face and are dropped.  Faces of area at most ``min_area`` (slivers) are dropped.
4. **Attributes** per facet: ``area`` (the lines' units squared), ``edges`` (corners of the exterior ring once
   collinear vertices are removed: a T-junction node on a straight side is no corner) and ``building``, the
   connected component of the noded wireframe the facet's exterior belongs to (so the facets of one building
   share an id and each input line gets one too, :attr:`Facets.line_building`).

Everything is vectorised on shapely 2's array functions (GEOS in C) and scipy's KD-tree / connected components:
no Python loop over lines, endpoints or facets.  Needs shapely (in the ``geo`` extra).

:func:`region_scores` compares two facet sets the way HEAT (Chen et al., CVPR 2022) scores regions: a predicted
facet is a true positive when its IoU with a ground-truth facet is at least ``iou`` (0.7); precision = TP / #pred,
recall = TP / #GT.  With ``iou > 0.5`` a facet can match at most one facet of a partition, so no assignment is
needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Final

import numpy as np

from roofmapnet.errors import DataError

#: Default IoU of a matched region (HEAT's region precision / recall).
REGION_IOU: Final = 0.7
#: A T-junction endpoint moved onto a line is pushed past it by this fraction of ``snap`` (so the two cross).
_OVERSHOOT: Final = 1e-3


def require_shapely() -> ModuleType:
    """The ``shapely`` module (2.x), or a one-line :class:`DataError` naming the extra that installs it."""
    try:
        import shapely
    except ImportError as exc:  # pragma: no cover - shapely is in the dev extra
        msg = "roof facets need the optional 'geo' extra (shapely); install it with: pip install 'roofmapnet[geo]'"
        raise DataError(msg) from exc
    if int(shapely.__version__.split(".")[0]) < 2:  # pragma: no cover
        msg = f"roof facets need shapely >= 2 (found {shapely.__version__}); pip install 'roofmapnet[geo]'"
        raise DataError(msg)
    return shapely


def shapely_available() -> bool:
    """Whether shapely 2 can be imported (facets and the facet measure are available)."""
    try:
        require_shapely()
    except DataError:
        return False
    return True


@dataclass(frozen=True)
class Facets:
    """The facets of one wireframe.

    Attributes:
        polygons: ``[F]`` shapely Polygons (object array), in the lines' coordinates.
        area: ``[F]`` float64 areas (units²).
        edges: ``[F]`` int64 corners of each exterior ring (collinear vertices removed).
        building: ``[F]`` int64 building id (connected component of the wireframe), ``0 .. buildings - 1``.
        line_building: ``[L]`` int64 building id of every input line (``-1`` for a degenerate line).
        buildings: number of connected components of the wireframe.
    """

    polygons: np.ndarray
    area: np.ndarray
    edges: np.ndarray
    building: np.ndarray
    line_building: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    buildings: int = 0

    def __len__(self) -> int:
        return int(self.polygons.shape[0])

    @classmethod
    def empty(cls, n_lines: int = 0) -> Facets:
        """No facets (``n_lines`` lines, all of building ``-1``)."""
        return cls(
            polygons=np.empty(0, dtype=object),
            area=np.zeros(0),
            edges=np.zeros(0, dtype=np.int64),
            building=np.zeros(0, dtype=np.int64),
            line_building=np.full(n_lines, -1, dtype=np.int64),
        )

    def record(self, decimals: int = 3) -> list[dict[str, Any]]:
        """JSON-ready facets: ``building``, ``area``, ``edges``, ``exterior`` ``[[x, y], ...]`` (closed ring,
        counter-clockwise in the lines' frame) and ``interiors`` (holes, same layout)."""
        shapely = require_shapely()
        if not len(self):
            return []
        oriented = shapely.orient_polygons(self.polygons) if hasattr(shapely, "orient_polygons") else self.polygons
        out = []
        for poly, b, a, e in zip(
            oriented, self.building.tolist(), self.area.tolist(), self.edges.tolist(), strict=True
        ):
            out.append(
                {
                    "building": b,
                    "area": round(a, decimals),
                    "edges": e,
                    "exterior": np.round(shapely.get_coordinates(poly.exterior), decimals).tolist(),
                    "interiors": [np.round(shapely.get_coordinates(r), decimals).tolist() for r in poly.interiors],
                }
            )
        return out


def _as_segments(lines: np.ndarray) -> np.ndarray:
    seg = np.asarray(lines, dtype=np.float64)
    if seg.size == 0:
        return np.zeros((0, 2, 2))
    if seg.ndim == 2 and seg.shape[1] == 4:
        seg = seg.reshape(-1, 2, 2)
    if seg.ndim != 3 or seg.shape[1:] != (2, 2):
        msg = f"lines must be [L, 4] or [L, 2, 2] (x1, y1, x2, y2), got shape {tuple(seg.shape)}"
        raise ValueError(msg)
    return seg.copy()


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component labels of ``n`` nodes joined by the pairs ``(a[i], b[i])``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.shape[0], dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def _snap_endpoints(seg: np.ndarray, snap: float) -> np.ndarray:
    """Endpoints within ``snap`` of each other replaced by their cluster's mean (exactly shared coordinates)."""
    from scipy.spatial import cKDTree

    pts = seg.reshape(-1, 2)
    pairs = cKDTree(pts).query_pairs(snap, output_type="ndarray")
    if not pairs.shape[0]:
        return seg
    labels = _components(pts.shape[0], pairs[:, 0], pairs[:, 1])
    counts = np.bincount(labels)
    means = np.stack([np.bincount(labels, weights=pts[:, k]) / counts for k in (0, 1)], axis=1)
    return means[labels].reshape(-1, 2, 2)


def _snap_t_junctions(shapely: ModuleType, seg: np.ndarray, snap: float) -> np.ndarray:
    """Move each free endpoint within ``snap`` of another segment's interior onto it, a hair past it."""
    geoms = shapely.linestrings(seg)
    pts = seg.reshape(-1, 2)
    owner = np.repeat(np.arange(seg.shape[0]), 2)
    points = shapely.points(pts)
    tree = shapely.STRtree(geoms)
    p_idx, l_idx = tree.query(points, predicate="dwithin", distance=snap)
    keep = l_idx != owner[p_idx]
    p_idx, l_idx = p_idx[keep], l_idx[keep]
    if not p_idx.shape[0]:
        return seg
    # An endpoint already shared with a vertex of that line is a junction, not a T: leave it.
    dist_to_ends = np.min(np.linalg.norm(seg[l_idx] - pts[p_idx][:, None, :], axis=2), axis=1)
    dist = shapely.distance(points[p_idx], geoms[l_idx])
    keep = dist_to_ends > np.maximum(dist, 1e-12) * (1 + 1e-9)
    keep &= dist_to_ends > snap
    p_idx, l_idx, dist = p_idx[keep], l_idx[keep], dist[keep]
    if not p_idx.shape[0]:
        return seg
    order = np.lexsort((dist, p_idx))  # nearest line first for each endpoint
    first = np.ones(order.shape[0], dtype=bool)
    first[1:] = p_idx[order][1:] != p_idx[order][:-1]
    p_idx, l_idx = p_idx[order][first], l_idx[order][first]
    foot = shapely.get_coordinates(
        shapely.line_interpolate_point(geoms[l_idx], shapely.line_locate_point(geoms[l_idx], points[p_idx]))
    )
    # Push past the line along the endpoint's own segment direction so that noding creates the crossing.
    other = pts[p_idx ^ 1]
    direction = foot - other
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)
    out = pts.copy()
    out[p_idx] = foot + direction * (snap * _OVERSHOOT)
    return out.reshape(-1, 2, 2)


def polygonize_wireframe(lines: np.ndarray, *, snap: float = 0.0, min_area: float = 0.0) -> Facets:
    """The facets of a wireframe (module docstring).

    Args:
        lines: ``[L, 4]`` or ``[L, 2, 2]`` segments ``x1, y1, x2, y2`` (any planar frame: pixels or metres).
        snap: junction / T-junction tolerance, in the lines' units (0: endpoints must coincide exactly).
        min_area: facets of at most this area are dropped (slivers).

    Returns:
        :class:`Facets`, ordered by building, then by the facet's lowest-left corner (deterministic).
    """
    if snap < 0 or min_area < 0:
        msg = f"snap and min_area must be >= 0 (got {snap}, {min_area})"
        raise ValueError(msg)
    shapely = require_shapely()
    seg = _as_segments(lines)
    n_lines = seg.shape[0]
    valid = np.all(np.isfinite(seg.reshape(-1, 4)), axis=1) & (np.linalg.norm(seg[:, 1] - seg[:, 0], axis=1) > 0)
    if not valid.any():
        return Facets.empty(n_lines)
    seg_v = seg[valid]
    if snap > 0:
        seg_v = _snap_endpoints(seg_v, snap)
        seg_v = _snap_t_junctions(shapely, seg_v, snap)
        seg_v = _snap_endpoints(seg_v, snap * _OVERSHOOT / 2)  # T-ends meeting on one line: one node
    alive = np.linalg.norm(seg_v[:, 1] - seg_v[:, 0], axis=1) > 0  # snapping may collapse a short line
    valid[np.flatnonzero(valid)[~alive]] = False
    seg_v = seg_v[alive]
    if not seg_v.shape[0]:
        return Facets.empty(n_lines)
    geoms = shapely.linestrings(seg_v)
    noded = shapely.get_parts(shapely.union_all(geoms))
    noded = noded[shapely.get_type_id(noded) == 1]  # LineStrings (a degenerate union yields nothing else)
    # Buildings: connected components of the noded graph (pieces that touch or cross).
    tree = shapely.STRtree(noded)
    a, b = tree.query(noded, predicate="intersects")
    part_building = _components(noded.shape[0], a, b)
    # Renumber buildings by first appearance among the input lines (stable across runs).
    # Each line lies on its own noded pieces: its nearest piece (distance 0) names its component.
    li, pi = tree.query_nearest(geoms, all_matches=False)
    first_part = np.zeros(geoms.shape[0], dtype=np.int64)
    first_part[li] = pi
    line_comp = part_building[first_part]
    _, first_seen = np.unique(line_comp, return_index=True)
    order = np.argsort(first_seen)
    relabel = np.full(int(part_building.max()) + 1, -1, dtype=np.int64)
    relabel[np.unique(line_comp)[order]] = np.arange(order.shape[0])
    line_building = np.full(n_lines, -1, dtype=np.int64)
    line_building[valid] = relabel[line_comp]
    buildings = int(order.shape[0])

    polygons, _cuts, _dangles, _invalid = shapely.polygonize_full(noded)
    polys = shapely.get_parts(polygons)
    if not polys.shape[0]:
        empty = Facets.empty(n_lines)
        return Facets(empty.polygons, empty.area, empty.edges, empty.building, line_building, buildings)
    area = shapely.area(polys)
    keep = area > min_area
    polys, area = polys[keep], area[keep]
    if not polys.shape[0]:
        empty = Facets.empty(n_lines)
        return Facets(empty.polygons, empty.area, empty.edges, empty.building, line_building, buildings)
    ring = shapely.get_exterior_ring(polys)
    ri, rp = tree.query_nearest(ring, all_matches=False)
    ring_part = np.zeros(polys.shape[0], dtype=np.int64)
    ring_part[ri] = rp
    building = relabel[part_building[ring_part]]
    scale = float(np.abs(seg_v).max()) or 1.0
    simple = shapely.simplify(ring, max(snap * 0.25, scale * 1e-9), preserve_topology=False)
    edges = np.maximum(shapely.get_num_coordinates(simple) - 1, 3).astype(np.int64)  # a sliver keeps 3 corners
    lo = shapely.bounds(polys)
    order = np.lexsort((lo[:, 0], lo[:, 1], building))
    return Facets(
        polygons=polys[order],
        area=area[order],
        edges=edges[order],
        building=building[order],
        line_building=line_building,
        buildings=buildings,
    )


@dataclass(frozen=True)
class RegionMatch:
    """Region true positives of one comparison (HEAT's region precision / recall)."""

    tp: int
    predicted: int
    ground_truth: int

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.ground_truth if self.ground_truth else 0.0


def region_iou(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every intersecting (predicted, GT) polygon pair: ``(pred_index, gt_index, iou)`` (vectorised)."""
    shapely = require_shapely()
    if not pred.shape[0] or not gt.shape[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    p, g = shapely.STRtree(gt).query(pred, predicate="intersects")
    inter = shapely.area(shapely.intersection(pred[p], gt[g]))
    union = shapely.area(pred[p]) + shapely.area(gt[g]) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return p.astype(np.int64), g.astype(np.int64), iou


def region_scores(pred: np.ndarray, gt: np.ndarray, iou: float = REGION_IOU) -> RegionMatch:
    """Region true positives of predicted against GT polygons at IoU ≥ ``iou`` (> 0.5: matches are unique)."""
    if not 0.5 < iou <= 1.0:
        msg = f"region IoU threshold must be in (0.5, 1], got {iou}"
        raise ValueError(msg)
    p, g, v = region_iou(pred, gt)
    hit = v >= iou
    tp = min(np.unique(p[hit]).shape[0], np.unique(g[hit]).shape[0])
    return RegionMatch(tp=int(tp), predicted=int(pred.shape[0]), ground_truth=int(gt.shape[0]))
