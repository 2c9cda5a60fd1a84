"""Wireframe metrics in numpy: structural AP (sAP^θ, msAP, sF^θ), junction mAP^J and heatmap AP^H / F^H.

Definitions follow L-CNN (``lcnn/metric.py``, ``eval-sAP.py``, ``eval-mAPJ.py``, ``eval-APH.py`` +
``matlab/eval_release.m``; docs: ARCHITECTURE.md §6).  Lines and junctions are (y, x) points in heatmap
space ("128-space"), pixel ``r`` covering ``[r, r+1)``.

**sAP^θ** — per image, predictions are visited in descending score order; each one is compared with its
*nearest* ground-truth (GT) line only, by ``D = min(‖p0−g0‖²+‖p1−g1‖², ‖p0−g1‖²+‖p1−g0‖²)`` (a sum of squared
endpoint distances, not its root); it is a true positive (TP) iff ``D < θ`` and that GT line was not hit yet.
TP/FP flags of all images are then ranked together by score, and AP is L-CNN's precision-envelope area.
Images without GT lines count all their predictions as false positives (L-CNN crashes there).

The sequential "not yet hit" rule is evaluated without a loop: the nearest GT line and ``D`` of a prediction
do not depend on the order, and GT line ``g`` becomes hit exactly at the *first* prediction (in visiting order)
that picks ``g`` as nearest with ``D < θ`` — every earlier prediction picking ``g`` had ``D ≥ θ`` and left it
unhit, every later one finds it hit.  So the TPs are the first occurrences of each GT index among the
eligible predictions (:func:`first_hits`), which ``np.unique(..., return_index=True)`` gives directly.  The
same argument holds for mAP^J, whose visiting order is the global score ranking.

**Tie-breaking** — equal scores keep their insertion order (stable sorts); L-CNN's ``np.argsort`` is not
stable, so on exact ties the two may rank differently.

All AP / F values returned by the ``compute()`` methods are percentages (×100); the helper functions
(:func:`average_precision`, :func:`ap_from_curve`, :func:`max_f_score`) return fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: sAP thresholds θ on the sum of squared endpoint distances (128-space).
SAP_THRESHOLDS: tuple[float, ...] = (5.0, 10.0, 15.0)
#: mAP^J distance thresholds (128-space pixels).
MAPJ_DISTANCES: tuple[float, ...] = (0.5, 1.0, 2.0)
#: AP^H line-score thresholds (L-CNN's ``eval-APH.py``).
APH_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 0.995, 0.999, 0.9995, 0.9999)
#: Soft-NMS factor of mAP^J: a pixel with an 8-neighbour at least as high is multiplied by it.
JUNCTION_NMS_FACTOR = 0.6


def _array(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """``x`` (numpy array, list or CPU/GPU torch tensor) as a numpy array of ``dtype``."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be read as a numeric array ({exc})") from None


def _lines(x: Any, name: str) -> np.ndarray:
    """[N, 2, 2] float64 lines from [N, 2, ≥2] input (extra columns such as a junction type are dropped)."""
    arr = _array(x, name)
    if arr.size == 0:
        return np.zeros((0, 2, 2))
    if arr.ndim != 3 or arr.shape[1] != 2 or arr.shape[2] < 2:
        raise ValueError(f"{name}: expected lines of shape [N, 2, 2], got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr[:, :, :2])


def _points(x: Any, name: str) -> np.ndarray:
    """[N, 2] float64 points from [N, ≥2] input."""
    arr = _array(x, name)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name}: expected points of shape [N, 2], got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr[:, :2])


def _scores(x: Any, n: int, name: str) -> np.ndarray:
    arr = _array(x, name).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} scores (one per line), got {arr.shape[0]}")
    return arr


# ----------------------------------------------------------------------------------------------------------------
# Generic pieces


def first_hits(eligible: np.ndarray, target: np.ndarray) -> np.ndarray:
    """True positives of a greedy one-to-one assignment, without a loop.

    Visiting entries in array order, an entry is a TP iff it is eligible and its ``target`` was not taken by an
    earlier TP.  That is exactly the first eligible occurrence of each target.

    Args:
        eligible: [N] bool, whether the entry may match (e.g. its distance is below the threshold).
        target: [N] int, the (globally unique) index of the entry's nearest ground truth.

    Returns:
        [N] bool TP flags.
    """
    tp = np.zeros(eligible.shape[0], dtype=bool)
    idx = np.flatnonzero(eligible)
    if idx.size:
        _, first = np.unique(target[idx], return_index=True)
        tp[idx[first]] = True
    return tp


def ap_from_curve(recall: np.ndarray, precision: np.ndarray) -> float:
    """L-CNN's ``ap``: area under the precision envelope (points (0, 0) and (1, 0) added), as a fraction.

    Args:
        recall: [N] recall values in curve order (non-decreasing for a ranked list).
        precision: [N] precision values.
    """
    rec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    prec = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    prec = np.maximum.accumulate(prec[::-1])[::-1]  # running max from the right
    i = np.flatnonzero(rec[1:] != rec[:-1])
    return float(np.sum((rec[i + 1] - rec[i]) * prec[i + 1]))


def max_f_score(recall: np.ndarray, precision: np.ndarray) -> float:
    """Maximum F-score ``2PR / (P + R)`` over the points of a curve, as a fraction (0 for an empty curve)."""
    r = np.asarray(recall, dtype=np.float64)
    p = np.asarray(precision, dtype=np.float64)
    if r.size == 0:
        return 0.0
    denom = p + r
    f = np.divide(2.0 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(f.max())


def average_precision(
    tp: np.ndarray, fp: np.ndarray, scores: np.ndarray, n_gt: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of TP/FP flags ranked by descending score (stable), with L-CNN's envelope.

    Args:
        tp: [N] TP flags (bool or 0/1).
        fp: [N] FP flags; an entry with neither flag (e.g. a junction of an image without GT) only repeats the
            previous curve point, which leaves the AP unchanged.
        scores: [N] ranking scores.
        n_gt: Total number of ground-truth items (the recall denominator).

    Returns:
        ``(ap, recall, precision)``: AP as a fraction in [0, 1] (0 when ``n_gt`` is 0) and the raw (not
        enveloped) curve in ranking order.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ctp = np.cumsum(np.asarray(tp, dtype=np.float64)[order])
    cfp = np.cumsum(np.asarray(fp, dtype=np.float64)[order])
    recall = ctp / n_gt if n_gt > 0 else np.zeros_like(ctp)
    precision = ctp / np.maximum(ctp + cfp, 1e-9)
    ap = ap_from_curve(recall, precision) if n_gt > 0 else 0.0
    return ap, recall, precision


# ----------------------------------------------------------------------------------------------------------------
# Structural AP (sAP)


def line_distance_matrix(pred_lines: np.ndarray, gt_lines: np.ndarray) -> np.ndarray:
    """[P, G] L-CNN line distance: the smaller sum of squared endpoint distances over the two endpoint pairings."""
    pred = _lines(pred_lines, "pred_lines").reshape(-1, 4).T.copy()  # rows y0, x0, y1, x1 (contiguous)
    gt = _lines(gt_lines, "gt_lines").reshape(-1, 4).T.copy()

    def sq(i: int, j: int) -> np.ndarray:  # [P, G] squared distance of pred endpoint i to GT endpoint j
        dy = pred[2 * i, :, None] - gt[2 * j]
        dx = pred[2 * i + 1, :, None] - gt[2 * j + 1]
        dy *= dy
        dx *= dx
        dy += dx
        return dy

    return np.minimum(sq(0, 0) + sq(1, 1), sq(0, 1) + sq(1, 0))


def nearest_gt_lines(pred_lines: np.ndarray, gt_lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest GT line of every prediction.

    Returns:
        ``(dist [P], index [P])``: the L-CNN distance to the nearest GT line (``inf`` without GT) and its index
        (first one on ties, as ``argmin``; -1 without GT).
    """
    d = line_distance_matrix(pred_lines, gt_lines)
    if d.shape[1] == 0:
        return np.full(d.shape[0], np.inf), np.full(d.shape[0], -1, dtype=np.int64)
    choice = d.argmin(axis=1)
    return d[np.arange(d.shape[0]), choice], choice.astype(np.int64)


def line_tp_fp(pred_lines: np.ndarray, gt_lines: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """L-CNN's ``msTPFP`` for one image: TP/FP flags of predictions given in visiting (score) order.

    Args:
        pred_lines: [P, 2, 2] predicted lines, already sorted by descending score.
        gt_lines: [G, 2, 2] GT lines (G may be 0: every prediction is then a FP).
        threshold: θ on the sum of squared endpoint distances (TP iff ``D < θ``).

    Returns:
        ``(tp [P] bool, fp [P] bool)`` with ``fp = ~tp``.
    """
    dist, choice = nearest_gt_lines(pred_lines, gt_lines)
    tp = first_hits(dist < threshold, choice)
    return tp, ~tp


class LineAPAccumulator:
    """Accumulates sAP^θ over images (batches, DDP ranks) and computes sAP, msAP and sF.

    Per prediction it stores its score, the distance ``D`` to its nearest GT line and that line's global
    index; these do not depend on θ, so one pass per image serves every threshold.  The state is a few
    concatenated arrays (:meth:`state_dict`) that can be gathered across ranks and combined with
    :meth:`merge` / :meth:`from_states`.

    Args:
        thresholds: θ values (sum of squared endpoint distances, 128-space); default (5, 10, 15).
    """

    def __init__(self, thresholds: Sequence[float] = SAP_THRESHOLDS) -> None:
        if not thresholds or any(not np.isfinite(t) or t <= 0 for t in thresholds):
            raise ValueError(f"thresholds must be positive numbers, got {tuple(thresholds)}")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.reset()

    def reset(self) -> None:
        """Forget every added image."""
        self._scores: list[np.ndarray] = []
        self._dist: list[np.ndarray] = []
        self._gt_index: list[np.ndarray] = []
        self.n_gt = 0
        self.n_images = 0

    @property
    def n_pred(self) -> int:
        """Number of predictions added so far."""
        return int(sum(s.shape[0] for s in self._scores))

    def add(self, pred_lines: Any, pred_scores: Any, gt_lines: Any) -> None:
        """Add one image.

        Args:
            pred_lines: [P, 2, 2] predicted lines, (y, x) in 128-space (numpy or torch).  They are visited by
                descending score (stable: an already sorted list keeps its order).
            pred_scores: [P] scores.
            gt_lines: [G, 2, 2] (or [G, 2, 3] with a type column) GT lines in 128-space.
        """
        pred = _lines(pred_lines, "pred_lines")
        scores = _scores(pred_scores, pred.shape[0], "pred_scores")
        gt = _lines(gt_lines, "gt_lines")
        order = np.argsort(-scores, kind="stable")
        dist, choice = nearest_gt_lines(pred[order], gt)
        self._scores.append(scores[order])
        self._dist.append(dist)
        self._gt_index.append(np.where(choice >= 0, choice + self.n_gt, -1))
        self.n_gt += gt.shape[0]
        self.n_images += 1

    def _cat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(self._scores) > 1:  # consolidate, so that repeated compute() calls stay cheap
            self._scores = [np.concatenate(self._scores)]
            self._dist = [np.concatenate(self._dist)]
            self._gt_index = [np.concatenate(self._gt_index)]
        if not self._scores:
            return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
        return self._scores[0], self._dist[0], self._gt_index[0]

    def state_dict(self) -> dict[str, np.ndarray]:
        """The accumulated state as plain arrays (``scores``, ``dist``, ``gt_index``, ``n_gt``, ``n_images``)."""
        scores, dist, gt_index = self._cat()
        return {
            "scores": scores.copy(),
            "dist": dist.copy(),
            "gt_index": gt_index.copy(),
            "n_gt": np.array(self.n_gt, dtype=np.int64),
            "n_images": np.array(self.n_images, dtype=np.int64),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the state with one produced by :meth:`state_dict` (arrays or tensors)."""
        try:
            scores = _array(state["scores"], "scores").reshape(-1)
            dist = _array(state["dist"], "dist").reshape(-1)
            gt_index = _array(state["gt_index"], "gt_index", np.int64).reshape(-1)
            n_gt, n_images = int(_array(state["n_gt"], "n_gt")), int(_array(state["n_images"], "n_images"))
        except KeyError as exc:
            raise ValueError(f"line AP state: missing field {exc}") from None
        if not scores.shape == dist.shape == gt_index.shape:
            raise ValueError("line AP state: scores, dist and gt_index must have the same length")
        if gt_index.size and gt_index.max() >= n_gt:
            raise ValueError("line AP state: gt_index out of range of n_gt")
        self._scores, self._dist, self._gt_index = [scores], [dist], [gt_index]
        self.n_gt, self.n_images = n_gt, n_images

    def merge(self, other: LineAPAccumulator) -> LineAPAccumulator:
        """Append ``other``'s images to this accumulator (GT indices re-based); returns ``self``."""
        scores, dist, gt_index = other._cat()
        self._scores.append(scores.copy())
        self._dist.append(dist.copy())
        self._gt_index.append(np.where(gt_index >= 0, gt_index + self.n_gt, -1))
        self.n_gt += other.n_gt
        self.n_images += other.n_images
        return self

    @classmethod
    def from_states(
        cls, states: Iterable[Mapping[str, Any]], thresholds: Sequence[float] = SAP_THRESHOLDS
    ) -> LineAPAccumulator:
        """One accumulator from the :meth:`state_dict` of several (e.g. all DDP ranks, gathered)."""
        out = cls(thresholds)
        for state in states:
            part = cls(thresholds)
            part.load_state_dict(state)
            out.merge(part)
        return out

    def _flags(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scores, dist, gt_index = self._cat()
        tp = first_hits(dist < threshold, gt_index)
        return tp, ~tp, scores

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """PR curves ``{"sAP5": (recall, precision), ...}`` (fractions, ranking order) for plotting."""
        out = {}
        for t in self.thresholds:
            tp, fp, scores = self._flags(t)
            _, rec, prec = average_precision(tp, fp, scores, self.n_gt)
            out[f"sAP{t:g}"] = (rec, prec)
        return out

    def compute(self) -> dict[str, float]:
        """``sAP{θ}`` and ``sF{θ}`` per threshold and ``msAP`` (their mean), all in percent.

        With no GT line at all every AP is 0; with no prediction too.
        """
        out: dict[str, float] = {}
        aps = []
        for t in self.thresholds:
            tp, fp, scores = self._flags(t)
            ap, rec, prec = average_precision(tp, fp, scores, self.n_gt)
            out[f"sAP{t:g}"] = 100.0 * ap
            out[f"sF{t:g}"] = 100.0 * max_f_score(rec, prec)
            aps.append(ap)
        out["msAP"] = 100.0 * float(np.mean(aps))
        return out


# ----------------------------------------------------------------------------------------------------------------
# Junction mAP (mAP^J)


def soft_nms_junctions(heatmap: np.ndarray, factor: float = JUNCTION_NMS_FACTOR) -> np.ndarray:
    """L-CNN's ``nms_j``: multiply by ``factor`` every pixel that has an 8-neighbour ≥ itself.

    Args:
        heatmap: [H, W] junction probabilities.
        factor: Suppression factor (0.6 in L-CNN).

    Returns:
        [H, W] float64 suppressed heatmap.
    """
    h = _array(heatmap, "jmap")
    if h.ndim != 2:
        raise ValueError(f"jmap: expected [H, W], got {tuple(h.shape)}")
    padded = np.pad(h, 1, constant_values=-np.inf)
    rows, cols = h.shape
    nb = np.full_like(h, -np.inf)
    for dy in (0, 1, 2):  # the 8 neighbour shifts (a fixed 3x3 stencil, not a loop over pixels)
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                np.maximum(nb, padded[dy : dy + rows, dx : dx + cols], out=nb)
    return np.where(nb >= h, h * factor, h)


def junction_candidates(
    jmap: Any, max_junctions: int = 1000, min_score: float = 0.01
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L-CNN's ``post_jheatmap`` selection: soft NMS, top ``max_junctions``, keep scores ≥ ``min_score``.

    Args:
        jmap: [H, W] or [1, H, W] junction probabilities.
        max_junctions: Top-k size (1000 in L-CNN).
        min_score: Minimum suppressed score (0.01 in L-CNN).

    Returns:
        ``(rows [K], cols [K], scores [K])`` ordered by descending score (ties: row-major order).
    """
    h = _array(jmap, "jmap")
    if h.ndim == 3 and h.shape[0] == 1:
        h = h[0]
    if h.ndim != 2:
        raise ValueError(f"jmap: expected [H, W] or [1, H, W], got {tuple(h.shape)}")
    flat = soft_nms_junctions(h).reshape(-1)
    # Everything ≥ min_score ranks above everything below it, so filtering first gives the same top-k.
    idx = np.flatnonzero(flat >= min_score)
    if idx.size > max_junctions:  # keep the values ≥ the k-th largest (ties included) before the full sort
        vals = flat[idx]
        kth = np.partition(vals, idx.size - max_junctions)[idx.size - max_junctions]
        idx = idx[vals >= kth]
    idx = idx[np.lexsort((idx, -flat[idx]))][:max_junctions]
    rows, cols = np.divmod(idx, h.shape[1])
    return rows, cols, flat[idx]


class JunctionAPAccumulator:
    """Accumulates mAP^J (L-CNN ``eval-mAPJ.py``) over images.

    Junctions are decoded from the heatmap as L-CNN does (:func:`junction_candidates`), at ``(r, c) + 0.5``
    without offsets and ``(r + joff_y, c + joff_x) + 0.5`` with them.  All images are pooled and ranked by
    score; a junction is a TP iff its nearest GT junction (Euclidean) is closer than d and not hit yet.  Images
    without GT junctions are skipped (their junctions are neither TP nor FP), but GT junctions of images
    without predictions still count in the recall denominator.

    Args:
        distances: Distance thresholds d in heatmap pixels; default (0.5, 1, 2).
        max_junctions: Junctions kept per image (top-k after soft NMS).
        min_score: Minimum suppressed score of a kept junction.
    """

    def __init__(
        self, distances: Sequence[float] = MAPJ_DISTANCES, max_junctions: int = 1000, min_score: float = 0.01
    ) -> None:
        if not distances or any(not np.isfinite(d) or d <= 0 for d in distances):
            raise ValueError(f"distances must be positive numbers, got {tuple(distances)}")
        if max_junctions < 1:
            raise ValueError(f"max_junctions must be ≥ 1, got {max_junctions}")
        self.distances = tuple(float(d) for d in distances)
        self.max_junctions = int(max_junctions)
        self.min_score = float(min_score)
        self.reset()

    def reset(self) -> None:
        """Forget every added image."""
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in self._FIELDS}
        self.n_gt = 0
        self.n_images = 0

    _FIELDS = ("scores", "dist", "gt_index", "dist_nooff", "gt_index_nooff")

    def add(self, jmap: Any, gt_junctions: Any, joff: Any | None = None) -> None:
        """Add one image.

        Args:
            jmap: [H, W] or [1, H, W] junction probability map.
            gt_junctions: [N, 2] (or [N, 3] with a type column) GT junctions (y, x) in heatmap space.
            joff: Optional [2, H, W] (or [1, 2, H, W]) decoded (y, x) offsets in (-0.5, 0.5).
        """
        gt = _points(gt_junctions, "gt_junctions")
        self.n_images += 1
        if gt.shape[0] == 0:  # skipped, as L-CNN: neither TP nor FP
            return
        rows, cols, scores = junction_candidates(jmap, self.max_junctions, self.min_score)
        base = np.stack([rows, cols], axis=1).astype(np.float64)
        pos = base
        if joff is not None:
            off = _array(joff, "joff")
            if off.ndim == 4 and off.shape[0] == 1:
                off = off[0]
            if off.ndim != 3 or off.shape[0] != 2:
                raise ValueError(f"joff: expected [2, H, W] or [1, 2, H, W], got {tuple(off.shape)}")
            pos = base + off[:, rows, cols].T
        gy, gx = np.ascontiguousarray(gt[:, 0]), np.ascontiguousarray(gt[:, 1])
        nearest: tuple[np.ndarray, np.ndarray] | None = None
        for suffix, p in (("", pos + 0.5), ("_nooff", base + 0.5)):
            if nearest is None or joff is not None:  # without offsets both variants are the same
                d = p[:, 0, None] - gy  # [K, N] Euclidean distances, as np.linalg.norm in L-CNN
                dx = p[:, 1, None] - gx
                d *= d
                dx *= dx
                d += dx
                np.sqrt(d, out=d)
                choice = d.argmin(axis=1) if d.shape[0] else np.zeros(0, dtype=np.int64)
                nearest = (d[np.arange(d.shape[0]), choice], choice.astype(np.int64) + self.n_gt)
            self._parts["dist" + suffix].append(nearest[0])
            self._parts["gt_index" + suffix].append(nearest[1])
        self._parts["scores"].append(scores)
        self.n_gt += gt.shape[0]

    def _cat(self) -> dict[str, np.ndarray]:
        out = {}
        for k, parts in self._parts.items():
            if len(parts) > 1:
                self._parts[k] = parts = [np.concatenate(parts)]
            out[k] = parts[0] if parts else np.zeros(0, dtype=np.int64 if "index" in k else np.float64)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """The accumulated state as plain arrays (per-junction fields plus ``n_gt`` and ``n_images``)."""
        state = {k: v.copy() for k, v in self._cat().items()}
        state["n_gt"] = np.array(self.n_gt, dtype=np.int64)
        state["n_images"] = np.array(self.n_images, dtype=np.int64)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the state with one produced by :meth:`state_dict`."""
        try:
            parts = {k: _array(state[k], k, np.int64 if "index" in k else np.float64).reshape(-1) for k in self._FIELDS}
            n_gt, n_images = int(_array(state["n_gt"], "n_gt")), int(_array(state["n_images"], "n_images"))
        except KeyError as exc:
            raise ValueError(f"junction AP state: missing field {exc}") from None
        if len({v.shape[0] for v in parts.values()}) != 1:
            raise ValueError("junction AP state: per-junction fields must have the same length")
        self._parts = {k: [v] for k, v in parts.items()}
        self.n_gt, self.n_images = n_gt, n_images

    def merge(self, other: JunctionAPAccumulator) -> JunctionAPAccumulator:
        """Append ``other``'s images (GT indices re-based); returns ``self``."""
        for k, v in other._cat().items():
            self._parts[k].append(v + self.n_gt if "index" in k else v.copy())
        self.n_gt += other.n_gt
        self.n_images += other.n_images
        return self

    @classmethod
    def from_states(cls, states: Iterable[Mapping[str, Any]], **kwargs: Any) -> JunctionAPAccumulator:
        """One accumulator from several :meth:`state_dict` (e.g. gathered from DDP ranks)."""
        out = cls(**kwargs)
        for state in states:
            part = cls(**kwargs)
            part.load_state_dict(state)
            out.merge(part)
        return out

    def _ap(self, distance: float, suffix: str) -> float:
        data = self._cat()
        scores = data["scores"]
        order = np.argsort(-scores, kind="stable")
        tp = first_hits(data["dist" + suffix][order] < distance, data["gt_index" + suffix][order])
        ap, _, _ = average_precision(tp, ~tp, scores[order], self.n_gt)
        return ap

    def compute(self) -> dict[str, float]:
        """``mAPJ`` and ``APJ{d}`` with offsets, and the same with suffix ``_nooff`` without (percent).

        Without offsets given to :meth:`add`, both variants are equal.
        """
        out: dict[str, float] = {}
        for suffix in ("", "_nooff"):
            aps = [self._ap(d, suffix) for d in self.distances]
            out["mAPJ" + suffix] = 100.0 * float(np.mean(aps))
            for d, ap in zip(self.distances, aps, strict=True):
                out[f"APJ{d:g}{suffix}"] = 100.0 * ap
        return out


# ----------------------------------------------------------------------------------------------------------------
# Heatmap AP (AP^H / F^H)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``round`` (half away from zero)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def rasterize_lines(lines: np.ndarray, shape: tuple[int, int], shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of lines as L-CNN's ``eval_release.m`` draws them.

    Each line gets ``n = ceil(length)`` samples ``linspace(p, q, n)`` (MATLAB semantics: one sample is ``q``,
    zero length gives none); a sample lands on pixel ``round(coord - shift)`` (half away from zero), clamped
    to the image.  Predictions use ``shift = 0.5``, GT ``shift = 0``, as L-CNN.

    Args:
        lines: [L, 2, 2] (y, x) endpoints in image pixels.
        shape: (H, W) of the image.
        shift: Subtracted from coordinates before rounding.

    Returns:
        ``(flat_index [S], line_index [S])``: row-major pixel index and source line of every sample.
    """
    lines = _lines(lines, "lines")
    height, width = shape
    diff = lines[:, 1] - lines[:, 0]
    n = np.ceil(np.sqrt((diff**2).sum(-1))).astype(np.int64)
    total = int(n.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    line_index = np.repeat(np.arange(lines.shape[0]), n)
    first = np.repeat(np.cumsum(n) - n, n)
    j = np.arange(total) - first
    denom = np.repeat(n - 1, n)
    t = np.divide(j, denom, out=np.ones(total), where=denom > 0)  # linspace(a, b, 1) == b in MATLAB
    pts = lines[line_index, 0] + diff[line_index] * t[:, None]
    rows = np.clip(_round_half_away(pts[:, 0] - shift), 0, height - 1).astype(np.int64)
    cols = np.clip(_round_half_away(pts[:, 1] - shift), 0, width - 1).astype(np.int64)
    return rows * width + cols, line_index


def match_pixel_counts(
    pred_pixels: np.ndarray, gt_pixels: np.ndarray, width: int, radius: float, n_rows: Sequence[int]
) -> list[int]:
    """Matched predicted pixels of nested prefixes of ``pred_pixels`` (maximum bipartite matching).

    A predicted and a GT pixel may match when their Euclidean distance is ≤ ``radius``; each pixel matches at
    most once and the number of matched pairs is maximised.  The matching is solved as a unit-capacity maximum
    flow (Dinic, ``scipy.sparse.csgraph.maximum_flow``): scipy's Hopcroft-Karp
    (``maximum_bipartite_matching``) gives the same counts but showed pathological run times (up to minutes)
    on dense line-pixel graphs.

    Args:
        pred_pixels: [P] unique flat pixel indices, ordered so that every evaluated set is a prefix.
        gt_pixels: [G] unique flat GT pixel indices.
        width: Image width (to unflatten indices).
        radius: Matching distance in pixels.
        n_rows: Prefix lengths to evaluate.

    Returns:
        The number of matched predicted pixels for each prefix length.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow
    from scipy.spatial import cKDTree

    if pred_pixels.size == 0 or gt_pixels.size == 0:
        return [0 for _ in n_rows]
    pred_rc = np.stack(np.divmod(pred_pixels, width), axis=1).astype(np.float64)
    gt_rc = np.stack(np.divmod(gt_pixels, width), axis=1).astype(np.float64)
    pairs = cKDTree(pred_rc).sparse_distance_matrix(cKDTree(gt_rc), radius, output_type="ndarray")
    pi, gi = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    n_pred, n_gt = pred_rc.shape[0], gt_rc.shape[0]
    source, sink = n_pred + n_gt, n_pred + n_gt + 1
    counts = []
    for n in n_rows:
        sel = pi < n
        if n == 0 or not sel.any():
            counts.append(0)
            continue
        # source → predicted pixel → GT pixel → sink, all of capacity 1
        rows = np.concatenate([np.full(n, source), pi[sel], n_pred + np.arange(n_gt)])
        cols = np.concatenate([np.arange(n), n_pred + gi[sel], np.full(n_gt, sink)])
        graph = csr_matrix((np.ones(rows.shape[0], dtype=np.int32), (rows, cols)), shape=(sink + 1, sink + 1))
        counts.append(int(maximum_flow(graph, source, sink, method="dinic").flow_value))
    return counts


class HeatmapAPAccumulator:
    """Accumulates AP^H and F^H (L-CNN ``eval-APH.py`` + ``eval_release.m``) without MATLAB.

    For each image, predicted lines (optionally post-processed first, as L-CNN's ``post.py`` at t = 0.010) and
    GT lines are scaled from heatmap space to the original image size and rasterised (:func:`rasterize_lines`).
    For every score threshold, predicted pixels of lines scoring above it are matched to GT pixels within
    ``tolerance · diagonal``; matched predicted pixels are TPs, the others FPs, and the GT pixel count is the
    recall denominator, all summed over images.

    **Difference from BSDS ``correspondPixels``** (the MATLAB code L-CNN calls): BSDS solves a minimum-cost
    assignment (CSA) on a sparse graph whose pixel pairs within the distance cost their distance and where
    unmatched pixels go to outlier nodes of a much higher cost (with a few random outlier edges per node).  Its
    match count is therefore (almost always) maximal, ties being broken towards short distances.  Here the
    match count is computed exactly as a maximum bipartite matching on the pairs within the distance (≤),
    :func:`match_pixel_counts`; the distances of matched pairs do not matter for TP/FP counts, so the only
    possible difference is the rare case where BSDS's sparsified graph or cost trade-off misses a maximum
    matching — ours can only count more.
    Other porting details: rounding is MATLAB's (half away from zero); pixel indices are 0-based and clamped to
    ``[0, H-1] × [0, W-1]`` for both maps (MATLAB clamps GT only from below).

    **AP^H quirk kept for comparability**: like ``eval-APH.py``, the recall values are sorted ascending and the
    precision values descending *independently* before L-CNN's envelope AP; this pairs a threshold's recall
    with another threshold's precision whenever precision does not grow with the threshold.  F^H is the
    maximum of ``2PR/(P+R)`` over the thresholds' actual (P, R) pairs (ARCHITECTURE.md §6); L-CNN computes it
    on the independently sorted arrays, which gives the same value whenever precision grows with the threshold.

    Args:
        heatmap_size: (h, w) of the space the lines are given in (the model's heatmap size).
        thresholds: Line-score thresholds (a line is drawn iff its score is > threshold).
        tolerance: Matching distance as a fraction of the image diagonal (0.01 in L-CNN).
        postprocess_t: If not None, lines are first post-processed (:func:`postprocess_lines`) in image
            pixels with τ = ``postprocess_t`` · diagonal; pass None when they already are.
    """

    def __init__(
        self,
        heatmap_size: tuple[int, int],
        *,
        thresholds: Sequence[float] = APH_THRESHOLDS,
        tolerance: float = 0.01,
        postprocess_t: float | None = 0.01,
    ) -> None:
        if len(heatmap_size) != 2 or min(heatmap_size) <= 0:
            raise ValueError(f"heatmap_size must be (h, w) with positive sides, got {heatmap_size}")
        if not thresholds:
            raise ValueError("thresholds must not be empty")
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a positive number, got {tolerance}")
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.thresholds = tuple(sorted(float(t) for t in thresholds))
        self.tolerance = float(tolerance)
        self.postprocess_t = None if postprocess_t is None else float(postprocess_t)
        self.reset()

    def reset(self) -> None:
        """Forget every added image."""
        self.tp = np.zeros(len(self.thresholds), dtype=np.int64)
        self.fp = np.zeros(len(self.thresholds), dtype=np.int64)
        self.n_gt = 0
        self.n_images = 0

    def add(self, lines: Any, scores: Any, gt_lines: Any, image_size: tuple[int, int]) -> None:
        """Add one image.

        Args:
            lines: [L, 2, 2] predicted lines (y, x) in heatmap space.
            scores: [L] their scores.
            gt_lines: [G, 2, 2] (or [G, 2, 3]) GT lines in heatmap space.
            image_size: (H, W) of the original image, where the pixels are drawn and matched.
        """
        pred = _lines(lines, "lines")
        sc = _scores(scores, pred.shape[0], "scores")
        gt = _lines(gt_lines, "gt_lines")
        height, width = int(image_size[0]), int(image_size[1])
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be positive (H, W), got {image_size}")
        to_image = np.array([height / self.heatmap_size[0], width / self.heatmap_size[1]])
        pred, gt = pred * to_image, gt * to_image
        diag = float(np.hypot(height, width))
        if self.postprocess_t is not None and pred.shape[0] > 1:
            from roofmapnet.inference.postprocess import postprocess_lines

            pred, sc = postprocess_lines(pred, sc, self.postprocess_t * diag)

        gt_pixels = np.unique(rasterize_lines(gt, (height, width), 0.0)[0])
        keep = sc > self.thresholds[0]
        flat, src = rasterize_lines(pred[keep], (height, width), 0.5)
        # Best score drawing each pixel: the pixel belongs to every threshold below that score.
        best = np.full(height * width, -np.inf)
        np.maximum.at(best, flat, sc[keep][src])
        pixels = np.unique(flat)
        pix_score = best[pixels]
        order = np.argsort(-pix_score, kind="stable")
        pixels, pix_score = pixels[order], pix_score[order]
        n_rows = [int(np.count_nonzero(pix_score > t)) for t in self.thresholds]
        matched = match_pixel_counts(pixels, gt_pixels, width, self.tolerance * diag, n_rows)
        self.tp += np.asarray(matched, dtype=np.int64)
        self.fp += np.asarray(n_rows, dtype=np.int64) - np.asarray(matched, dtype=np.int64)
        self.n_gt += int(gt_pixels.size)
        self.n_images += 1

    def state_dict(self) -> dict[str, np.ndarray]:
        """The accumulated counts (``tp``, ``fp`` per threshold, ``n_gt``, ``n_images``)."""
        return {
            "tp": self.tp.copy(),
            "fp": self.fp.copy(),
            "n_gt": np.array(self.n_gt, dtype=np.int64),
            "n_images": np.array(self.n_images, dtype=np.int64),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the counts with those of :meth:`state_dict`."""
        try:
            tp = _array(state["tp"], "tp", np.int64).reshape(-1)
            fp = _array(state["fp"], "fp", np.int64).reshape(-1)
            n_gt, n_images = int(_array(state["n_gt"], "n_gt")), int(_array(state["n_images"], "n_images"))
        except KeyError as exc:
            raise ValueError(f"heatmap AP state: missing field {exc}") from None
        if tp.shape[0] != len(self.thresholds) or fp.shape[0] != len(self.thresholds):
            raise ValueError(f"heatmap AP state: expected {len(self.thresholds)} thresholds, got {tp.shape[0]}")
        self.tp, self.fp, self.n_gt, self.n_images = tp, fp, n_gt, n_images

    def merge(self, other: HeatmapAPAccumulator) -> HeatmapAPAccumulator:
        """Add ``other``'s counts (same thresholds); returns ``self``."""
        if other.thresholds != self.thresholds:
            raise ValueError("cannot merge heatmap AP accumulators with different thresholds")
        self.tp = self.tp + other.tp
        self.fp = self.fp + other.fp
        self.n_gt += other.n_gt
        self.n_images += other.n_images
        return self

    def precision_recall(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-threshold ``(precision, recall)`` as fractions, in threshold order."""
        recall = self.tp / self.n_gt if self.n_gt > 0 else np.zeros(len(self.thresholds))
        precision = self.tp / np.maximum(self.tp + self.fp, 1e-9)
        return precision, recall

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"APH": (recall, precision)}``: the independently sorted arrays the AP^H is computed on."""
        precision, recall = self.precision_recall()
        return {"APH": (np.sort(recall), np.sort(precision)[::-1])}

    def compute(self) -> dict[str, float]:
        """``APH`` and ``FH`` in percent (0 without GT pixels)."""
        precision, recall = self.precision_recall()
        rec_sorted, prec_sorted = self.curves()["APH"]
        aph = ap_from_curve(rec_sorted, prec_sorted) if self.n_gt > 0 else 0.0
        return {"APH": 100.0 * aph, "FH": 100.0 * max_f_score(recall, precision)}
