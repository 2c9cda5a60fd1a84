"""The training objective end to end on a tiny RoofMapNet: every term is live, the AOAM learns only from L_sf,
and a few Adam steps overfit one synthetic roof image."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from roofmapnet.config import RootConfig
from roofmapnet.losses import TERMS, RoofMapNetLoss
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.tiny import TINY_MODEL

#: The AOAM's modules (``detection.*``): trained by L_sf only.
AOAM = ("conv1_line", "bn1", "conv2_line", "bn2", "conv3_line", "bn3", "fc_line")

#: Junctions (y, x) of a hipped roof in heatmap space (16 × 16): four corners and the two ridge ends.
JUNCTIONS = [(3.3, 2.6), (3.4, 13.4), (12.6, 13.3), (12.5, 2.7), (8.1, 5.6), (7.9, 10.4)]
#: Lines as junction-index pairs: eaves (4), ridge, hips (4).
LINES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (0, 4), (3, 4), (1, 5), (2, 5)]
#: A dark blob (image pixels, centre y, x and radius) over the middle of the lower eave (junctions 2-3).
BLOB = (50.4, 32.0, 7.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_cfg() -> RootConfig:
    sampling = {"n_dyn_posl": 20, "n_dyn_negl": 10, "n_dyn_othr": 20, "n_stc_posl": 20, "n_stc_negl": 6}
    return RootConfig.model_validate({"model": {**TINY_MODEL, "num_stacks": 2, **sampling}, "loss": {"sf_min_span": 3}})


def _segment_distance(points: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Distance [P, L] from points [P, 2] to the segments ``a``-``b`` [L, 2]."""
    d = b - a
    t = ((points[:, None] - a[None]) * d[None]).sum(-1) / d.square().sum(-1).clamp(min=1e-9)
    closest = a[None] + t.clamp(0, 1)[..., None] * d[None]
    return (points[:, None] - closest).norm(dim=-1)


def _synthetic_batch(cfg: RootConfig) -> dict[str, Any]:
    """One image with bright roof lines, a dark blob over part of one of them, and its batch (docs/internals.md)."""
    m = cfg.model
    h = w = m.heatmap_size
    size = m.image_size
    scale = size / h
    junc = torch.tensor(JUNCTIONS)
    n = junc.shape[0]
    pairs = torch.tensor(LINES)
    a, b = junc[pairs[:, 0]], junc[pairs[:, 1]]

    # Image: grey background, bright 3-px lines, then the dark blob on top.
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    pix = torch.stack([yy, xx], -1).reshape(-1, 2)
    dist = _segment_distance(pix, a * scale, b * scale).min(dim=1).values.reshape(size, size)
    gray = torch.full((size, size), 90.0)
    gray[dist < 1.5] = 250.0
    cy, cx, r = BLOB
    gray[(yy - cy).square() + (xx - cx).square() < r * r] = 10.0
    rgb = gray[None].expand(3, size, size)
    mean = torch.tensor(m.image.mean)[:, None, None]
    std = torch.tensor(m.image.stddev)[:, None, None]
    image = ((rgb - mean) / std)[None]

    # Targets: jmap/joff at floor(junction); lmap = anti-aliased lines between the floor-ed endpoints.
    cell = junc.floor().long()
    jmap = torch.zeros(1, 1, h, w)
    joff = torch.zeros(1, 1, 2, h, w)
    jmap[0, 0, cell[:, 0], cell[:, 1]] = 1.0
    joff[0, 0, :, cell[:, 0], cell[:, 1]] = (junc - cell - 0.5).T
    ry, rx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    grid = torch.stack([ry, rx], -1).reshape(-1, 2)
    fa, fb = a.floor(), b.floor()
    lmap = (1 - _segment_distance(grid, fa, fb)).clamp(0, 1).max(dim=1).values.reshape(1, h, w)

    lpos = torch.zeros(1, n + 1, n + 1, dtype=torch.bool)
    lpos[0, pairs[:, 0], pairs[:, 1]] = True
    lpos[0, pairs[:, 1], pairs[:, 0]] = True
    lneg = torch.zeros(1, n + 1, n + 1, dtype=torch.bool)
    lneg[0, :n, :n] = ~lpos[0, :n, :n] & ~torch.eye(n, dtype=torch.bool)
    neg_pairs = lneg[0].triu().nonzero()[: m.n_stc_negl]
    static = torch.cat([torch.stack([a, b], 1), torch.stack([junc[neg_pairs[:, 0]], junc[neg_pairs[:, 1]]], 1)])
    static[::2] = static[::2].flip(1)  # mixed endpoint order
    n_static = static.shape[0]
    return {
        "image": image,
        "jmap": jmap,
        "joff": joff,
        "lmap": lmap,
        "junc": junc[None],
        "junc_mask": torch.ones(1, n, dtype=torch.bool),
        "Lpos": lpos,
        "Lneg": lneg,
        "lpre": static[None],
        "lpre_label": torch.cat([torch.ones(len(LINES)), torch.zeros(n_static - len(LINES))])[None],
        "lpre_mask": torch.ones(1, n_static, dtype=torch.bool),
        "name": ["roof"],
    }


def _step(model: RoofMapNet, criterion: RoofMapNetLoss, batch: dict[str, Any], seed: int) -> dict[str, Tensor]:
    out = model(batch["image"])
    samples = model.sample_lines(out, batch, torch.Generator().manual_seed(seed))
    logits, occ = model.verify(out.feature, out.lmap_prob, samples)
    backbone = model.detection.backbone
    return criterion(out, batch, samples, logits, occ, (backbone.gaussalpha, backbone.gaussbeta))


def _grads(model: RoofMapNet) -> dict[str, float]:
    return {
        name: 0.0 if p.grad is None else float(p.grad.abs().sum()) for name, p in model.detection.named_parameters()
    }


def test_every_term_is_live_and_the_aoam_learns_only_from_sf() -> None:
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = RoofMapNet(cfg.model).train()
    criterion = RoofMapNetLoss(cfg)
    batch = _synthetic_batch(cfg)
    losses = _step(model, criterion, batch, seed=0)
    for term in TERMS:
        assert losses[term].item() > 1e-4, term
    w_sf = cfg.loss.weights.sf

    (losses["total"] - w_sf * losses["sf"]).backward(retain_graph=True)
    without_sf = _grads(model)
    model.zero_grad(set_to_none=True)
    losses["sf"].backward()
    only_sf = _grads(model)

    aoam = [name for name in without_sf if name.split(".")[0] in AOAM]
    assert len(aoam) == 14  # weight + bias of 3 convs, 3 BNs and fc_line
    for name in aoam:
        assert without_sf[name] == 0.0, name
        assert only_sf[name] > 0.0, name
    # The rest of the network learns from the other terms (verifier, line map, junction heads, offsets).
    for name in (
        "fc2.0.weight",
        "fc1.weight",
        "backbone.conv_jmap.0.weight",
        "backbone.backbone.score.0.heads.2.2.bias",
    ):
        assert without_sf[name] > 0.0, name


def test_adam_overfits_one_roof_and_every_term_decreases() -> None:
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = RoofMapNet(cfg.model).train()
    criterion = RoofMapNetLoss(cfg)
    batch = _synthetic_batch(cfg)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    history: list[dict[str, float]] = []
    for step in range(100):
        losses = _step(model, criterion, batch, seed=step)
        history.append({k: float(v.detach()) for k, v in losses.items()})
        optim.zero_grad(set_to_none=True)
        losses["total"].backward()
        optim.step()
    first = history[0]
    last = {k: sum(h[k] for h in history[-5:]) / 5 for k in first}  # mean of the last 5 steps (sampling noise)
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert last["total"] <= 0.2 * first["total"]
    for term in TERMS:
        assert last[term] < first[term], term


def test_sf_reaches_only_the_aoam() -> None:
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = RoofMapNet(cfg.model).train()
    losses = _step(model, RoofMapNetLoss(cfg), _synthetic_batch(cfg), seed=0)
    losses["sf"].backward()
    reached = [name for name, g in _grads(model).items() if g > 0.0 and name.split(".")[0] not in AOAM]
    assert reached == []
