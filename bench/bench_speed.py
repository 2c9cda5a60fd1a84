"""Issue 14's goals side by side in one process: channels-last vs NCHW, bf16 vs fp32, verifier vs dense part.

``python -m bench.bench_speed [--junctions 300] [--repeats 3] [--threads N]``

Every pair of variants runs alternately on the same weights and input (``RoofMapNet.set_memory_format`` switches the
layout in place), so machine noise hits both alike.  Times are per-process CPU seconds (``time.process_time``,
steadier than wall time on a shared machine) and wall seconds; the ratios use the CPU time's minimum over the
repeats.  Printed with the CPU model and its capability; goals that need AMX say so when the CPU has none.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from roofmapnet.config import ModelConfig
from roofmapnet.models.proposals import eval_k, nms3x3, topk_proposals
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.models.sampler import eval_pairs
from roofmapnet.utils.device import cpu_description, cpu_has_amx_bf16
from roofmapnet.utils.memory import peak_rss_mib

#: predict / dense-part time if the verifier ran at the dense part's FLOP rate (443 / 105.5 GFLOP at 44,850 lines).
FLOP_PROPORTIONAL_44850 = 4.2


def _alternate(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    for fn in fns.values():  # warm-up (oneDNN primitive creation)
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[key].append(time.process_time() - c0)
            wall[key].append(time.perf_counter() - w0)
    return {k: {"cpu_s": min(cpu[k]), "wall_s": min(wall[k])} for k in fns}


def _conv_probe(repeats: int) -> dict[str, dict[str, float]]:
    """One 3×3 128→128 convolution at 64² (the issue's single-convolution case) in each layout and precision."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
    x = torch.randn(1, 128, 64, 64)

    def variant(fmt: torch.memory_format, bf16: bool) -> Callable[[], Any]:
        def call() -> Any:
            conv.to(memory_format=fmt)  # type: ignore[call-overload]
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return conv(x.contiguous(memory_format=fmt))

        return call

    cl, nchw = torch.channels_last, torch.contiguous_format
    fns = {
        f"{name}_{p}": variant(fmt, p == "bf16") for name, fmt in (("nchw", nchw), ("cl", cl)) for p in ("fp32", "bf16")
    }
    return _alternate(fns, 3 * repeats)


def run(junctions: int = 300, repeats: int = 3, image_size: int = 512) -> dict[str, Any]:
    """The goal ratios (see the module docstring)."""
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=image_size, heatmap_size=image_size // 4, eval_junc_thres=0.0, n_dyn_junc=junctions)
    model = RoofMapNet(cfg).eval()
    images = torch.randn(1, 3, image_size, image_size)
    amx = cpu_has_amx_bf16()
    out: dict[str, Any] = {"cpu": cpu_description(), "amx_bf16": amx, "torch": torch.__version__}

    def forward(fmt: torch.memory_format, dtype: torch.dtype | None = None) -> Callable[[], Any]:
        def call() -> Any:
            model.set_memory_format(fmt)
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                return model(images)

        return call

    cl, nchw = torch.channels_last, torch.contiguous_format
    out["conv3x3_128_at_64"] = _conv_probe(repeats)
    dense = _alternate(
        {"nchw_fp32": forward(nchw), "cl_fp32": forward(cl), "cl_bf16": forward(cl, torch.bfloat16)}, repeats
    )
    out["dense"] = dense
    out["dense_cl_vs_nchw_fp32"] = dense["nchw_fp32"]["cpu_s"] / dense["cl_fp32"]["cpu_s"]
    out["dense_bf16_vs_fp32"] = dense["nchw_fp32"]["cpu_s"] / dense["cl_bf16"]["cpu_s"]

    model.set_memory_format(cl)
    with torch.no_grad():
        heads = model(images)
        heat = nms3x3(heads.jmap_prob.float())
        props = topk_proposals(heat, heads.joff_pred.float(), eval_k(heat, 0.0, junctions))
        samples = eval_pairs(props, cfg, (cfg.heatmap_size, cfg.heatmap_size))
    det = model.detection

    def verify() -> Any:
        with torch.no_grad():
            x, att = det.attend(heads.feature, heads.lmap_prob)
            return det.classify(x, att, samples)

    split = _alternate({"dense": forward(cl), "verifier": verify}, repeats)
    out["lines"] = len(samples)
    out["verifier"] = split
    ratio = 1.0 + split["verifier"]["cpu_s"] / split["dense"]["cpu_s"]
    out["predict_over_dense"] = ratio
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    goals = [
        ("dense part fp32, channels-last vs NCHW", "≥ 1.3×", f"{out['dense_cl_vs_nchw_fp32']:.2f}×"),
        (
            "dense part bf16 (AMX) vs fp32 NCHW",
            "≥ 4×",
            f"{out['dense_bf16_vs_fp32']:.2f}×" + ("" if amx else " (no AMX here: the goal is not measurable)"),
        ),
        (
            f"predict / dense part at {len(samples):,} lines",
            f"≤ {1.1 * FLOP_PROPORTIONAL_44850:.2f}× at 44,850",
            f"{ratio:.2f}×",
        ),
        ("peak RSS", "< 1 GB", f"{out['peak_rss_mib']:.0f} MiB"),
    ]
    out["goals"] = [{"measure": m, "goal": g, "measured": v} for m, g, v in goals]
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--junctions", type=int, default=300, help="forced proposals K (K(K-1)/2 lines)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(run(args.junctions, args.repeats, args.image_size), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
