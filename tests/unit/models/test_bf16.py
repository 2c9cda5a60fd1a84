"""bf16 autocast training on a CPU: the dense part runs in bf16, the verifier's outputs and the six loss terms in fp32."""

from __future__ import annotations

import pytest
import torch

from roofmapnet.losses import TERMS, RoofMapNetLoss
from roofmapnet.models.roofmapnet import RoofMapNet
from tests.unit.losses.test_training_objective import _synthetic_batch, _tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_training_step_keeps_the_losses_in_fp32() -> None:
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    model = RoofMapNet(cfg.model).train()
    criterion = RoofMapNetLoss(cfg)
    batch = _synthetic_batch(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch["image"])
        samples = model.sample_lines(out, batch, torch.Generator().manual_seed(0))
        logits, occ = model.verify(out.feature, out.lmap_prob, samples)
        backbone = model.detection.backbone
        losses = criterion(out, batch, samples, logits, occ, (backbone.gaussalpha, backbone.gaussbeta))
    assert out.dghr.dtype == torch.bfloat16  # the dense part ran in bf16 ...
    assert out.feature.dtype == torch.bfloat16
    assert logits.dtype == torch.float32  # ... the verifier's outputs and every loss term are fp32
    assert occ.dtype == torch.float32
    for name in (*TERMS, "total"):
        assert losses[name].dtype == torch.float32, name
        assert torch.isfinite(losses[name]), name
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) > 50
    assert all(g.dtype == torch.float32 for g in grads)
    assert all(bool(torch.isfinite(g).all()) for g in grads)
