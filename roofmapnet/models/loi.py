"""Line-of-interest (LoI) sampling: bilinear samples of a feature map along candidate lines.

Bit-compatible with the reference's formula (docs/architecture.md, "LoI pooling"): sample k of line (e0, e1) is at
``λ_k·e0 + (1-λ_k)·e1 - 0.5`` (sample 0 at e1), corners are clamped to the map but the weights use the
unclamped coordinate, so samples left of / above the map extrapolate linearly and samples at or beyond the
last row/column come out as 0.  No ``grid_sample`` (it cannot express that border rule) and no loops: the four
corners of every sample are gathered and weighted in one fused kernel, ``F.embedding_bag`` in ``sum`` mode with
per-sample weights, from the map's ``[B·H·W, C]`` pixel rows (a free view of a channels_last map), in the
reference's corner order (00, 10, 01, 11), with no [L, n, C] temporaries per corner.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def loi_points(lines: Tensor, lambdas: Tensor) -> Tensor:
    """[L, n, 2] (y, x) sample coordinates in pixel-centre index space for ``lines`` [L, 2, 2]."""
    lam = lambdas.reshape(1, -1, 1).to(lines.dtype)
    return lam * lines[:, None, 0] + (1 - lam) * lines[:, None, 1] - 0.5


def loi_corners(
    lines: Tensor, batch_idx: Tensor, lambdas: Tensor, hw: tuple[int, int], dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Corner rows and bilinear weights of every LoI sample (computed once, shared by every map sampled).

    Args:
        lines: [L, 2, 2] (y, x) endpoints in heatmap space.
        batch_idx: [L] image index of each line.
        lambdas: [n] interpolation weights.
        hw: (H, W) of the sampled maps.
        dtype: dtype of the maps: positions and weights are computed in at least float32 (a bf16/fp16 map must
            not round the sample positions).

    Returns:
        ``(rows, weights)``, both [L·n, 4]: int64 flat pixel indices ``b·H·W + y·W + x`` of the corners in the
        reference's order (y0,x0), (y1,x0), (y0,x1), (y1,x1), and their weights ``(y1−py)·(x1−px)``, … in the
        positions' dtype (the same products as the reference).
    """
    h, w = hw
    p = loi_points(lines.to(torch.promote_types(dtype, torch.float32)), lambdas)
    py, px = p[..., 0], p[..., 1]
    y0 = py.floor().clamp(0, h - 1)
    x0 = px.floor().clamp(0, w - 1)
    y1 = (y0 + 1).clamp(0, h - 1)
    x1 = (x0 + 1).clamp(0, w - 1)
    base = (batch_idx.to(torch.long) * (h * w))[:, None]
    y0l, y1l, x0l, x1l = (t.to(torch.long) for t in (y0, y1, x0, x1))
    rows = torch.stack([base + y0l * w + x0l, base + y1l * w + x0l, base + y0l * w + x1l, base + y1l * w + x1l], -1)
    wy0, wy1, wx0, wx1 = y1 - py, py - y0, x1 - px, px - x0
    weights = torch.stack([wy0 * wx0, wy1 * wx0, wy0 * wx1, wy1 * wx1], dim=-1)
    return rows.reshape(-1, 4), weights.reshape(-1, 4)


def sample_rows(fmap: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
    """``Σ_k weights[:, k] · fmap_pixel(rows[:, k])`` as [R, C] for a [B, C, H, W] map (one fused gather).

    A channels_last ``fmap`` is read in place as [B·H·W, C] pixel rows (an NCHW one is copied to them first).
    Differentiable with respect to ``fmap`` and ``weights``.
    """
    b, c, h, w = fmap.shape
    flat = fmap.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view for channels_last maps
    return F.embedding_bag(rows, flat, per_sample_weights=weights.to(flat.dtype), mode="sum")


def loi_sample_nlc(fmap: Tensor, lines: Tensor, batch_idx: Tensor, lambdas: Tensor) -> Tensor:
    """Samples of ``fmap`` [B, C, H, W] along ``lines`` [L, 2, 2] as [L, n, C] (the gathers' native layout)."""
    _, c, h, w = fmap.shape
    n = lambdas.numel()
    if lines.shape[0] == 0:
        return fmap.new_zeros((0, n, c))
    rows, weights = loi_corners(lines, batch_idx, lambdas, (h, w), fmap.dtype)
    return sample_rows(fmap, rows, weights).reshape(-1, n, c)


def loi_sample(fmap: Tensor, lines: Tensor, batch_idx: Tensor, lambdas: Tensor) -> Tensor:
    """Sample ``fmap`` [B, C, H, W] along ``lines`` [L, 2, 2] of images ``batch_idx`` [L].

    Args:
        fmap: feature map.
        lines: (y, x) endpoints in heatmap space.
        batch_idx: int64 image index of each line.
        lambdas: [n] interpolation weights (the model's ``lambda_1`` buffer, linspace(0, 1, n)).

    Returns:
        [L, C, n] samples (a view of :func:`loi_sample_nlc`'s [L, n, C] result); sample 0 lies at ``lines[:, 1]``.
    """
    return loi_sample_nlc(fmap, lines, batch_idx, lambdas).permute(0, 2, 1)
