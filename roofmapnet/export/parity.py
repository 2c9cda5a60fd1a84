"""Parity of an exported model with PyTorch eager (:meth:`RoofMapNet.predict`) on synthetic images.

Per image the two wireframes are compared as *sets* (vectorised numpy, no loop over lines or junctions):

1. Junctions are matched by mutual nearest neighbour within ``tol.coord`` heatmap pixels; matched scores must
   agree within ``tol.score``.  A junction found on one side only is excused when it sits at the selection cut
   (its score within ``tol.score`` of the junction threshold, or — when the other side's count was set by rank,
   ``K = 2`` or ``K = n_dyn_junc`` — not above the other side's lowest selected score + ``tol.score``: a tie at
   the K-th rank) or when the other side has a junction of the same score (± ``tol.score``) in a *neighbouring*
   pixel (an NMS near-tie; a junction moved inside its own pixel is never excused).  When the eager junction
   heatmap is given (:func:`check_parity` passes it), a one-sided junction is also excused where its pixel's
   3×3-NMS decision is a tie: its eager probability within ``tol.score`` of the largest of its 8 neighbours.  On
   the plateaus of a barely trained model's heatmap, noise of 1e-7 decides which pixels of a plateau survive the
   NMS, and such a flip can happen far from any junction both sides found.
2. Each line is the unordered pair of its endpoint junctions (line endpoints are exact copies of junction
   coordinates on both sides).  Matched lines must agree in score within ``tol.score`` and in coordinates within
   ``tol.coord``.  A line on one side only is excused when its score is within ``tol.score`` of the score
   threshold, or when an endpoint is an excused junction.  A matched line whose endpoint order differs is
   excused only between two junctions of equal score (± ``tol.score``: their rank order is a tie, which
   ``torch.topk`` breaks in an unspecified order and the export by pixel index; the verifier reads a line from
   its second endpoint, so the score of such a line legitimately differs) — every other difference fails.

Both sides run in IEEE fp32: TensorFloat-32 convolutions and matrix products (PyTorch's default for cuDNN
convolutions on NVIDIA GPUs since Ampere) are switched off for the check (:func:`ieee_fp32`), since their 1e-3
relative error is far above the fp32 tolerance.

Tolerances (:data:`TOLERANCES`): fp32 exports must match scores within 1e-4 and coordinates within 1e-3 heatmap
pixels, with no unexcused difference.  fp16 exports are compared with the fp32 eager model at 2e-2 / 0.05 heatmap
pixels, and up to 25 % of the junctions may differ (a half-precision heatmap can move or add a 3×3 NMS peak
where the map is flat, as in untrained models); the lines through such a junction are then excused too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import torch
from torch import Tensor

from roofmapnet.config.schema import ModelConfig
from roofmapnet.export.pipeline import ieee_fp32
from roofmapnet.models.outputs import Wireframe
from roofmapnet.models.roofmapnet import RoofMapNet


@dataclass(frozen=True)
class Tolerance:
    """Parity tolerances.

    Attributes:
        score: max |Δscore| of matched lines and junctions; also the width of the "borderline" band.
        coord: max |Δcoordinate| in heatmap pixels.
        junction_match: minimum fraction of the junctions (both sides together) that must match when some
            differ for no excused reason; 1.0 means every difference fails.
    """

    score: float
    coord: float
    junction_match: float = 1.0


#: Tolerances by export precision.
TOLERANCES: Final = {
    "fp32": Tolerance(score=1e-4, coord=1e-3),
    "fp16": Tolerance(score=2e-2, coord=5e-2, junction_match=0.75),
}


@dataclass(frozen=True)
class ImageParity:
    """The comparison of one image.

    Attributes:
        name: image label.
        ref_lines: lines from PyTorch eager.
        exp_lines: lines from the exported model.
        matched: lines found on both sides.
        borderline: lines on one side only, excused (score at the threshold or a boundary junction).
        tie_flipped: matched lines between two tied junctions whose endpoint order differs (score not compared).
        max_score_diff: max |Δscore| over matched lines and junctions (0 when none).
        max_coord_diff: max |Δcoordinate| (heatmap pixels) over matched lines and junctions.
        ref_junctions: junction proposals from PyTorch eager.
        exp_junctions: junction proposals from the exported model.
        matched_junctions: junctions found on both sides.
        passed: whether the image is within tolerance.
        reason: why it failed ("" when passed).
    """

    name: str
    ref_lines: int
    exp_lines: int
    matched: int
    borderline: int
    tie_flipped: int
    max_score_diff: float
    max_coord_diff: float
    ref_junctions: int
    exp_junctions: int
    matched_junctions: int
    passed: bool
    reason: str = ""


@dataclass
class ParityReport:
    """Parity of an exported model over a set of images.

    Attributes:
        label: what was compared (e.g. ``onnx fp32 (onnxruntime)``).
        tolerance: the tolerances used.
        score_threshold: the score threshold both sides used.
        junction_threshold: the junction threshold both sides used.
        images: per-image results.
        eager_seconds: wall time of the eager reference.
        exported_seconds: wall time of the exported model.
    """

    label: str
    tolerance: Tolerance
    score_threshold: float
    junction_threshold: float
    images: list[ImageParity] = field(default_factory=list)
    eager_seconds: float = 0.0
    exported_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """Whether every image passed."""
        return all(im.passed for im in self.images)

    @property
    def max_score_diff(self) -> float:
        """Max |Δscore| over all images."""
        return max((im.max_score_diff for im in self.images), default=0.0)


def parity_images(cfg: ModelConfig, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """The synthetic test images: a rendered roof scene, uniform noise and a flat grey image.

    Returns:
        ``(name, RGB uint8 [S, S, 3])`` pairs at the network input size ``S = cfg.image_size``.
    """
    from roofmapnet.data.synth import render_sample

    s = cfg.image_size
    roof, _ = render_sample(np.random.default_rng(seed), s, s)
    noise = np.random.default_rng(seed + 1).integers(0, 256, (s, s, 3), dtype=np.uint8)
    grey = np.full((s, s, 3), 128, dtype=np.uint8)
    return [("synthetic-roofs", roof), ("noise", noise), ("flat-grey", grey)]


def to_pixels(images: Sequence[np.ndarray]) -> Tensor:
    """RGB uint8 [S, S, 3] images → a float32 [N, 3, S, S] pixel batch (0-255)."""
    return torch.from_numpy(np.stack([np.asarray(im) for im in images]).astype(np.float32)).permute(0, 3, 1, 2)


def normalise(pixels: Tensor, cfg: ModelConfig) -> Tensor:
    """``(pixels − mean) / stddev``, the same arithmetic as :func:`roofmapnet.inference.images.prepare_image`."""
    mean = torch.tensor(cfg.image.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.image.stddev, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.to(torch.float32) - mean) / std


def _endpoint_ids(lines: np.ndarray, junctions: np.ndarray) -> np.ndarray:
    """[L, 2] index of the junction each endpoint of ``lines`` [L, 2, 2] equals exactly (-1 if none)."""
    if lines.shape[0] == 0 or junctions.shape[0] == 0:
        return np.full((lines.shape[0], 2), -1, dtype=np.int64)
    jkey = junctions[:, 0] + 1j * junctions[:, 1]
    order = np.argsort(jkey, kind="stable")
    sorted_keys = jkey[order]
    ekey = (lines[..., 0] + 1j * lines[..., 1]).reshape(-1)
    pos = np.clip(np.searchsorted(sorted_keys, ekey), 0, len(sorted_keys) - 1)
    ids = np.where(sorted_keys[pos] == ekey, order[pos], -1)
    return ids.reshape(-1, 2)


def _match_junctions(ref: np.ndarray, exp: np.ndarray, tol: float) -> np.ndarray:
    """For each exported junction, the index of its mutual-nearest reference junction within ``tol`` (else -1)."""
    if ref.shape[0] == 0 or exp.shape[0] == 0:
        return np.full(exp.shape[0], -1, dtype=np.int64)
    dist = np.abs(exp[:, None, :] - ref[None, :, :]).max(axis=2)  # [Ke, Kr] Chebyshev distance
    near_r = dist.argmin(axis=1)
    near_e = dist.argmin(axis=0)
    mutual = near_e[near_r] == np.arange(exp.shape[0])
    ok = mutual & (dist[np.arange(exp.shape[0]), near_r] <= tol)
    return np.where(ok, near_r, -1)


def _near_tie(
    xy: np.ndarray, score: np.ndarray, other_xy: np.ndarray, other_score: np.ndarray, tol: Tolerance
) -> np.ndarray:
    """Junctions whose 3×3-NMS peak may have moved to a neighbouring pixel on the other side.

    True where the other side has a junction in one of the 8 *neighbouring* pixels (a different pixel: a junction
    moved inside its own pixel is a coordinate error, never excused) with the same score within ``tol.score``:
    two neighbouring probabilities closer than the numerical noise can swap which one survives the NMS.
    """
    if xy.shape[0] == 0 or other_xy.shape[0] == 0:
        return np.zeros(xy.shape[0], dtype=bool)
    cell = np.floor(xy).astype(np.int64)
    other_cell = np.floor(other_xy).astype(np.int64)
    step = np.abs(cell[:, None, :] - other_cell[None, :, :]).max(axis=2)
    close = np.abs(score[:, None] - other_score[None, :]) <= tol.score
    return ((step == 1) & close).any(axis=1)


def _nms_tie(xy: np.ndarray, heat: np.ndarray | None, tol: Tolerance) -> np.ndarray:
    """Junctions whose pixel's 3×3-NMS decision is a tie in the eager heatmap ``heat`` [H, W].

    A pixel survives the NMS when it is not below any of its 8 neighbours; when its probability is within
    ``tol.score`` of the largest neighbour, numerical noise decides either way.  ``heat=None``: no junction.
    """
    if heat is None or xy.shape[0] == 0:
        return np.zeros(xy.shape[0], dtype=bool)
    h, w = heat.shape
    padded = np.pad(heat.astype(np.float64), 1, constant_values=-np.inf)
    shifts = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    neighbour_max = np.max(shifts, axis=0)
    r = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, h - 1)
    c = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, w - 1)
    return np.abs(heat[r, c] - neighbour_max[r, c]) <= tol.score


def _at_cut(
    score: np.ndarray, other_score: np.ndarray, junction_threshold: float, k_cap: int, tol: Tolerance
) -> np.ndarray:
    """Junctions that one side may select and the other not because they sit at the selection cut.

    The cut is the junction threshold (``|s − threshold| ≤ tol.score``), or, when the other side's count was set
    by rank (``K = 2`` forced or ``K = n_dyn_junc`` capped), its lowest selected score (``s ≤ min + tol.score``:
    a tie at the K-th rank, which ``torch.topk`` breaks in an unspecified order).
    """
    at_threshold = np.abs(score - junction_threshold) <= tol.score
    if other_score.size in (2, k_cap):
        return at_threshold | (score <= other_score.min() + tol.score)
    return at_threshold


def _flagged(ids: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """[L] whether an endpoint id of ``ids`` [L, 2] (-1: none) points at a flagged junction."""
    if flags.size == 0:
        return np.zeros(ids.shape[0], dtype=bool)
    return ((ids >= 0) & flags[np.maximum(ids, 0)]).any(axis=1)


def _arrays(wf: Wireframe) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        wf.lines.detach().cpu().double().numpy().reshape(-1, 2, 2),
        wf.scores.detach().cpu().double().numpy().reshape(-1),
        wf.junctions.detach().cpu().double().numpy().reshape(-1, 2),
        wf.junction_scores.detach().cpu().double().numpy().reshape(-1),
    )


def compare_wireframes(
    ref: Wireframe,
    exp: Wireframe,
    *,
    score_threshold: float,
    junction_threshold: float,
    k_cap: int,
    tol: Tolerance,
    name: str = "",
    heat: np.ndarray | None = None,
) -> ImageParity:
    """Compare the exported wireframe ``exp`` of one image with the eager one ``ref`` (rules in the module doc).

    Args:
        ref: the eager wireframe.
        exp: the exported model's wireframe.
        score_threshold: the line score threshold both used.
        junction_threshold: the junction threshold both used.
        k_cap: the maximum number of junction proposals (``n_dyn_junc``).
        tol: tolerances.
        name: image label for the report.
        heat: the eager junction probability map [H, W] (before NMS), to excuse NMS ties on plateaus.
    """
    rl, rs, rj, rjs = _arrays(ref)
    el, es, ej, ejs = _arrays(exp)
    problems: list[str] = []
    # ---- junctions
    e2r = _match_junctions(rj, ej, tol.coord)
    r_matched = np.zeros(rj.shape[0], dtype=bool)
    r_matched[e2r[e2r >= 0]] = True
    r_tie = _near_tie(rj, rjs, ej, ejs, tol) | _nms_tie(rj, heat, tol)
    e_tie = _near_tie(ej, ejs, rj, rjs, tol) | _nms_tie(ej, heat, tol)
    r_excused = ~r_matched & (_at_cut(rjs, ejs, junction_threshold, k_cap, tol) | r_tie)
    e_excused = (e2r < 0) & (_at_cut(ejs, rjs, junction_threshold, k_cap, tol) | e_tie)
    r_bad = ~r_matched & ~r_excused
    e_bad = (e2r < 0) & ~e_excused
    n_matched_j = int((e2r >= 0).sum())
    union = n_matched_j + int((~r_matched).sum()) + int((e2r < 0).sum())
    if r_bad.any() or e_bad.any():
        if union and n_matched_j / union >= tol.junction_match:
            r_excused |= r_bad  # tolerated (fp16): the difference is counted once, at the junction level
            e_excused |= e_bad
        else:
            problems.append(f"junctions differ ({int(r_bad.sum())} eager-only, {int(e_bad.sum())} exported-only)")
    jm = e2r >= 0
    score_diffs = [np.abs(ejs[jm] - rjs[e2r[jm]])]
    coord_diffs = [np.abs(ej[jm] - rj[e2r[jm]]).reshape(-1)]
    # ---- lines as unordered pairs of reference junction ids
    r_ids = _endpoint_ids(rl, rj)
    e_ids_own = _endpoint_ids(el, ej)
    e_ids = np.where(e_ids_own >= 0, e2r[np.maximum(e_ids_own, 0)], -1) if ej.size else e_ids_own
    kr = max(rj.shape[0], 1)
    r_ok = (r_ids >= 0).all(axis=1)
    e_ok = (e_ids >= 0).all(axis=1)
    r_key = np.where(r_ok, r_ids.min(axis=1) * kr + r_ids.max(axis=1), -1 - np.arange(rl.shape[0]))
    e_key = np.where(e_ok, e_ids.min(axis=1) * kr + e_ids.max(axis=1), -(10**12) - np.arange(el.shape[0]))
    _, ri, ei = np.intersect1d(r_key, e_key, assume_unique=True, return_indices=True)
    same_order = r_ids[ri, 0] == e_ids[ei, 0]
    tied = np.abs(rjs[r_ids[ri, 0]] - rjs[r_ids[ri, 1]]) <= tol.score if ri.size else np.zeros(0, dtype=bool)
    flipped = ~same_order & tied
    if (~same_order & ~tied).any():
        problems.append(f"{int((~same_order & ~tied).sum())} lines have their endpoints in the other order")
    cmp = same_order
    score_diffs.append(np.abs(es[ei[cmp]] - rs[ri[cmp]]))
    coord_diffs.append(np.abs(el[ei[cmp]] - rl[ri[cmp]]).reshape(-1))
    # ---- lines on one side only
    r_only = np.ones(rl.shape[0], dtype=bool)
    r_only[ri] = False
    e_only = np.ones(el.shape[0], dtype=bool)
    e_only[ei] = False
    r_bad_junction = _flagged(r_ids, r_excused)
    e_bad_junction = _flagged(e_ids_own, e_excused)
    r_border = r_only & ((np.abs(rs - score_threshold) <= tol.score) | r_bad_junction)
    e_border = e_only & ((np.abs(es - score_threshold) <= tol.score) | e_bad_junction)
    if (r_only & ~r_border).any() or (e_only & ~e_border).any():
        problems.append(
            f"{int((r_only & ~r_border).sum())} eager-only and {int((e_only & ~e_border).sum())} exported-only lines"
        )
    max_score = float(max((d.max() for d in score_diffs if d.size), default=0.0))
    max_coord = float(max((d.max() for d in coord_diffs if d.size), default=0.0))
    if max_score > tol.score:
        problems.append(f"max |Δscore| {max_score:.3g} > {tol.score:g}")
    if max_coord > tol.coord:
        problems.append(f"max |Δcoordinate| {max_coord:.3g} px > {tol.coord:g}")
    return ImageParity(
        name=name,
        ref_lines=int(rl.shape[0]),
        exp_lines=int(el.shape[0]),
        matched=int(ri.size),
        borderline=int(r_border.sum() + e_border.sum()),
        tie_flipped=int(flipped.sum()),
        max_score_diff=max_score,
        max_coord_diff=max_coord,
        ref_junctions=int(rj.shape[0]),
        exp_junctions=int(ej.shape[0]),
        matched_junctions=n_matched_j,
        passed=not problems,
        reason="; ".join(problems),
    )


def check_parity(
    reference: RoofMapNet,
    exported: Callable[[Tensor], list[Wireframe]],
    images: Sequence[tuple[str, np.ndarray]],
    *,
    label: str,
    precision: str = "fp32",
    score_threshold: float | None = None,
    junction_threshold: float | None = None,
) -> ParityReport:
    """Run eager PyTorch and an exported model on ``images`` and compare them image by image.

    Args:
        reference: the eager model (its ``cfg`` gives the normalisation and default thresholds).
        exported: ``pixels [N, 3, S, S] (RGB 0-255 float32) -> wireframes``, called with the same thresholds,
            e.g. ``lambda px: onnx_model.predict_pixels(px, score_threshold=t, junction_threshold=j)``; use
            :func:`exported_predictor` to build it.
        images: ``(name, RGB uint8 [S, S, 3])`` at the network input size (:func:`parity_images`).
        label: what is being compared, for the report.
        precision: ``fp32`` or ``fp16`` (selects :data:`TOLERANCES`).
        score_threshold: default ``reference.cfg.line_score_thres``.
        junction_threshold: default ``reference.cfg.eval_junc_thres``.
    """
    cfg = reference.cfg
    sthr = cfg.line_score_thres if score_threshold is None else score_threshold
    jthr = cfg.eval_junc_thres if junction_threshold is None else junction_threshold
    tol = TOLERANCES[precision]
    pixels = to_pixels([im for _, im in images])
    device = next(reference.parameters()).device
    was_training = reference.training
    reference.eval()
    try:
        with ieee_fp32(), torch.no_grad():
            t0 = time.perf_counter()
            x = normalise(pixels.to(device), cfg)
            out = reference(x)
            size = (int(x.shape[-2]), int(x.shape[-1]))
            ref = reference.decode(out, input_size=size, score_threshold=sthr, junction_threshold=jthr)
            heat = out.jmap_prob.float().cpu().numpy()
            t1 = time.perf_counter()
            exp = exported(pixels)
            t2 = time.perf_counter()
    finally:
        reference.train(was_training)
    report = ParityReport(
        label=label,
        tolerance=tol,
        score_threshold=sthr,
        junction_threshold=jthr,
        eager_seconds=t1 - t0,
        exported_seconds=t2 - t1,
    )
    report.images = [
        compare_wireframes(
            r, e, score_threshold=sthr, junction_threshold=jthr, k_cap=cfg.n_dyn_junc, tol=tol, name=name, heat=h
        )
        for (name, _), r, e, h in zip(images, ref, exp, heat, strict=True)
    ]
    return report


def exported_predictor(
    model: object, *, score_threshold: float, junction_threshold: float
) -> Callable[[Tensor], list[Wireframe]]:
    """``pixels -> wireframes`` for an :class:`~roofmapnet.export.runtime.ExportedModel` or a :class:`RoofMapNet`."""
    if isinstance(model, RoofMapNet):
        net = model

        def run_net(pixels: Tensor) -> list[Wireframe]:
            device = next(net.parameters()).device
            x = normalise(pixels.to(device), net.cfg)
            return net.predict(x, score_threshold=score_threshold, junction_threshold=junction_threshold)

        return run_net
    from roofmapnet.export.runtime import ExportedModel

    if not isinstance(model, ExportedModel):
        msg = f"exported_predictor: unsupported model type {type(model).__name__}"
        raise TypeError(msg)
    exported = model

    def run_exported(pixels: Tensor) -> list[Wireframe]:
        return exported.predict_pixels(pixels, score_threshold=score_threshold, junction_threshold=junction_threshold)

    return run_exported
