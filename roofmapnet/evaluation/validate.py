"""``roofmap validate``: run a model over a preprocessed split and measure it.

Losses (the six terms + total, as in training), sAP5/10/15, msAP, sF, mAP^J, AP^H/F^H, the facet region
precision / recall at IoU 0.7 (HEAT's measure, :mod:`roofmapnet.evaluation.facets`) and throughput; writes
``metrics.json``, a precision-recall plot and optionally per-image predictions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from roofmapnet import __version__
from roofmapnet.config import RootConfig
from roofmapnet.errors import ConfigError, DataError
from roofmapnet.evaluation.evaluator import Evaluator
from roofmapnet.utils.device import autocast, resolve_device
from roofmapnet.utils.io import atomic_write_text

#: The splits a preprocessed data root may hold.
SPLITS = ("train", "valid", "test")
#: Loss keys reported by validate (the six terms and the weighted total).
LOSS_KEYS = ("gauss", "qcc", "lhr", "off", "lv", "sf", "total")


@dataclass(frozen=True)
class ValidateOptions:
    """Settings of a validation run."""

    split: str = "valid"
    device: str = "auto"
    precision: str = "32"
    batch_size: int | None = None
    num_workers: int = 0
    save_predictions: bool = False
    limit: int | None = None
    #: Facet region precision / recall: ``None`` = when shapely (the ``geo`` extra) is installed.
    facets: bool | None = None
    #: Line score above which predicted lines form facets (default ``cfg.model.line_score_thres``).
    facet_threshold: float | None = None


@dataclass
class ValidateReport:
    """What ``validate`` measured and wrote."""

    metrics: dict[str, Any]
    metrics_path: Path
    plot_path: Path | None
    predictions_dir: Path | None
    images: int
    seconds: float


def check_split(split: str) -> None:
    """Raise a :class:`ConfigError` naming the field ``split`` unless it is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ConfigError([f"split {split}: expected one of {', '.join(SPLITS)}"], fields="split")


def _want_facets(options: ValidateOptions) -> bool:
    """Whether to measure facets: as asked, or when shapely is installed (asked without it: a one-line error)."""
    from roofmapnet.inference.facets import require_shapely, shapely_available

    if options.facets is None:
        return shapely_available()
    if options.facets:
        require_shapely()
    return options.facets


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def run_validation(
    model: Any,
    cfg: RootConfig,
    data_root: str | Path,
    out_dir: str | Path,
    options: ValidateOptions,
    *,
    checkpoint: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidateReport:
    """Evaluate ``model`` (a :class:`RoofMapNet`) on ``data_root/<split>``; write results into ``out_dir``.

    Args:
        model: the network (moved to the chosen device here).
        cfg: the configuration the model was built from (loss weights, decoding thresholds).
        data_root: preprocessed data root.
        out_dir: where ``metrics.json``, ``pr_curve.png`` and ``predictions/`` go.
        options: see :class:`ValidateOptions`.
        checkpoint: recorded in ``metrics.json``.
        progress: called with (done, total) images after each batch.
    """
    from roofmapnet.data.dataset import RoofDataset, collate
    from roofmapnet.evaluation.plots import plot_pr_curves
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.losses.objective import batch_losses

    root = Path(data_root)
    folder = root / options.split
    if not folder.is_dir() or not any(folder.glob("*_label.npz")):
        msg = f"{folder}: no preprocessed samples (run `roofmap preprocess RAW_DIR {root}`)"
        raise DataError(msg)
    dataset: Any = RoofDataset(root, options.split, cfg, train=False)
    if options.limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(options.limit, len(dataset))))
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size or cfg.model.batch_size_eval,
        shuffle=False,
        num_workers=options.num_workers,
        collate_fn=collate,
    )
    device = resolve_device(options.device)
    model = model.to(device).eval()
    criterion = RoofMapNetLoss(cfg).to(device)
    evaluator = Evaluator(
        cfg, junctions=True, heatmap=True, facets=_want_facets(options), facet_threshold=options.facet_threshold
    )
    sums = dict.fromkeys(LOSS_KEYS, 0.0)
    n_images = 0
    total = len(dataset)
    out = Path(out_dir)
    pred_dir = out / "predictions" if options.save_predictions else None
    model_seconds = 0.0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            batch = _to_device(batch, device)
            t0 = time.perf_counter()
            with autocast(device, options.precision):
                losses, heads = batch_losses(model, criterion, batch)
                wireframes = evaluator.update(model, heads, batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            model_seconds += time.perf_counter() - t0
            bsz = int(batch["image"].shape[0])
            for key in LOSS_KEYS:
                sums[key] += float(losses[key]) * bsz
            if pred_dir is not None:
                _write_predictions(pred_dir, batch["name"], wireframes)
            n_images += bsz
            if progress is not None:
                progress(n_images, total)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {f"loss_{k}": sums[k] / max(n_images, 1) for k in LOSS_KEYS}
    scores = evaluator.compute()
    curves = scores.pop("curves", {})
    metrics.update(scores)
    metrics["images"] = n_images
    metrics["images_per_second"] = n_images / seconds if seconds > 0 else 0.0
    metrics["model_images_per_second"] = n_images / model_seconds if model_seconds > 0 else 0.0
    document = {
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "data_root": str(root),
        "split": options.split,
        "device": str(device),
        "precision": options.precision,
        "roofmapnet_version": __version__,
        "metrics": metrics,
    }
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(document, indent=2) + "\n")
    plot_path: Path | None = None
    if curves:
        plot_path = out / "pr_curve.png"
        title = f"Structural AP on {options.split} ({n_images} images)"
        plot_pr_curves(curves, plot_path, title=title)
    return ValidateReport(metrics, metrics_path, plot_path, pred_dir, n_images, seconds)


def _write_predictions(folder: Path, names: list[str], wireframes: list[Any]) -> None:
    """Per-image predictions in heatmap space (the npz GT frame) as JSON."""
    for name, wf in zip(names, wireframes, strict=True):
        doc = {
            "name": name,
            "heatmap_size": list(wf.heatmap_size),
            "lines_yx": wf.lines.detach().float().cpu().tolist(),
            "scores": wf.scores.detach().float().cpu().tolist(),
            "junctions_yx": wf.junctions.detach().float().cpu().tolist(),
            "junction_scores": wf.junction_scores.detach().float().cpu().tolist(),
        }
        atomic_write_text(folder / f"{name}.json", json.dumps(doc) + "\n")
