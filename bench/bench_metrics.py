"""Benchmark of the evaluation metrics and the L-CNN post-processing (CPU, synthetic data).

Measures, on deterministic synthetic data:

Synthetic scenes are hip roofs (eaves, ridge and hips sharing junctions) in 128-space; predictions are noisy
copies, duplicates, wrong junction pairs and clutter.

* sAP5/10/15 + msAP + sF over ``n_images`` images (``LineAPAccumulator``: add every image, then compute);
* mAP^J over ``n_images`` 128×128 junction heatmaps (``JunctionAPAccumulator``; heatmap generation not timed);
* AP^H / F^H over ``n_aph_images`` 512×512 images, post-processing included (``HeatmapAPAccumulator``);
* post-processing of ``n_candidates`` candidate lines in a 512×512 image (τ = 0.01·diagonal), for model-like
  candidates (near-duplicates, fragments and clutter around a wireframe) and for uniformly random lines, and its
  first call in the process (numba's import plus its compile or cache load), made before anything else is timed;
* the process's peak resident memory.

Times are given as wall-clock and as process CPU time; on a shared machine the CPU time is the steadier one.

Usage: ``python bench/bench_metrics.py`` (prints JSON); ``run()`` returns the same dict.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from roofmapnet.evaluation.metrics import HeatmapAPAccumulator, JunctionAPAccumulator, LineAPAccumulator
from roofmapnet.inference.postprocess import postprocess_lines, postprocess_wireframe_threshold
from roofmapnet.utils.memory import peak_rss_mib


def _roof_lines(rng: np.random.Generator, size: float) -> np.ndarray:
    """GT lines of a synthetic hip-roof scene: per roof 4 eaves, 1 ridge and 4 hips sharing junctions."""
    out = []
    for _ in range(int(rng.integers(3, 9))):
        h, w = rng.uniform(0.08, 0.3, 2) * size
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        ang = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        corners = np.array([[-h, -w], [-h, w], [h, w], [h, -w]]) / 2
        ridge = np.array([[0.0, -w / 2 + h / 2], [0.0, w / 2 - h / 2]])
        pts = np.concatenate([corners, ridge]) @ rot.T + (cy, cx)
        pairs = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (0, 4), (3, 4), (1, 5), (2, 5)]
        out.extend(pts[[i, j]] for i, j in pairs)
    return np.clip(np.array(out), 0, size - 1e-4)


def _line_image(rng: np.random.Generator, size: float = 128.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GT lines and score-sorted predictions of one image: noisy GT copies (the best scored), duplicates,
    fragments, lines between unrelated junctions and short clutter."""
    gt = _roof_lines(rng, size)
    n_gt = gt.shape[0]
    copies = gt[rng.integers(n_gt, size=3 * n_gt)] + rng.normal(0, 1.0, (3 * n_gt, 2, 2))
    junctions = gt.reshape(-1, 2)
    wrong = junctions[rng.integers(junctions.shape[0], size=(2 * n_gt, 2))]
    clutter = rng.uniform(0, size, (n_gt, 1, 2)) + rng.normal(0, 6.0, (n_gt, 2, 2))
    pred = np.concatenate([copies, wrong, clutter])
    scores = np.concatenate([rng.uniform(0.5, 1.0, 3 * n_gt), rng.uniform(0.0, 0.7, 3 * n_gt)])
    order = np.argsort(-scores)
    return pred[order], scores[order], gt


def _candidates(rng: np.random.Generator, n: int, size: float = 512.0, n_base: int = 60) -> np.ndarray:
    """Model-like candidate lines: noisy copies, fragments and extensions of a wireframe, plus clutter."""
    base = rng.uniform(0, size, (n_base, 2, 2))
    pick = base[rng.integers(n_base, size=n)]
    t = np.sort(rng.uniform(-0.2, 1.2, (n, 2)), axis=1)
    t[rng.random(n) < 0.5] = (0.0, 1.0)  # whole-line copies
    lines = pick[:, :1] + (pick[:, 1:] - pick[:, :1]) * t[:, :, None] + rng.normal(0, 1.5, (n, 2, 2))
    clutter = rng.random(n) < 0.25
    lines[clutter] = rng.uniform(0, size, (int(clutter.sum()), 2, 2))
    flip = rng.random(n) < 0.5
    lines[flip] = lines[flip][:, ::-1]
    return lines


class _Clock:
    """Accumulated wall-clock and process-CPU time (CPU time is less sensitive to a busy machine)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> _Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def _time_postprocess(lines: np.ndarray, scores: np.ndarray, tau: float, repeats: int) -> dict[str, float]:
    wall, cpu = [], []
    kept = 0
    for _ in range(repeats):
        with _Clock() as clock:
            out, _ = postprocess_lines(lines, scores, tau)
        wall.append(clock.wall)
        cpu.append(clock.cpu)
        kept = int(out.shape[0])
    return {
        "median_wall_ms": round(1e3 * float(np.median(wall)), 2),
        "min_wall_ms": round(1e3 * float(np.min(wall)), 2),
        "median_cpu_ms": round(1e3 * float(np.median(cpu)), 2),
        "kept": kept,
    }


def run(n_images: int = 1000, n_candidates: int = 2500, n_aph_images: int = 20, seed: int = 0) -> dict[str, Any]:
    """Run every measurement once and return the figures (times in seconds or milliseconds, RSS in MiB).

    Args:
        n_images: Images for sAP and mAP^J.
        n_candidates: Candidate lines for the post-processing timing.
        n_aph_images: Images (512×512) for AP^H.
        seed: Seed of the synthetic data.
    """
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {"n_images": n_images, "n_candidates": n_candidates, "n_aph_images": n_aph_images}
    with _Clock() as clock:  # the one-off numba import + compile / cache load, kept out of the timings below
        postprocess_lines(np.zeros((1, 2, 2)), np.ones(1), 1.0)
    results["postprocess_first_call_wall_seconds"] = round(clock.wall, 3)

    images = [_line_image(rng) for _ in range(n_images)]
    with _Clock() as clock:
        acc = LineAPAccumulator()
        for pred, scores, gt in images:
            acc.add(pred, scores, gt)
        sap = acc.compute()
    results["sap_wall_seconds"] = round(clock.wall, 3)
    results["sap_cpu_seconds"] = round(clock.cpu, 3)
    results["sap_predictions"] = acc.n_pred
    results["sap"] = {k: round(v, 3) for k, v in sap.items()}
    del images

    jacc = JunctionAPAccumulator()
    clock = _Clock()
    for _ in range(n_images):
        gt = np.unique(_roof_lines(rng, 128.0).reshape(-1, 2), axis=0)
        jmap = 0.05 * rng.random((128, 128)) ** 4  # background: about 30% of the pixels reach 0.01
        r, c = np.floor(gt).astype(int).T
        jmap[r, c] = rng.uniform(0.3, 1.0, gt.shape[0])
        joff = rng.uniform(-0.5, 0.5, (2, 128, 128))
        joff[:, r, c] = np.clip(gt - np.floor(gt) - 0.5 + rng.normal(0, 0.2, gt.shape), -0.49, 0.49).T
        with clock:
            jacc.add(jmap, gt, joff)
    with clock:
        mapj = jacc.compute()
    results["mapj_wall_seconds"] = round(clock.wall, 3)
    results["mapj_cpu_seconds"] = round(clock.cpu, 3)
    results["mapj"] = {k: round(v, 3) for k, v in mapj.items() if not k.endswith("_nooff")}

    hacc = HeatmapAPAccumulator((128, 128))
    with _Clock() as clock:
        for _ in range(n_aph_images):
            pred, scores, gt = _line_image(rng)
            hacc.add(pred, scores, gt, (512, 512))
        aph = hacc.compute()
    results["aph_wall_seconds_per_image"] = round(clock.wall / max(n_aph_images, 1), 4)
    results["aph_cpu_seconds_per_image"] = round(clock.cpu / max(n_aph_images, 1), 4)
    results["aph"] = {k: round(v, 3) for k, v in aph.items()}

    tau = postprocess_wireframe_threshold(float(np.hypot(512, 512)), 0.010)
    scores = np.sort(rng.random(n_candidates))[::-1].copy()
    results["postprocess_model_like"] = _time_postprocess(_candidates(rng, n_candidates), scores, tau, 5)
    results["postprocess_uniform"] = _time_postprocess(rng.uniform(0, 512, (n_candidates, 2, 2)), scores, tau, 5)
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
