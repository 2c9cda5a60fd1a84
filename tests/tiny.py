"""The tiny model architecture shared by the tests (64² input, 16² heatmaps, a few channels): seconds on a CPU."""

from __future__ import annotations

from typing import Any

#: ``model`` section of a tiny RoofMapNet; tests add what they need (stacks, sampler sizes, batch sizes).
TINY_MODEL: dict[str, Any] = {
    "image_size": 64,
    "heatmap_size": 16,
    "depth": 2,
    "inplanes": 8,
    "num_feats": 8,
    "jmap_channels": 8,
    "n_pts0": 16,
    "n_pts1": 4,
    "dim_loi": 8,
    "dim_fc": 16,
    "aoam_channels": 8,
    "n_dyn_junc": 20,
}


def write_tiny_checkpoint(path: Any, model: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A Lightning-style ``.ckpt`` of a random-weight RoofMapNet with :data:`TINY_MODEL` (+ ``model``) at ``path``."""
    import torch

    from roofmapnet.config import RootConfig
    from roofmapnet.models.roofmapnet import RoofMapNet

    cfg = RootConfig.model_validate({"model": {**TINY_MODEL, **(model or {})}})
    torch.manual_seed(seed)
    net = RoofMapNet(cfg.model)
    sd = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "hyper_parameters": {"config": cfg.model_dump(mode="json")}}, path)
    return path
