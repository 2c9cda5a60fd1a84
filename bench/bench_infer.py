"""``roofmap infer`` end-to-end throughput against model-only time, measured in the same process.

End to end is :func:`~roofmapnet.inference.runner.run_inference`, the engine of ``roofmap infer`` (discovery, background decoding and resizing,
batching, ``model.predict``, L-CNN post-processing, background JSON / GeoJSON / overlay writing), on synthetic
roof scenes written as PNG files.  Model-only is ``model.predict`` alone on the same images, already decoded and
batched, with the same thresholds and precision.  The goal of the issue is ``end-to-end / model-only ≤ 1.3``.
On a shared machine the two timings can see different loads, so the ratio of the end-to-end wall time to the
model time measured *inside that same run* is reported too.  Single-threaded stage timings (decode + resize,
post-processing, each writer) explain the difference::

    python bench/bench_infer.py                                   # default model, 8 images of 640×480, CPU
    python bench/bench_infer.py --model tiny --images 16 --json bench-infer.json
    python bench/bench_infer.py --checkpoint logs/checkpoints/last.ckpt --threshold 0.5

Weights are random unless ``--checkpoint`` is given.  Random weights give every candidate a score near 0.5, so
``--junctions K`` forces K proposals per image (``eval_junc_thres = 0``, ``n_dyn_junc = K``: ``K(K-1)/2``
verified candidates, as ``bench/bench_model.py``) and ``--max-lines`` (default 500, a trained model's typical
output; 0 = no cap) bounds the lines kept, so that the post-processing and writers see a realistic load.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from roofmapnet.config.schema import InferConfig
from roofmapnet.inference.images import prepare_image, read_image
from roofmapnet.inference.outputs.writers import (
    geojson_record,
    postprocess_threshold_px,
    prediction_record,
    write_json,
    write_overlay,
)
from roofmapnet.inference.postprocess import postprocess_lines
from roofmapnet.inference.predictor import Predictor
from roofmapnet.inference.runner import run_inference, run_info

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_predictor, emit


def _parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` → (height 480, width 640)."""
    w, _, h = text.lower().partition("x")
    return int(h), int(w)


def make_images(folder: Path, n: int, height: int, width: int, seed: int) -> list[Path]:
    """Write ``n`` synthetic roof scenes (``roofmapnet.data.synth``) as PNG files."""
    from roofmapnet.data.synth import render_sample

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image, _ = render_sample(np.random.default_rng(seed + i), height, width)
        path = folder / f"scene{i:04d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _stage_timings(predictor: Predictor, paths: list[Path], options: InferConfig, out: Path) -> dict[str, float]:
    """Mean single-threaded seconds per image of each non-model stage."""
    cfg = predictor.cfg
    info = run_info(predictor, options)
    t: dict[str, list[float]] = {"decode_resize": [], "postprocess": [], "json": [], "geojson": [], "overlay": []}
    raw_options = options.model_copy(update={"postprocess": False})
    for path in paths:
        t0 = time.perf_counter()
        rgb = read_image(path)
        x = prepare_image(rgb, cfg.model.image_size, cfg.model.image)
        t["decode_resize"].append(time.perf_counter() - t0)
        (wf,) = predictor.predict(x[None], [rgb.shape[:2]], raw_options)
        h, w = rgb.shape[:2]
        scale = torch.tensor([h / wf.heatmap_size[0], w / wf.heatmap_size[1]], dtype=torch.float64)
        t0 = time.perf_counter()
        postprocess_lines(wf.lines * scale, wf.scores, postprocess_threshold_px(options.postprocess_t, w, h))
        t["postprocess"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        write_json(out / "stage.json", prediction_record(wf, path, info))
        t["json"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        write_json(out / "stage.geojson", geojson_record(wf, path))
        t["geojson"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        write_overlay(out / "stage_overlay.png", rgb, wf, info.threshold)
        t["overlay"].append(time.perf_counter() - t0)
    return {k: statistics.mean(v) for k, v in t.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the inputs and the model, then time model-only and end-to-end runs alternately."""
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = _parse_size(args.size)
    predictor = build_predictor(args)
    options = InferConfig.from_options(
        threshold=args.threshold,
        max_lines=args.max_lines or None,
        postprocess=not args.no_postprocess,
        outputs=args.outputs,
        batch_size=args.batch_size,
        workers=args.workers,
    )
    thr, jthr = predictor.thresholds(options)
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        root = Path(tmp)
        paths = make_images(root / "images", args.images, height, width, args.seed)
        cfg = predictor.cfg
        rgbs = [read_image(p) for p in paths]
        tensors = torch.stack([prepare_image(im, cfg.model.image_size, cfg.model.image) for im in rgbs])
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in rgbs]
        bs = args.batch_size

        def model_only() -> tuple[float, int]:
            lines = 0
            t0 = time.perf_counter()
            for start in range(0, len(paths), bs):
                with torch.inference_mode(), predictor.autocast():
                    wfs = predictor.model.predict(
                        tensors[start : start + bs].to(predictor.device),
                        sizes[start : start + bs],
                        max_lines=options.max_lines,
                        junction_threshold=jthr,
                        score_threshold=thr,
                    )
                lines += sum(len(w.lines) for w in wfs)
            if predictor.device.type == "cuda":
                torch.cuda.synchronize(predictor.device)
            return time.perf_counter() - t0, lines

        model_only()  # warm-up (allocator, oneDNN primitives)
        model_times, e2e_times, in_run_model = [], [], []
        report = None
        for r in range(args.repeats):
            m, raw_lines = model_only()
            model_times.append(m)
            report = run_inference(predictor, [root / "images"], root / f"out{r}", options)
            if report.failed:
                raise SystemExit(f"bench: {len(report.failed)} images failed: {report.failed[0]}")
            e2e_times.append(report.seconds)
            in_run_model.append(report.model_seconds)
        assert report is not None
        stages = _stage_timings(predictor, paths[: min(3, len(paths))], options, root)
    n = len(paths)
    best = int(np.argmin(e2e_times))
    model_s, e2e_s = min(model_times), e2e_times[best]
    return {
        "images": n,
        "image_size": f"{width}x{height}",
        "model": args.checkpoint or args.model,
        "network_input": cfg.model.image_size,
        "device": str(predictor.device),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "batch_size": bs,
        "workers": args.workers,
        "outputs": options.outputs,
        "postprocess": options.postprocess,
        "max_lines": options.max_lines,
        "proposals_K": args.junctions if not args.checkpoint else None,
        "lines_per_image_model": raw_lines / n,
        "lines_per_image_written": report.total_lines / n,
        "model_only_images_per_s": n / model_s,
        "end_to_end_images_per_s": n / e2e_s,
        "ratio_end_to_end_over_model_only": e2e_s / model_s,
        # Same-run ratio: immune to load changes between the two timings (shared machines).
        "ratio_end_to_end_over_its_model_time": e2e_s / in_run_model[best],
        "model_time_inside_end_to_end_s": in_run_model[best],
        "model_only_s": model_s,
        "end_to_end_s": e2e_s,
        "repeats": args.repeats,
        "stage_seconds_per_image": {k: round(v, 5) for k, v in stages.items()},
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--images", type=int, default=8, help="number of synthetic images")
    p.add_argument("--size", default="640x480", help="image size WxH")
    p.add_argument("--model", choices=("default", "tiny"), default="default", help="random-weight architecture")
    p.add_argument("--checkpoint", help="use these weights instead of a random model")
    p.add_argument("--junctions", type=int, default=92, help="forced proposals per image (random weights)")
    p.add_argument("--threshold", type=float, default=None, help="line score threshold (default: the config's)")
    p.add_argument("--max-lines", type=int, default=500, help="lines kept per image before post-processing (0: all)")
    p.add_argument("--no-postprocess", action="store_true")
    p.add_argument("--outputs", default="json,geojson,overlay")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=2, help="decoding threads")
    p.add_argument("--precision", default="32", choices=("32", "bf16", "16", "auto"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--repeats", type=int, default=2, help="alternating timed rounds; the minimum is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the result to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON object."""
    args = _parse(argv)
    result = run(args)
    emit(result, args.json)
    ratio = result["ratio_end_to_end_over_model_only"]
    print(f"end-to-end / model-only = {ratio:.3f} (goal ≤ 1.3)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
