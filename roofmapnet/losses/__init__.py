"""RoofMapNet's training objective: the dynamic Gaussian target, the six loss terms and their weighted sum."""

from __future__ import annotations

from roofmapnet.losses.losses import (
    TERMS,
    RoofMapNetLoss,
    gauss_loss,
    lhr_loss,
    line_verification_loss,
    offset_loss,
    qcc_loss,
    segmentation_factor_loss,
)
from roofmapnet.losses.targets import (
    dynamic_gaussian_target,
    gaussian_kernel,
    line_profiles,
    longest_runs,
    occluded_spans,
    segmentation_factor_targets,
    span_targets,
)

__all__ = [
    "TERMS",
    "RoofMapNetLoss",
    "dynamic_gaussian_target",
    "gauss_loss",
    "gaussian_kernel",
    "lhr_loss",
    "line_profiles",
    "line_verification_loss",
    "longest_runs",
    "occluded_spans",
    "offset_loss",
    "qcc_loss",
    "segmentation_factor_loss",
    "segmentation_factor_targets",
    "span_targets",
]
