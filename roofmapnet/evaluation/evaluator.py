"""Collect predictions and ground truth over a split, then compute the metrics once (:func:`compute_metrics`).

Used by validation during training (sAP only, cheap) and by ``roofmap validate`` (all metrics). The state is a
list of per-image numpy records, so it can be gathered across DDP ranks (``torch.distributed.all_gather_object``)
and the metrics computed once on the union — averaging per-rank sAP would be wrong.

All line metrics are computed in L-CNN's 128×128 space: predictions and ground truth are rescaled from the
model's heatmap size, so sAP of a 64² small preset is comparable to the reference's.  Letterboxed samples
(``data.resize: letterbox``; the batch's ``content_box``) are first mapped to the frame the image would fill
stretched, so that sAP means the same for both resize modes.  mAP^J stays in the model's heatmap frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roofmapnet.config import RootConfig
from roofmapnet.data.resize import content_to_frame
from roofmapnet.evaluation.metrics import HeatmapAPAccumulator, JunctionAPAccumulator, LineAPAccumulator
from roofmapnet.models.outputs import HeadOutputs, Wireframe

#: L-CNN evaluates lines in this square space (side in pixels): sAP, sF and AP^H of every heatmap size.
METRIC_SIDE = 128


@dataclass
class ImageRecord:
    """What the metrics need from one image (numpy, 128-space)."""

    name: str
    lines: np.ndarray  # [P, 2, 2] (y, x), score-descending
    scores: np.ndarray  # [P]
    gt_lines: np.ndarray  # [G, 2, 2]
    gt_junctions: np.ndarray  # [N, 2]
    jmap: np.ndarray | None = None  # [h, w] junction probability (heatmap space) for mAP^J
    joff: np.ndarray | None = None  # [2, h, w]
    heatmap_size: tuple[int, int] = (128, 128)
    image_size: tuple[int, int] = (512, 512)  # where AP^H rasterises (the network input)


def gt_lines_from_batch(batch: dict[str, Any], i: int) -> Tensor:
    """[G, 2, 2] GT lines of image ``i``: junction pairs ``u < v`` with ``Lpos[u, v]``."""
    mask = batch["junc_mask"][i]
    n = int(mask.shape[0])
    adj = torch.as_tensor(batch["Lpos"][i])[:n, :n].to(torch.bool)
    pairs = torch.triu(adj, diagonal=1).nonzero()
    junc = torch.as_tensor(batch["junc"][i])
    return torch.stack([junc[pairs[:, 0]], junc[pairs[:, 1]]], dim=1) if len(pairs) else junc.new_zeros((0, 2, 2))


def _full(box: Tensor, side: int) -> bool:
    """Whether a ``[top, left, height, width]`` box covers the whole ``side``² heatmap."""
    return bool(torch.equal(box.double().cpu(), torch.tensor([0.0, 0.0, side, side], dtype=torch.float64)))


@dataclass
class Evaluator:
    """Accumulates :class:`ImageRecord`s; ``compute()`` returns the metrics (percentages).

    Args:
        cfg: configuration (decoding thresholds).
        junctions: also compute mAP^J (keeps the junction heatmaps: more memory).
        heatmap: also compute AP^H / F^H.
        facets: also compute the facet region precision / recall (needs shapely), with the lines scoring above
            ``facet_threshold`` (default ``cfg.model.line_score_thres``, the inference threshold).
    """

    cfg: RootConfig
    junctions: bool = False
    heatmap: bool = False
    facets: bool = False
    facet_threshold: float | None = None
    records: list[ImageRecord] = field(default_factory=list)

    def update(self, model: Any, out: HeadOutputs, batch: dict[str, Any]) -> list[Wireframe]:
        """Decode ``out`` (eval-mode forward outputs) and store predictions with the batch's ground truth."""
        wireframes: list[Wireframe] = model.decode(out)
        jprob = out.jmap_prob.float() if self.junctions else None
        joff = out.joff_pred.float() if self.junctions else None
        boxes = batch.get("content_box")
        for i, wf in enumerate(wireframes):
            h, w = wf.heatmap_size
            scale = torch.tensor([METRIC_SIDE / h, METRIC_SIDE / w], dtype=torch.float64)
            gt = gt_lines_from_batch(batch, i).double().cpu()
            pred = wf.lines.detach().double().cpu()
            if boxes is not None and h == w and not _full(boxes[i], h):
                box = boxes[i].double().cpu().tolist()
                gt, pred = content_to_frame(gt, box, h), content_to_frame(pred, box, h)
            gt = gt * scale
            junc = torch.as_tensor(batch["junc"][i])[torch.as_tensor(batch["junc_mask"][i]).bool()]
            self.records.append(
                ImageRecord(
                    name=str(batch["name"][i]) if "name" in batch else str(len(self.records)),
                    lines=(pred * scale).numpy(),
                    scores=wf.scores.detach().float().cpu().numpy(),
                    gt_lines=gt.numpy(),
                    gt_junctions=junc.double().cpu().numpy(),
                    jmap=jprob[i].cpu().numpy() if jprob is not None else None,
                    joff=joff[i].cpu().numpy() if joff is not None else None,
                    heatmap_size=(h, w),
                    image_size=(self.cfg.model.image_size, self.cfg.model.image_size),
                )
            )
        return wireframes

    def gather(self) -> None:
        """Union of all DDP ranks' records (no-op without an initialised process group)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        world = torch.distributed.get_world_size()
        if world == 1:
            return
        parts: list[Any] = [None] * world
        torch.distributed.all_gather_object(parts, self.records)
        merged = [r for part in parts for r in (part or [])]
        seen: set[str] = set()
        unique = []
        for r in merged:  # a DistributedSampler pads with repeats: count each image once
            if r.name not in seen:
                seen.add(r.name)
                unique.append(r)
        self.records = unique

    def compute(self) -> dict[str, Any]:
        """sAP5/10/15, msAP, sF* (+ mAP^J, AP^H, F^H, facet P/R when enabled) as percentages, and the PR curves."""
        threshold = None
        if self.facets:
            threshold = self.cfg.model.line_score_thres if self.facet_threshold is None else self.facet_threshold
        return compute_metrics(self.records, junctions=self.junctions, heatmap=self.heatmap, facet_threshold=threshold)


def compute_metrics(
    records: Sequence[ImageRecord],
    *,
    junctions: bool = False,
    heatmap: bool = False,
    facet_threshold: float | None = None,
) -> dict[str, Any]:
    """sAP5/10/15, sF5/10/15, msAP (+ mAP^J, APJ0.5/1/2 with and without offsets, AP^H, F^H), in percent.

    With ``facet_threshold`` (a line score), also the facet region precision / recall / F1 at IoU 0.7
    (:mod:`roofmapnet.evaluation.facets`; needs shapely).

    The returned dict also holds ``"curves"``: ``{name: (recall, precision)}`` for plotting.
    """
    lines = LineAPAccumulator()
    junc = JunctionAPAccumulator() if junctions else None
    heat = HeatmapAPAccumulator((METRIC_SIDE, METRIC_SIDE)) if heatmap else None
    facets = None
    if facet_threshold is not None:
        from roofmapnet.evaluation.facets import FacetRegionAccumulator

        facets = FacetRegionAccumulator(facet_threshold)
    for rec in records:
        lines.add(rec.lines, rec.scores, rec.gt_lines)
        if junc is not None and rec.jmap is not None:
            junc.add(rec.jmap, rec.gt_junctions, rec.joff)
        if heat is not None:
            heat.add(rec.lines, rec.scores, rec.gt_lines, rec.image_size)
        if facets is not None:
            facets.add(rec.lines, rec.scores, rec.gt_lines)
    out: dict[str, Any] = dict(lines.compute())
    curves: dict[str, Any] = dict(lines.curves())
    if junc is not None:
        out.update(junc.compute())
    if heat is not None:
        out.update(heat.compute())
    if facets is not None:
        out.update(facets.compute())
    out["curves"] = curves
    return out
