"""Junction proposals (3×3 NMS + batched top-K) and their matching to ground-truth junctions.

All functions work on a whole batch at once: images get a per-image count ``K_b`` of valid proposals, the
tensors are padded to ``K_max`` ranks and carry a ``valid`` mask (rank < K_b).  Coordinates are (y, x) in
heatmap space (pixel r covers [r, r+1)); scores and coordinates are float32 whatever the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: A proposal farther than this (squared distance, heatmap pixels²) from every GT junction is unmatched.
MATCH_MAX_SQ_DIST = 1.5**2


@dataclass
class Proposals:
    """Top-K junction proposals of a batch, padded to ``K_max`` ranks.

    Attributes:
        xy: [B, K_max, 2] float32 (y, x) junctions in heatmap space, in rank (score-descending) order.
        score: [B, K_max] float32 NMS-ed junction probabilities.
        valid: [B, K_max] bool, ``rank < K_b``.
        k: [B] int64 number of valid proposals per image (≥ 2 unless the map has fewer pixels).
    """

    xy: Tensor
    score: Tensor
    valid: Tensor
    k: Tensor

    @property
    def k_max(self) -> int:
        """Padded number of ranks."""
        return int(self.xy.shape[1])


def nms3x3(heat: Tensor) -> Tensor:
    """Hard 3×3 non-maximum suppression of ``heat`` [B, H, W]: keep pixels equal to their 3×3 max, zero the rest.

    Plateaus survive (every pixel of a flat maximum is kept), as in L-CNN.
    """
    peak = F.max_pool2d(heat[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
    return heat * (heat == peak).to(heat.dtype)


def eval_k(nms_heat: Tensor, threshold: float, n_dyn_junc: int) -> Tensor:
    """Eval K rule: ``K_b = clamp(#{nms_heat_b > threshold}, 2, n_dyn_junc)`` as [B] int64."""
    count = (nms_heat.flatten(1) > threshold).sum(dim=1)
    return count.clamp(max=n_dyn_junc).clamp(min=2)


def train_k(junc_mask: Tensor, n_dyn_junc: int) -> Tensor:
    """Training K rule: ``K_b = max(min(2·N_b + 2, n_dyn_junc), 2)`` as [B] int64, N_b = #GT junctions."""
    n = junc_mask.sum(dim=1).to(torch.long)
    return (2 * n + 2).clamp(max=n_dyn_junc).clamp(min=2)


def topk_proposals(nms_heat: Tensor, joff: Tensor, k: Tensor) -> Proposals:
    """Top-``k[b]`` junctions of each image of the NMS-ed probability map.

    Args:
        nms_heat: [B, H, W] junction probability after :func:`nms3x3`.
        joff: [B, 2, H, W] decoded (y, x) offsets in (-0.5, 0.5).
        k: [B] int64 per-image number of proposals.

    Returns:
        The proposals, padded to ``K_max = min(max_b k_b, H·W)`` ranks; position ``(r + off_y + 0.5, c + off_x + 0.5)``.
    """
    b, h, w = nms_heat.shape
    k = k.to(device=nms_heat.device, dtype=torch.long).clamp(max=h * w)
    k_max = int(k.max()) if b else 0
    score, idx = nms_heat.flatten(1).float().topk(k_max, dim=1)
    off = joff.flatten(2).float().gather(2, idx[:, None, :].expand(b, 2, k_max))  # [B, 2, K]
    rc = torch.stack([torch.div(idx, w, rounding_mode="floor"), idx % w], dim=-1).to(torch.float32)
    xy = rc + off.transpose(1, 2) + 0.5
    valid = torch.arange(k_max, device=k.device)[None, :] < k[:, None]
    return Proposals(xy=xy, score=score, valid=valid, k=k)


def match_junctions(props: Proposals, junc: Tensor, junc_mask: Tensor) -> Tensor:
    """Match each proposal to its nearest GT junction.

    Args:
        props: proposals of the batch.
        junc: [B, N, 2] GT junctions (y, x), padded.
        junc_mask: [B, N] bool, real GT junctions.

    Returns:
        [B, K_max] int64 index of the matched GT junction, or the sentinel ``N`` when the squared distance is
        > 1.5², the image has no GT junction, or the rank is not a valid proposal.
    """
    n = junc_mask.shape[1]
    if n == 0:
        return torch.zeros(props.xy.shape[:2], dtype=torch.long, device=props.xy.device)
    gt = junc.to(device=props.xy.device, dtype=torch.float32)
    cost = ((props.xy[:, :, None, :] - gt[:, None, :, :]) ** 2).sum(-1)  # [B, K, N]
    cost = cost.masked_fill(~junc_mask.to(cost.device)[:, None, :], float("inf"))
    best, match = cost.min(dim=2)
    unmatched = (best > MATCH_MAX_SQ_DIST) | ~torch.isfinite(best) | ~props.valid
    return match.masked_fill(unmatched, n)
