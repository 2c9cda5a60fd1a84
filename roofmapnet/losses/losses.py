"""The six loss terms of RoofMapNet and :class:`RoofMapNetLoss`, their weighted sum.

Definitions (docs/architecture.md, "Losses"); S = stacks, B = images.  The heatmap terms are computed for every
stack and averaged over stacks and images, so the weights do not depend on ``num_stacks``:

- ``gauss``: focal loss of the DGHR logits against the dynamic Gaussian target (CornerNet form by default).
- ``qcc``: 2-class cross-entropy of the QCCM-refined logits against the binary junction map.
- ``lhr``: BCE-with-logits of the line-map logit against the anti-aliased line map.
- ``off``: squared error of ``sigmoid − 0.5`` against the (y, x) offsets, averaged over junction pixels.
- ``lv``: ``½(ℓ_pos + ℓ_neg)`` with per-image positive / negative means of BCE-with-logits over the sampled
  lines, averaged over the images that have lines.
- ``sf``: squared error of the AOAM's ``(s_f, s_b)`` against the occluded-span targets of the true lines.

All loss math runs in float32, also under bf16/fp16 autocast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roofmapnet.config.schema import RootConfig
from roofmapnet.errors import DataError
from roofmapnet.losses.targets import dynamic_gaussian_target, segmentation_factor_targets
from roofmapnet.models.outputs import HeadOutputs, LineSamples

#: Names of the six terms, in the order of the seed's formula.
TERMS: tuple[str, ...] = ("gauss", "qcc", "lhr", "off", "lv", "sf")


def gauss_loss(
    logits: Tensor,
    target: Tensor,
    positive: Tensor,
    *,
    alpha: float = 2.0,
    gamma: float = 4.0,
    form: Literal["cornernet", "readme"] = "cornernet",
) -> Tensor:
    """L_gauss: focal loss of the DGHR junction logits against the dynamic Gaussian target.

    With ``p = softmax(z)[1]`` (log-probabilities from ``log_softmax``), ``P`` the junction pixels and ``t`` the
    target, per stack and image::

        cornernet: −1/max(ΣP, 1) · Σ_pix [ P·(1−p)^α·log p + (1−P)·(1−t)^γ·p^α·log(1−p) ]
        readme:    −1/max(ΣP, 1) · Σ_pix α·(1−p_t)^γ·log p_t,   p_t = p·t + (1−p)·(1−t)

    then averaged over images and stacks.

    Args:
        logits: [S, B, 2, H, W] junction logits (channel 1 = junction).
        target: [B, H, W] dynamic Gaussian target in [0, 1].
        positive: [B, H, W] bool junction pixels (``J == 1``).
        alpha: focusing exponent (cornernet) / constant weight (readme); ``loss.focal_alpha``.
        gamma: penalty-reduction exponent on ``1 − t`` (cornernet) / focusing exponent (readme).
        form: ``loss.gauss_loss``.

    Returns:
        Scalar float32 loss.
    """
    logp = torch.log_softmax(logits.float(), dim=2)
    log_neg, log_pos = logp[:, :, 0], logp[:, :, 1]
    p = log_pos.exp()
    t = target.float()[None]
    pos = positive[None].to(torch.float32)
    if form == "cornernet":
        per_pixel = pos * (1.0 - p).pow(alpha) * log_pos + (1.0 - pos) * (1.0 - t).pow(gamma) * p.pow(alpha) * log_neg
    elif form == "readme":
        p_t = p * t + log_neg.exp() * (1.0 - t)
        log_p_t = torch.log(p_t.clamp_min(torch.finfo(torch.float32).tiny))
        per_pixel = alpha * (1.0 - p_t).clamp_min(0.0).pow(gamma) * log_p_t
    else:
        msg = f"loss.gauss_loss must be 'cornernet' or 'readme', got {form!r}"
        raise ValueError(msg)
    num_pos = positive.flatten(1).sum(1).clamp(min=1).to(torch.float32)
    return (-per_pixel.flatten(2).sum(2) / num_pos).mean()


def qcc_loss(logits: Tensor, jmap: Tensor) -> Tensor:
    """L_qcc: 2-class cross-entropy of the refined junction logits [S, B, 2, H, W] vs binary ``jmap`` [B, H, W].

    Mean over pixels, images and stacks (LCNN's jmap loss).
    """
    logp = torch.log_softmax(logits.float(), dim=2)
    positive = (jmap > 0.5)[None]
    return -torch.where(positive, logp[:, :, 1], logp[:, :, 0]).mean()


def lhr_loss(logits: Tensor, lmap: Tensor) -> Tensor:
    """L_lhr: BCE-with-logits of the line-map logits [S, B, H, W] vs the line map [B, H, W], mean over all."""
    x = logits.float()
    return F.binary_cross_entropy_with_logits(x, lmap.float()[None].expand_as(x))


def offset_loss(logits: Tensor, joff: Tensor, jmap: Tensor) -> Tensor:
    """L_off: masked L2 of the decoded offsets over junction pixels.

    Per stack and image ``Σ_pix J·Σ_c (sigmoid(z_c) − 0.5 − joff_c)² / max(ΣJ, 1)``, then the mean over
    images and stacks; 0 (with a graph) for images without junctions.

    Args:
        logits: [S, B, T, 2, H, W] offset logits.
        joff: [B, T, 2, H, W] (y, x) offsets in [−0.5, 0.5).
        jmap: [B, T, H, W] binary junction map.

    Returns:
        Scalar float32 loss.
    """
    err = (torch.sigmoid(logits.float()) - 0.5 - joff.float()[None]).square().sum(dim=3)
    mask = (jmap > 0.5).to(torch.float32)[None]
    count = mask.flatten(2).sum(2).clamp(min=1.0)
    return ((err * mask).flatten(2).sum(2) / count).mean()


def line_verification_loss(logits: Tensor, labels: Tensor, batch_idx: Tensor, num_images: int) -> Tensor:
    """L_lv: balanced BCE-with-logits of the verifier.

    Per image ``½(ℓ_pos + ℓ_neg)`` with ``ℓ_pos = Σ y·BCE / max(Σ y, 1)`` and ``ℓ_neg = Σ (1−y)·BCE / max(Σ(1−y), 1)``,
    averaged over the images that have at least one line (scatter sums, no per-image loop).  With weight 2 this
    equals LCNN's ``lpos + lneg``.  0 (with a graph) without lines.

    Args:
        logits: [L] line logits.
        labels: [L] 1 for true lines, 0 otherwise.
        batch_idx: [L] image index of each line.
        num_images: B.

    Returns:
        Scalar float32 loss.
    """
    x = logits.float()
    y = labels.to(x)
    idx = batch_idx.to(device=x.device, dtype=torch.long)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    zeros = x.new_zeros(num_images)
    pos_sum = zeros.index_add(0, idx, bce * y)
    neg_sum = zeros.index_add(0, idx, bce * (1.0 - y))
    pos_cnt = zeros.index_add(0, idx, y.detach())
    n_lines = zeros.index_add(0, idx, torch.ones_like(y))
    neg_cnt = n_lines - pos_cnt
    per_image = 0.5 * (pos_sum / pos_cnt.clamp(min=1.0) + neg_sum / neg_cnt.clamp(min=1.0))
    has_lines = (n_lines > 0).to(torch.float32)
    return (per_image * has_lines).sum() / has_lines.sum().clamp(min=1.0)


def segmentation_factor_loss(occ: Tensor, targets: Tensor) -> Tensor:
    """L_sf: ``mean_l ‖(s_f, s_b) − (f*, b*)‖²`` over the given lines; 0 (with a graph) when there are none.

    Args:
        occ: [L, 2] AOAM outputs of the true lines.
        targets: [L, 2] span targets (:func:`roofmapnet.losses.targets.segmentation_factor_targets`).
    """
    x = occ.float()
    if x.shape[0] == 0:
        return x.sum() * 0.0
    return (x - targets.to(x)).square().sum(dim=1).mean()


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager[Any]:
    """A context that disables autocast on ``device_type`` (a no-op where autocast does not exist)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def _batch_field(batch: Mapping[str, Any], key: str, shape: tuple[int, ...], expected: str) -> Tensor:
    """``batch[key]`` checked against ``shape``; a one-line :class:`DataError` naming the field otherwise."""
    if key not in batch:
        msg = f"batch has no field '{key}' (expected {expected})"
        raise DataError(msg)
    value = batch[key]
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        msg = (
            f"batch field '{key}' has shape {got}, expected {expected} = {shape} "
            "(was the data preprocessed for another model.heatmap_size?)"
        )
        raise DataError(msg)
    return value


class RoofMapNetLoss(nn.Module):
    """The weighted six-term RoofMapNet loss (no parameters).

    Args:
        cfg: the validated configuration; reads ``cfg.loss`` and ``cfg.model.n_pts0``.
    """

    def __init__(self, cfg: RootConfig) -> None:
        super().__init__()
        self.loss_cfg = cfg.loss
        self.n_pts = cfg.model.n_pts0

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each term (``loss.weights``)."""
        w = self.loss_cfg.weights
        return {name: float(getattr(w, name)) for name in TERMS}

    def forward(
        self,
        out: HeadOutputs,
        batch: Mapping[str, Any],
        samples: LineSamples,
        logits: Tensor,
        occ: Tensor,
        gauss_params: tuple[Tensor, Tensor],
    ) -> dict[str, Tensor]:
        """Compute every term, the weighted total and the seed's logging names.

        Args:
            out: the model's per-stack head outputs.
            batch: the collated batch; uses ``jmap`` [B,1,H,W], ``joff`` [B,1,2,H,W] and ``lmap`` [B,H,W].
            samples: the sampled lines (``lines``, ``batch_idx``, ``labels``).
            logits: [L] verifier logits of ``samples``.
            occ: [L, 2] AOAM outputs ``(s_f, s_b)`` of ``samples``.
            gauss_params: ``(gaussalpha, gaussbeta)`` of the backbone.

        Returns:
            Scalar float32 tensors: unweighted ``gauss, qcc, lhr, off, lv, sf``; weighted ``total``; and the
            weighted logging groups ``jmap_loss`` (gauss + qcc), ``joff_loss``, ``lmap_loss``, ``line_cls_loss``,
            ``sf_loss``.
        """
        with _no_autocast(out.dghr.device.type):
            terms = self._terms(out, batch, samples, logits, occ, gauss_params)
        w = self.weights
        weighted = {name: terms[name] * w[name] for name in TERMS}
        result = dict(terms)
        result["total"] = torch.stack([weighted[name] for name in TERMS]).sum()
        result["jmap_loss"] = weighted["gauss"] + weighted["qcc"]
        result["joff_loss"] = weighted["off"]
        result["lmap_loss"] = weighted["lhr"]
        result["line_cls_loss"] = weighted["lv"]
        result["sf_loss"] = weighted["sf"]
        return result

    def _terms(
        self,
        out: HeadOutputs,
        batch: Mapping[str, Any],
        samples: LineSamples,
        logits: Tensor,
        occ: Tensor,
        gauss_params: tuple[Tensor, Tensor],
    ) -> dict[str, Tensor]:
        """The six unweighted terms (float32)."""
        _, b, _, h, w = out.dghr.shape
        jmap = _batch_field(batch, "jmap", (b, 1, h, w), "[B,1,H,W]").float()
        joff = _batch_field(batch, "joff", (b, 1, 2, h, w), "[B,1,2,H,W]").float()
        lmap = _batch_field(batch, "lmap", (b, h, w), "[B,H,W]").float()
        if logits.shape != (len(samples),) or occ.shape != (len(samples), 2):
            msg = (
                f"verifier outputs do not match the {len(samples)} sampled lines: "
                f"logits {tuple(logits.shape)}, occ {tuple(occ.shape)}"
            )
            raise ValueError(msg)
        cfg = self.loss_cfg
        j0 = jmap[:, 0]
        alpha, beta = gauss_params
        target = dynamic_gaussian_target(j0, alpha, beta, learnable=cfg.gauss_learnable)
        terms = {
            "gauss": gauss_loss(
                out.dghr, target, j0 > 0.5, alpha=cfg.focal_alpha, gamma=cfg.focal_gamma, form=cfg.gauss_loss
            ),
            "qcc": qcc_loss(out.qcc, j0),
            "lhr": lhr_loss(out.lmap, lmap),
            "off": offset_loss(out.joff, joff, jmap),
            "lv": line_verification_loss(logits, samples.labels, samples.batch_idx, b),
        }
        true_lines = samples.labels > 0.5
        sf_targets = segmentation_factor_targets(
            torch.sigmoid(out.lmap[0].detach().float()),
            lmap,
            samples.lines[true_lines],
            samples.batch_idx[true_lines],
            n_pts=self.n_pts,
            min_span=cfg.sf_min_span,
            max_span=cfg.sf_max_span,
        )
        terms["sf"] = segmentation_factor_loss(occ[true_lines], sf_targets)
        return terms
