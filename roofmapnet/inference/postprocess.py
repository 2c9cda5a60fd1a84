"""L-CNN line post-processing: remove duplicate and overlapping lines, trimming partial overlaps.

This is L-CNN's ``lcnn/postprocess.py::postprocess`` (docs: ARCHITECTURE.md §5.5), with the same decisions
and the same floating-point formulas, so that it returns bit-identical lines for the same float64 input.
Candidates are visited in descending score order.  A candidate ``pq`` starts as the interval ``[start, end] =
[0, 1]`` of its own parameter (0 at ``p``, 1 at ``q``) and is compared with every line ``ab`` kept so far:

* ``d = min(max(dist²(a, line pq), dist²(b, line pq)), max(dist²(p, line ab), dist²(q, line ab)))`` with
  distances to the *infinite* lines; if ``d > threshold²`` the kept line is irrelevant.
* Otherwise ``a`` and ``b`` are projected on ``pq`` (``λ_a ≤ λ_b``, widened by ``tol``).  A kept line strictly
  inside ``(start, end)`` or disjoint from it is ignored; one covering ``[start, end]`` drops the candidate;
  one overlapping an end trims it (``start = λ_b`` or ``end = λ_a``), and the candidate is dropped once
  ``start ≥ end``.
* A survivor is stored as ``[p + (q − p)·start, p + (q − p)·end]``, with its score.

The procedure is sequential (each decision depends on the lines kept before), so it runs as one compiled loop
over the candidates (:func:`_postprocess_kernel`).  The kept parts are held in structure-of-arrays buffers: in
float64 for L-CNN's tests, and in float32, relative to the centre of the lines' bounding box, with their unit
normal form ``n·x = c`` for a pre-filter.  For each candidate a first, branch-free (SIMD-vectorised) pass over all
kept lines computes the four normal-form distances and pre-selects a kept line when both of ``a, b`` lie within
``τ + ε`` of line ``pq`` or both of ``p, q`` within ``τ + ε`` of line ``ab``, with ε = 1e-5·(extent + τ) +
1e-9·max |coordinate|, far above the rounding error of either formula; a degenerate line (``|b − a|² ≤ 1e-9``,
where L-CNN's clamped formula is no distance) and any NaN distance are always pre-selected, and above 1e18 in
magnitude every kept line is.  So the pre-selection is a superset of L-CNN's relevance test.  A second pass visits
the pre-selected lines, in the order they were kept, with L-CNN's exact float64 formulas (:func:`_pline`,
:func:`_plambda`: same operations in the same order, Python's ``min``/``max`` semantics, no fast-math) and rules
(:func:`_fold`).  Skipping a kept line that is not relevant changes nothing, so the output equals L-CNN's loop
bit for bit (``tests/test_postprocess.py`` checks this against a literal port, borderline distances included).

The loop is compiled by `numba <https://numba.pydata.org>`_, a JIT compiler from (a subset of) Python and numpy
to machine code through LLVM: run by the interpreter, the per-candidate work costs microseconds of overhead (the
former numpy block implementation took 40-60 ms for 2,500 candidates; the goal is ≤ 5 ms).  numba is imported on
the first call only, so ``import roofmapnet`` and the CLI's start-up do not pay for it.  That first call in a
process also compiles the kernel (a few seconds) and writes numba's on-disk cache, next to this module in
``__pycache__/`` (or under ``NUMBA_CACHE_DIR`` when set, or a per-user cache directory when the package
directory is not writable; with no writable location it compiles in every process); later processes load the
machine code from there (well under a second, numba's import included).  The functions the kernel calls are plain Python functions registered with numba
(``register_jitable``) on first use, and the kernel itself also runs uncompiled (a test compares the two).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from roofmapnet.config.schema import DEFAULT_POSTPROCESS_T  # the factor used for AP^H and for visualisation

#: The three L-CNN post-processing factors ``t`` (τ = t·image diagonal); 0.010 is the one used for AP^H.
POSTPROCESS_T_VALUES: tuple[float, float, float] = (0.006, 0.010, 0.015)

# pline()/plambda() divide by max(1e-9, |q - p|²); at or below this a line counts as degenerate for the pre-filter.
_DEGENERATE_SQ = 1e-9
# Above this coordinate magnitude the float32 pre-filter could overflow: it then selects every kept line.
_HUGE_COORD = 1e18

ArrayT = TypeVar("ArrayT")

_kernel_lock = threading.Lock()
_compiled_kernel: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None


def postprocess_wireframe_threshold(diag: float, t: float = DEFAULT_POSTPROCESS_T) -> float:
    """The post-processing distance ``τ = t·diag`` (L-CNN's ``post.py``).

    Args:
        diag: Image diagonal ``√(H² + W²)`` in the units of the lines (image pixels in L-CNN).
        t: Relative factor; L-CNN uses 0.006, 0.010 and 0.015.

    Returns:
        The absolute distance threshold to pass to :func:`postprocess_lines`.
    """
    if not (math.isfinite(diag) and diag >= 0):
        raise ValueError(f"diag must be a finite non-negative number, got {diag}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"t must be a finite non-negative number, got {t}")
    return float(t) * float(diag)


def postprocess_threshold_px(t: float, width: int, height: int) -> float:
    """The L-CNN post-processing distance τ = t·√(W² + H²) in image pixels."""
    return postprocess_wireframe_threshold(math.hypot(width, height), t)


def _pline(x1: float, y1: float, x2: float, y2: float, x: float, y: float) -> float:
    """Squared distance of ``(x, y)`` to the infinite line through ``(x1, y1)``-``(x2, y2)`` (L-CNN's formula)."""
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    u = ((x - x1) * px + (y - y1) * py) / (dd if dd > 1e-9 else 1e-9)  # Python's max(1e-9, dd), NaN included
    dx = x1 + u * px - x
    dy = y1 + u * py - y
    return dx * dx + dy * dy


def _plambda(x1: float, y1: float, x2: float, y2: float, x: float, y: float) -> float:
    """Parameter of the projection of ``(x, y)`` on the line ``(x1, y1)``-``(x2, y2)`` (0 at the first point)."""
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    return ((x - x1) * px + (y - y1) * py) / (dd if dd > 1e-9 else 1e-9)


def _relevance(p0: float, p1: float, q0: float, q1: float, a0: float, a1: float, b0: float, b1: float) -> float:
    """L-CNN's ``min(max(pline(pq, a), pline(pq, b)), max(pline(ab, p), pline(ab, q)))``, with Python's
    ``max``/``min`` semantics (``max(x, y)`` is ``y`` only when ``y > x``)."""
    d1 = _pline(p0, p1, q0, q1, a0, a1)
    d2 = _pline(p0, p1, q0, q1, b0, b1)
    m1 = d2 if d2 > d1 else d1
    d3 = _pline(a0, a1, b0, b1, p0, p1)
    d4 = _pline(a0, a1, b0, b1, q0, q1)
    m2 = d4 if d4 > d3 else d3
    return m2 if m2 < m1 else m1


def _fold(start: float, end: float, lam_lo: float, lam_hi: float) -> tuple[float, float, bool]:
    """One step of L-CNN's rules for a relevant kept line with (widened) projections ``lam_lo ≤ lam_hi``.

    Returns the new ``(start, end)`` and whether to stop looking at further kept lines.
    """
    if start < lam_lo and lam_hi < end:  # strictly inside: keep going
        return start, end, False
    if lam_hi < start or lam_lo > end:  # disjoint
        return start, end, False
    if lam_lo <= start and end <= lam_hi:  # covered: drop the candidate
        return 10.0, end, True
    if lam_lo <= start <= lam_hi:
        start = lam_hi
    if lam_lo <= end <= lam_hi:
        end = lam_lo
    return start, end, start >= end


def _filter_form(a0: float, a1: float, b0: float, b1: float, o0: float, o1: float) -> tuple[float, float, float]:
    """Unit normal form ``(n0, n1, c)``, ``n·(x − o) = c``, of the line ``a``-``b`` for the pre-filter (coordinates
    relative to the origin ``o``).  ``(0, 0, 0)`` for a degenerate line (``|b − a|² ≤ 1e-9``, computed exactly as
    in :func:`_pline`), whose pre-filter distances are then all 0: it is always selected."""
    px = b0 - a0
    py = b1 - a1
    dd = px * px + py * py
    if not dd > _DEGENERATE_SQ:
        return 0.0, 0.0, 0.0
    inv = 1.0 / math.sqrt(dd)
    n0 = -py * inv
    n1 = px * inv
    return n0, n1, n0 * (a0 - o0) + n1 * (a1 - o1)


def _postprocess_kernel(
    lines: np.ndarray, o0: float, o1: float, thr2: float, tol: float, reach2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sequential decisions over candidates ``lines`` [L, 4] ``(p0, p1, q0, q1)`` in visiting order.

    ``thr2`` is L-CNN's ``threshold**2``.  The pre-filter runs in float32 on coordinates relative to ``(o0, o1)``
    (the centre of the lines' bounding box) and selects a kept line when its float32 squared distances are not
    above ``reach2`` (≥ ``thr2`` plus a margin for the float32 rounding; ``inf`` selects every kept line).
    Returns the indices of the kept candidates and their ``start``/``end`` parameters.  Compiled by numba (see
    :func:`_kernel`); also valid as plain Python.
    """
    n = lines.shape[0]
    keep = np.empty(n, np.int64)
    starts = np.empty(n, np.float64)
    ends = np.empty(n, np.float64)
    # Kept parts a-b in float64 (L-CNN's tests) ...
    ka0 = np.empty(n, np.float64)
    ka1 = np.empty(n, np.float64)
    kb0 = np.empty(n, np.float64)
    kb1 = np.empty(n, np.float64)
    # ... and in float32 relative to o, with their normal forms (structure of arrays for the SIMD pre-filter).
    fa0 = np.empty(n, np.float32)
    fa1 = np.empty(n, np.float32)
    fb0 = np.empty(n, np.float32)
    fb1 = np.empty(n, np.float32)
    fn0 = np.empty(n, np.float32)
    fn1 = np.empty(n, np.float32)
    fc = np.empty(n, np.float32)
    r2 = np.float32(reach2)
    near = np.zeros((n // 8 + 1) * 8, np.uint8)  # pre-selection flags, scanned 8 at a time through near64
    near64 = near.view(np.uint64)
    n_kept = 0
    for i in range(n):
        p0 = lines[i, 0]
        p1 = lines[i, 1]
        q0 = lines[i, 2]
        q1 = lines[i, 3]
        m0, m1, mc = _filter_form(p0, p1, q0, q1, o0, o1)
        g0 = np.float32(m0)
        g1 = np.float32(m1)
        gc = np.float32(mc)
        fp0 = np.float32(p0 - o0)
        fp1 = np.float32(p1 - o1)
        fq0 = np.float32(q0 - o0)
        fq1 = np.float32(q1 - o1)
        # Pass 1 (branch-free, vectorised): pre-select.  "not (x > r2)" also selects on a NaN.
        for j in range(n_kept):
            da = g0 * fa0[j] + g1 * fa1[j] - gc
            db = g0 * fb0[j] + g1 * fb1[j] - gc
            dp = fn0[j] * fp0 + fn1[j] * fp1 - fc[j]
            dq = fn0[j] * fq0 + fn1[j] * fq1 - fc[j]
            far_pq = (da * da > r2) | (db * db > r2)
            far_ab = (dp * dp > r2) | (dq * dq > r2)
            near[j] = not (far_pq & far_ab)
        for j in range(n_kept, (n_kept + 7) // 8 * 8):
            near[j] = 0
        # Pass 2: L-CNN's exact test and rules on the pre-selected lines, in kept order.
        start = 0.0
        end = 1.0
        stop = False
        for w in range((n_kept + 7) // 8):
            if near64[w] == 0:
                continue
            for j in range(8 * w, 8 * w + 8):
                if near[j] == 0:
                    continue
                a0 = ka0[j]
                a1 = ka1[j]
                b0 = kb0[j]
                b1 = kb1[j]
                if _relevance(p0, p1, q0, q1, a0, a1, b0, b1) > thr2:
                    continue
                lam_a = _plambda(p0, p1, q0, q1, a0, a1)
                lam_b = _plambda(p0, p1, q0, q1, b0, b1)
                if lam_a > lam_b:
                    lam_a, lam_b = lam_b, lam_a
                start, end, stop = _fold(start, end, lam_a - tol, lam_b + tol)
                if stop:
                    break
            if stop:
                break
        if start >= end:
            continue
        a0 = p0 + (q0 - p0) * start
        a1 = p1 + (q1 - p1) * start
        b0 = p0 + (q0 - p0) * end
        b1 = p1 + (q1 - p1) * end
        ka0[n_kept] = a0
        ka1[n_kept] = a1
        kb0[n_kept] = b0
        kb1[n_kept] = b1
        fa0[n_kept] = a0 - o0
        fa1[n_kept] = a1 - o1
        fb0[n_kept] = b0 - o0
        fb1[n_kept] = b1 - o1
        fn0[n_kept], fn1[n_kept], fc[n_kept] = _filter_form(a0, a1, b0, b1, o0, o1)
        keep[n_kept] = i
        starts[n_kept] = start
        ends[n_kept] = end
        n_kept += 1
    return keep[:n_kept].copy(), starts[:n_kept].copy(), ends[:n_kept].copy()


def _kernel() -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`_postprocess_kernel` compiled by numba (imported here, on first use; compiled or loaded from numba's
    on-disk cache once per process).  No fast-math: the floating-point operations stay exactly as written."""
    global _compiled_kernel
    with _kernel_lock:
        if _compiled_kernel is None:
            import numba
            from numba.extending import register_jitable

            for fn in (_pline, _plambda, _relevance, _fold, _filter_form):
                register_jitable(fn)  # callable from jitted code, unchanged for Python callers
            try:
                _compiled_kernel = numba.njit(cache=True, nogil=True, error_model="numpy")(_postprocess_kernel)
            except RuntimeError:  # no writable cache location at all: compile in every process
                _compiled_kernel = numba.njit(nogil=True, error_model="numpy")(_postprocess_kernel)
        return _compiled_kernel


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as a float array ({exc})") from None


def postprocess_lines(
    lines: ArrayT, scores: ArrayT, threshold: float, tol: float = 0.0, do_clip: bool = False
) -> tuple[ArrayT, ArrayT]:
    """L-CNN post-processing of one image's lines (duplicate removal and overlap trimming).

    The first call in a process imports numba and compiles the kernel or loads it from numba's cache (see the
    module docstring).

    Args:
        lines: [L, 2, 2] line endpoints (any consistent point layout, e.g. (y, x) image pixels); numpy array or
            torch tensor.
        scores: [L] line scores; candidates are visited by descending score (stable, so an already sorted input
            keeps its order, as L-CNN assumes).
        threshold: Distance τ (same units as ``lines``); usually :func:`postprocess_wireframe_threshold`.
        tol: Widening of the projected interval ``[λ_a, λ_b]`` of a kept line (L-CNN's ``post.py`` uses 0).
        do_clip: Accepted for call compatibility with L-CNN's ``postprocess``, which declares it but never reads
            it; it has no effect here either.

    Returns:
        ``(lines [K, 2, 2], scores [K])`` of the kept (possibly trimmed) lines in visiting order, of the same kind
        (numpy / torch, dtype, device) as the inputs.  Computation is in float64.

    Raises:
        ValueError: If the shapes disagree, a value is not finite, or ``threshold``/``tol`` are not finite
            non-negative numbers.
    """
    del do_clip  # no effect, as in L-CNN
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold}")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite non-negative number, got {tol}")
    arr = _as_numpy(lines, "lines")
    sc = _as_numpy(scores, "scores").reshape(-1)
    if arr.size == 0 and sc.size == 0:
        arr = arr.reshape(0, 2, 2)
    elif arr.ndim != 3 or arr.shape[1:] != (2, 2) or arr.shape[0] != sc.shape[0]:
        raise ValueError(f"lines must be [L, 2, 2] with L = len(scores) = {sc.shape[0]}, got shape {arr.shape}")
    if not (np.isfinite(arr).all() and np.isfinite(sc).all()):
        raise ValueError("lines and scores must be finite (drop NaN/inf lines before post-processing)")
    order = np.argsort(-sc, kind="stable")
    arr, sc = arr[order], sc[order]

    if arr.shape[0] == 0:
        idx = np.zeros(0, dtype=np.int64)
        st = en = np.zeros((0, 1))
    else:
        threshold = float(threshold)
        flat = np.ascontiguousarray(arr.reshape(-1, 4))
        pts = flat.reshape(-1, 2)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        o0, o1 = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
        extent = float(np.abs(pts - (o0, o1)).max())
        scale = float(np.abs(pts).max())
        if scale > _HUGE_COORD:
            reach2 = math.inf
        else:
            # Margin: 1e-5·extent for the float32 pre-filter, 1e-9·scale for float64 rounding (both far above need).
            reach = threshold + 1e-5 * (extent + threshold) + 1e-9 * scale
            reach2 = reach * reach
        idx, starts, ends = _kernel()(flat, o0, o1, threshold**2, float(tol), reach2)
        st, en = starts[:, None], ends[:, None]
    p, q = arr[idx, 0], arr[idx, 1]
    out_lines = np.stack([p + (q - p) * st, p + (q - p) * en], axis=1).reshape(-1, 2, 2)
    out_scores = sc[idx]
    return _like(out_lines, lines), _like(out_scores, scores)


def _like(values: np.ndarray, reference: Any) -> Any:
    """``values`` converted to the kind of ``reference``: a torch tensor (same dtype/device) or a numpy array."""
    if hasattr(reference, "detach"):
        import torch

        return torch.as_tensor(values, dtype=reference.dtype, device=reference.device)
    ref_dtype = np.asarray(reference).dtype
    dtype = ref_dtype if np.issubdtype(ref_dtype, np.floating) else np.float64
    return values.astype(dtype, copy=False)
