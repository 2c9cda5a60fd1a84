"""Compute every metric from the evaluator's per-image records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from roofmapnet.evaluation.metrics import HeatmapAPAccumulator, JunctionAPAccumulator, LineAPAccumulator

if TYPE_CHECKING:
    from roofmapnet.evaluation.evaluator import ImageRecord

#: Lines are compared in L-CNN's 128 × 128 space.
METRIC_SIDE = 128


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
