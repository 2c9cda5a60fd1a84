"""Evaluation: sAP / msAP / sF, mAP^J and AP^H / F^H (numpy) and precision-recall plots (Pillow)."""

from roofmapnet.evaluation.metrics import (
    APH_THRESHOLDS,
    MAPJ_DISTANCES,
    SAP_THRESHOLDS,
    HeatmapAPAccumulator,
    JunctionAPAccumulator,
    LineAPAccumulator,
    ap_from_curve,
    average_precision,
    first_hits,
    junction_candidates,
    line_distance_matrix,
    line_tp_fp,
    max_f_score,
    nearest_gt_lines,
    rasterize_lines,
    soft_nms_junctions,
)
from roofmapnet.evaluation.plots import plot_pr_curves, pr_plot_area

__all__ = [
    "APH_THRESHOLDS",
    "MAPJ_DISTANCES",
    "SAP_THRESHOLDS",
    "HeatmapAPAccumulator",
    "JunctionAPAccumulator",
    "LineAPAccumulator",
    "ap_from_curve",
    "average_precision",
    "first_hits",
    "junction_candidates",
    "line_distance_matrix",
    "line_tp_fp",
    "max_f_score",
    "nearest_gt_lines",
    "plot_pr_curves",
    "pr_plot_area",
    "rasterize_lines",
    "soft_nms_junctions",
]
