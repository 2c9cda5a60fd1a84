"""Training targets of one image (the ``*_label.npz`` of docs/data-format.md), fully vectorised.

The computation follows L-CNN's ``dataset/wireframe.py`` (ARCHITECTURE.md §2.1) without its Python loops:

1. line endpoints (x, y) in image pixels are scaled to the heatmap, clipped to ``[0, size - 1e-4]`` and
   swapped to (y, x);
2. junctions are the unique endpoints (exact coordinates, first-appearance order); ``Lpos`` indexes them;
3. ``jmap`` is 1 at ``floor(junction)``, ``joff = v - floor(v) - 0.5`` there (the last junction of a pixel wins);
4. ``lmap`` is the max-combination of anti-aliased lines between the floor-ed endpoints;
5. every other junction pair is rasterised at half resolution over ``zoom(lmap, 0.5)`` and scored by
   ``mean(min(aa, llmap))``; the pairs sorted by descending score (stable) give ``Lneg`` (first 4000) and
   ``lneg`` (first 2000).

Rasterisation reproduces ``skimage.draw.line_aa`` (A. Zingl's anti-aliased Bresenham) without a per-pixel
loop: the pixels that algorithm emits for integer endpoints ``(r0, c0)``, ``(r1, c1)`` are exactly the pixels
of the endpoints' bounding box whose perpendicular distance to the infinite line is below one pixel, i.e.
``|f| < ed`` with ``f = (r - r0)(c1 - c0) - (c - c0)(r1 - r0)`` and ``ed = sqrt(dr² + dc²)`` (rounded to
float32, as skimage's Cython code does), each with value ``1 - |f| / ed``.  Per step along the major axis at
most three such pixels exist; :func:`line_aa` and :func:`mean_overlap` test three integer candidates per step
(exact integer arithmetic) over the concatenated steps of all lines.  ``tests/unit/data/test_preprocess.py`` checks the
pixel sets and values against a literal port of the Cython loop, and whole label files against a literal
per-pair implementation (``bench/bench_preprocess.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import zoom

from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.resize import ResizeGeometry

#: Junctions are clipped to ``[0, size - CLIP_EPS]`` so that ``floor`` stays inside the heatmap.
CLIP_EPS = 1e-4
#: At most this many hard-negative index pairs (``Lneg``) and coordinate pairs (``lneg``) are kept.
MAX_LNEG_PAIRS = 4000
MAX_LNEG_LINES = 2000
#: The fields of a label file, in the order they are written.
LABEL_FIELDS: tuple[str, ...] = ("jmap", "joff", "lmap", "junc", "Lpos", "Lneg", "lpos", "lneg")
#: Optional field of letterboxed samples: float32 ``[top, left, height, width]`` of the image in heatmap coordinates.
CONTENT_BOX = "content_box"
#: Largest float32 below 0.5: offsets are stored in ``[-0.5, 0.5)`` even after rounding to float32.
_OFF_MAX = np.nextafter(np.float32(0.5), np.float32(0.0))
#: Rasterisation steps (summed line lengths) per chunk when ranking negatives: bounds the memory, and small
#: chunks reuse the same allocator blocks instead of page-faulting fresh ones (measured optimum ~4k).
_CHUNK_STEPS = 4096

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class LineRaster:
    """Anti-aliased pixels of ``L`` lines, all together.

    Attributes:
        line: [P] integer index of the line each pixel belongs to (in no particular order).
        rr: [P] integer pixel rows.
        cc: [P] integer pixel columns.
        val: [P] float64 intensities ``1 - distance to the line`` in (0, 1].
    """

    line: NDArray[np.integer[Any]]
    rr: NDArray[np.integer[Any]]
    cc: NDArray[np.integer[Any]]
    val: FloatArray


@dataclass(frozen=True)
class _Steps:
    """The steps along the major axis of many lines, all lines concatenated (line ``l`` owns ``steps[l]``
    consecutive entries from ``first[l]``).

    At step ``u`` the line's exact minor coordinate is ``t = u·minor/major = base + rem/major``.  The pixels
    ``skimage.draw.line_aa`` emits in that step are among three candidates ``v`` along the minor axis, each with
    distance ``f / ed`` to the line (``f = |v·major - u·minor|``, integer):

    * ``v = base``: ``f = rem``; always emitted;
    * ``v = base + 1``: ``f = major - rem``; emitted iff ``base < minor`` and ``f < ed``;
    * ``v = base - 1`` if ``low`` (``rem < major/2``) else ``base + 2``: ``f = major + rem`` or
      ``2·major - rem``; emitted iff it stays within ``[0, minor]`` and ``f < ed``.

    A candidate's pixel is ``p0 + u·major_step + v·minor_step``.  The distances ``f`` are integers held in
    float64 (exact below 2^53), which avoids integer-to-float conversions in the hot loop.
    """

    steps: NDArray[np.int64]  # [L] steps of each line (major + 1)
    first: NDArray[np.int64]  # [L] index of each line's first step
    major_step: NDArray[np.int64]  # [L, 2] (row, col) increment along the major axis
    minor_step: NDArray[np.int64]  # [L, 2] (row, col) increment along the minor axis
    ed: FloatArray  # [L] length sqrt(dr² + dc²) rounded to float32 (1 for a single pixel)
    u: NDArray[np.int64]  # [S] step index along the major axis
    base: NDArray[np.int64]  # [S] floor(t)
    off2: NDArray[np.int64]  # [S] the third candidate's offset from base: -1 or +2
    rem: FloatArray  # [S] f of v = base
    f1: FloatArray  # [S] f of v = base + 1
    f2: FloatArray  # [S] f of the third candidate
    ok1: NDArray[np.bool_]  # [S] v = base + 1 is emitted
    ok2: NDArray[np.bool_]  # [S] the third candidate is emitted
    ed_step: FloatArray  # [S] ed of each step's line


def _steps(p0: NDArray[np.integer[Any]], p1: NDArray[np.integer[Any]]) -> _Steps:
    # Speed notes (measured): pixel indices stay int64 (numpy gathers convert narrower index types on every
    # call); the distance arithmetic runs on integer-valued float64 (no int-to-float conversions, and a float
    # quotient beats integer floor division); masks multiply instead of np.where (random masks are slow); and
    # results are computed into buffers that are reused, because every fresh array of this size is a new
    # mmap whose page faults cost more than the arithmetic.
    d = (np.asarray(p1) - np.asarray(p0)).astype(np.int64)
    dr, dc = np.abs(d[:, 0]), np.abs(d[:, 1])
    major, minor = np.maximum(dr, dc), np.minimum(dr, dc)
    ed = np.sqrt((dr * dr + dc * dc).astype(np.float64)).astype(np.float32).astype(np.float64)
    ed[major == 0] = 1.0
    sign = np.where(d > 0, 1, -1)
    col_major = (dc >= dr)[:, None]
    major_step = np.where(col_major, [0, 1], [1, 0]) * sign
    minor_step = np.where(col_major, [1, 0], [0, 1]) * sign
    steps = major + 1
    first = np.cumsum(steps) - steps
    # u restarts at 0 on each line: a running sum of ones with a drop at every line start.
    u = np.ones(int(steps.sum()), dtype=np.int64)
    u[0] = 0
    u[first[1:]] = 1 - steps[:-1]
    np.cumsum(u, out=u)
    # A single-pixel line has major = 0; max(major, 1) there only changes candidates its bounds checks reject.
    mj = np.repeat(np.maximum(major, 1).astype(np.float64), steps)
    mn = np.repeat(minor.astype(np.float64), steps)
    ed_step = np.repeat(ed, steps)
    num = np.multiply(u, mn)  # u·minor
    base = np.divide(num, mj)
    np.floor(base, out=base)  # exact: a correctly rounded quotient of integers below 2^53
    rem = np.multiply(base, mj)
    np.subtract(num, rem, out=rem)  # u·minor - base·major
    low = np.less(np.multiply(rem, 2, out=num), mj)  # frac(t) < 1/2: third candidate below base, else above
    f1 = np.subtract(mj, rem)
    ok1 = (base < mn) & (f1 < ed_step)
    # Third candidate: f = major + rem if low else 2·major - rem = major + f1.
    f2 = np.subtract(f1, rem, out=num)
    f2 *= low
    np.subtract(f1, f2, out=f2)
    f2 += mj
    in_box = low & (base >= 1)
    in_box |= ~low & (np.add(base, 2, out=mj) <= mn)
    ok2 = in_box & (f2 < ed_step)
    off2 = low.astype(np.int64)
    off2 *= -3
    off2 += 2
    return _Steps(
        steps, first, major_step, minor_step, ed, u, base.astype(np.int64), off2, rem, f1, f2, ok1, ok2, ed_step
    )


def line_aa(p0: NDArray[np.integer[Any]], p1: NDArray[np.integer[Any]]) -> LineRaster:
    """Rasterise many lines between integer pixels like ``skimage.draw.line_aa``, all at once.

    A. Zingl's algorithm (skimage's) emits, for integer endpoints, exactly the pixels of the endpoints' bounding
    box whose distance to the infinite line is below one pixel (``|f| < ed`` with ``f = (r - r0)(c1 - c0) -
    (c - c0)(r1 - r0)``, ``ed = sqrt(dr² + dc²)`` rounded to float32 as in skimage's Cython), with value
    ``1 - |f| / ed``.  Per step along the major axis those are among three candidates (see :class:`_Steps`),
    tested in exact integer arithmetic, so the work is proportional to the total line length.

    Args:
        p0: [L, 2] integer (row, col) first endpoints.
        p1: [L, 2] integer (row, col) second endpoints.

    Returns:
        The pixels of every line; those of line ``l`` are exactly (as a set, with the same values) the output of
        ``skimage.draw.line_aa(*p0[l], *p1[l])``.
    """
    p0 = np.asarray(p0, dtype=np.int64).reshape(-1, 2)
    p1 = np.asarray(p1, dtype=np.int64).reshape(-1, 2)
    s = _steps(p0, p1)
    line_of_step = np.repeat(np.arange(len(p0)), s.steps)
    ok = np.concatenate([np.ones_like(s.ok1), s.ok1, s.ok2])
    line = np.tile(line_of_step, 3)[ok]
    u = np.tile(s.u, 3)[ok]
    v = np.concatenate([s.base, s.base + 1, s.base + s.off2])[ok]
    f = np.concatenate([s.rem, s.f1, s.f2])[ok]
    rr = p0[line, 0] + s.major_step[line, 0] * u + s.minor_step[line, 0] * v
    cc = p0[line, 1] + s.major_step[line, 1] * u + s.minor_step[line, 1] * v
    return LineRaster(line=line, rr=rr, cc=cc, val=1.0 - f / s.ed[line])


def draw_line_map(
    p0: NDArray[np.integer[Any]], p1: NDArray[np.integer[Any]], shape: tuple[int, int]
) -> NDArray[np.float32]:
    """Max-combine the anti-aliased lines ``p0[l] → p1[l]`` (integer (row, col), inside ``shape``) into a map.

    Args:
        p0: [L, 2] integer first endpoints.
        p1: [L, 2] integer second endpoints.
        shape: (h, w) of the map.

    Returns:
        [h, w] float32 map in [0, 1]; 1 on every pixel an endpoint-to-endpoint line passes through.
    """
    out = np.zeros(shape, dtype=np.float32)
    if len(p0) == 0:
        return out
    ras = line_aa(p0, p1)
    np.maximum.at(out.reshape(-1), ras.rr * shape[1] + ras.cc, ras.val.astype(np.float32))
    return out


def mean_overlap(
    p0: NDArray[np.integer[Any]], p1: NDArray[np.integer[Any]], heat: NDArray[np.floating[Any]]
) -> FloatArray:
    """``mean(min(aa, heat[pixels]))`` over the ``line_aa`` pixels of every line ``p0[l] → p1[l]``.

    Vectorised over all lines (in chunks that bound the memory); no pixel list is materialised: each step's
    three candidates are looked up through a flat index into a zero-padded copy of ``heat``, masked, and summed
    per line with ``np.add.reduceat``.  Endpoints are clipped to ``heat``'s shape first (they are inside it
    for even heatmap sizes).

    Args:
        p0: [L, 2] integer first endpoints.
        p1: [L, 2] integer second endpoints.
        heat: [h, w] map (the half-resolution line map).

    Returns:
        [L] float64 overlap scores.
    """
    p0 = np.asarray(p0, dtype=np.int64).reshape(-1, 2)
    p1 = np.asarray(p1, dtype=np.int64).reshape(-1, 2)
    n = p0.shape[0]
    scores = np.zeros(n, dtype=np.float64)
    if n == 0:
        return scores
    h, w = heat.shape
    p0 = np.clip(p0, 0, [h - 1, w - 1])
    p1 = np.clip(p1, 0, [h - 1, w - 1])
    # Candidates lie at most 2 pixels beyond a line's bounding box: a zero border of 2 keeps every lookup valid.
    pad = 2
    padded = np.zeros((h + 2 * pad, w + 2 * pad), dtype=np.float64)
    padded[pad:-pad, pad:-pad] = heat
    flat_heat = padded.ravel()
    # Chunks of about _CHUNK_STEPS rasterisation steps bound the peak memory for scenes with many junctions.
    work = np.cumsum(np.abs(p1 - p0).max(axis=1) + 1)
    cuts = np.searchsorted(work, np.arange(_CHUNK_STEPS, int(work[-1]), _CHUNK_STEPS), side="right")
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
        if hi <= lo:
            continue
        a = p0[lo:hi]
        s = _steps(a, p1[lo:hi])
        to_flat = np.array([w + 2 * pad, 1], dtype=np.int64)
        # Flat (padded) pixel of the v = base candidate; the other two are a multiple of minor_step away.
        minor_flat = np.repeat(s.minor_step @ to_flat, s.steps)
        pix = np.repeat((a + pad) @ to_flat, s.steps)
        tmp = np.repeat(s.major_step @ to_flat, s.steps)
        tmp *= s.u
        pix += tmp
        pix += np.multiply(minor_flat, s.base, out=tmp)
        look = flat_heat.take(pix)
        total = np.divide(s.rem, s.ed_step)
        np.subtract(1.0, total, out=total)
        np.minimum(total, look, out=total)
        pix2 = np.multiply(minor_flat, s.off2, out=tmp)
        pix2 += pix
        pix1 = np.add(pix, minor_flat, out=minor_flat)
        val = np.empty_like(total)
        for f, ok, cand in ((s.f1, s.ok1, pix1), (s.f2, s.ok2, pix2)):
            flat_heat.take(cand, out=look)
            np.divide(f, s.ed_step, out=val)
            np.subtract(1.0, val, out=val)
            np.minimum(val, look, out=val)
            val *= ok
            total += val
        ok1 = np.add.reduceat(s.ok1, s.first, dtype=np.int64)
        count = s.steps + ok1 + np.add.reduceat(s.ok2, s.first, dtype=np.int64)
        scores[lo:hi] = np.add.reduceat(total, s.first) / count
    return scores


def scale_lines(
    lines_xy: NDArray[np.floating[Any]],
    image_hw: tuple[int, int],
    heatmap_hw: tuple[int, int],
    geometry: ResizeGeometry | None = None,
) -> NDArray[np.float32]:
    """Scale ``[L, 4]`` ``x1, y1, x2, y2`` image-pixel lines to ``[L, 2, 2]`` (y, x) heatmap coordinates.

    x is scaled by ``w / W`` and y by ``h / H`` (pixel edges at integers, so the image's right edge ``W`` maps
    to ``w``), the result is rounded to float32 and clipped to ``[0, size - 1e-4]`` in float32, so that the
    stored junctions, ``floor`` and the offsets all see the same numbers.  With a letterbox ``geometry``
    (:mod:`roofmapnet.data.resize`, square heatmaps) the lines go where the resized image lies inside the padding;
    a stretch geometry gives the same numbers as none.
    """
    lines = np.asarray(lines_xy, dtype=np.float64).reshape(-1, 2, 2)
    (big_h, big_w), (h, w) = image_hw, heatmap_hw
    if geometry is not None:
        if h != w or geometry.image_hw != (big_h, big_w):
            raise ValueError(f"a resize geometry of {geometry.image_hw} needs square heatmaps of that image")
        yx = geometry.forward(lines[:, :, ::-1], side=h)
    else:
        yx = lines[:, :, ::-1] * np.array([h / big_h, w / big_w])
    hi = np.array([h - CLIP_EPS, w - CLIP_EPS], dtype=np.float32)
    # + 0 turns -0.0 into 0.0 so that exact-coordinate deduplication treats them alike.
    return np.clip(yx.astype(np.float32), np.float32(0), hi) + np.float32(0)


def junction_maps(
    junc: NDArray[np.floating[Any]], heatmap_hw: tuple[int, int]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``jmap`` [1, h, w] and ``joff`` [1, 2, h, w] of junctions ``junc`` [N, ≥2] (y, x) in heatmap space.

    The junction pixel is ``floor(v)`` and the offset ``v - floor(v) - 0.5`` in ``[-0.5, 0.5)``; when several
    junctions share a pixel the last one's offset is kept (L-CNN's behaviour, made deterministic).
    """
    h, w = heatmap_hw
    jmap = np.zeros((1, h, w), dtype=np.float32)
    joff = np.zeros((1, 2, h, w), dtype=np.float32)
    if len(junc) == 0:
        return jmap, joff
    yx = np.asarray(junc, dtype=np.float32)[:, :2].astype(np.float64)
    pix = np.floor(yx).astype(np.int64)
    pix[:, 0] = np.clip(pix[:, 0], 0, h - 1)
    pix[:, 1] = np.clip(pix[:, 1], 0, w - 1)
    flat = pix[:, 0] * w + pix[:, 1]
    # Last occurrence of each pixel: first occurrence in the reversed list.
    _, first_rev = np.unique(flat[::-1], return_index=True)
    keep = len(flat) - 1 - first_rev
    off = np.clip(yx[keep] - np.floor(yx[keep]) - 0.5, -0.5, _OFF_MAX).astype(np.float32)
    jmap[0].reshape(-1)[flat[keep]] = 1.0
    joff[0, 0].reshape(-1)[flat[keep]] = off[:, 0]
    joff[0, 1].reshape(-1)[flat[keep]] = off[:, 1]
    return jmap, joff


def compute_targets(lines_yx: NDArray[np.floating[Any]], heatmap_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The eight label arrays of one image from its lines in heatmap space.

    Args:
        lines_yx: [L, 2, 2] (y, x) endpoints in heatmap space, already clipped (see :func:`scale_lines`).
        heatmap_hw: (h, w).

    Returns:
        ``{"jmap", "joff", "lmap", "junc", "Lpos", "Lneg", "lpos", "lneg"}`` as specified in
        docs/data-format.md.  Lines whose endpoints coincide are dropped, as are repeated lines (either
        orientation; the first one is kept).

    Raises:
        ValueError: when no line of non-zero length remains.
    """
    h, w = heatmap_hw
    lines32 = np.asarray(lines_yx, dtype=np.float32).reshape(-1, 2, 2) + np.float32(0)  # -0.0 -> 0.0
    lines32 = lines32[~(lines32[:, 0] == lines32[:, 1]).all(axis=1)]
    if len(lines32) == 0:
        msg = "no line of non-zero length"
        raise ValueError(msg)
    # Unique junctions on exact coordinates, numbered in first-appearance order (L-CNN's jid()).  A (y, x) pair
    # of float32 viewed as one uint64 compares equal iff both coordinates do (no NaN; -0.0 was made 0.0).
    pts = np.ascontiguousarray(lines32.reshape(-1, 2))
    _, first, inverse = np.unique(pts.view(np.uint64).ravel(), return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")
    rank = np.empty(len(first), dtype=np.int64)
    rank[by_first] = np.arange(len(first))
    junc_yx = pts[first[by_first]]
    pairs = rank[inverse.reshape(-1)].reshape(-1, 2)
    # Repeated lines (either orientation): keep the first.  Every junction still belongs to a kept line.
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    _, keep = np.unique(lo * len(first) + hi, return_index=True)
    lpos_idx = pairs[np.sort(keep)]
    n = len(junc_yx)

    junc = np.zeros((n, 3), dtype=np.float32)
    junc[:, :2] = junc_yx
    jmap, joff = junction_maps(junc_yx, (h, w))

    jint = np.floor(junc_yx.astype(np.float64)).astype(np.int64)
    lmap = draw_line_map(jint[lpos_idx[:, 0]], jint[lpos_idx[:, 1]], (h, w))

    # Hard negatives: every non-line pair i < j, ranked by its overlap with the half-resolution line map.
    adj = np.zeros((n, n), dtype=bool)
    adj[lpos_idx[:, 0], lpos_idx[:, 1]] = True
    adj[lpos_idx[:, 1], lpos_idx[:, 0]] = True
    i0, i1 = np.triu_indices(n, 1)
    neg = ~adj[i0, i1]
    i0, i1 = i0[neg], i1[neg]
    llmap = zoom(lmap, 0.5)
    half = np.floor(junc_yx.astype(np.float64) / 2).astype(np.int64)
    scores = mean_overlap(half[i0], half[i1], llmap)
    order = np.argsort(-scores, kind="stable")
    neg_pairs = np.stack([i0[order], i1[order]], axis=1).astype(np.int64).reshape(-1, 2)

    return {
        "jmap": jmap,
        "joff": joff,
        "lmap": lmap,
        "junc": junc,
        "Lpos": lpos_idx.astype(np.int64).reshape(-1, 2),
        "Lneg": neg_pairs[:MAX_LNEG_PAIRS],
        "lpos": junc[lpos_idx].reshape(-1, 2, 3),
        "lneg": junc[neg_pairs[:MAX_LNEG_LINES]].reshape(-1, 2, 3),
    }


def targets_from_image_lines(
    lines_xy: NDArray[np.floating[Any]], image_hw: tuple[int, int], heatmap_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    """:func:`compute_targets` of ``[L, 4]`` ``x1, y1, x2, y2`` lines given in the pixels of an ``image_hw`` image."""
    return compute_targets(scale_lines(lines_xy, image_hw, heatmap_hw), heatmap_hw)


def save_label(path: str | Path, targets: Mapping[str, np.ndarray]) -> None:
    """Write the fields of :data:`LABEL_FIELDS` (and :data:`CONTENT_BOX` if present) as a compressed npz (not atomic)."""
    payload: dict[str, Any] = {name: targets[name] for name in (*LABEL_FIELDS, CONTENT_BOX) if name in targets}
    with Path(path).open("wb") as fh:
        np.savez_compressed(fh, **payload)


def write_label(path: str | Path, targets: Mapping[str, np.ndarray]) -> None:
    """:func:`save_label` atomically (temporary file + rename)."""
    from roofmapnet.utils.io import atomic_path

    with atomic_path(path) as tmp:
        save_label(tmp, targets)


_FLOAT_FIELDS = ("jmap", "joff", "lmap", "junc", "lpos", "lneg")


def validate_label(
    arrays: Mapping[str, np.ndarray], source: str | Path, heatmap_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Check a label file's fields, shapes, dtypes and index ranges; return them in canonical dtypes.

    Args:
        arrays: the loaded npz (a mapping of field name to array); extra fields are ignored.
        source: the file, named in error messages.
        heatmap_hw: the expected (h, w).

    Returns:
        The eight fields: floats as float32, index pairs as int64; empty negative arrays reshaped to
        ``(0, 2)`` / ``(0, 2, 3)`` (L-CNN writes them as ``(0,)``).

    Raises:
        DataError: ``"<file>: field 'jmap' has shape (..), expected (1, h, w)"`` and the like.
    """
    h, w = heatmap_hw
    out: dict[str, np.ndarray] = {}
    for name in LABEL_FIELDS:
        if name not in arrays:
            raise DataError(f"{source}: missing field '{name}' (expected {', '.join(LABEL_FIELDS)})")
        try:
            arr = np.asarray(arrays[name])
        except Exception as exc:  # zipfile / zlib errors of a truncated file
            raise DataError(f"{source}: field '{name}' cannot be read ({exc})") from None
        if name in _FLOAT_FIELDS:
            if arr.dtype.kind != "f":
                raise DataError(f"{source}: field '{name}' has dtype {arr.dtype}, expected float32")
        elif arr.dtype.kind not in "iu":
            raise DataError(f"{source}: field '{name}' has dtype {arr.dtype}, expected an integer type")
        out[name] = arr
    n = out["junc"].shape[0] if out["junc"].ndim == 2 else -1
    for name in ("Lneg", "lneg"):
        if out[name].size == 0:
            out[name] = out[name].reshape((0, 2) if name == "Lneg" else (0, 2, 3))
    expected: dict[str, tuple[int | str, ...]] = {
        "jmap": (1, h, w),
        "joff": (1, 2, h, w),
        "lmap": (h, w),
        "junc": ("N", 3),
        "Lpos": ("M", 2),
        "Lneg": ("K", 2),
        "lpos": ("M", 2, 3),
        "lneg": ("K'", 2, 3),
    }
    sizes: dict[str, int] = {}
    for name, shape in expected.items():
        arr = out[name]
        ok = arr.ndim == len(shape)
        if ok:
            for dim, want in zip(arr.shape, shape, strict=True):
                if isinstance(want, str):
                    if sizes.setdefault(want, dim) != dim:
                        ok = False
                elif dim != want:
                    ok = False
        if not ok:
            want_txt = "(" + ", ".join(str(sizes.get(s, s)) if isinstance(s, str) else str(s) for s in shape) + ")"
            raise DataError(f"{source}: field '{name}' has shape {tuple(arr.shape)}, expected {want_txt}")
    for name in ("Lpos", "Lneg"):
        idx = out[name]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{source}: field '{name}' has junction indices outside [0, {n})")
    for name in _FLOAT_FIELDS:
        if not np.isfinite(out[name]).all():
            raise DataError(f"{source}: field '{name}' contains non-finite values")
    if n and not (
        (out["junc"][:, 0] >= 0).all()
        and (out["junc"][:, 0] < h).all()
        and (out["junc"][:, 1] >= 0).all()
        and (out["junc"][:, 1] < w).all()
    ):
        raise DataError(f"{source}: field 'junc' has coordinates outside the {h}×{w} heatmap")
    result = {
        name: out[name].astype(np.float32 if name in _FLOAT_FIELDS else np.int64, copy=False) for name in LABEL_FIELDS
    }
    if CONTENT_BOX in arrays:
        box = np.asarray(arrays[CONTENT_BOX])
        top, left, bh, bw = box.astype(np.float64).tolist() if box.shape == (4,) else (np.nan,) * 4
        if not (top >= 0 and left >= 0 and 0 < bh <= h - top + 1e-3 and 0 < bw <= w - left + 1e-3):
            raise DataError(f"{source}: field '{CONTENT_BOX}' must be [top, left, height, width] inside the heatmap")
        result[CONTENT_BOX] = box.astype(np.float32)
    return result
