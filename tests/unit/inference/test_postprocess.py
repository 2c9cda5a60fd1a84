"""L-CNN line post-processing: bit-identical to a literal port of ``lcnn/postprocess.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from roofmapnet.inference.postprocess import postprocess_lines, postprocess_wireframe_threshold

# ---------------------------------------------------------------------------------------------------------------
# Literal port of L-CNN's lcnn/postprocess.py (the reference the implementation must equal).


def _ref_pline(x1, y1, x2, y2, x, y):
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    u = ((x - x1) * px + (y - y1) * py) / max(1e-9, float(dd))
    dx = x1 + u * px - x
    dy = y1 + u * py - y
    return dx * dx + dy * dy


def _ref_plambda(x1, y1, x2, y2, x, y):
    px = x2 - x1
    py = y2 - y1
    dd = px * px + py * py
    return ((x - x1) * px + (y - y1) * py) / max(1e-9, float(dd))


def _ref_postprocess(lines, scores, threshold=0.01, tol=1e9, do_clip=False):
    nlines, nscores = [], []
    for (p, q), score in zip(lines, scores, strict=True):
        start, end = 0, 1
        for a, b in nlines:
            if (
                min(
                    max(_ref_pline(*p, *q, *a), _ref_pline(*p, *q, *b)),
                    max(_ref_pline(*a, *b, *p), _ref_pline(*a, *b, *q)),
                )
                > threshold**2
            ):
                continue
            lambda_a = _ref_plambda(*p, *q, *a)
            lambda_b = _ref_plambda(*p, *q, *b)
            if lambda_a > lambda_b:
                lambda_a, lambda_b = lambda_b, lambda_a
            lambda_a -= tol
            lambda_b += tol

            # case 1: skip (if not do_clip)
            if start < lambda_a and lambda_b < end:
                continue

            # not intersect
            if lambda_b < start or lambda_a > end:
                continue

            # cover
            if lambda_a <= start and end <= lambda_b:
                start = 10
                break

            # case 2 & 3:
            if lambda_a <= start and start <= lambda_b:
                start = lambda_b
            if lambda_a <= end and end <= lambda_b:
                end = lambda_a

            if start >= end:
                break

        if start >= end:
            continue
        nlines.append(np.array([p + (q - p) * start, p + (q - p) * end]))
        nscores.append(score)
    return np.array(nlines).reshape(-1, 2, 2), np.array(nscores)


# ---------------------------------------------------------------------------------------------------------------


def _wireframe_like(rng: np.random.Generator, n: int, size: float = 512.0, n_base: int = 25) -> np.ndarray:
    """Model-like candidates: noisy copies, fragments and extensions of a few base lines, plus clutter,
    exact duplicates, collinear chains and a few degenerate (zero-length) lines; random endpoint order."""
    base = rng.uniform(0, size, (n_base, 2, 2))
    out = np.empty((n, 2, 2))
    kind = rng.integers(0, 6, n)
    for i in range(n):
        b = base[rng.integers(n_base)]
        if kind[i] == 0:
            out[i] = rng.uniform(0, size, (2, 2))
        elif kind[i] == 5 and i > 0:
            out[i] = out[rng.integers(i)]  # exact duplicate of an earlier candidate
        else:
            t = np.sort(rng.uniform(-0.3, 1.3, 2)) if kind[i] in (1, 2) else np.array([0.0, 1.0])
            noise = 0.3 if kind[i] == 2 else 2.5
            out[i] = b[0] + (b[1] - b[0]) * t[:, None] + rng.normal(0, noise, (2, 2))
        if rng.random() < 0.5:
            out[i] = out[i][::-1]
    out[rng.integers(n, size=max(1, n // 100))] = rng.uniform(0, size, (1, 2))[:, None, :]  # degenerate
    return out


@pytest.mark.parametrize(
    ("seed", "n", "t", "tol"),
    [(0, 300, 0.010, 0.0), (1, 260, 0.006, 0.0), (2, 300, 0.015, 0.0), (3, 200, 0.010, 0.05), (4, 40, 0.03, 0.0)],
)
def test_identical_to_literal_lcnn_port(seed: int, n: int, t: float, tol: float) -> None:
    rng = np.random.default_rng(seed)
    lines = _wireframe_like(rng, n)
    scores = np.sort(rng.random(n))[::-1]
    tau = postprocess_wireframe_threshold(np.hypot(512, 512), t)
    got_lines, got_scores = postprocess_lines(lines, scores, tau, tol=tol)
    ref_lines, ref_scores = _ref_postprocess(lines, scores, tau, tol, False)
    assert got_lines.shape == ref_lines.shape
    assert 0 < got_lines.shape[0] < n  # the case is not trivial: some lines dropped, some kept
    np.testing.assert_array_equal(got_lines, ref_lines)  # bit-identical, not just close
    np.testing.assert_array_equal(got_scores, ref_scores)
    trimmed = ~np.isin(got_lines.reshape(-1, 4), lines.reshape(-1, 4)).all(axis=1)
    assert trimmed.any()  # some survivors were trimmed


def test_spans_several_blocks_and_dense_duplicates() -> None:
    """More candidates than one pre-selection block, most of them near-duplicates of a few lines."""
    rng = np.random.default_rng(7)
    lines = _wireframe_like(rng, 540, n_base=8)
    scores = np.sort(rng.random(540))[::-1]
    got_lines, got_scores = postprocess_lines(lines, scores, 7.0)
    ref_lines, ref_scores = _ref_postprocess(lines, scores, 7.0, 0.0, False)
    np.testing.assert_array_equal(got_lines, ref_lines)
    np.testing.assert_array_equal(got_scores, ref_scores)


def test_cover_and_trim_rules() -> None:
    lines = np.array(
        [
            [[0.0, 0.0], [0.0, 100.0]],  # kept
            [[0.5, 10.0], [0.5, 90.0]],  # inside the first one (covered): dropped
            [[-0.5, 80.0], [-0.5, 150.0]],  # overlaps the end: trimmed to start at the kept line's end
            [[40.0, 0.0], [40.0, 100.0]],  # parallel, 40 px away: irrelevant
            [[0.0, 200.0], [0.0, 300.0]],  # collinear but disjoint: kept
        ]
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    out, out_scores = postprocess_lines(lines, scores, threshold=2.0)
    np.testing.assert_array_equal(out_scores, [0.9, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(out[1], [[-0.5, 100.0], [-0.5, 150.0]], atol=1e-12)
    np.testing.assert_array_equal(out[[0, 2, 3]], lines[[0, 3, 4]])


def test_unsorted_input_is_visited_by_score() -> None:
    lines = np.array([[[0.0, 10.0], [0.0, 90.0]], [[0.0, 0.0], [0.0, 100.0]]])
    out, out_scores = postprocess_lines(lines, np.array([0.2, 0.9]), threshold=1.0)
    np.testing.assert_array_equal(out, lines[1:])  # the higher-scored long line covers the short one
    np.testing.assert_array_equal(out_scores, [0.9])


def test_torch_and_dtype_round_trip() -> None:
    rng = np.random.default_rng(5)
    lines = _wireframe_like(rng, 60)
    scores = np.sort(rng.random(60))[::-1].copy()
    ref_lines, ref_scores = postprocess_lines(lines, scores, 5.0)
    t_lines, t_scores = postprocess_lines(torch.tensor(lines), torch.tensor(scores), 5.0)
    assert isinstance(t_lines, torch.Tensor)
    assert t_lines.dtype == torch.float64
    np.testing.assert_array_equal(t_lines.numpy(), ref_lines)
    np.testing.assert_array_equal(t_scores.numpy(), ref_scores)
    f_lines, _f_scores = postprocess_lines(torch.tensor(lines, dtype=torch.float32), torch.tensor(scores), 5.0)
    assert f_lines.dtype == torch.float32
    n_lines, _ = postprocess_lines(lines.astype(np.float32), scores.astype(np.float32), 5.0)
    assert n_lines.dtype == np.float32


def test_empty_and_single() -> None:
    out, out_scores = postprocess_lines(np.zeros((0, 2, 2)), np.zeros(0), 5.0)
    assert out.shape == (0, 2, 2)
    assert out_scores.shape == (0,)
    one = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    out, out_scores = postprocess_lines(one, np.array([0.5]), 5.0)
    np.testing.assert_array_equal(out, one)
    np.testing.assert_array_equal(out_scores, [0.5])


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="lines must be"):
        postprocess_lines(np.zeros((3, 4)), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="lines must be"):
        postprocess_lines(np.zeros((3, 2, 2)), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="finite"):
        postprocess_lines(np.full((1, 2, 2), np.nan), np.zeros(1), 1.0)
    with pytest.raises(ValueError, match="threshold"):
        postprocess_lines(np.zeros((1, 2, 2)), np.zeros(1), -1.0)


def test_threshold_helper() -> None:
    assert postprocess_wireframe_threshold(1000.0, 0.01) == pytest.approx(10.0)
    assert postprocess_wireframe_threshold(np.hypot(300, 400)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="diag"):
        postprocess_wireframe_threshold(float("nan"))


# ---------------------------------------------------------------------------------------------------------------
# The compiled kernel (pre-filter + exact L-CNN tests) against the literal port, on cases it could get wrong.


def _assert_same_as_lcnn(lines: np.ndarray, scores: np.ndarray, threshold: float, tol: float = 0.0) -> np.ndarray:
    got_lines, got_scores = postprocess_lines(lines, scores, threshold, tol=tol)
    order = np.argsort(-scores, kind="stable")  # the port expects candidates sorted by score
    ref_lines, ref_scores = _ref_postprocess(lines[order], scores[order], threshold, tol, False)
    assert got_lines.shape == ref_lines.shape
    assert np.array_equal(got_lines, ref_lines)  # bit-identical
    assert np.array_equal(got_scores, ref_scores)
    return got_lines


@pytest.mark.parametrize("seed", range(20))
def test_many_seeds_clustered(seed: int) -> None:
    """Dense clusters around 3-5 base lines (many relevant pairs, trims of trimmed lines), several τ and tol."""
    rng = np.random.default_rng(100 + seed)
    n = 120
    lines = _wireframe_like(rng, n, n_base=3 + seed % 3)
    if seed % 4 == 1:  # small coordinates (e.g. normalised) ...
        lines /= 512.0
    elif seed % 4 == 2:  # ... or far from the origin (e.g. GIS pixel coordinates of a large raster)
        lines += 1e5
    scale = {1: 1 / 512, 3: 1.0}.get(seed % 4, 1.0)
    tau = postprocess_wireframe_threshold(np.hypot(512, 512) * scale, (0.006, 0.010, 0.015, 0.03)[seed % 4])
    tol = (0.0, 0.0, 0.02, 0.3, 0.0)[seed % 5]
    scores = np.sort(rng.random(n))[::-1]
    out = _assert_same_as_lcnn(lines, scores, tau, tol)
    assert 0 < out.shape[0] < n


def test_degenerate_candidates_and_kept_lines() -> None:
    """Zero-length and almost zero-length lines (|q - p|² around L-CNN's 1e-9 clamp), kept first or later."""
    s = np.sqrt(1e-9)
    lines = np.array(
        [
            [[5.0, 5.0], [5.0, 5.0]],  # degenerate, kept first: L-CNN's formula is no distance for it
            [[0.0, 0.0], [0.0, 100.0]],
            [[0.0, 50.0], [0.0, 50.0]],  # a point on the kept line
            [[0.0, 100.0], [0.0, 100.0 + s]],  # |q - p|² ≈ 1e-9
            [[0.0, 120.0], [0.0, 120.0 + 0.9 * s]],  # just below the clamp
            [[0.0, 140.0], [0.0, 140.0 + 1.1 * s]],  # just above
            [[3.0, 20.0], [3.0, 20.0 + 4e-5]],
            [[5.0, 5.0], [5.0, 5.0]],  # duplicate of the first degenerate line
            [[-2.0, 40.0], [7.0, 60.0]],
            [[1e-6, 60.0], [-1e-6, 60.0]],
            [[5.0, 0.0], [5.0, 10.0]],  # through the first (degenerate) line
        ]
    )
    for threshold in (0.0, 0.5, 2.0, 10.0):
        for tol in (0.0, 0.1):
            _assert_same_as_lcnn(lines, np.linspace(1.0, 0.5, len(lines)), threshold, tol)
    # All candidates degenerate, and the shuffled wireframe with many points.
    points = np.repeat(np.random.default_rng(3).uniform(0, 20, (30, 1, 2)), 2, axis=1)
    _assert_same_as_lcnn(points, np.linspace(1.0, 0.0, 30), 3.0)
    rng = np.random.default_rng(11)
    lines = _wireframe_like(rng, 200, n_base=4)
    lines[rng.integers(200, size=30)] = rng.uniform(0, 512, (30, 1, 2))  # 30 degenerate lines
    _assert_same_as_lcnn(lines, np.sort(rng.random(200))[::-1], 7.0)


def test_exactly_collinear_duplicates() -> None:
    """Repeated, reversed and chained collinear lines with coordinates that are not exact in binary."""
    d = np.array([0.1, 1 / 3])
    base = np.array([[1.7, 2.9], [1.7, 2.9]]) + np.array([[0.0], [300.0]]) * d
    chain = [base + k * 37.3 * d for k in range(-3, 4)]  # overlapping collinear segments
    lines = np.stack([base, base, base[::-1], base, *chain, *(c[::-1] for c in chain), base * 1.0000000001])
    scores = np.linspace(1.0, 0.1, len(lines))
    out = _assert_same_as_lcnn(lines, scores, 0.5)
    assert out.shape[0] < len(lines) - 3  # duplicates dropped
    _assert_same_as_lcnn(lines, scores, 0.0)
    _assert_same_as_lcnn(lines, scores[::-1].copy(), 0.5, tol=0.01)


def test_trimmed_lines_act_on_later_candidates() -> None:
    """A trimmed line acts with its kept part, not with its original geometry."""
    lines = np.array(
        [
            [[0.0, 0.0], [0.0, 100.0]],
            [[0.0, 50.0], [0.0, 200.0]],  # trimmed to [100, 200]
            [[0.0, 150.0], [0.0, 300.0]],  # trimmed by the trimmed line: starts at 200
            [[0.0, 60.0], [0.0, 90.0]],  # covered by the first line
            [[0.0, 250.0], [0.0, 260.0]],  # covered by the third line's kept part
            [[0.0, 310.0], [0.0, 320.0]],
            [[0.0, 0.0], [30.0, 100.0]],  # tilted: shares an endpoint with the first line only
            [[3.0, 10.0], [33.0, 110.0]],  # parallel to the tilted line, 2.9 away: irrelevant at τ = 1
        ]
    )
    scores = np.linspace(1.0, 0.3, len(lines))
    out = _assert_same_as_lcnn(lines, scores, 1.0)
    np.testing.assert_array_equal(out[:3, :, 1], [[0.0, 100.0], [100.0, 200.0], [200.0, 300.0]])
    # Tilted fan: each line is trimmed by the previous kept parts, which differ from the original segments.
    rng = np.random.default_rng(8)
    t = np.sort(rng.uniform(-0.5, 1.5, (120, 2)), axis=1)
    ang = rng.normal(0, 0.01, 120)
    direction = np.stack([np.cos(0.3 + ang), np.sin(0.3 + ang)], axis=1) * 200
    fan = np.stack([t[:, :1] * direction, t[:, 1:] * direction], axis=1) + rng.normal(0, 0.5, (120, 1, 2))
    _assert_same_as_lcnn(fan, np.linspace(1.0, 0.0, 120), 2.0)
    _assert_same_as_lcnn(fan, np.linspace(1.0, 0.0, 120), 2.0, tol=0.05)


@pytest.mark.parametrize("offset", [0.0, 1e5, 1e9])
def test_distances_at_the_threshold(offset: float) -> None:
    """Parallel lines at (about) exactly τ: the pre-filter must not lose a pair that L-CNN's rounding accepts."""
    tau = 7.0
    gaps = tau * (1 + np.array([-1e-12, -1e-15, 0.0, 1e-15, 1e-12]))
    gaps = np.append(gaps, [np.nextafter(tau, 0.0), np.nextafter(tau, 100.0)])
    rng = np.random.default_rng(4)
    lines = []
    for i, g in enumerate(gaps):
        ang = 0.1 + 0.7 * i
        u, v = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
        c = rng.uniform(0, 400, 2) + offset
        lines.append([c, c + 100 * u])
        lines.append([c + g * v + 30 * u, c + g * v + 130 * u])
        lines.append([c - g * v - 30 * u, c - g * v + 70 * u])
    arr = np.array(lines)
    _assert_same_as_lcnn(arr, np.linspace(1.0, 0.0, len(arr)), tau)
    _assert_same_as_lcnn(arr, np.linspace(1.0, 0.0, len(arr)), float(np.nextafter(tau, 0.0)))


def test_large_tol_makes_far_lines_act() -> None:
    rng = np.random.default_rng(9)
    lines = _wireframe_like(rng, 120, n_base=5)
    scores = np.sort(rng.random(120))[::-1]
    for tol in (0.5, 5.0):
        _assert_same_as_lcnn(lines, scores, 6.0, tol=tol)


def test_huge_coordinates() -> None:
    """Beyond 1e18 the float32 pre-filter is bypassed (every kept line goes to the exact test)."""
    rng = np.random.default_rng(12)
    lines = _wireframe_like(rng, 60, n_base=3) * 1e17
    _assert_same_as_lcnn(lines, np.linspace(1.0, 0.0, 60), 7e17)
    _assert_same_as_lcnn(lines * 10 + 1e19, np.linspace(1.0, 0.0, 60), 7e18)


def test_compiled_kernel_matches_python_kernel() -> None:
    """numba's machine code and the same function run by Python (numpy float32 scalars) agree."""
    from roofmapnet.inference import postprocess as pp

    rng = np.random.default_rng(13)
    flat = np.ascontiguousarray(_wireframe_like(rng, 80, n_base=3).reshape(-1, 4))
    args = (flat, 256.0, 256.0, 36.0, 0.01, 36.01)
    for got, ref in zip(pp._kernel()(*args), pp._postprocess_kernel(*args), strict=True):
        assert np.array_equal(got, ref)


def test_torch_and_empty_inputs() -> None:
    out, out_scores = postprocess_lines(torch.zeros((0, 2, 2)), torch.zeros(0), 5.0)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (0, 2, 2)
    assert out_scores.shape == (0,)
    rng = np.random.default_rng(14)
    lines = _wireframe_like(rng, 100, n_base=4)
    scores = rng.random(100)  # unsorted
    ref_lines = _assert_same_as_lcnn(lines, scores, 6.0)
    _, ref_scores = postprocess_lines(lines, scores, 6.0)
    t_lines, t_scores = postprocess_lines(torch.tensor(lines), torch.tensor(scores), 6.0)
    assert isinstance(t_lines, torch.Tensor)
    assert np.array_equal(t_lines.numpy(), ref_lines)
    assert np.array_equal(t_scores.numpy(), ref_scores)


def test_numba_is_imported_lazily() -> None:
    import subprocess
    import sys

    code = "import sys, roofmapnet, roofmapnet.inference.postprocess; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
