"""Roof facets from hand-made wireframes: hip, L-shaped gable, noise, T-junctions, dangles, buildings."""

from __future__ import annotations

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from roofmapnet.inference.facets import Facets, polygonize_wireframe, region_iou, region_scores  # noqa: E402

#: A 10 × 6 hip roof: four eaves, a ridge (3, 3)-(7, 3) and four hips to the corners.
HIP = np.array(
    [
        [0, 0, 10, 0],
        [10, 0, 10, 6],
        [10, 6, 0, 6],
        [0, 6, 0, 0],
        [3, 3, 7, 3],
        [0, 0, 3, 3],
        [0, 6, 3, 3],
        [10, 0, 7, 3],
        [10, 6, 7, 3],
    ],
    dtype=np.float64,
)

#: An L-shaped cross-gable: footprint (0,0)-(10,0)-(10,4)-(4,4)-(4,10)-(0,10); ridges y = 2 and x = 2 meet at
#: (2, 2) and end on the gable walls x = 10 and y = 10 (T-junctions in the eave lines); a valley from the inner
#: corner (4, 4) and a hip from the outer corner (0, 0) reach the ridges' meeting point.
L_GABLE = np.array(
    [
        [0, 0, 10, 0],
        [10, 0, 10, 4],
        [10, 4, 4, 4],
        [4, 4, 4, 10],
        [4, 10, 0, 10],
        [0, 10, 0, 0],
        [2, 2, 10, 2],
        [2, 2, 2, 10],
        [4, 4, 2, 2],
        [0, 0, 2, 2],
    ],
    dtype=np.float64,
)


def _areas(f: Facets) -> list[float]:
    return sorted(np.round(f.area, 6).tolist())


def test_hip_roof_gives_exactly_four_facets() -> None:
    f = polygonize_wireframe(HIP)
    assert len(f) == 4
    assert _areas(f) == [9.0, 9.0, 21.0, 21.0]  # two triangles 6·3/2, two trapezoids (10 + 4)·3/2
    assert sorted(f.edges.tolist()) == [3, 3, 4, 4]
    assert f.area.sum() == pytest.approx(60.0)  # the facets tile the footprint
    assert f.buildings == 1
    assert f.building.tolist() == [0, 0, 0, 0]
    assert f.line_building.tolist() == [0] * len(HIP)
    assert all(p.is_valid for p in f.polygons)


def test_l_shaped_gable_gives_the_four_planes_the_geometry_says() -> None:
    f = polygonize_wireframe(L_GABLE)
    assert len(f) == 4
    assert f.area.sum() == pytest.approx(10 * 4 + 4 * 6)  # the L footprint
    assert _areas(f) == [14.0, 14.0, 18.0, 18.0]
    # The T-junctions at (10, 2) and (2, 10) are nodes of the gable walls but no corners of the facets.
    assert f.edges.tolist() == [4, 4, 4, 4]


def test_dangles_and_line_order_do_not_change_the_facets() -> None:
    dangle = np.array([[10, 3, 14, 3], [3, 3, 1, 4]], dtype=np.float64)  # a line sticking out, one inside
    base = polygonize_wireframe(HIP)
    f = polygonize_wireframe(np.concatenate([HIP, dangle])[::-1])
    assert _areas(f) == _areas(base)
    reversed_ends = HIP[:, [2, 3, 0, 1]]
    assert _areas(polygonize_wireframe(reversed_ends)) == _areas(base)


def test_noisy_detections_are_snapped_into_closed_faces() -> None:
    rng = np.random.default_rng(0)
    noisy = HIP + rng.uniform(-0.2, 0.2, HIP.shape)
    assert len(polygonize_wireframe(noisy)) < 4  # without snapping the ends do not meet
    f = polygonize_wireframe(noisy, snap=0.5)
    assert len(f) == 4
    assert f.area.sum() == pytest.approx(60.0, abs=3.0)


@pytest.mark.parametrize("end", [9.7, 10.3])
def test_t_junctions_that_stop_short_or_overshoot_are_joined(end: float) -> None:
    # A rectangle split by a line whose end misses (or crosses) the opposite side by 0.3.
    lines = np.array([[0, 0, 10, 0], [10, 0, 10, 4], [10, 4, 0, 4], [0, 4, 0, 0], [5, 0, 5, 4 * end / 10]])
    lines[4, 3] = 4 + (end - 10)
    assert len(polygonize_wireframe(lines, snap=0.5)) == 2
    if end < 10:
        assert len(polygonize_wireframe(lines)) == 1  # the gap leaves the rectangle undivided


def test_separate_buildings_get_separate_ids() -> None:
    two = np.concatenate([HIP, L_GABLE + np.array([20, 0, 20, 0])])
    f = polygonize_wireframe(two)
    assert len(f) == 8
    assert f.buildings == 2
    assert np.bincount(f.building).tolist() == [4, 4]
    assert f.line_building.tolist() == [0] * len(HIP) + [1] * len(L_GABLE)
    left = f.polygons[f.building == 0]
    assert shapely.bounds(shapely.union_all(left)).tolist() == [0, 0, 10, 6]


def test_slivers_degenerate_lines_and_empty_input() -> None:
    assert len(polygonize_wireframe(np.zeros((0, 4)))) == 0
    f = polygonize_wireframe(np.concatenate([HIP, [[5, 5, 5, 5]]]), min_area=10.0)
    assert _areas(f) == [21.0, 21.0]
    assert f.line_building[-1] == -1  # the zero-length line belongs to no building
    collapsed = polygonize_wireframe(np.concatenate([HIP, [[5, 1, 5.2, 1]]]), snap=0.5)  # shorter than snap
    assert len(collapsed) == 4
    assert collapsed.line_building[-1] == -1
    open_lines = HIP[[0, 4]]  # no closed ring
    f = polygonize_wireframe(open_lines)
    assert len(f) == 0
    assert f.buildings == 2
    with pytest.raises(ValueError, match="lines must be"):
        polygonize_wireframe(np.zeros((3, 3)))


def test_record_is_json_ready_closed_rings() -> None:
    rec = polygonize_wireframe(HIP).record()
    assert len(rec) == 4
    assert {"building", "area", "edges", "exterior", "interiors"} <= set(rec[0])
    for item in rec:
        assert item["exterior"][0] == item["exterior"][-1]
        assert len(item["exterior"]) >= 4


def test_region_scores_heat_rule() -> None:
    gt = polygonize_wireframe(HIP).polygons
    same = region_scores(gt, gt)
    assert (same.tp, same.precision, same.recall) == (4, 1.0, 1.0)
    # A split at y = 2 over the same footprint: two rectangles, neither with IoU >= 0.7 with a hip facet.
    gable = polygonize_wireframe(np.concatenate([HIP[:4], [[0, 2, 10, 2]]])).polygons
    m = region_scores(gable, gt)
    assert (m.tp, m.predicted, m.ground_truth) == (0, 2, 4)
    # Shifted by 0.2: trapezoids keep IoU >= 0.7, the small triangles too (IoU ≈ 0.78), half a unit breaks them.
    shifted = polygonize_wireframe(HIP + 0.2).polygons
    assert region_scores(shifted, gt).tp == 4
    # The ridge's west end moved from x = 3 to 4.5: the west triangle grows to 13.5 (IoU 9 / 13.5 = 0.67, missed),
    # the trapezoids shrink to 18.75 (IoU 0.89) and the east triangle is unchanged.
    moved = HIP.copy()
    moved[moved == 3] = 4.5
    moved[:, 1][moved[:, 1] == 4.5] = 3
    moved[:, 3][moved[:, 3] == 4.5] = 3
    m = region_scores(polygonize_wireframe(moved).polygons, gt)
    assert (m.tp, m.precision, m.recall) == (3, 0.75, 0.75)
    _, _, iou = region_iou(polygonize_wireframe(moved).polygons, gt)
    assert sorted(np.round(iou[iou > 0.5], 3).tolist()) == [0.667, 0.893, 0.893, 1.0]
    assert region_scores(np.empty(0, dtype=object), gt).recall == 0.0
    with pytest.raises(ValueError, match="IoU"):
        region_scores(gt, gt, iou=0.5)
