"""Typed containers passed between the model, the sampler, the losses and the inference code.

Conventions (docs/architecture.md): points are (y, x) in heatmap space with pixel edges at integers
(pixel r covers [r, r+1)); "stack 0" is the last hourglass, i.e. the final prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


@dataclass
class HeadOutputs:
    """Dense per-stack predictions of the backbone + heads (training and inference).

    Attributes:
        dghr: [S, B, 2, H, W] dynamic-Gaussian junction logits (heads' channels 0-1), stack 0 first.
        qcc: [S, B, 2, H, W] QCCM-refined junction logits; at inference only stack 0 is computed (S = 1).
        lmap: [S, B, H, W] line-map logits.
        joff: [S, B, 1, 2, H, W] junction-offset logits (decoded as ``sigmoid - 0.5``).
        feature: [B, C, H, W] backbone feature of the last stack (post-ReLU).
    """

    dghr: Tensor
    qcc: Tensor
    lmap: Tensor
    joff: Tensor
    feature: Tensor

    @property
    def jmap_prob(self) -> Tensor:
        """[B, H, W] refined junction probability of stack 0 (used for proposals)."""
        return torch.softmax(self.qcc[0], dim=1)[:, 1]

    @property
    def lmap_prob(self) -> Tensor:
        """[B, H, W] line-map probability of stack 0 (the verifier's attention)."""
        return torch.sigmoid(self.lmap[0])

    @property
    def joff_pred(self) -> Tensor:
        """[B, 2, H, W] decoded (y, x) junction offsets of stack 0, in (-0.5, 0.5)."""
        return torch.sigmoid(self.joff[0, :, 0]) - 0.5


@dataclass
class LineSamples:
    """Candidate lines of a batch, flattened over images.

    Attributes:
        lines: [L, 2, 2] endpoints (y, x) in heatmap space; LoI sample 0 lies at ``lines[:, 1]``.
        batch_idx: [L] int64 image index of each line.
        labels: [L] float 1 for a true line, 0 otherwise (empty at inference).
        feat: [L, 8] extra line features (zeros in the official configuration).
    """

    lines: Tensor
    batch_idx: Tensor
    labels: Tensor
    feat: Tensor

    def __len__(self) -> int:
        return int(self.lines.shape[0])


@dataclass
class Wireframe:
    """The parsed wireframe of one image, lines sorted by descending score (no padding, no sentinels).

    Attributes:
        lines: [L, 2, 2] (y, x) endpoints in heatmap space.
        scores: [L] verifier probabilities.
        junctions: [J, 2] (y, x) junction proposals in heatmap space (score-descending).
        junction_scores: [J] junction probabilities.
        heatmap_size: (h, w) of the heatmap the coordinates refer to.
        image_size: (H, W) of the original image the coordinates are rescaled to.
    """

    lines: Tensor
    scores: Tensor
    junctions: Tensor
    junction_scores: Tensor
    heatmap_size: tuple[int, int]
    image_size: tuple[int, int]

    def _scale(self) -> Tensor:
        (h, w), (big_h, big_w) = self.heatmap_size, self.image_size
        return torch.tensor([big_h / h, big_w / w], dtype=torch.float64)

    @property
    def lines_image(self) -> Tensor:
        """[L, 2, 2] (y, x) endpoints in the original image's pixel frame (continuous, pixel edges at integers)."""
        return self.lines.detach().double().cpu() * self._scale()

    @property
    def junctions_image(self) -> Tensor:
        """[J, 2] (y, x) junctions in the original image's pixel frame."""
        return self.junctions.detach().double().cpu() * self._scale()

    def lines_xyxy(self) -> np.ndarray:
        """[L, 4] ``x1, y1, x2, y2`` in image pixels (the order GIS and the JSON writer use)."""
        li = self.lines_image.numpy()
        return np.stack([li[:, 0, 1], li[:, 0, 0], li[:, 1, 1], li[:, 1, 0]], axis=1).reshape(-1, 4)

    def junctions_xy(self) -> np.ndarray:
        """[J, 2] ``x, y`` junctions in image pixels."""
        return self.junctions_image.numpy()[:, ::-1].copy().reshape(-1, 2)


class WireframeModel(Protocol):
    """Anything that parses wireframes the way :meth:`RoofMapNet.predict
    <roofmapnet.models.roofmapnet.RoofMapNet.predict>` does: the eager model, and the exported ONNX /
    TorchScript runtimes (:class:`roofmapnet.export.runtime.ExportedModel`).

    ``images`` are normalised network inputs [B, 3, S, S]; each returned :class:`Wireframe` is in heatmap
    (y, x) coordinates with ``image_size`` from ``image_sizes`` (default: the network input size).
    """

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        """Wireframes of a batch of normalised images."""
        ...
