"""Benchmark: training-target computation, vectorised (the package) vs a literal per-pair Python reference.

The reference below is a straightforward transcription of the spec (ARCHITECTURE.md §2.1, L-CNN's
``dataset/wireframe.py``): a Python loop over the lines and over every junction pair, each rasterised by a
line-for-line port of ``skimage.draw.line_aa`` (A. Zingl's loop).  It follows the same decisions as the package
(float32 junctions, exact dedup, repeated lines dropped, offsets kept below 0.5) so that both produce the same
arrays; ``tests/unit/data/test_preprocess.py`` checks that they do.  Note that skimage's Cython ``line_aa`` would make the
reference's rasterisation faster than this pure-Python port; the ``per-pair numpy`` variant (the same Python
pair loop, each pair rasterised with the package's numpy rasteriser) is reported as a second baseline.

Run ``python -m bench.bench_preprocess`` (or ``nox -s bench``); :func:`run` returns the figures as a dict.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from roofmapnet.utils.memory import peak_rss_mib

CLIP_EPS = 1e-4
OFF_MAX = float(np.nextafter(np.float32(0.5), np.float32(0.0)))


def line_aa_literal(r0: int, c0: int, r1: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line-for-line Python port of ``skimage.draw._draw._line_aa`` (float32 ``err``/``ed`` as in its Cython)."""
    rr: list[int] = []
    cc: list[int] = []
    val: list[float] = []
    dc = abs(c0 - c1)
    dr = abs(r0 - r1)
    err = float(np.float32(dc - dr))
    sign_c = 1 if c0 < c1 else -1
    sign_r = 1 if r0 < r1 else -1
    ed = 1.0 if dc + dr == 0 else float(np.float32(math.sqrt(dc * dc + dr * dr)))
    c, r = c0, r0
    while True:
        cc.append(c)
        rr.append(r)
        val.append(abs(err - dc + dr) / ed)
        err_prime = err
        c_prime = c
        if 2 * err_prime >= -dc:
            if c == c1:
                break
            if err_prime + dr < ed:
                cc.append(c)
                rr.append(r + sign_r)
                val.append(abs(err_prime + dr) / ed)
            err -= dr
            c += sign_c
        if 2 * err_prime <= dr:
            if r == r1:
                break
            if dc - err_prime < ed:
                cc.append(c_prime + sign_c)
                rr.append(r)
                val.append(abs(dc - err_prime) / ed)
            err += dc
            r += sign_r
    return np.array(rr, dtype=np.intp), np.array(cc, dtype=np.intp), 1.0 - np.array(val, dtype=float)


def _line_aa_numpy(r0: int, c0: int, r1: int, c1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One line with the package's numpy rasteriser (for the per-pair numpy baseline)."""
    from roofmapnet.data.targets import line_aa

    ras = line_aa(np.array([[r0, c0]]), np.array([[r1, c1]]))
    return ras.rr, ras.cc, ras.val


Rasteriser = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def targets_literal(
    lines_xy: np.ndarray,
    image_hw: tuple[int, int],
    heatmap_hw: tuple[int, int],
    line_aa: Rasteriser = line_aa_literal,
    return_scores: bool = False,
) -> dict[str, Any]:
    """The label arrays by the literal per-line / per-pair loops (the reference of the spec).

    Args:
        lines_xy: [L, 4] ``x1, y1, x2, y2`` in image pixels.
        image_hw: (H, W) of the image.
        heatmap_hw: (h, w).
        line_aa: the single-line rasteriser.
        return_scores: also return ``"scores"``, the overlap score of each ``Lneg`` pair (all of them).
    """
    (big_h, big_w), (h, w) = image_hw, heatmap_hw
    fy, fx = h / big_h, w / big_w
    hi_y, hi_x = np.float32(h - CLIP_EPS), np.float32(w - CLIP_EPS)
    jmap = np.zeros((1, h, w), dtype=np.float32)
    joff = np.zeros((1, 2, h, w), dtype=np.float32)
    lmap = np.zeros((h, w), dtype=np.float32)
    junc: list[tuple[float, float]] = []
    jids: dict[tuple[float, float], int] = {}

    def jid(p: tuple[float, float]) -> int:
        if p not in jids:
            jids[p] = len(junc)
            junc.append(p)
        return jids[p]

    lnid: list[tuple[int, int]] = []
    for x1, y1, x2, y2 in np.asarray(lines_xy, dtype=np.float64).tolist():
        v0 = (
            float(min(max(np.float32(y1 * fy), np.float32(0)), hi_y)) + 0.0,
            float(min(max(np.float32(x1 * fx), np.float32(0)), hi_x)) + 0.0,
        )
        v1 = (
            float(min(max(np.float32(y2 * fy), np.float32(0)), hi_y)) + 0.0,
            float(min(max(np.float32(x2 * fx), np.float32(0)), hi_x)) + 0.0,
        )
        if v0 == v1:
            continue
        a, b = jid(v0), jid(v1)
        if (a, b) in lnid or (b, a) in lnid:
            continue
        lnid.append((a, b))
        r0, c0, r1, c1 = int(v0[0]), int(v0[1]), int(v1[0]), int(v1[1])
        jmap[0, r0, c0] = 1
        jmap[0, r1, c1] = 1
        rr, cc, value = line_aa(r0, c0, r1, c1)
        lmap[rr, cc] = np.maximum(lmap[rr, cc], value)
    for y, x in junc:
        joff[0, 0, int(y), int(x)] = min(y - math.floor(y) - 0.5, OFF_MAX)
        joff[0, 1, int(y), int(x)] = min(x - math.floor(x) - 0.5, OFF_MAX)

    llmap = zoom(lmap, 0.5)
    lneg: list[tuple[int, int, float]] = []
    for i0, i1 in combinations(range(len(junc)), 2):
        if (i0, i1) in lnid or (i1, i0) in lnid:
            continue
        (y0, x0), (y1, x1) = junc[i0], junc[i1]
        rr, cc, value = line_aa(int(y0 / 2), int(x0 / 2), int(y1 / 2), int(x1 / 2))
        lneg.append((i0, i1, float(np.average(np.minimum(value, llmap[rr, cc])))))
    lneg.sort(key=lambda item: -item[2])

    junc_arr = np.array([(y, x, 0.0) for y, x in junc], dtype=np.float32).reshape(-1, 3)
    lpos_idx = np.array(lnid, dtype=np.int64).reshape(-1, 2)
    neg_idx = np.array([(i0, i1) for i0, i1, _ in lneg], dtype=np.int64).reshape(-1, 2)
    out: dict[str, Any] = {
        "jmap": jmap,
        "joff": joff,
        "lmap": lmap,
        "junc": junc_arr,
        "Lpos": lpos_idx,
        "Lneg": neg_idx[:4000],
        "lpos": junc_arr[lpos_idx].reshape(-1, 2, 3),
        "lneg": junc_arr[neg_idx[:2000]].reshape(-1, 2, 3),
    }
    if return_scores:
        out["scores"] = np.array([s for _, _, s in lneg], dtype=np.float64)
    return out


def typical_roof(seed: int = 0, size: int = 512, hip: int = 6, flat: int = 2) -> np.ndarray:
    """A roof scene of ``size``² pixels: ``hip`` hip roofs (6 junctions, 9 lines each) and ``flat`` flat roofs
    (4 junctions, 4 lines), each a randomly sized, slightly rotated rectangle in its own grid cell.  The
    default has 44 junctions and 62 lines.

    Returns:
        [L, 4] ``x1, y1, x2, y2`` lines in image pixels.
    """
    rng = np.random.default_rng(seed)
    n = hip + flat
    grid = math.ceil(math.sqrt(n))
    cell = size / grid
    lines: list[np.ndarray] = []
    for k in range(n):
        cx, cy = (k % grid + 0.5) * cell, (k // grid + 0.5) * cell
        bw, bh = rng.uniform(0.55, 0.85) * cell, rng.uniform(0.35, 0.5) * cell
        corners = np.array([[-bw, -bh], [bw, -bh], [bw, bh], [-bw, bh]]) / 2
        pts = [corners[i] for i in range(4)]
        segs = [(0, 1), (1, 2), (2, 3), (3, 0)]
        if k < hip:
            ridge = (bw - bh) / 2
            pts += [np.array([-ridge, 0.0]), np.array([ridge, 0.0])]
            segs += [(4, 5), (0, 4), (3, 4), (1, 5), (2, 5)]
        theta = rng.uniform(-0.3, 0.3)
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        p = np.array(pts) @ rot.T + [cx, cy]
        lines += [np.concatenate([p[a], p[b]]) for a, b in segs]
    return np.array(lines)


def _time(fn: Callable[[], Any], repeats: int) -> float:
    """Best-of-``repeats`` wall time of ``fn`` in milliseconds."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def run(image_size: int = 512, heatmap_size: int = 128, repeats: int = 10, ref_repeats: int = 7) -> dict[str, Any]:
    """Time target computation (vectorised vs references), a full preprocess of one image, and ``__getitem__``.

    Args:
        image_size: model input side (the scene is drawn on an image of this size).
        heatmap_size: label heatmap side.
        repeats: timed calls (best of) per round of the vectorised code, and of ``__getitem__``.
        ref_repeats: interleaved rounds; each times each reference once.

    Times are the best over calls (and rounds); speed-ups are the median over rounds of the per-round ratio.

    Returns:
        A dict of figures (milliseconds per image, ratios, scene size, peak RSS in MiB).
    """
    from PIL import Image

    from roofmapnet.data.preprocess import PreprocessOptions, preprocess
    from roofmapnet.data.targets import targets_from_image_lines

    lines = typical_roof(size=image_size)
    hw = (image_size, image_size)
    hm = (heatmap_size, heatmap_size)
    mine = targets_from_image_lines(lines, hw, hm)
    # Interleaved rounds: load from other processes inflates timings unevenly over time, so each round times
    # both implementations back to back and the speed-up is the median of the per-round ratios.
    fast_ms, ref_ms, ref_np_ms = [], [], []
    for _ in range(ref_repeats):
        fast_ms.append(_time(lambda: targets_from_image_lines(lines, hw, hm), repeats))
        ref_ms.append(_time(lambda: targets_literal(lines, hw, hm), 1))
        ref_np_ms.append(_time(lambda: targets_literal(lines, hw, hm, line_aa=_line_aa_numpy), 1))
    fast_t, ref_t, ref_np_t = np.array(fast_ms), np.array(ref_ms), np.array(ref_np_ms)
    ref = targets_literal(lines, hw, hm)
    same = all(np.array_equal(mine[k], ref[k]) for k in ("jmap", "joff", "lmap", "junc", "Lpos", "lpos"))

    # torch only now: the preprocessing workers never import it (the targets are timed as they run there).
    from roofmapnet.config import RootConfig
    from roofmapnet.data.dataset import RoofDataset

    cfg = RootConfig.model_validate(
        {
            "model": {"image_size": image_size, "heatmap_size": heatmap_size},
            "data": {"augment": {"vflip": True, "rot90": True}},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp, "raw")
        (raw / "images").mkdir(parents=True)
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)).save(raw / "images/r.png")
        entry = {"filename": "r.png", "lines": lines.tolist()}
        (raw / "train.json").write_text(json.dumps([entry]))
        opts = PreprocessOptions(image_size=image_size, heatmap_size=heatmap_size, workers=0)
        t_full = _time(lambda: preprocess(raw, Path(tmp, "out"), opts), 5)
        ds = RoofDataset(Path(tmp, "out"), "train", cfg, train=True, seed=0)
        ds[0]
        t_item = _time(lambda: ds[0], repeats)
    return {
        "image_size": image_size,
        "heatmap_size": heatmap_size,
        "lines": len(mine["Lpos"]),
        "junctions": len(mine["junc"]),
        "negative_pairs": len(mine["Lneg"]),
        "targets_vectorised_ms": round(float(fast_t.min()), 2),
        "targets_reference_python_ms": round(float(ref_t.min()), 1),
        "targets_reference_numpy_per_pair_ms": round(float(ref_np_t.min()), 1),
        "speedup_vs_python_reference": round(float(np.median(ref_t / fast_t)), 1),
        "speedup_vs_numpy_per_pair_reference": round(float(np.median(ref_np_t / fast_t)), 1),
        "identical_to_reference": bool(same),
        "preprocess_one_image_ms": round(t_full, 1),
        "dataset_getitem_ms": round(t_item, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:40s} {value}")
