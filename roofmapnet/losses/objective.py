"""The full training objective of one batch: forward, line sampling, verification, the six losses.

Shared by the Lightning module (training and validation) and ``roofmap validate`` so all report the same numbers.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from roofmapnet.losses.losses import RoofMapNetLoss
from roofmapnet.models.outputs import HeadOutputs
from roofmapnet.models.roofmapnet import RoofMapNet


def batch_losses(
    model: RoofMapNet, criterion: RoofMapNetLoss, batch: dict[str, Any]
) -> tuple[dict[str, Tensor], HeadOutputs]:
    """Losses of ``batch`` (keys of :class:`RoofMapNetLoss`) and the forward outputs (for decoding)."""
    out = model(batch["image"])
    samples = model.sample_lines(out, batch)
    logits, occ = model.verify(out.feature, out.lmap_prob, samples)
    backbone = model.detection.backbone
    losses = criterion(out, batch, samples, logits, occ, (backbone.gaussalpha, backbone.gaussbeta))
    return losses, out
