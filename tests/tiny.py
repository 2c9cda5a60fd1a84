"""The tiny model architecture shared by the tests (64² input, 16² heatmaps, a few channels): seconds on a CPU.

The one definition is the preset ``config/presets/tiny.yaml`` (also the CLI tests' config and the benchmarks'
tiny model); this module reads its model section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: The tiny preset, the single source of the tiny architecture.
TINY_PRESET = Path(__file__).resolve().parents[1] / "config" / "presets" / "tiny.yaml"
#: The fields of the preset's model section that make up the architecture (and the junction proposal count the
#: model tests rely on); batch and sampler sizes are left to each test.
ARCHITECTURE_FIELDS = (
    "image_size",
    "heatmap_size",
    "depth",
    "inplanes",
    "num_feats",
    "jmap_channels",
    "n_pts0",
    "n_pts1",
    "dim_loi",
    "dim_fc",
    "aoam_channels",
    "n_dyn_junc",
)


def _preset_model() -> dict[str, Any]:
    model: dict[str, Any] = yaml.safe_load(TINY_PRESET.read_text(encoding="utf-8"))["model"]
    return model


#: ``model`` section of a tiny RoofMapNet; tests add what they need (stacks, sampler sizes, batch sizes).
TINY_MODEL: dict[str, Any] = {key: _preset_model()[key] for key in ARCHITECTURE_FIELDS}


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
