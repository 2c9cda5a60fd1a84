"""Line-of-interest (LoI) sampling: bilinear samples of a feature map along candidate lines.

Bit-compatible with the reference (docs/architecture.md, "LoI pooling"): sample k of line (e0, e1) is at
``λ_k·e0 + (1-λ_k)·e1 - 0.5`` (sample 0 at e1), corners are clamped to the map but the weights use the
unclamped coordinate, so samples left of / above the map extrapolate linearly and samples at or beyond the
last row/column come out as 0.  Implemented with gathers on the flattened map; no ``grid_sample``, no loops.
"""

from __future__ import annotations

import torch
from torch import Tensor


def loi_points(lines: Tensor, lambdas: Tensor) -> Tensor:
    """[L, n, 2] (y, x) sample coordinates in pixel-centre index space for ``lines`` [L, 2, 2]."""
    lam = lambdas.reshape(1, -1, 1).to(lines.dtype)
    return lam * lines[:, None, 0] + (1 - lam) * lines[:, None, 1] - 0.5


def loi_sample(fmap: Tensor, lines: Tensor, batch_idx: Tensor, lambdas: Tensor) -> Tensor:
    """Sample ``fmap`` [B, C, H, W] along ``lines`` [L, 2, 2] of images ``batch_idx`` [L].

    Args:
        fmap: feature map.
        lines: (y, x) endpoints in heatmap space.
        batch_idx: int64 image index of each line.
        lambdas: [n] interpolation weights (the model's ``lambda_1`` buffer, linspace(0, 1, n)).

    Returns:
        [L, C, n] samples; sample 0 lies at ``lines[:, 1]``.
    """
    b, c, h, w = fmap.shape
    n = lambdas.numel()
    if lines.shape[0] == 0:
        return fmap.new_zeros((0, c, n))
    # Coordinates and weights in at least float32 (a bf16/fp16 feature map must not round the sample positions).
    p = loi_points(lines.to(torch.promote_types(fmap.dtype, torch.float32)), lambdas)
    py, px = p[..., 0], p[..., 1]
    y0 = py.floor().clamp(0, h - 1)
    x0 = px.floor().clamp(0, w - 1)
    y1 = (y0 + 1).clamp(0, h - 1)
    x1 = (x0 + 1).clamp(0, w - 1)
    # Row-major [B·H·W, C] rows (a no-op view for a channels_last map; NCHW would give a strided, cache-hostile view).
    flat = fmap.permute(0, 2, 3, 1).reshape(b * h * w, c).contiguous()
    base = (batch_idx.to(torch.long) * (h * w))[:, None]
    y0l, y1l, x0l, x1l = (t.to(torch.long) for t in (y0, y1, x0, x1))
    # Without a gradient through the weights the corner buffers can be scaled in place (saves a large temporary).
    in_place = not (torch.is_grad_enabled() and lines.requires_grad)

    def corner(yy: Tensor, xx: Tensor, weight: Tensor) -> Tensor:
        values = flat.index_select(0, (base + yy * w + xx).reshape(-1)).reshape(-1, n, c)
        weight = weight.to(fmap.dtype)[..., None]
        return values.mul_(weight) if in_place else values * weight

    # Same summation order as the reference; accumulated in place (one [L, n, C] buffer fewer at peak).
    out = corner(y0l, x0l, (y1 - py) * (x1 - px))
    out += corner(y1l, x0l, (py - y0) * (x1 - px))
    out += corner(y0l, x1l, (y1 - py) * (px - x0))
    out += corner(y1l, x1l, (py - y0) * (px - x0))
    return out.permute(0, 2, 1)
