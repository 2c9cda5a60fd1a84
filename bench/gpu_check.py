"""Prepared CUDA check: run it whenever a GPU is at hand (``python -m bench.gpu_check --out gpu.json``).

What it checks and measures, on the default (full) model at 512²:
1. training steps (forward + sampling + six losses + backward + Adam) in fp32, 16-mixed and bf16-mixed: images/s and
   peak GPU memory, the losses finite;
2. where a training step's time goes: backbone fwd+bwd against the full step, and a profile of one step;
3. ``predict`` in fp32 / fp16 / bf16 autocast at ≈4,200 and 44,850 candidate lines: latency and peak memory, and
   the fp16/bf16 lines against fp32;
4. export on CUDA: TorchScript and ONNX written from a CUDA model, with the parity check;
5. a short Lightning ``fit`` on a synthetic dataset with ``precision="16-mixed"`` (the real training path);
6. the console commands on CUDA with that checkpoint: ``validate --precision 16``, ``infer --precision 16`` and
   ``export --precision fp16 --device cuda`` (the half-precision graph that cannot be traced on a CPU);
7. ``layout_amp``: channels-last vs NCHW × fp32/fp16/bf16 for the dense part, ``predict`` and a training step;
8. ``compiled_objective``: ``torch.compile`` of the sampler-and-loss side of a training step against eager.
Everything prints as JSON; nothing else depends on this script.
"""

from __future__ import annotations

import argparse
import json
import os
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


def train_overhead(batch_size: int, steps: int) -> dict[str, Any]:
    """Where a GPU training step goes: backbone fwd+bwd against the full step, and the host-side hot spots.

    The full/backbone ratio is the CPU benchmark's figure (``bench/bench_train.py``); on a GPU the sampler and
    the losses' host synchronisations weigh more.  A profile of one fp32 step lists the ops with the most
    self CPU time and counts the device-to-host copies (``aten::_local_scalar_dense`` = ``.item()``/``.tolist()``).
    """
    from torch.profiler import ProfilerActivity, profile

    from roofmapnet.config import RootConfig
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses
    from roofmapnet.models.roofmapnet import RoofMapNet

    device = torch.device("cuda")
    cfg = RootConfig()
    batch = _synthetic_batch(cfg, batch_size, device)
    torch.manual_seed(0)
    model = RoofMapNet(cfg.model).to(device).train()
    loss = RoofMapNetLoss(cfg).to(device)

    def step(kind: str) -> None:
        model.zero_grad(set_to_none=True)
        if kind == "backbone":
            heads = model(batch["image"])
            total = sum(t.float().mean() for t in (heads.dghr, heads.qcc, heads.lmap, heads.joff, heads.feature))
        else:
            total = batch_losses(model, loss, batch)[0]["total"]
        total.backward()

    out: dict[str, Any] = {}
    for precision, dtype in (("32", None), ("16-mixed", torch.float16)):
        times: dict[str, list[float]] = {"backbone": [], "full": []}
        for i in range(steps + 2):
            for kind in times:
                _sync()
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                    step(kind)
                _sync()
                if i >= 2:
                    times[kind].append(time.perf_counter() - t0)
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        out[precision] = {"backbone_s": med["backbone"], "full_s": med["full"], "ratio": med["full"] / med["backbone"]}
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step("full")
        _sync()
    events = prof.key_averages()
    out["top_self_cpu"] = [
        {"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3}
        for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    ]
    out["host_syncs"] = sum(e.count for e in events if e.key in ("aten::_local_scalar_dense", "aten::item"))
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
    out = {}
    for seed in (0, 1):  # untrained models: near-flat heatmaps, the hardest case for the parity check
        torch.manual_seed(seed)
        ckpt = tmp / f"model{seed}.pth"
        torch.save(RoofMapNet(cfg.model).state_dict(), ckpt)
        for fmt, name in (("torchscript", "model.pt"), ("onnx", "model.onnx")):
            t0 = time.perf_counter()
            try:
                result = export_checkpoint(ckpt, fmt, tmp / name, device="cuda")
                assert result.parity is not None
                out[f"{fmt}/seed{seed}"] = {
                    "seconds": time.perf_counter() - t0,
                    "parity_passed": result.parity.passed,
                    "images": [
                        [im.name, im.passed, f"{im.matched_junctions}/{im.ref_junctions}", im.max_score_diff, im.reason]
                        for im in result.parity.images
                    ],
                }
            except Exception as exc:  # report every failure, keep going
                out[f"{fmt}/seed{seed}"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def lightning_fit(state: dict[str, Any]) -> dict[str, Any]:
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
    state.update(data=tmp / "data", raw=tmp / "raw", ckpt=result.last_checkpoint, tmp=tmp)
    return {"seconds": time.perf_counter() - t0, "global_step": result.global_step, "last": str(result.last_checkpoint)}


def cli_on_cuda(state: dict[str, Any]) -> dict[str, Any]:
    """``roofmap validate``, ``infer`` and ``export`` as a user runs them, on the checkpoint of the fit."""
    import subprocess

    tmp, ckpt = state["tmp"], str(state["ckpt"])
    images = sorted(str(p) for p in (state["raw"] / "images").glob("valid_*.png"))
    commands = {
        "validate_16": ["validate", "--checkpoint", ckpt, "--data-root", str(state["data"]), "--device", "cuda",
                        "--precision", "16", "--out", str(tmp / "val")],
        "infer_16": ["infer", "--checkpoint", ckpt, *images, "--out", str(tmp / "infer"), "--device", "cuda",
                     "--precision", "16"],
        "export_onnx_fp16_cuda": ["export", "--checkpoint", ckpt, "--format", "onnx", "--out", str(tmp / "h.onnx"),
                                  "--precision", "fp16", "--device", "cuda"],
        "export_torchscript_fp16_cuda": ["export", "--checkpoint", ckpt, "--format", "torchscript",
                                         "--out", str(tmp / "h.pt"), "--precision", "fp16", "--device", "cuda"],
    }  # fmt: skip
    out: dict[str, Any] = {}
    for name, args in commands.items():
        t0 = time.perf_counter()
        env = {**os.environ, "COLUMNS": "160"}
        proc = subprocess.run(
            [sys.executable, "-m", "roofmapnet", *args], capture_output=True, text=True, env=env, timeout=240
        )
        out[name] = {"rc": proc.returncode, "seconds": time.perf_counter() - t0,
                     "tail": (proc.stdout + proc.stderr)[-1500:]}  # fmt: skip
    return out


def layout_amp(steps: int, batch_size: int, device: str = "cuda") -> dict[str, Any]:
    """Channels-last vs NCHW × fp32 / fp16 / bf16 autocast, side by side on the same weights (issue 14).

    Per combination: the dense part's forward (eval, batch 1), ``predict`` at 4,186 lines (K = 92) and a full
    training step (forward, sampling, six losses, backward; batch ``batch_size``).  The combinations alternate,
    so clock and thermal drift hit all alike; ``choose_precision`` (fp32 on CUDA) should follow the fastest
    accurate one.  ``device="cpu"`` runs the same code on a CPU (a smoke test of this stage).
    """
    from roofmapnet.config import ModelConfig, RootConfig
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses
    from roofmapnet.models.roofmapnet import RoofMapNet

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    cfg = RootConfig.model_validate({"model": ModelConfig(eval_junc_thres=0.0, n_dyn_junc=92).model_dump()})
    batch = _synthetic_batch(cfg, batch_size, dev)
    torch.manual_seed(0)
    model = RoofMapNet(cfg.model).to(dev)
    loss = RoofMapNetLoss(cfg).to(dev)
    image = torch.randn(1, 3, cfg.model.image_size, cfg.model.image_size, device=dev)
    combos = [(fmt, prec) for fmt in ("nchw", "channels_last") for prec in ("fp32", "fp16", "bf16")]
    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    times: dict[str, dict[str, list[float]]] = {
        f"{f}/{p}": {"dense": [], "predict": [], "train": []} for f, p in combos
    }

    def timed(fn: Any) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    for step in range(steps + 1):
        for fmt, prec in combos:
            model.set_memory_format(torch.channels_last if fmt == "channels_last" else torch.contiguous_format)
            dtype = dtypes[prec]
            with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                model.eval()
                with torch.no_grad():
                    dense = timed(lambda: model(image))
                    pred = timed(lambda: model.predict(image, score_threshold=0.0))
                model.train()
                model.zero_grad(set_to_none=True)
                train = timed(lambda: batch_losses(model, loss, batch)[0]["total"].float().backward())
            if step > 0:  # the first round builds kernels / cuDNN plans
                for key, value in (("dense", dense), ("predict", pred), ("train", train)):
                    times[f"{fmt}/{prec}"][key].append(value)
    med = {k: {stage: sorted(v)[len(v) // 2] for stage, v in d.items()} for k, d in times.items()}
    base = med["nchw/fp32"]
    return {
        "median_s": med,
        "speedup_vs_nchw_fp32": {k: {stage: base[stage] / v for stage, v in d.items()} for k, d in med.items()},
    }


def compiled_objective(steps: int, batch_size: int, device: str = "cuda") -> dict[str, Any]:
    """The launch-bound part of a training step (sampler + losses, 1.6× the backbone's time on an H200 at batch 8)
    with ``torch.compile`` on the loss module against eager: median full-step times and the losses' agreement.
    """
    from roofmapnet.config import RootConfig
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses
    from roofmapnet.models.roofmapnet import RoofMapNet

    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    cfg = RootConfig()
    batch = _synthetic_batch(cfg, batch_size, dev)
    torch.manual_seed(0)
    model = RoofMapNet(cfg.model).to(dev).train()
    eager = RoofMapNetLoss(cfg).to(dev)
    compiled = torch.compile(RoofMapNetLoss(cfg).to(dev), dynamic=True)
    out: dict[str, Any] = {}
    totals: dict[str, float] = {}
    for name, criterion in (("eager", eager), ("compiled", compiled)):
        times = []
        for _ in range(steps + 2):
            model.zero_grad(set_to_none=True)
            sync()
            t0 = time.perf_counter()
            torch.manual_seed(1)
            total = batch_losses(model, criterion, batch)[0]["total"]  # type: ignore[arg-type]
            total.backward()
            sync()
            times.append(time.perf_counter() - t0)
        totals[name] = float(total)
        steady = sorted(times[2:])
        out[name] = {"median_step_s": steady[len(steady) // 2], "first_step_s": times[0]}
    out["speedup"] = out["eager"]["median_step_s"] / out["compiled"]["median_step_s"]
    out["total_loss_rel_diff"] = abs(totals["compiled"] - totals["eager"]) / max(abs(totals["eager"]), 1e-12)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every check; write JSON to --out and stdout."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check", file=sys.stderr)
        return 1
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    state: dict[str, Any] = {}
    stages = (
        ("train_steps", lambda: train_steps(args.steps, args.batch_size)),
        ("train_overhead", lambda: train_overhead(args.batch_size, 5)),
        ("predict", lambda: predict_latency(args.repeats)),
        ("export", export_on_cuda),
        ("lightning_fit_16_mixed", lambda: lightning_fit(state)),
        ("cli_on_cuda", lambda: cli_on_cuda(state)),
        ("layout_amp", lambda: layout_amp(max(3, args.steps // 6), args.batch_size)),
        ("compiled_objective", lambda: compiled_objective(max(3, args.steps // 6), args.batch_size)),
    )
    only = {name for name in args.only.split(",") if name}
    for name, fn in stages:
        if only and name not in only:
            continue
        try:
            report[name] = fn()
        except Exception as exc:  # one failing check must not hide the others
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({name: report[name]}, indent=2, default=str), flush=True)
        if args.out is not None:  # after every stage, so a run cut short still leaves what it measured
            args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
