"""Facet measure: region precision / recall of roof facets at IoU ≥ 0.7, the way HEAT scores regions.

Per image, the predicted lines with a score above the threshold and the ground-truth lines are each polygonised
into facets (:func:`roofmapnet.inference.facets.polygonize_wireframe`: noded, dangles dropped); a predicted facet
is a true positive when its IoU with a ground-truth facet is at least 0.7 (HEAT, Chen et al. CVPR 2022, "region"
precision / recall).  True positives and facet counts are summed over the split, then
``facet_precision = TP / predicted``, ``facet_recall = TP / GT`` and ``facet_f1`` their harmonic mean (percent).

Lines are in L-CNN's 128-space (as every line metric here); predicted endpoints closer than :data:`SNAP` are
one junction (GT lines share their junctions exactly).  Needs shapely (the ``geo`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from roofmapnet.inference.facets import REGION_IOU, polygonize_wireframe, region_scores

#: Junction / T-junction snapping of predicted lines, in 128-space pixels.
SNAP: Final = 1.0


class FacetRegionAccumulator:
    """Sums region true positives and facet counts over images; ``compute()`` gives the percentages.

    Args:
        threshold: predicted lines with a score above it form the predicted wireframe.
        iou: IoU of a match (> 0.5).
        snap: snapping tolerance of predicted lines (128-space pixels).
    """

    def __init__(self, threshold: float, iou: float = REGION_IOU, snap: float = SNAP) -> None:
        self.threshold = float(threshold)
        self.iou = float(iou)
        self.snap = float(snap)
        self.tp = 0
        self.predicted = 0
        self.ground_truth = 0

    def add(self, pred_lines: Any, pred_scores: Any, gt_lines: Any) -> None:
        """One image: predicted lines ``[P, 2, 2]`` with scores ``[P]``, GT lines ``[G, 2, 2]`` (same frame)."""
        lines = np.asarray(pred_lines, dtype=np.float64).reshape(-1, 2, 2)
        scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
        pred = polygonize_wireframe(lines[scores > self.threshold], snap=self.snap).polygons
        gt = polygonize_wireframe(np.asarray(gt_lines, dtype=np.float64).reshape(-1, 2, 2)).polygons
        match = region_scores(pred, gt, self.iou)
        self.tp += match.tp
        self.predicted += match.predicted
        self.ground_truth += match.ground_truth

    def state_dict(self) -> dict[str, int]:
        """The counts (gather across ranks and :meth:`load_state_dict` the sums)."""
        return {"tp": self.tp, "predicted": self.predicted, "ground_truth": self.ground_truth}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tp, self.predicted, self.ground_truth = (int(state[k]) for k in ("tp", "predicted", "ground_truth"))

    def compute(self) -> dict[str, float]:
        """``facet_precision``, ``facet_recall``, ``facet_f1`` (percent) and the facet counts."""
        p = self.tp / self.predicted if self.predicted else 0.0
        r = self.tp / self.ground_truth if self.ground_truth else 0.0
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        return {
            "facet_precision": 100.0 * p,
            "facet_recall": 100.0 * r,
            "facet_f1": 100.0 * f1,
            "facets_predicted": float(self.predicted),
            "facets_gt": float(self.ground_truth),
            "facet_threshold": self.threshold,
            "facet_iou": self.iou,
        }
