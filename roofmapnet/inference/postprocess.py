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

The procedure is sequential (each decision depends on the lines kept before), but only the *relevant* kept
lines whose projection meets ``[0, 1]`` can change anything, and they are few.  Candidates are processed in
blocks: a float32 matrix product per block gives, for every (candidate, kept line) pair, the sums
``dist²(p, ab) + dist²(q, ab)`` and ``dist²(a, pq) + dist²(b, pq)`` of normal-form distances, and a pair is
pre-selected when either sum is ≤ 2τ² (plus a rounding margin): a superset of L-CNN's relevance test.  The
exact L-CNN terms of the selected pairs are then computed vectorised with L-CNN's own floating-point formulas,
and only the pairs that can act go through the scalar rules, in the order the lines were kept.  Lines kept
inside the current block are pre-selected on the candidates' original geometry (a line kept untrimmed lies on
its candidate's segment) or, when kept trimmed, on their kept part.  Skipping a pair that cannot act changes
nothing, so the output equals L-CNN's loop bit for bit (``tests/test_postprocess.py`` checks this against a
literal port).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

#: The three L-CNN post-processing factors ``t`` (τ = t·image diagonal); 0.010 is the one used for AP^H.
POSTPROCESS_T_VALUES: tuple[float, float, float] = (0.006, 0.010, 0.015)
#: The factor used for AP^H and for visualisation.
DEFAULT_POSTPROCESS_T: float = 0.010

# pline()/plambda() divide by max(1e-9, |q - p|²); below this a line counts as degenerate for the pre-filter.
_DEGENERATE_SQ = 1e-9
# Candidates per block of the vectorised pre-selection.
_BLOCK = 128

ArrayT = TypeVar("ArrayT")


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


def _pline(x1: float, y1: float, x2: float, y2: float, x: float, y: float) -> float:
    """Squared distance of ``(x, y)`` to the infinite line through ``(x1, y1)``-``(x2, y2)`` (L-CNN's formula)."""
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    u = ((x - x1) * px + (y - y1) * py) / max(1e-9, dd)
    dx = x1 + u * px - x
    dy = y1 + u * py - y
    return dx * dx + dy * dy


def _plambda(x1: float, y1: float, x2: float, y2: float, x: float, y: float) -> float:
    """Parameter of the projection of ``(x, y)`` on the line ``(x1, y1)``-``(x2, y2)`` (0 at the first point)."""
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    return ((x - x1) * px + (y - y1) * py) / max(1e-9, dd)


def _quad_features(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 12] pre-filter features of lines ``a``-``b`` (centred coordinates).

    Columns 0-5 are ``[n0², n1², c², n0·n1, n0·c, n1·c]`` of the unit normal form ``n·x = c`` (all 0 for a
    degenerate line, which is then always selected); columns 6-11 are ``[a0²+b0², a1²+b1², 1, a0·a1+b0·b1,
    a0+b0, a1+b1]``.  With the candidate weights of :func:`_candidate_weights` one matrix product gives
    ``dist²(p, line ab) + dist²(q, line ab)`` and ``dist²(a, line pq) + dist²(b, line pq)``.
    """
    d = b - a
    dd = d[:, 0] ** 2 + d[:, 1] ** 2
    ok = dd > _DEGENERATE_SQ
    inv = np.where(ok, 1.0 / np.sqrt(np.where(ok, dd, 1.0)), 0.0)
    n0, n1 = -d[:, 1] * inv, d[:, 0] * inv
    c = n0 * a[:, 0] + n1 * a[:, 1]
    return np.stack(
        [
            n0 * n0,
            n1 * n1,
            c * c,
            n0 * n1,
            n0 * c,
            n1 * c,
            a[:, 0] ** 2 + b[:, 0] ** 2,
            a[:, 1] ** 2 + b[:, 1] ** 2,
            np.ones_like(dd),
            a[:, 0] * a[:, 1] + b[:, 0] * b[:, 1],
            a[:, 0] + b[:, 0],
            a[:, 1] + b[:, 1],
        ],
        axis=1,
    )


def _candidate_weights(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[6, N] weights against feature columns 0-5 (candidate endpoints → kept line) and 6-11 (kept endpoints →
    candidate line) of :func:`_quad_features`; a degenerate candidate gets zero weights (always selected)."""
    e = q - p
    dd = e[:, 0] ** 2 + e[:, 1] ** 2
    ok = dd > _DEGENERATE_SQ
    inv = np.where(ok, 1.0 / np.sqrt(np.where(ok, dd, 1.0)), 0.0)
    m0, m1 = -e[:, 1] * inv, e[:, 0] * inv
    c = m0 * p[:, 0] + m1 * p[:, 1]
    to_kept = np.stack(
        [
            p[:, 0] ** 2 + q[:, 0] ** 2,
            p[:, 1] ** 2 + q[:, 1] ** 2,
            np.full_like(dd, 2.0),
            2.0 * (p[:, 0] * p[:, 1] + q[:, 0] * q[:, 1]),
            -2.0 * (p[:, 0] + q[:, 0]),
            -2.0 * (p[:, 1] + q[:, 1]),
        ]
    )
    to_cand = np.stack([m0 * m0, m1 * m1, 2.0 * c * c, 2.0 * m0 * m1, -2.0 * m0 * c, -2.0 * m1 * c])
    return to_kept, to_cand


def _pair_terms(
    p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L-CNN's ``d``, ``λ_a`` and ``λ_b`` for pairs (candidate ``pq``, kept ``ab``), vectorised with the very same
    floating-point operations as :func:`_pline` / :func:`_plambda` (so the results are bit-identical)."""

    def pline(
        x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, x: np.ndarray, y: np.ndarray
    ) -> np.ndarray:
        px = x2 - x1
        py = y2 - y1
        dd = np.maximum(1e-9, px * px + py * py)
        u = ((x - x1) * px + (y - y1) * py) / dd
        dx = x1 + u * px - x
        dy = y1 + u * py - y
        return dx * dx + dy * dy

    p0, p1, q0, q1 = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
    a0, a1, b0, b1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    d = np.minimum(
        np.maximum(pline(p0, p1, q0, q1, a0, a1), pline(p0, p1, q0, q1, b0, b1)),
        np.maximum(pline(a0, a1, b0, b1, p0, p1), pline(a0, a1, b0, b1, q0, q1)),
    )
    px = q0 - p0
    py = q1 - p1
    dd = np.maximum(1e-9, px * px + py * py)
    lam_a = ((a0 - p0) * px + (a1 - p1) * py) / dd
    lam_b = ((b0 - p0) * px + (b1 - p1) * py) / dd
    return d, lam_a, lam_b


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

    keep, starts, ends = _postprocess_core(arr, float(threshold), float(tol))
    idx = np.asarray(keep, dtype=np.int64)
    p, q = arr[idx, 0], arr[idx, 1]
    st = np.asarray(starts, dtype=np.float64)[:, None]
    en = np.asarray(ends, dtype=np.float64)[:, None]
    out_lines = np.stack([p + (q - p) * st, p + (q - p) * en], axis=1).reshape(-1, 2, 2)
    out_scores = sc[idx]
    return _like(out_lines, lines), _like(out_scores, scores)


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


def _postprocess_core(arr: np.ndarray, threshold: float, tol: float) -> tuple[list[int], list[float], list[float]]:
    """The sequential decisions: indices of kept candidates and their ``start``/``end`` parameters.

    Candidates are handled in blocks.  For a block, one matrix product against all lines kept before it selects
    (a superset of) the relevant pairs, whose exact L-CNN terms are then computed vectorised.  Pairs inside the
    block are pre-selected on the original geometry, which is exact for a line kept untrimmed (it lies on its
    candidate's segment); a line kept *trimmed* gets its own selection row against the rest of the block.  Only
    selected pairs go through the scalar rules, in the order the lines were kept.
    """
    n = arr.shape[0]
    keep: list[int] = []
    starts: list[float] = []
    ends: list[float] = []
    if n == 0:
        return keep, starts, ends
    thr2 = threshold**2
    centre = arr.reshape(-1, 2).mean(axis=0)
    c_y, c_x = float(centre[0]), float(centre[1])
    centred = arr - centre
    scale = float(np.abs(centred).max()) + 1.0
    # Bound on a sum of two squared distances implied by "both ≤ threshold", with room for the float32 rounding
    # of the pre-selection products (only a superset of the relevant pairs is needed).
    bound = np.float32(2.0 * (threshold + 1e-6 * scale) ** 2 + 1e-5 * scale**2)
    to_kept, to_cand = _candidate_weights(centred[:, 0], centred[:, 1])
    wk_all = np.ascontiguousarray(to_kept.T, dtype=np.float32)  # [n, 6]
    wc_all = np.ascontiguousarray(to_cand.T, dtype=np.float32)
    orig_feats = _quad_features(centred[:, 0], centred[:, 1]).astype(np.float32)  # [n, 12]
    flat = arr.reshape(n, 4).tolist()
    kept_arr = np.empty((n, 2, 2))
    kept_f1 = np.empty((6, n), dtype=np.float32)  # feature columns 0-5 of the kept lines, transposed
    kept_f2 = np.empty((6, n), dtype=np.float32)  # columns 6-11
    n_kept = 0
    buf1 = np.empty(_BLOCK * max(n, _BLOCK), dtype=np.float32)
    buf2 = np.empty(_BLOCK * max(n, _BLOCK), dtype=np.float32)
    mask = np.empty(_BLOCK * n, dtype=bool)
    for b0 in range(0, n, _BLOCK):
        b1 = min(n, b0 + _BLOCK)
        bk = b1 - b0
        wk, wc = wk_all[b0:b1], wc_all[b0:b1]

        # Lines kept before the block: exact (λ_lo, λ_hi) of the relevant pairs, grouped per candidate in kept
        # order.  A pair whose interval misses [0, 1] never changes anything (start ≥ 0 and end ≤ 1 throughout).
        lo_l: list[float] = []
        hi_l: list[float] = []
        bounds = [0] * (bk + 1)
        if n_kept:
            x1 = buf1[: bk * n_kept].reshape(bk, n_kept)
            x2 = buf2[: bk * n_kept].reshape(bk, n_kept)
            _matmul_small(wk, kept_f1[:, :n_kept], x1)
            _matmul_small(wc, kept_f2[:, :n_kept], x2)
            np.minimum(x1, x2, out=x1)
            sel = np.flatnonzero(np.less_equal(x1, bound, out=mask[: bk * n_kept].reshape(bk, n_kept)))
            if sel.size:
                kk, jj = np.divmod(sel, n_kept)
                cand = arr[b0 + kk]
                d, lam_a, lam_b = _pair_terms(cand[:, 0], cand[:, 1], kept_arr[jj, 0], kept_arr[jj, 1])
                lo = np.minimum(lam_a, lam_b) - tol
                hi = np.maximum(lam_a, lam_b) + tol
                live = ~(d > thr2) & (hi >= 0.0) & (lo <= 1.0)
                if live.any():
                    lo_l, hi_l = lo[live].tolist(), hi[live].tolist()
                    bounds = np.searchsorted(kk[live], np.arange(bk + 1)).tolist()

        # Pairs inside the block (m < k), pre-selected on the original geometry.
        fb = orig_feats[b0:b1]
        x1 = buf1[: bk * bk].reshape(bk, bk)
        x2 = buf2[: bk * bk].reshape(bk, bk)
        _matmul_small(wk, fb[:, :6].T, x1)
        _matmul_small(wc, fb[:, 6:].T, x2)
        intra = np.minimum(x1, x2) <= bound  # [k, m]
        intra_lists: list[list[int]] = [[] for _ in range(bk)]
        k_idx, m_idx = np.divmod(np.flatnonzero(np.tril(intra, -1)), bk)
        for k, m in zip(k_idx.tolist(), m_idx.tolist(), strict=True):
            intra_lists[k].append(m)

        st: list[float | None] = [None] * bk  # start of each kept line of the block (None: dropped)
        en: list[float] = [1.0] * bk
        trim_lists: list[list[int]] = [[] for _ in range(bk)]  # block lines kept trimmed, selected for k
        for k in range(bk):
            t0, t1 = bounds[k], bounds[k + 1]
            il, tl = intra_lists[k], trim_lists[k]
            if t0 == t1 and not il and not tl:
                st[k] = 0.0
                continue
            start, end, stop = 0.0, 1.0, False
            for t in range(t0, t1):
                start, end, stop = _fold(start, end, lo_l[t], hi_l[t])
                if stop:
                    break
            if not stop:
                partners = [m for m in il if st[m] == 0.0 and en[m] == 1.0]
                if tl:
                    partners = sorted(partners + tl)
                if partners:
                    p0, p1, q0, q1 = flat[b0 + k]
                    for m in partners:
                        a0, a1, c0, c1 = _segment(flat[b0 + m], st[m], en[m])  # type: ignore[arg-type]
                        if (
                            min(
                                max(_pline(p0, p1, q0, q1, a0, a1), _pline(p0, p1, q0, q1, c0, c1)),
                                max(_pline(a0, a1, c0, c1, p0, p1), _pline(a0, a1, c0, c1, q0, q1)),
                            )
                            > thr2
                        ):
                            continue
                        la = _plambda(p0, p1, q0, q1, a0, a1)
                        lb = _plambda(p0, p1, q0, q1, c0, c1)
                        if la > lb:
                            la, lb = lb, la
                        start, end, stop = _fold(start, end, la - tol, lb + tol)
                        if stop:
                            break
            if start >= end:
                continue
            st[k], en[k] = start, end
            if (start != 0.0 or end != 1.0) and k + 1 < bk:
                a0, a1, c0, c1 = _segment(flat[b0 + k], start, end)
                f1, f2 = _quad_features_scalar(a0 - c_y, a1 - c_x, c0 - c_y, c1 - c_x)
                row = np.minimum(wk[k + 1 :] @ f1, wc[k + 1 :] @ f2) <= bound
                for later in (np.flatnonzero(row) + (k + 1)).tolist():
                    trim_lists[later].append(k)

        local = [k for k in range(bk) if st[k] is not None]
        if local:
            idx = np.asarray(local) + b0
            s_arr = np.array([st[k] for k in local])[:, None]
            e_arr = np.array([en[k] for k in local])[:, None]
            p, q = arr[idx, 0], arr[idx, 1]
            block_lines = np.stack([p + (q - p) * s_arr, p + (q - p) * e_arr], axis=1)
            feats = orig_feats[idx]
            cut = np.flatnonzero((s_arr[:, 0] != 0.0) | (e_arr[:, 0] != 1.0))
            if cut.size:  # trimmed lines: features of the kept part
                g = block_lines[cut] - centre
                feats[cut] = _quad_features(g[:, 0], g[:, 1])
            sl = slice(n_kept, n_kept + len(local))
            kept_arr[sl] = block_lines
            kept_f1[:, sl] = feats[:, :6].T
            kept_f2[:, sl] = feats[:, 6:].T
            n_kept += len(local)
            keep.extend(idx.tolist())
            starts.extend(s_arr[:, 0].tolist())
            ends.extend(e_arr[:, 0].tolist())
    return keep, starts, ends


def _matmul_small(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = a @ b`` in column chunks small enough for single-threaded BLAS.

    The products here are thin (inner size 6); multi-threaded BLAS does not pay off for them and, on a busy
    machine, its thread hand-off made them 20-100x slower.  OpenBLAS runs a GEMM on one thread below
    ``m·n·k = 2^18``.
    """
    m, k = a.shape
    step = max(1, (2**18 - 1) // max(1, m * k))
    for c0 in range(0, b.shape[1], step):
        np.matmul(a, b[:, c0 : c0 + step], out=out[:, c0 : c0 + step])


def _segment(line: list[float], start: float, end: float) -> tuple[float, float, float, float]:
    """The kept part ``[p + (q − p)·start, p + (q − p)·end]`` of a candidate, flattened."""
    p0, p1, q0, q1 = line
    return p0 + (q0 - p0) * start, p1 + (q1 - p1) * start, p0 + (q0 - p0) * end, p1 + (q1 - p1) * end


def _quad_features_scalar(a0: float, a1: float, b0: float, b1: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_quad_features` of one line, as its two halves (cheaper than the array version for one line)."""
    d0, d1 = b0 - a0, b1 - a1
    dd = d0 * d0 + d1 * d1
    inv = 1.0 / math.sqrt(dd) if dd > _DEGENERATE_SQ else 0.0
    n0, n1 = -d1 * inv, d0 * inv
    c = n0 * a0 + n1 * a1
    f1 = np.array([n0 * n0, n1 * n1, c * c, n0 * n1, n0 * c, n1 * c], dtype=np.float32)
    f2 = np.array([a0 * a0 + b0 * b0, a1 * a1 + b1 * b1, 1.0, a0 * a1 + b0 * b1, a0 + b0, a1 + b1], dtype=np.float32)
    return f1, f2


def _like(values: np.ndarray, reference: Any) -> Any:
    """``values`` converted to the kind of ``reference``: a torch tensor (same dtype/device) or a numpy array."""
    if hasattr(reference, "detach"):
        import torch

        return torch.as_tensor(values, dtype=reference.dtype, device=reference.device)
    ref_dtype = np.asarray(reference).dtype
    dtype = ref_dtype if np.issubdtype(ref_dtype, np.floating) else np.float64
    return values.astype(dtype, copy=False)
