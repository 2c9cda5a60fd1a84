"""Targets built on the fly from a batch: the dynamic Gaussian junction target and the L_sf span targets.

Dynamic Gaussian target (DGHR, docs/architecture.md "Losses"): for a binary junction map ``J`` [..., H, W],

    G(p) = J(p) + Σ_{q: J(q)=1} exp(α·‖p − q‖² / β²),      T(p) = 0 if G(p) ≤ 0.05 else min(G(p), 1),

over integer pixel indices, with α = ``gaussalpha`` and β = ``gaussbeta`` of the backbone.  The kernel is
separable, so ``G = J + A·J·A'ᵀ`` with ``A_ij = exp(α (i − j)² / β²)`` (H×H) and ``A'`` (W×W): two batched
matmuls instead of the reference's per-junction loop.

Segmentation-factor targets (L_sf): along a true line, the occluded run ``[i, j)`` is the longest contiguous
run of LoI samples where the predicted line map is < 0.5 while the ground-truth line map is ≥ 0.5.  Its
targets for the AOAM's ``(s_f, s_b)`` are the mid-bin values ``f* = max(i − 0.5, 0)/n`` and
``b* = (j − 0.5)/n``, so that the verifier's ``ceil(n·s)`` recovers ``i`` and ``j`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from roofmapnet.models.loi import loi_sample

#: Values of the dynamic Gaussian at or below this are set to 0 (the reference's cut-off).
GAUSS_THRESHOLD = 0.05
#: Profile threshold separating "line" from "no line" in the L_sf span search.
SPAN_THRESHOLD = 0.5


def _scalar(value: Tensor | float, like: Tensor) -> Tensor:
    """``value`` as a 0-d tensor on ``like``'s device and dtype (keeps the autograd graph of a tensor)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:
            msg = f"expected a one-element tensor, got shape {tuple(value.shape)}"
            raise ValueError(msg)
        return value.to(device=like.device, dtype=like.dtype).reshape(())
    return torch.tensor(float(value), device=like.device, dtype=like.dtype)


def gaussian_kernel(size: int, alpha: Tensor, beta: Tensor) -> Tensor:
    """The 1-D factor ``A_ij = exp(α (i − j)² / β²)`` of the separable Gaussian.

    Args:
        size: number of pixel indices (H or W).
        alpha: 0-d tensor α (negative for a decaying kernel); its device and dtype are used.
        beta: 0-d tensor β (the length scale).

    Returns:
        [size, size] kernel matrix.
    """
    idx = torch.arange(size, device=alpha.device, dtype=alpha.dtype)
    d2 = (idx[:, None] - idx[None, :]).square()
    return torch.exp(alpha * d2 / beta.square())


def dynamic_gaussian_target(
    jmap: Tensor,
    alpha: Tensor | float,
    beta: Tensor | float,
    *,
    threshold: float = GAUSS_THRESHOLD,
    learnable: bool = False,
) -> Tensor:
    """Dynamic Gaussian junction target ``T`` of a binary junction map.

    Args:
        jmap: [..., H, W] binary junction map (1 at junction pixels); any leading dims, any H and W.
        alpha: the backbone's ``gaussalpha`` (init −0.5).
        beta: the backbone's ``gaussbeta`` (init 2.0).
        threshold: values ``G ≤ threshold`` become 0.
        learnable: when False (default) the target is built under ``no_grad`` and α, β are detached; when
            True gradient reaches α and β through ``T``.

    Returns:
        ``T`` with ``jmap``'s shape, device and (floating) dtype; 1 at every junction pixel, in [0, 1].
    """
    if jmap.dim() < 2:
        msg = f"jmap must have at least 2 dims [..., H, W], got shape {tuple(jmap.shape)}"
        raise ValueError(msg)
    j = jmap if jmap.is_floating_point() else jmap.float()
    a = _scalar(alpha, j)
    b = _scalar(beta, j)
    if not learnable:
        a, b = a.detach(), b.detach()
    h, w = j.shape[-2:]
    with torch.set_grad_enabled(learnable and torch.is_grad_enabled()):
        kernel_h = gaussian_kernel(h, a, b)
        kernel_w = gaussian_kernel(w, a, b)
        g = j + kernel_h @ j @ kernel_w.transpose(0, 1)
        return g.clamp(max=1.0) * (g > threshold).to(g.dtype)


def longest_runs(mask: Tensor) -> tuple[Tensor, Tensor]:
    """First longest run of ``True`` in every row of ``mask``, vectorised over rows.

    A cumulative maximum of the index of the last ``False`` gives, at every position, the length of the run
    ending there; the row's maximum is the longest run, and ``argmax`` (first maximal index) picks the run that
    ends first, i.e. the **first** of several equally long runs.

    Args:
        mask: [L, n] bool.

    Returns:
        ``(start, length)``, both [L] int64; the run is ``[start, start + length)``.  Rows without ``True``
        have length 0 (and an unspecified start).
    """
    n = mask.shape[-1]
    if mask.shape[0] == 0 or n == 0:
        empty = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        return empty, empty.clone()
    idx = torch.arange(n, device=mask.device)
    last_false = torch.where(mask, -1, idx).cummax(dim=1).values
    run_len = torch.where(mask, idx - last_false, 0)
    end = run_len.argmax(dim=1)
    length = run_len.gather(1, end[:, None])[:, 0]
    return end + 1 - length, length


def occluded_spans(
    pred_profile: Tensor,
    gt_profile: Tensor,
    *,
    min_span: int,
    max_span: int,
    threshold: float = SPAN_THRESHOLD,
) -> tuple[Tensor, Tensor, Tensor]:
    """The occluded run ``[i, j)`` of each line profile.

    Args:
        pred_profile: [L, n] predicted line-map probability along the LoI samples (sample 0 at the line's e1).
        gt_profile: [L, n] ground-truth line map at the same samples.
        min_span: shortest run kept (in samples, inclusive).
        max_span: longest run kept (in samples, inclusive).
        threshold: ``pred < threshold`` and ``gt ≥ threshold`` marks an occluded sample.

    Returns:
        ``(i, j, valid)``: [L] int64 start and end (exclusive) of the longest occluded run (first one on ties),
        and [L] bool, True iff ``min_span ≤ j − i ≤ max_span``.  Invalid rows have ``i = j = 0``.
    """
    if pred_profile.shape != gt_profile.shape or pred_profile.dim() != 2:
        msg = f"profiles must both be [L, n], got {tuple(pred_profile.shape)} and {tuple(gt_profile.shape)}"
        raise ValueError(msg)
    start, length = longest_runs((pred_profile < threshold) & (gt_profile >= threshold))
    valid = (length >= min_span) & (length <= max_span)
    i = torch.where(valid, start, 0)
    j = torch.where(valid, start + length, 0)
    return i, j, valid


def span_targets(i: Tensor, j: Tensor, valid: Tensor, n: int) -> Tensor:
    """AOAM targets ``(f*, b*)`` of the runs ``[i, j)`` over ``n`` samples.

    ``f* = max(i − 0.5, 0)/n`` and ``b* = (j − 0.5)/n`` (mid-bin, so ``ceil(n·f*) = i`` and ``ceil(n·b*) = j``);
    ``f* = b* = 0`` where ``valid`` is False ("no span": the verifier then masks nothing).

    Returns:
        [L, 2] float32.
    """
    f = (i.to(torch.float32) - 0.5).clamp(min=0.0) / n
    b = (j.to(torch.float32) - 0.5) / n
    return torch.stack([f, b], dim=1) * valid[:, None].to(torch.float32)


def line_profiles(maps: Tensor, lines: Tensor, batch_idx: Tensor, n_pts: int) -> Tensor:
    """Sample single-channel maps [B, H, W] along ``lines`` [L, 2, 2] at the verifier's ``n_pts`` LoI points.

    Uses :func:`roofmapnet.models.loi.loi_sample` with ``λ = linspace(0, 1, n_pts)`` (the model's ``lambda_1``),
    so sample k here is sample k of the AOAM's input.

    Returns:
        [L, n_pts] profiles in ``maps``' dtype.
    """
    lambdas = torch.linspace(0.0, 1.0, n_pts, device=maps.device, dtype=maps.dtype)
    return loi_sample(maps[:, None], lines.to(maps.dtype), batch_idx, lambdas)[:, 0]


def segmentation_factor_targets(
    lmap_prob: Tensor,
    lmap_gt: Tensor,
    lines: Tensor,
    batch_idx: Tensor,
    *,
    n_pts: int,
    min_span: int,
    max_span: int,
) -> Tensor:
    """L_sf targets ``(f*, b*)`` of ``lines`` from the predicted and ground-truth line maps.

    Args:
        lmap_prob: [B, H, W] predicted line-map probability (stack 0); detached here.
        lmap_gt: [B, H, W] ground-truth line map.
        lines: [L, 2, 2] (y, x) endpoints in heatmap space.
        batch_idx: [L] image index of each line.
        n_pts: LoI samples per line (``model.n_pts0``).
        min_span: ``loss.sf_min_span``.
        max_span: ``loss.sf_max_span``.

    Returns:
        [L, 2] float32 targets, no gradient.
    """
    with torch.no_grad():
        pred = line_profiles(lmap_prob.detach().float(), lines, batch_idx, n_pts)
        gt = line_profiles(lmap_gt.detach().float(), lines, batch_idx, n_pts)
        i, j, valid = occluded_spans(pred, gt, min_span=min_span, max_span=max_span)
        return span_targets(i, j, valid, n_pts)
