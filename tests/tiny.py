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
