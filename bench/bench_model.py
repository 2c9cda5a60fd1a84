"""Model benchmarks: backbone+heads forward time, ``predict`` time at a forced number of candidate lines, peak RSS.

One case per process gives a clean peak RSS (a peak never decreases), so ``python bench/bench_model.py``
without ``--case`` runs every case in a fresh subprocess and prints one JSON line per case::

    python bench/bench_model.py                                  # all cases, fp32 and bf16, 512², batch 1
    python bench/bench_model.py --case predict --junctions 300 --precision fp32

``predict`` forces ``K`` proposals (``eval_junc_thres = 0``, ``n_dyn_junc = K``), i.e. ``K(K-1)/2`` verified lines:
92 → 4,186 and 300 → 44,850.  Weights are random (timings do not depend on them; ``K`` is reported as measured).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from roofmapnet.config import ModelConfig
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.device import Precision, autocast
from roofmapnet.utils.memory import peak_rss_mib

CASES = ("forward", "predict")
PRECISIONS = ("fp32", "bf16")


def _autocast(precision: str, device: torch.device) -> Any:
    """Autocast to ``precision``'s dtype as asked (fp16 too on a CPU: no fallback, unlike ``roofmap infer``)."""
    return autocast(device, Precision(precision).dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(
    case: str = "forward",
    *,
    precision: str = "fp32",
    image_size: int = 512,
    batch: int = 1,
    junctions: int = 300,
    repeats: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Time one case in this process.

    Args:
        case: ``"forward"`` (backbone + heads + stack-0 refinement, eval, no grad) or ``"predict"`` (the whole
            inference: proposals, all pairs, chunked verification, decoding).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        image_size: network input side (the heatmap is a quarter of it).
        batch: images per call.
        junctions: forced number of proposals K for ``predict`` (``K(K-1)/2`` lines).
        repeats: timed calls (the median is reported).
        warmup: untimed calls first.
        device: torch device.
        seed: RNG seed for weights and inputs.

    Returns:
        A JSON-serialisable dict: settings, ``median_s``/``min_s``, ``lines``/``proposals`` for predict,
        ``rss_before_mib`` (after building the model and inputs) and ``peak_rss_mib`` (process peak, CPU).
    """
    if case not in CASES:
        msg = f"case must be one of {CASES}, not {case!r}"
        raise ValueError(msg)
    dev = torch.device(device)
    torch.manual_seed(seed)
    cfg = ModelConfig(
        image_size=image_size, heatmap_size=image_size // 4, eval_junc_thres=0.0, n_dyn_junc=max(junctions, 2)
    )
    model = RoofMapNet(cfg).to(dev).eval()
    images = torch.randn(batch, 3, image_size, image_size, device=dev)
    rss_before = peak_rss_mib()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    info: dict[str, Any] = {}

    def call() -> None:
        with torch.no_grad(), _autocast(precision, dev):
            if case == "forward":
                model(images)
            else:
                wfs = model.predict(images, score_threshold=0.0)
                info["proposals"] = [len(w.junctions) for w in wfs]
                info["lines"] = [len(w.lines) for w in wfs]
        _sync(dev)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    result: dict[str, Any] = {
        "case": case,
        "precision": precision,
        "image_size": image_size,
        "batch": batch,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        **info,
    }
    if case == "predict":
        result["junctions"] = junctions
    if dev.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return result


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--case", choices=CASES, help="run one case in this process (default: all, isolated)")
    parser.add_argument("--precision", choices=(*PRECISIONS, "fp16"), default="fp32")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--junctions", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: one case, or every case in its own subprocess."""
    args = _parse(argv)
    common = {
        "image_size": args.image_size,
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "device": args.device,
    }
    if args.case is not None:
        result = run(args.case, precision=args.precision, junctions=args.junctions, **common)
        print(json.dumps(result), flush=True)
        return 0
    plan = [(p, "forward", 0) for p in PRECISIONS] + [(p, "predict", k) for p in PRECISIONS for k in (92, 300)]
    for precision, case, k in plan:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--precision", precision]
        cmd += ["--junctions", str(k or args.junctions)]
        cmd += [f"--{key.replace('_', '-')}={value}" for key, value in common.items()]
        subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
