"""Exported-model benchmark: onnxruntime (CPU) vs PyTorch eager on the default config, batch 1, 512².

Variants, each timed in its own subprocess (a clean peak RSS each: :func:`roofmapnet.utils.memory.peak_rss_mib`):

* ``eager-fp32`` — :meth:`RoofMapNet.predict` in float32;
* ``eager-bf16`` — the same under ``torch.autocast("cpu", torch.bfloat16)`` (what ``roofmap infer --precision bf16``
  does);
* ``onnx-fp32`` / ``onnx-fp16`` — the exported pipeline (:func:`roofmapnet.export.export_onnx`) run by
  onnxruntime's CPU execution provider (fp16 graphs are meant for GPU runtimes; on CPU they are reported as is).

The weights are random (seeded); ``--junctions K`` forces ``K`` proposals (``eval_junc_thres = 0``,
``n_dyn_junc = K``, i.e. ``K(K−1)/2`` verified lines); by default the default config decides (an untrained model
reaches the cap of 300 → 44,850 lines).  The input is the synthetic roof image of the parity check.  The driver
also prints the parity of onnx-fp32 against eager-fp32 on that image::

    python bench/bench_export.py                       # all variants, 1 warm-up + 3 timed runs each
    python bench/bench_export.py --repeats 1 --threads 2 --variants eager-fp32,onnx-fp32
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from roofmapnet.config import RootConfig
from roofmapnet.errors import RoofMapError
from roofmapnet.export.onnx import export_onnx
from roofmapnet.export.parity import check_parity, exported_predictor, normalise, parity_images, to_pixels
from roofmapnet.export.pipeline import export_config, with_config
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.memory import peak_rss_mib

VARIANTS = ("eager-fp32", "eager-bf16", "onnx-fp32", "onnx-fp16")
#: Variants run by default: on CPUs without native half precision the bf16 / fp16 ones take hours at 512² (and the
#: fp16 graph cannot be traced on a CPU, see ``check_trace_device``); the half-precision probe measures why.
DEFAULT_VARIANTS = ("eager-fp32", "onnx-fp32")


def half_precision_probe(threads: int | None) -> dict[str, float]:
    """Seconds of one 3×3 128→128 convolution on [1, 128, 64, 64] in torch (fp32 / bf16 / fp16) and onnxruntime
    (fp32 / fp16): how much half precision costs on this CPU."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if threads is not None:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, 128, 64, 64), generator=gen)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    out: dict[str, float] = {}
    for name, dtype in (("torch_fp32", torch.float32), ("torch_bf16", torch.bfloat16), ("torch_fp16", torch.float16)):
        xx, cc = x.to(dtype), conv.to(dtype)
        with torch.inference_mode():
            cc(xx)
            t0 = time.perf_counter()
            cc(xx)
        out[name] = time.perf_counter() - t0
    w = conv.weight.detach().float().numpy()
    for name, np_dtype, onnx_dtype in (
        ("ort_fp32", np.float32, TensorProto.FLOAT),
        ("ort_fp16", np.float16, TensorProto.FLOAT16),
    ):
        graph = helper.make_graph(
            [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
            "probe",
            [helper.make_tensor_value_info("x", onnx_dtype, [1, 128, 64, 64])],
            [helper.make_tensor_value_info("y", onnx_dtype, [1, 128, 64, 64])],
            [numpy_helper.from_array(w.astype(np_dtype), "w")],
        )
        # IR version 8 (what opset 17 needs): newer onnx packages write a default IR that older runtimes refuse.
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        sess = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy().astype(np_dtype)}
        sess.run(None, feed)
        t0 = time.perf_counter()
        sess.run(None, feed)
        out[name] = time.perf_counter() - t0
    return {k: round(v, 4) for k, v in out.items()}


def bench_config(junctions: int | None) -> RootConfig:
    """The default config, optionally with ``K`` forced to ``junctions``."""
    cfg = RootConfig()
    if junctions is None:
        return cfg
    data = cfg.model_dump(mode="json")
    data["model"].update(n_dyn_junc=junctions, eval_junc_thres=0.0)
    return RootConfig.model_validate(data)


def build_model(cfg: RootConfig, seed: int) -> RoofMapNet:
    """A randomly initialised (seeded) model in eval mode."""
    torch.manual_seed(seed)
    return RoofMapNet(cfg.model).eval()


def bench_pixels(cfg: RootConfig) -> torch.Tensor:
    """[1, 3, S, S] float32 pixels of the synthetic roof image."""
    _, image = parity_images(cfg.model)[0]
    return to_pixels([image])


def run_variant(
    variant: str, weights: Path, onnx_dir: Path, cfg: RootConfig, *, repeats: int, warmup: int, threads: int | None
) -> dict[str, Any]:
    """Time one variant in this process and return its record."""
    if threads is not None:
        torch.set_num_threads(threads)
    pixels = bench_pixels(cfg)
    if variant.startswith("eager"):
        model = RoofMapNet(cfg.model).eval()
        model.load_state_dict(torch.load(weights, weights_only=True))
        images = normalise(pixels, cfg.model)
        ctx: Any = torch.autocast("cpu", dtype=torch.bfloat16) if variant == "eager-bf16" else contextlib.nullcontext()

        def call() -> tuple[int, int]:
            with torch.inference_mode(), ctx:
                wf = model.predict(images)[0]
            return len(wf.scores), len(wf.junction_scores)

    else:
        from roofmapnet.export.runtime import OnnxModel

        precision = variant.split("-")[1]
        onnx_model = OnnxModel(onnx_dir / f"{precision}.onnx", providers=["CPUExecutionProvider"], threads=threads)

        def call() -> tuple[int, int]:
            wf = onnx_model.predict_pixels(pixels)[0]
            return len(wf.scores), len(wf.junction_scores)

    for _ in range(warmup):
        call()
    times = []
    lines = junctions = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        lines, junctions = call()
        times.append(time.perf_counter() - t0)
    return {
        "variant": variant,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "repeats": repeats,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "lines": lines,
        "junctions": junctions,
        "threads": torch.get_num_threads() if threads is None else threads,
    }


def main(argv: list[str] | None = None) -> None:
    """Driver (no ``--worker``): export, then one subprocess per variant; worker: time one variant."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS)
    )
    parser.add_argument("--no-probe", action="store_true", help="skip the half-precision convolution probe")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the library's)")
    parser.add_argument("--junctions", type=int, default=None, help="force K proposals (default: the config's rule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = bench_config(args.junctions)
    if args.worker is not None:
        record = run_variant(
            args.worker,
            args.workdir / "weights.pth",
            args.workdir,
            cfg,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
        )
        print(json.dumps(record))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    with tempfile.TemporaryDirectory(prefix="roofmap-bench-export-") as tmp:
        work = Path(tmp)
        model = with_config(build_model(cfg, args.seed), export_config(cfg).model)
        torch.save(model.state_dict(), work / "weights.pth")
        exports: dict[str, float] = {}
        for precision in ("fp32", "fp16"):
            if f"onnx-{precision}" in variants:
                t0 = time.perf_counter()
                # fp16 is traced on a GPU where there is one (CPU half kernels make the trace take hours);
                # the graph then runs on onnxruntime's CPU provider like the others.
                gpu = precision == "fp16" and torch.cuda.is_available()
                try:
                    export_onnx(
                        copy.deepcopy(model).cuda() if gpu else model,
                        cfg,
                        work / f"{precision}.onnx",
                        precision=precision,
                    )
                except RoofMapError as exc:
                    print(json.dumps({"export": precision, "error": str(exc)}))
                    continue
                exports[precision] = time.perf_counter() - t0
        meta = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "image_size": cfg.model.image_size,
            "batch": 1,
            "export_seconds": {k: round(v, 1) for k, v in exports.items()},
        }
        print(json.dumps({"meta": meta}))
        if not args.no_probe:
            print(json.dumps({"half_precision_probe": half_precision_probe(args.threads)}))
        if "onnx-fp32" in variants:
            from roofmapnet.export.runtime import OnnxModel

            onnx_model = OnnxModel(work / "fp32.onnx", providers=["CPUExecutionProvider"], threads=args.threads)
            m = cfg.model
            predict = exported_predictor(
                onnx_model, score_threshold=m.line_score_thres, junction_threshold=m.eval_junc_thres
            )
            report = check_parity(model, predict, parity_images(m)[:1], label="onnx fp32")
            im = report.images[0]
            print(
                json.dumps(
                    {
                        "parity": {
                            "passed": im.passed,
                            "lines": [im.ref_lines, im.exp_lines],
                            "matched": im.matched,
                            "max_score_diff": im.max_score_diff,
                            "reason": im.reason,
                        }
                    }
                )
            )
            del onnx_model
        del model
        records = []
        for variant in variants:
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                variant,
                "--workdir",
                str(work),
                "--repeats",
                str(args.repeats),
                "--warmup",
                str(args.warmup),
            ]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            if args.junctions is not None:
                cmd += ["--junctions", str(args.junctions)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(json.dumps({"variant": variant, "error": proc.stderr.strip().splitlines()[-1:]}))
                continue
            record = json.loads(proc.stdout.strip().splitlines()[-1])
            records.append(record)
            print(json.dumps(record))
    base = next((r for r in records if r["variant"] == "eager-fp32"), None)
    print(
        f"{'variant':<12} {'median s':>9} {'min s':>8} {'vs eager':>9} {'peak RSS MiB':>13} {'lines':>7} {'junctions':>9}"
    )
    for r in records:
        ratio = f"{base['median_s'] / r['median_s']:.2f}x" if base else "-"
        print(
            f"{r['variant']:<12} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {ratio:>9} {r['peak_rss_mib']:>13.0f} "
            f"{r['lines']:>7} {r['junctions']:>9}"
        )


if __name__ == "__main__":
    main()
