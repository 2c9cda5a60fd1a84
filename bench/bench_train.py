"""Training-step benchmark: the full step against backbone forward+backward, fp32 against bf16 autocast.

``python -m bench.bench_train [--preset default|small] [--batch N] [--steps N]``

For each precision, in one process, alternating so machine noise hits both alike:
- backbone: forward of backbone + heads + refinement, a dense loss (sum of outputs), backward;
- full: forward + target construction + line sampling + verification + six losses + backward.
Reports images/s, the full/backbone time ratio (goal ≤ 1.2×) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from roofmapnet.utils.device import Precision, autocast
from roofmapnet.utils.memory import peak_rss_mib

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"default": None, "small": REPO / "config" / "presets" / "small.yaml"}


def _batch(cfg: Any, n: int) -> dict[str, Any]:
    import tempfile

    from roofmapnet.data.dataset import RoofDataset, collate
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess
    from roofmapnet.data.synth import generate_dataset

    tmp = Path(tempfile.mkdtemp())
    size = cfg.model.image_size
    generate_dataset(tmp / "raw", counts={"train": n}, image_size=size, progress=False, seed=3)
    preprocess(tmp / "raw", tmp / "data", PreprocessOptions(size, cfg.model.heatmap_size))
    ds = RoofDataset(tmp / "data", "train", cfg, train=True, seed=0)
    return collate([ds[i] for i in range(n)])


def run(
    preset: str = "small", batch: int = 4, steps: int = 4, precisions: tuple[str, ...] = ("fp32", "bf16")
) -> dict[str, Any]:
    """Median step times (s) of the backbone-only and full steps per precision, and their ratio."""
    from roofmapnet.config import load_config
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses
    from roofmapnet.models.roofmapnet import RoofMapNet

    cfg = load_config(PRESETS[preset])
    data = _batch(cfg, batch)
    torch.manual_seed(0)
    model = RoofMapNet(cfg.model).train()
    loss = RoofMapNetLoss(cfg)
    out: dict[str, Any] = {"preset": preset, "batch": batch, "threads": torch.get_num_threads()}
    for precision in precisions:
        dtype = Precision(precision).dtype
        times: dict[str, list[float]] = {"backbone": [], "full": []}
        for i in range(steps + 1):
            for kind in ("backbone", "full"):
                model.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                with autocast(torch.device("cpu"), dtype):
                    if kind == "backbone":
                        heads = model(data["image"])
                        total = heads.dghr.float().mean() + heads.qcc.float().mean() + heads.lmap.float().mean()
                        total = total + heads.joff.float().mean() + heads.feature.float().mean()
                    else:
                        total = batch_losses(model, loss, data)[0]["total"]
                total.backward()
                if i > 0:  # the first round warms up allocators and kernels
                    times[kind].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        out[precision] = {
            "backbone_step_s": med["backbone"],
            "full_step_s": med["full"],
            "full_over_backbone": med["full"] / med["backbone"],
            "images_per_second": batch / med["full"],
        }
    if "fp32" in out and "bf16" in out:
        out["bf16_speedup_full"] = out["fp32"]["full_step_s"] / out["bf16"]["full_step_s"]
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args(argv)
    result = run(args.preset, args.batch, args.steps, tuple(args.precisions.split(",")))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
