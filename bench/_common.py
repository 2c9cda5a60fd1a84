"""Pieces shared by the inference benchmarks (``bench_infer``, ``bench_geo``).

Importable as ``bench._common`` however a benchmark is started: ``python -m bench NAME``, ``python -m
bench.bench_NAME`` or ``python bench/bench_NAME.py`` (those scripts put the repository root on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from roofmapnet.config import RootConfig
from roofmapnet.inference.predictor import Predictor
from roofmapnet.models.roofmapnet import RoofMapNet

#: ``model`` section of the benchmarks' tiny random-weight architecture (64² input, one stack, a few channels).
TINY_MODEL: dict[str, Any] = {
    "image_size": 64,
    "heatmap_size": 16,
    "depth": 2,
    "num_stacks": 1,
    "inplanes": 8,
    "num_feats": 8,
    "jmap_channels": 8,
    "n_pts0": 16,
    "n_pts1": 4,
    "dim_loi": 8,
    "dim_fc": 16,
    "aoam_channels": 8,
}


def build_predictor(args: argparse.Namespace) -> Predictor:
    """``args.checkpoint``'s model, or a random default / tiny (``args.model``) one forced to ``args.junctions``
    proposals (``eval_junc_thres = 0``), on ``args.device`` in ``args.precision``, seeded by ``args.seed``."""
    if args.checkpoint:
        return Predictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    torch.manual_seed(args.seed)
    model: dict[str, Any] = dict(TINY_MODEL) if args.model == "tiny" else {}
    model.update(eval_junc_thres=0.0, n_dyn_junc=max(args.junctions, 2))
    cfg = RootConfig.model_validate({"model": model})
    return Predictor(RoofMapNet(cfg.model), cfg, args.device, args.precision, checkpoint="<random weights>")


def emit(result: dict[str, Any], json_path: Path | None) -> None:
    """Print ``result`` as indented JSON, and also write it to ``json_path`` when given."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if json_path:
        json_path.write_text(text + "\n", encoding="utf-8")
