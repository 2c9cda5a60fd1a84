"""The facet measure of ``validate``: HEAT's region precision / recall at IoU 0.7, summed over images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("shapely")

from roofmapnet.evaluation.evaluator import compute_metrics
from roofmapnet.evaluation.facets import FacetRegionAccumulator

# (y, x) lines as in the evaluator's 128-space: a 40 × 24 hip roof (4 facets).
HIP = np.array(
    [
        [[0, 0], [0, 40]],
        [[0, 40], [24, 40]],
        [[24, 40], [24, 0]],
        [[24, 0], [0, 0]],
        [[12, 12], [12, 28]],
        [[0, 0], [12, 12]],
        [[24, 0], [12, 12]],
        [[0, 40], [12, 28]],
        [[24, 40], [12, 28]],
    ],
    dtype=np.float64,
)


def test_perfect_prediction_scores_100_and_low_scores_are_ignored() -> None:
    acc = FacetRegionAccumulator(threshold=0.5)
    noise = np.array([[[5, 5], [20, 35]]])  # a low-score diagonal that would split two facets
    acc.add(np.concatenate([HIP + 0.3, noise]), np.r_[np.full(len(HIP), 0.9), 0.2], HIP)
    out = acc.compute()
    assert out["facet_precision"] == pytest.approx(100.0)
    assert out["facet_recall"] == pytest.approx(100.0)
    assert out["facets_gt"] == 4


def test_counts_are_summed_over_images_not_averaged() -> None:
    acc = FacetRegionAccumulator(threshold=0.5)
    acc.add(HIP, np.ones(len(HIP)), HIP)  # 4 / 4
    gable = np.concatenate([HIP[:4], [[[8, 0], [8, 40]]]])  # 2 rectangles, neither at IoU >= 0.7
    acc.add(gable, np.ones(len(gable)), HIP)
    acc.add(np.zeros((0, 2, 2)), np.zeros(0), HIP)  # nothing predicted: 4 GT facets missed
    out = acc.compute()
    assert out["facet_precision"] == pytest.approx(100 * 4 / 6)
    assert out["facet_recall"] == pytest.approx(100 * 4 / 12)
    p, r = 4 / 6, 4 / 12
    assert out["facet_f1"] == pytest.approx(100 * 2 * p * r / (p + r))
    other = FacetRegionAccumulator(threshold=0.5)
    other.load_state_dict(acc.state_dict())
    assert other.compute() == out


def test_compute_metrics_adds_facets_only_when_asked() -> None:
    from roofmapnet.evaluation.evaluator import ImageRecord

    rec = ImageRecord(name="a", lines=HIP, scores=np.ones(len(HIP)), gt_lines=HIP, gt_junctions=np.zeros((0, 2)))
    assert "facet_recall" not in compute_metrics([rec])
    assert compute_metrics([rec], facet_threshold=0.5)["facet_recall"] == pytest.approx(100.0)
