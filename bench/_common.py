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
import yaml

from roofmapnet.config import RootConfig
from roofmapnet.inference.predictor import Predictor
from roofmapnet.models.roofmapnet import RoofMapNet

#: The tiny preset, the one definition of the tiny architecture (shared with the tests).
TINY_PRESET = Path(__file__).resolve().parents[1] / "config" / "presets" / "tiny.yaml"
#: Fields of the preset's model section the benchmarks take: the architecture (sampler and batch sizes are the
#: benchmarks' own: ``--junctions``, ``--batch``).
ARCHITECTURE_FIELDS = (
    "image_size", "heatmap_size", "depth", "inplanes", "num_feats", "jmap_channels",
    "n_pts0", "n_pts1", "dim_loi", "dim_fc", "aoam_channels",
)  # fmt: skip


def tiny_model() -> dict[str, Any]:
    """``model`` section of the benchmarks' tiny random-weight model: the preset's architecture with one hourglass
    stack (inference refines stack 0 only; the figures of docs/gis.md and docs/performance.md were measured so)."""
    preset = yaml.safe_load(TINY_PRESET.read_text(encoding="utf-8"))["model"]
    return {**{key: preset[key] for key in ARCHITECTURE_FIELDS}, "num_stacks": 1}


def build_predictor(args: argparse.Namespace) -> Predictor:
    """``args.checkpoint``'s model, or a random default / tiny (``args.model``) one forced to ``args.junctions``
    proposals (``eval_junc_thres = 0``), on ``args.device`` in ``args.precision``, seeded by ``args.seed``."""
    if args.checkpoint:
        return Predictor.from_checkpoint(args.checkpoint, device=args.device, precision=args.precision)
    torch.manual_seed(args.seed)
    model: dict[str, Any] = tiny_model() if args.model == "tiny" else {}
    model.update(eval_junc_thres=0.0, n_dyn_junc=max(args.junctions, 2))
    cfg = RootConfig.model_validate({"model": model})
    return Predictor(RoofMapNet(cfg.model), cfg, args.device, args.precision, checkpoint="<random weights>")


def emit(result: dict[str, Any], json_path: Path | None) -> None:
    """Print ``result`` as indented JSON, and also write it to ``json_path`` when given."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if json_path:
        json_path.write_text(text + "\n", encoding="utf-8")
