"""Evaluation metrics (sAP / msAP / sF, mAP^J, AP^H / F^H) and the PR plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import linear_sum_assignment

from roofmapnet.evaluation import (
    HeatmapAPAccumulator,
    JunctionAPAccumulator,
    LineAPAccumulator,
    average_precision,
    first_hits,
    junction_candidates,
    line_tp_fp,
    plot_pr_curves,
    pr_plot_area,
    rasterize_lines,
    soft_nms_junctions,
)
from roofmapnet.evaluation.metrics import match_pixel_counts

# ---------------------------------------------------------------------------------------------------------------
# Literal (loop) ports of L-CNN's definitions: lcnn/metric.py, eval-sAP.py, eval-mAPJ.py.


def _ref_ap(tp, fp):
    recall = tp
    precision = tp / np.maximum(tp + fp, 1e-9)
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.concatenate(([0.0], precision, [0.0]))
    for i in range(precision.size - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    i = np.where(recall[1:] != recall[:-1])[0]
    return np.sum((recall[i + 1] - recall[i]) * precision[i + 1])


def _ref_msTPFP(line_pred, line_gt, threshold):
    diff = ((line_pred[:, None, :, None] - line_gt[:, None]) ** 2).sum(-1)
    diff = np.minimum(diff[:, :, 0, 0] + diff[:, :, 1, 1], diff[:, :, 0, 1] + diff[:, :, 1, 0])
    choice = np.argmin(diff, 1)
    dist = np.min(diff, 1)
    hit = np.zeros(len(line_gt), bool)
    tp = np.zeros(len(line_pred), float)
    fp = np.zeros(len(line_pred), float)
    for i in range(len(line_pred)):
        if dist[i] < threshold and not hit[choice[i]]:
            hit[choice[i]] = True
            tp[i] = 1
        else:
            fp[i] = 1
    return tp, fp


def _ref_sap(images, threshold):
    """eval-sAP.py's line_score over (pred_lines, pred_scores, gt_lines) per image (GT never empty)."""
    n_gt = 0
    tps, fps, scs = [], [], []
    for lines, scores, gt in images:
        n_gt += len(gt)
        tp, fp = _ref_msTPFP(lines, gt, threshold)
        tps.append(tp)
        fps.append(fp)
        scs.append(scores)
    tp, fp, sc = np.concatenate(tps), np.concatenate(fps), np.concatenate(scs)
    index = np.argsort(-sc)
    tp = np.cumsum(tp[index]) / n_gt
    fp = np.cumsum(fp[index]) / n_gt
    return 100 * _ref_ap(tp, fp)


DX = [0, 0, 1, -1, 1, 1, -1, -1]
DY = [1, -1, 0, 0, 1, -1, 1, -1]


def _ref_argsort2d(arr):
    return np.dstack(np.unravel_index(np.argsort(arr.ravel()), arr.shape))[0]


def _ref_nms_j(heatmap):
    heatmap = heatmap.copy()
    disable = np.zeros_like(heatmap, dtype=bool)
    for x, y in _ref_argsort2d(heatmap):
        for dx, dy in zip(DX, DY, strict=True):
            xp, yp = x + dx, y + dy
            if not (0 <= xp < heatmap.shape[0] and 0 <= yp < heatmap.shape[1]):
                continue
            if heatmap[x, y] >= heatmap[xp, yp]:
                disable[xp, yp] = True
    heatmap[disable] *= 0.6
    return heatmap


def _ref_post_jheatmap(heatmap, offset=None):
    heatmap = _ref_nms_j(heatmap)
    v0 = _ref_argsort2d(-heatmap)[:1000]
    confidence = -np.sort(-heatmap.ravel())[:1000]
    keep_id = np.where(confidence >= 1e-2)[0]
    if len(keep_id) == 0:
        return np.zeros((0, 3))
    confidence = confidence[keep_id]
    if offset is not None:
        v0 = np.array([v + offset[:, v[0], v[1]] for v in v0])
    v0 = v0[keep_id] + 0.5
    return np.hstack((v0, confidence[:, np.newaxis]))


def _ref_APJ(vert_pred, vert_gt, max_distance, im_ids):
    if len(vert_pred) == 0:
        return 0
    vert_pred = np.array(vert_pred)
    confidence = vert_pred[:, -1]
    idx = np.argsort(-confidence)
    vert_pred = vert_pred[idx, :]
    im_ids = im_ids[idx]
    n_gt = sum(len(gt) for gt in vert_gt)
    nd = len(im_ids)
    tp, fp = np.zeros(nd, dtype=float), np.zeros(nd, dtype=float)
    hit = [[False for _ in j] for j in vert_gt]
    for i in range(nd):
        gt_juns = vert_gt[im_ids[i]]
        pred_juns = vert_pred[i][:-1]
        if len(gt_juns) == 0:
            continue
        dists = np.linalg.norm((pred_juns[None, :] - gt_juns), axis=1)
        choice = np.argmin(dists)
        dist = np.min(dists)
        if dist < max_distance and not hit[im_ids[i]][choice]:
            tp[i] = 1
            hit[im_ids[i]][choice] = True
        else:
            fp[i] = 1
    tp = np.cumsum(tp) / n_gt
    fp = np.cumsum(fp) / n_gt
    return _ref_ap(tp, fp)


def _ref_mAPJ(pred, truth, distances, im_ids):
    return sum(_ref_APJ(pred, truth, d, im_ids) for d in distances) / len(distances) * 100


# ---------------------------------------------------------------------------------------------------------------
# sAP


def _line(y0: float, x0: float, y1: float, x1: float) -> list[list[float]]:
    return [[y0, x0], [y1, x1]]


GT1 = np.array([_line(10, 10, 10, 60)])


def _sap(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    acc = LineAPAccumulator()
    for pred, scores, gt in images:
        acc.add(pred, scores, gt)
    return acc.compute()


def test_perfect_predictions_score_100() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 128, (30, 2, 2))
    m = _sap([(gt, rng.random(30), gt)])
    for key in ("sAP5", "sAP10", "sAP15", "msAP", "sF5", "sF10", "sF15"):
        assert m[key] == pytest.approx(100.0)


def test_swapped_endpoints_match() -> None:
    m = _sap([(GT1[:, ::-1], np.array([0.9]), GT1)])
    assert m["sAP5"] == pytest.approx(100.0)


def test_one_endpoint_moved_3px_counts_at_10_not_5() -> None:
    pred = GT1.copy()
    pred[0, 1, 0] += 3.0  # D = 9
    m = _sap([(pred, np.array([0.9]), GT1)])
    assert m["sAP5"] == 0.0
    assert m["sAP10"] == pytest.approx(100.0)
    assert m["sAP15"] == pytest.approx(100.0)
    assert m["msAP"] == pytest.approx(200.0 / 3.0)


def test_whole_line_moved_3px_fails_all_thresholds() -> None:
    pred = GT1 + np.array([3.0, 0.0])  # D = 9 + 9 = 18
    m = _sap([(pred, np.array([0.9]), GT1)])
    assert m["sAP5"] == m["sAP10"] == m["sAP15"] == m["msAP"] == 0.0


def test_duplicates_are_false_positives() -> None:
    gt = np.array([_line(10, 10, 10, 60), _line(50, 10, 90, 10)])
    pred = np.array([gt[0], gt[0][::-1], gt[1]])  # a duplicate ranked between the two true lines
    tp, fp = line_tp_fp(pred, gt, 5.0)
    np.testing.assert_array_equal(tp, [True, False, True])
    np.testing.assert_array_equal(fp, [False, True, False])
    m = _sap([(pred, np.array([0.9, 0.8, 0.7]), gt)])
    # P/R: (1, .5), (.5, .5), (2/3, 1) -> envelope area .5·1 + .5·2/3
    assert m["sAP10"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))
    assert m["sF10"] == pytest.approx(100 * 0.8)  # max F: P = 2/3, R = 1


def test_only_nearest_gt_is_tried() -> None:
    gt = np.array([_line(10, 10, 10, 60), _line(10, 11, 10, 61)])
    pred = np.array([_line(10, 10.4, 10, 60.4), _line(10, 10.1, 10, 60.1)])
    tp, _ = line_tp_fp(pred, gt, 5.0)
    # Both predictions are nearest to GT 0: the second is a FP although GT 1 is within θ.
    np.testing.assert_array_equal(tp, [True, False])


def test_empty_prediction_scores_0() -> None:
    m = _sap([(np.zeros((0, 2, 2)), np.zeros(0), GT1)])
    assert m["sAP5"] == m["sAP10"] == m["sAP15"] == m["msAP"] == m["sF10"] == 0.0


def test_empty_inputs_never_crash() -> None:
    assert _sap([])["msAP"] == 0.0
    assert _sap([(np.zeros((0, 2, 2)), np.zeros(0), np.zeros((0, 2, 2)))])["sAP10"] == 0.0
    assert _sap([(GT1, np.array([0.9]), np.zeros((0, 2, 2)))])["sAP10"] == 0.0
    tp, fp = line_tp_fp(GT1, np.zeros((0, 2, 2)), 10.0)
    np.testing.assert_array_equal(fp, [True])
    tp, fp = line_tp_fp(np.zeros((0, 2, 2)), GT1, 10.0)
    assert tp.shape == fp.shape == (0,)


def test_images_without_gt_count_their_predictions_as_fp() -> None:
    far = np.array([_line(100, 100, 120, 100)])
    m = _sap([(GT1, np.array([0.5]), GT1), (far, np.array([0.9]), np.zeros((0, 2, 2)))])
    # Global ranking: FP (0.9) then TP (0.5): P = 0, 1/2; R = 0, 1.
    assert m["sAP10"] == pytest.approx(50.0)


def test_ranking_is_global_across_images() -> None:
    far = np.array([_line(100, 100, 120, 100)])
    gt2 = np.array([_line(30, 30, 30, 90)])
    image1 = (np.concatenate([far, GT1]), np.array([0.8, 0.7]), GT1)  # FP 0.8, TP 0.7
    image2 = (gt2, np.array([0.9]), gt2)  # TP 0.9
    m = _sap([image1, image2])
    # Global order TP .9, FP .8, TP .7 -> .5·1 + .5·(2/3); per-image concatenation would give 2/3.
    assert m["sAP5"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))


def test_sap_equals_literal_lcnn_on_random_data() -> None:
    rng = np.random.default_rng(42)
    images = []
    for _ in range(40):
        n_gt = int(rng.integers(1, 25))
        gt = rng.uniform(0, 128, (n_gt, 2, 2))
        near = gt[rng.integers(n_gt, size=int(rng.integers(0, 40)))] + rng.normal(0, 0.9, (1, 2, 2))
        flip = rng.random(near.shape[0]) < 0.5
        near[flip] = near[flip][:, ::-1]
        pred = np.concatenate([near, rng.uniform(0, 128, (int(rng.integers(0, 30)), 2, 2))])
        scores = rng.random(pred.shape[0])
        order = np.argsort(-scores)
        images.append((pred[order], scores[order], gt))
    m = _sap(images)
    for t in (5, 10, 15):
        ref = _ref_sap(images, t)
        assert 10.0 < ref < 90.0  # a non-trivial case
        assert m[f"sAP{t}"] == pytest.approx(ref, abs=1e-9)
    for pred, _, gt in images[:10]:
        tp, fp = line_tp_fp(pred, gt, 10.0)
        ref_tp, ref_fp = _ref_msTPFP(pred, gt, 10.0)
        np.testing.assert_array_equal(tp, ref_tp.astype(bool))
        np.testing.assert_array_equal(fp, ref_fp.astype(bool))


def test_first_hits_equals_sequential_loop() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(0, 200))
        eligible = rng.random(n) < 0.6
        target = rng.integers(0, 15, n)
        hit: set[int] = set()
        expected = np.zeros(n, dtype=bool)
        for i in range(n):
            if eligible[i] and target[i] not in hit:
                hit.add(int(target[i]))
                expected[i] = True
        np.testing.assert_array_equal(first_hits(eligible, target), expected)


def test_merge_and_state_dict_equal_single_pass() -> None:
    rng = np.random.default_rng(9)
    images = []
    for _ in range(12):
        gt = rng.uniform(0, 128, (int(rng.integers(0, 10)), 2, 2))
        pred = np.concatenate([gt + rng.normal(0, 1, gt.shape), rng.uniform(0, 128, (5, 2, 2))])
        images.append((pred, rng.random(pred.shape[0]), gt))
    whole = _sap(images)
    a, b = LineAPAccumulator(), LineAPAccumulator()
    for i, (pred, scores, gt) in enumerate(images):
        (a if i < 5 else b).add(pred, scores, gt)
    merged = LineAPAccumulator().merge(a).merge(b).compute()
    gathered = LineAPAccumulator.from_states([a.state_dict(), b.state_dict()]).compute()
    for key, value in whole.items():
        assert merged[key] == pytest.approx(value)
        assert gathered[key] == pytest.approx(value)
    assert whole["sAP10"] > 0.0


def test_average_precision_helper_and_curves() -> None:
    ap, rec, prec = average_precision(np.array([1, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.8, 0.7]), 4)
    np.testing.assert_allclose(rec, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(prec, [1.0, 0.5, 2 / 3])
    assert ap == pytest.approx(0.25 + 0.25 * 2 / 3)
    acc = LineAPAccumulator()
    acc.add(GT1, np.array([0.9]), GT1)
    curves = acc.curves()
    assert set(curves) == {"sAP5", "sAP10", "sAP15"}
    np.testing.assert_allclose(curves["sAP10"][0], [1.0])


# ---------------------------------------------------------------------------------------------------------------
# mAP^J


def test_soft_nms_equals_literal_loop() -> None:
    rng = np.random.default_rng(1)
    h = rng.random((17, 23))
    h[3:5, 3:5] = 0.7  # a plateau: every pixel there has an equal neighbour
    np.testing.assert_array_equal(soft_nms_junctions(h), _ref_nms_j(h))


def test_junction_candidates_equal_post_jheatmap() -> None:
    rng = np.random.default_rng(2)
    h = rng.random((20, 30)) ** 6
    off = rng.uniform(-0.5, 0.5, (2, 20, 30))
    rows, cols, scores = junction_candidates(h, max_junctions=1000, min_score=0.01)
    ref = _ref_post_jheatmap(h, off)
    np.testing.assert_array_equal(scores, ref[:, 2])
    np.testing.assert_allclose(np.stack([rows, cols], 1) + off[:, rows, cols].T + 0.5, ref[:, :2])
    rows, _, _ = junction_candidates(h[None], max_junctions=7)  # [1, H, W] input, top-k
    assert rows.shape == (7,)
    quantised = np.round(h * 20) / 20  # many ties: the top-k cut keeps row-major order among equal scores
    full = junction_candidates(quantised, max_junctions=10**6)
    top = junction_candidates(quantised, max_junctions=37)
    assert full[0].size > 37
    for a, b in zip(top, full, strict=True):
        np.testing.assert_array_equal(a, b[:37])


def _junction_scene(rng: np.random.Generator, size: int, n_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gt = rng.uniform(1, size - 1, (n_gt, 2))
    jmap = rng.random((size, size)) * 0.05
    r, c = np.floor(gt).astype(int).T
    jmap[r, c] = rng.uniform(0.3, 1.0, n_gt)
    clutter = rng.integers(0, size, (n_gt, 2))  # false junctions as strong as true ones
    jmap[clutter[:, 0], clutter[:, 1]] = rng.uniform(0.3, 1.0, n_gt)
    off = rng.uniform(-0.5, 0.5, (2, size, size))
    true_off = gt - np.floor(gt) - 0.5 + rng.normal(0, 0.3, gt.shape)
    off[:, r, c] = np.clip(true_off, -0.49, 0.49).T
    return jmap, off, gt


def test_mapj_equals_literal_lcnn_on_random_data() -> None:
    rng = np.random.default_rng(4)
    acc = JunctionAPAccumulator()
    pred, pred_off, truth, ids, ids_off = [], [], [], [], []
    for i in range(6):
        jmap, off, gt = _junction_scene(rng, 24, int(rng.integers(3, 12)))
        if i == 2:
            gt = np.zeros((0, 2))  # an image without GT junctions is skipped
        acc.add(jmap, gt, off)
        for store, idstore, o in ((pred, ids, None), (pred_off, ids_off, off)):
            jun = _ref_post_jheatmap(jmap, o)
            store.append(jun)
            idstore.append(np.full(len(jun), i))
        truth.append(gt)
    m = acc.compute()
    ref = _ref_mAPJ(np.vstack(pred_off), truth, [0.5, 1.0, 2.0], np.concatenate(ids_off))
    ref_nooff = _ref_mAPJ(np.vstack(pred), truth, [0.5, 1.0, 2.0], np.concatenate(ids))
    assert 10.0 < ref < 90.0
    assert m["mAPJ"] == pytest.approx(ref, abs=1e-9)
    assert m["mAPJ_nooff"] == pytest.approx(ref_nooff, abs=1e-9)
    assert m["mAPJ"] == pytest.approx((m["APJ0.5"] + m["APJ1"] + m["APJ2"]) / 3)
    gathered = JunctionAPAccumulator.from_states([acc.state_dict()]).compute()
    assert gathered["mAPJ"] == pytest.approx(m["mAPJ"])


def test_mapj_perfect_and_empty() -> None:
    gt = np.array([[5.25, 7.75], [10.5, 3.5]])
    jmap = np.zeros((16, 16))
    jmap[5, 7] = jmap[10, 3] = 0.9
    joff = np.zeros((2, 16, 16))
    joff[:, 5, 7] = [-0.25, 0.25]
    acc = JunctionAPAccumulator()
    acc.add(jmap, gt, joff)
    m = acc.compute()
    assert m["mAPJ"] == pytest.approx(100.0)
    assert m["APJ0.5"] == pytest.approx(100.0)
    empty = JunctionAPAccumulator()
    assert empty.compute()["mAPJ"] == 0.0
    empty.add(np.zeros((16, 16)), gt)  # GT but no junction above 0.01
    assert empty.compute()["mAPJ"] == 0.0
    empty.add(jmap, np.zeros((0, 2)))  # junctions but no GT: skipped
    assert empty.compute()["mAPJ"] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# AP^H / F^H


def _ref_raster(lines: np.ndarray, shape: tuple[int, int], shift: float) -> set[int]:
    """eval_release.m's loop (0-based, clamped), with MATLAB round and linspace."""
    height, width = shape
    out = set()
    for (y1, x1), (y2, x2) in lines:
        vn = int(np.ceil(np.hypot(y1 - y2, x1 - x2)))
        ys = [y2] if vn == 1 else np.linspace(y1, y2, vn)
        xs = [x2] if vn == 1 else np.linspace(x1, x2, vn)
        for y, x in zip(ys, xs, strict=True):
            yy = int(np.sign(y - shift) * np.floor(abs(y - shift) + 0.5))
            xx = int(np.sign(x - shift) * np.floor(abs(x - shift) + 0.5))
            out.add(min(max(yy, 0), height - 1) * width + min(max(xx, 0), width - 1))
    return out


def test_rasterize_equals_matlab_loop() -> None:
    rng = np.random.default_rng(6)
    lines = rng.uniform(-3, 53, (25, 2, 2))
    lines[0] = [[4.5, 4.5], [4.5, 4.5]]  # zero length: no pixel
    lines[1] = [[7.2, 1.0], [7.9, 1.3]]  # one sample: the second endpoint
    for shift in (0.0, 0.5):
        flat, src = rasterize_lines(lines, (40, 50), shift)
        assert set(flat.tolist()) == _ref_raster(lines, (40, 50), shift)
        assert 0 not in src.tolist()


def test_pixel_matching_is_a_maximum_matching() -> None:
    rng = np.random.default_rng(8)
    width = 30
    pred = rng.choice(900, 60, replace=False)
    gt = rng.choice(900, 50, replace=False)
    radius = 2.5
    counts = match_pixel_counts(pred, gt, width, radius, [0, 20, 60])
    pr = np.stack(np.divmod(pred, width), 1)
    gr = np.stack(np.divmod(gt, width), 1)
    for n, got in zip([20, 60], counts[1:], strict=True):
        d = np.hypot(*(pr[:n, None, :] - gr[None, :, :]).transpose(2, 0, 1))
        cost = np.where(d <= radius, 0.0, 1.0)
        r, c = linear_sum_assignment(cost)
        assert got == int((cost[r, c] == 0).sum())
    assert counts[0] == 0
    assert 0 < counts[1] <= counts[2]


def test_aph_perfect_far_and_empty() -> None:
    gt = np.array([_line(10, 10, 10, 100), _line(20, 20, 100, 60)])
    acc = HeatmapAPAccumulator((128, 128))
    acc.add(gt, np.array([0.99999, 0.99999]), gt, (256, 256))
    precision, recall = acc.precision_recall()
    np.testing.assert_array_equal(precision, 1.0)  # every predicted pixel matched
    assert np.all(recall > 0.95)  # GT is drawn half a pixel off (L-CNN): a few diagonal pixels differ
    m = acc.compute()
    assert m["FH"] > 97.0
    assert m["APH"] > 97.0
    far = HeatmapAPAccumulator((128, 128), postprocess_t=None)
    far_lines = np.array([_line(110, 110, 110, 125), _line(115, 100, 125, 100)])
    far.add(far_lines, np.array([0.99, 0.99]), gt, (256, 256))
    assert far.compute() == {"APH": 0.0, "FH": 0.0}
    low = HeatmapAPAccumulator((128, 128))
    low.add(gt, np.array([0.4, 0.3]), gt, (256, 256))  # below every threshold: no predicted pixel
    assert low.tp.sum() == low.fp.sum() == 0
    assert low.compute() == {"APH": 0.0, "FH": 0.0}
    empty = HeatmapAPAccumulator((128, 128))
    empty.add(np.zeros((0, 2, 2)), np.zeros(0), np.zeros((0, 2, 2)), (64, 64))
    assert empty.compute() == {"APH": 0.0, "FH": 0.0}


def test_aph_counts_follow_thresholds_and_merge() -> None:
    gt = np.array([_line(10, 10, 10, 100), _line(60, 20, 60, 110)])
    pred = np.array([gt[0], gt[1], _line(100, 10, 100, 100)])  # the third is far from any GT line
    acc = HeatmapAPAccumulator((128, 128), postprocess_t=None)
    acc.add(pred, np.array([0.995, 0.75, 0.95]), gt, (128, 128))
    precision, recall = acc.precision_recall()
    thresholds = np.array(acc.thresholds)
    # Lines drawn iff score > threshold: recall halves above 0.75, the FP line vanishes above 0.95.
    assert np.all(recall[thresholds < 0.75] > 0.99)
    assert np.all(recall[(thresholds >= 0.75) & (thresholds < 0.995)] > 0.45)
    assert np.all(recall[(thresholds >= 0.75) & (thresholds < 0.995)] < 0.55)
    assert np.all(recall[thresholds >= 0.995] == 0.0)
    assert np.all(precision[(thresholds >= 0.95) & (thresholds < 0.995)] == 1.0)
    assert np.all(precision[thresholds < 0.75] < 0.7)
    merged = HeatmapAPAccumulator((128, 128), postprocess_t=None).merge(acc).merge(acc)
    np.testing.assert_array_equal(merged.tp, 2 * acc.tp)
    assert merged.compute() == pytest.approx(acc.compute())
    rec_sorted, prec_sorted = acc.curves()["APH"]
    assert np.all(np.diff(rec_sorted) >= 0)
    assert np.all(np.diff(prec_sorted) <= 0)


# ---------------------------------------------------------------------------------------------------------------
# PR plot


def test_pr_plot_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "pr.png"
    curves = {
        "sAP10 = 50.0": (np.linspace(0, 1, 50), np.full(50, 0.5)),
        "sAP5 = 25.0": (np.linspace(0, 0.6, 1000), np.full(1000, 0.25)),
        "empty": (np.zeros(0), np.zeros(0)),
    }
    plot_pr_curves(curves, path, "Structural AP")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["pr.png"]  # no temporary file left
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape == (600, 800, 3)
    left, top, right, bottom = pr_plot_area((800, 600))

    def colour_at(recall: float, precision: float) -> np.ndarray:
        x = round(left + recall * (right - left))
        y = round(bottom - precision * (bottom - top))
        return img[y - 1 : y + 2, x]  # the 3-px wide line around the expected row

    blue, orange = np.array([31, 119, 180]), np.array([255, 127, 14])
    assert (np.abs(colour_at(0.8, 0.5) - blue).sum(-1) == 0).any()
    assert (np.abs(colour_at(0.5, 0.25) - orange).sum(-1) == 0).any()
    assert not (np.abs(colour_at(0.8, 0.25) - orange).sum(-1) == 0).any()  # the orange curve stops at 0.6
    assert (img[5 : top - 5] != 255).any()  # a title was drawn
    with pytest.raises(ValueError, match="precision"):
        plot_pr_curves({"bad": ([0, 1], [1])}, tmp_path / "bad.png", "x")
