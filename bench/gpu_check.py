"""Prepared CUDA check: run it whenever a GPU is at hand (``python -m bench.gpu_check --out gpu.json``).

What it checks and measures, on the default (full) model at 512²:
1. training steps (forward + sampling + six losses + backward + Adam) in fp32, 16-mixed and bf16-mixed: images/s and
   peak GPU memory, the losses finite;
2. ``predict`` in fp32 / fp16 / bf16 autocast at ≈4,200 and 44,850 candidate lines: latency and peak memory, and
   the fp16/bf16 lines against fp32;
3. export on CUDA: TorchScript and ONNX written from a CUDA model, with the parity check;
4. a short Lightning ``fit`` on a synthetic dataset with ``precision="16-mixed"`` (the real training path).
Everything prints as JSON; nothing else depends on this script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _sync() -> None:
    torch.cuda.synchronize()


def _synthetic_batch(cfg: Any, batch_size: int, device: torch.device) -> dict[str, Any]:
    from roofmapnet.data.dataset import RoofDataset, collate
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess
    from roofmapnet.data.synth import generate_dataset

    tmp = Path(tempfile.mkdtemp())
    generate_dataset(
        tmp / "raw", counts={"train": batch_size, "valid": 2}, image_size=cfg.model.image_size, progress=False
    )
    preprocess(tmp / "raw", tmp / "data", PreprocessOptions(cfg.model.image_size, cfg.model.heatmap_size))
    ds = RoofDataset(tmp / "data", "train", cfg, train=True, seed=0)
    batch = collate([ds[i] for i in range(batch_size)])
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_steps(steps: int, batch_size: int) -> dict[str, Any]:
    """Images/s and peak memory of full training steps for each precision."""
    from roofmapnet.config import RootConfig
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses
    from roofmapnet.models.roofmapnet import RoofMapNet

    device = torch.device("cuda")
    cfg = RootConfig()
    batch = _synthetic_batch(cfg, batch_size, device)
    out: dict[str, Any] = {}
    for precision, dtype in (("32", None), ("16-mixed", torch.float16), ("bf16-mixed", torch.bfloat16)):
        torch.manual_seed(0)
        model = RoofMapNet(cfg.model).to(device).train()
        loss = RoofMapNetLoss(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
        torch.cuda.reset_peak_memory_stats()
        times, finite = [], True
        for _ in range(steps):
            _sync()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                losses, _ = batch_losses(model, loss, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            _sync()
            times.append(time.perf_counter() - t0)
            finite &= bool(torch.isfinite(losses["total"]))
        steady = sorted(times[2:]) or times
        median = steady[len(steady) // 2]
        out[precision] = {
            "images_per_second": batch_size / median,
            "median_step_s": median,
            "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
            "losses_finite": finite,
            "final_total_loss": float(losses["total"]),
        }
    return out


def predict_latency(repeats: int) -> dict[str, Any]:
    """Latency and peak memory of ``predict`` at two proposal counts and three precisions."""
    from roofmapnet.config import load_config
    from roofmapnet.models.roofmapnet import RoofMapNet

    device = torch.device("cuda")
    out: dict[str, Any] = {}
    for k in (92, 300):
        cfg = load_config(None, {"model.n_dyn_junc": k, "model.eval_junc_thres": 0.0, "model.line_score_thres": 0.0})
        torch.manual_seed(0)
        model = RoofMapNet(cfg.model).to(device).eval()
        x = torch.randn(1, 3, 512, 512, device=device)
        ref = None
        for name, dtype in (("fp32", None), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(repeats):
                _sync()
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    (wf,) = model.predict(x)
                _sync()
                times.append(time.perf_counter() - t0)
            entry: dict[str, Any] = {
                "lines": int(wf.lines.shape[0]),
                "median_s": sorted(times)[len(times) // 2],
                "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20,
            }
            if ref is None:
                ref = wf
            else:
                n = min(len(ref.scores), len(wf.scores), 100)
                entry["top100_max_abs_score_diff_vs_fp32"] = float((ref.scores[:n] - wf.scores[:n]).abs().max())
            out[f"K={k}/{name}"] = entry
    return out


def export_on_cuda() -> dict[str, Any]:
    """Export TorchScript and ONNX from a CUDA model and run the parity check."""
    from roofmapnet.config import RootConfig
    from roofmapnet.export import export_checkpoint
    from roofmapnet.models.roofmapnet import RoofMapNet

    tmp = Path(tempfile.mkdtemp())
    cfg = RootConfig()
    ckpt = tmp / "model.pth"
    torch.save(RoofMapNet(cfg.model).state_dict(), ckpt)
    out = {}
    for fmt, name in (("torchscript", "model.pt"), ("onnx", "model.onnx")):
        t0 = time.perf_counter()
        try:
            result = export_checkpoint(ckpt, fmt, tmp / name, device="cuda")
            out[fmt] = {"ok": True, "seconds": time.perf_counter() - t0, "result": str(result)}
        except Exception as exc:  # report every failure, keep going
            out[fmt] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


def lightning_fit() -> dict[str, Any]:
    """A few real ``roofmap train`` steps with 16-mixed on the GPU."""
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess
    from roofmapnet.data.synth import generate_dataset
    from roofmapnet.train.main import train

    tmp = Path(tempfile.mkdtemp())
    generate_dataset(tmp / "raw", counts={"train": 16, "valid": 4}, image_size=512, progress=False)
    preprocess(tmp / "raw", tmp / "data", PreprocessOptions(512, 128))
    t0 = time.perf_counter()
    result = train(None, data_root=tmp / "data", gpus=1, precision="16", max_epochs=2, logdir=tmp / "run",
                   batch_size=4, num_workers=2, progress=False)  # fmt: skip
    return {"seconds": time.perf_counter() - t0, "global_step": result.global_step, "last": str(result.last_checkpoint)}


def main(argv: list[str] | None = None) -> int:
    """Run every check; write JSON to --out and stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name, fn in (
        ("train_steps", lambda: train_steps(args.steps, args.batch_size)),
        ("predict", lambda: predict_latency(args.repeats)),
        ("export", export_on_cuda),
        ("lightning_fit_16_mixed", lightning_fit),
    ):
        try:
            report[name] = fn()
        except Exception as exc:  # one failing check must not hide the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({name: report[name]}, indent=2, default=str), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
