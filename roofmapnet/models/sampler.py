"""Candidate lines: the training sampler (L-CNN mix or capped all-pairs) and the eval all-pairs enumeration.

Everything is batched: proposals are padded to ``K_max`` ranks with a validity mask, the pair labels are gathered
from the ``[B, N+1, N+1]`` adjacency with the matched indices (``N`` = unmatched sentinel), random subsets are
top-k selections on random keys, and ``nonzero`` turns the selection mask into a flat list of lines with their
image index.  There is no Python loop over images, junctions or lines; the result is deterministic given
torch's RNG state (or the ``generator`` passed in).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from roofmapnet.config.schema import ModelConfig
from roofmapnet.models.outputs import LineSamples
from roofmapnet.models.proposals import Proposals

#: Width of the extra line feature (keeps ``fc2.0`` at [dim_fc, dim_loi·n_pts1 + 8]).
FEAT_DIM = 8


def line_features(
    lines: Tensor,
    heatmap_hw: tuple[int, int],
    cfg: ModelConfig,
    type_u: Tensor | None = None,
    type_v: Tensor | None = None,
) -> Tensor:
    """L-CNN's extra line feature [L, 8], all zeros in the official configuration.

    Columns: ``e0/(H, W)·use_cood`` (2), ``e1/(H, W)·use_cood`` (2), ``unit(e0 − e1)·use_slop`` (2) and the
    endpoints' junction-type flags (2; always 0 with a single junction type).

    Args:
        lines: [L, 2, 2] (y, x) endpoints in heatmap space.
        heatmap_hw: (H, W) of the heatmap.
        cfg: model config (``use_cood``, ``use_slop``).
        type_u: [L] type flag of endpoint 0 (default 0).
        type_v: [L] type flag of endpoint 1 (default 0).
    """
    n = lines.shape[0]
    lines = lines.float()
    feat = lines.new_zeros((n, FEAT_DIM))
    if cfg.use_cood:
        scale = lines.new_tensor(heatmap_hw)
        feat[:, 0:2] = lines[:, 0] / scale
        feat[:, 2:4] = lines[:, 1] / scale
    if cfg.use_slop:
        d = lines[:, 0] - lines[:, 1]
        feat[:, 4:6] = d / d.norm(dim=1, keepdim=True).clamp(min=1e-6)
    if type_u is not None:
        feat[:, 6] = type_u.to(feat.dtype)
    if type_v is not None:
        feat[:, 7] = type_v.to(feat.dtype)
    return feat


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, device=device, generator=generator)


def random_subset(candidates: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """Per row, a uniformly random subset of at most ``n`` of the True entries of ``candidates`` [B, P] (as a mask)."""
    out = torch.zeros_like(candidates, dtype=torch.bool)
    b, p = candidates.shape
    if n <= 0 or p == 0 or b == 0:
        return out
    keys = _rand((b, p), candidates.device, generator).masked_fill(~candidates, -1.0)
    top = keys.topk(min(n, p), dim=1)
    return out.scatter_(1, top.indices, top.values >= 0)


def random_ordered_pairs(
    k: Tensor, k_max: int, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` uniform draws with replacement per image from the ordered pairs (u, v), u ≠ v, u, v < k_b.

    Args:
        k: [B] int64 valid proposals per image (≥ 2).
        k_max: padded number of ranks.
        n: draws per image.
        generator: optional RNG.

    Returns:
        ``(b, u, v)``, each [B·n] int64.
    """
    b = k.shape[0]
    device = k.device
    kk = k.to(torch.float64)[:, None]
    npairs = kk * (kk - 1)
    r = (_rand((b, n), device, generator).to(torch.float64) * npairs).floor()
    r = torch.minimum(r, npairs - 1).clamp(min=0).to(torch.long)
    km1 = (k - 1).clamp(min=1)[:, None]
    u = torch.div(r, km1, rounding_mode="floor")
    vp = r % km1
    v = vp + (vp >= u).to(torch.long)
    bi = torch.arange(b, device=device)[:, None].expand(b, n)
    return bi.reshape(-1), u.clamp(max=k_max - 1).reshape(-1), v.clamp(max=k_max - 1).reshape(-1)


def _adjacency(batch: dict[str, Any], key: str, match: Tensor) -> Tensor:
    """``A[b, m_u, m_v]`` for all rank pairs: [B, K, K] bool from the [B, N+1, N+1] adjacency ``batch[key]``."""
    adj = torch.as_tensor(batch[key], device=match.device).to(torch.bool)
    bsz = match.shape[0]
    bi = torch.arange(bsz, device=match.device)[:, None, None]
    return adj[bi, match[:, :, None], match[:, None, :]]


def _gather_lines(xy: Tensor, b: Tensor, u: Tensor, v: Tensor) -> Tensor:
    return torch.stack([xy[b, u], xy[b, v]], dim=1)


def sample_training_lines(
    props: Proposals,
    match: Tensor,
    batch: dict[str, Any],
    cfg: ModelConfig,
    heatmap_hw: tuple[int, int],
    generator: torch.Generator | None = None,
) -> LineSamples:
    """Training candidates with labels, flattened over the batch and grouped by image.

    ``cfg.sampler == "lcnn"`` (default): over the ordered pairs u ≠ v of valid proposals, a random ≤ n_dyn_posl of
    the positives (``Lpos[m_u, m_v]``), a random ≤ n_dyn_negl of the hard negatives (``Lneg[m_u, m_v]``) and
    n_dyn_othr uniform draws with replacement, united; then the static lines ``lpre`` (where ``lpre_mask``) with
    ``lpre_label``.  ``"all_pairs"``: every u < v pair, a random ``all_pairs_cap`` of them per image if more (no
    static lines, as the released code).

    Args:
        props: training proposals (K rule ``min(2N+2, n_dyn_junc)``).
        match: [B, K_max] matched GT index per proposal (sentinel N).
        batch: the collated batch (``Lpos``, ``Lneg``, and ``lpre``/``lpre_label``/``lpre_mask`` for the L-CNN mix).
        cfg: model config.
        heatmap_hw: (H, W) of the heatmap (for the optional coordinate feature).
        generator: optional RNG (default: torch's global RNG).
    """
    xy = props.xy
    device = xy.device
    bsz, k_max = match.shape
    lab = _adjacency(batch, "Lpos", match)
    eye = torch.eye(k_max, dtype=torch.bool, device=device)
    pair_ok = props.valid[:, :, None] & props.valid[:, None, :] & ~eye
    if cfg.sampler == "all_pairs":
        cand = pair_ok & torch.ones_like(eye).triu(diagonal=1)
        sel = random_subset(cand.reshape(bsz, -1), cfg.all_pairs_cap, generator)
    else:
        neg = _adjacency(batch, "Lneg", match)
        sel = random_subset((lab & pair_ok).reshape(bsz, -1), cfg.n_dyn_posl, generator)
        sel |= random_subset((neg & pair_ok).reshape(bsz, -1), cfg.n_dyn_negl, generator)
        if cfg.n_dyn_othr > 0 and k_max >= 2:
            ob, ou, ov = random_ordered_pairs(props.k, k_max, cfg.n_dyn_othr, generator)
            sel[ob, ou * k_max + ov] = True
    b, flat = sel.nonzero(as_tuple=True)
    u = torch.div(flat, k_max, rounding_mode="floor")
    v = flat % k_max
    lines = _gather_lines(xy, b, u, v)
    labels = lab[b, u, v].to(torch.float32)
    kb = props.k[b]
    feat = line_features(lines, heatmap_hw, cfg, u >= kb, v >= kb)
    if cfg.sampler == "lcnn" and "lpre" in batch:
        mask = torch.as_tensor(batch["lpre_mask"], device=device).to(torch.bool)
        sb, sm = mask.nonzero(as_tuple=True)
        s_lines = torch.as_tensor(batch["lpre"], device=device).to(torch.float32)[sb, sm]
        s_labels = torch.as_tensor(batch["lpre_label"], device=device).to(torch.float32)[sb, sm]
        lines = torch.cat([lines, s_lines])
        labels = torch.cat([labels, s_labels])
        feat = torch.cat([feat, line_features(s_lines, heatmap_hw, cfg)])
        b = torch.cat([b, sb])
        order = torch.sort(b, stable=True).indices
        lines, labels, feat, b = lines[order], labels[order], feat[order], b[order]
    return LineSamples(lines=lines, batch_idx=b, labels=labels, feat=feat)


def eval_pairs(props: Proposals, cfg: ModelConfig, heatmap_hw: tuple[int, int]) -> LineSamples:
    """All pairs u < v of valid proposals, in rank order, image by image (labels empty).

    Line ``[xy_u, xy_v]``; K_b proposals give K_b(K_b − 1)/2 lines.
    """
    xy = props.xy
    k_max = props.k_max
    iu, iv = torch.triu_indices(k_max, k_max, offset=1, device=xy.device)
    ok = props.valid[:, iu] & props.valid[:, iv]
    b, p = ok.nonzero(as_tuple=True)
    u, v = iu[p], iv[p]
    lines = _gather_lines(xy, b, u, v)
    return LineSamples(
        lines=lines,
        batch_idx=b,
        labels=xy.new_zeros((0,)),
        feat=line_features(lines, heatmap_hw, cfg),
    )
