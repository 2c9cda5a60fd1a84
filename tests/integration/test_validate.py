"""``roofmap validate``: the table, metrics.json and PR plot, and agreement with the metric functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.config import RootConfig, load_config
from roofmapnet.evaluation.facets import FacetRegionAccumulator
from roofmapnet.evaluation.metrics import JunctionAPAccumulator, LineAPAccumulator
from roofmapnet.models.roofmapnet import RoofMapNet


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_config_path: Path) -> tuple[Path, RootConfig]:
    """A tiny model in the exported state-dict format, decoding with permissive thresholds (many lines)."""
    from roofmapnet.utils.io import atomic_write_text

    cfg = load_config(tiny_config_path, {"model.line_score_thres": 0.0, "model.eval_junc_thres": 0.0})
    torch.manual_seed(0)
    model = RoofMapNet(cfg.model).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(model.state_dict(), path)
    sidecar = {"format": "roofmapnet-state-dict", "version": "test", "config": cfg.model_dump(mode="json")}
    atomic_write_text(path.with_name(path.name + ".json"), json.dumps(sidecar))
    return path, cfg


def test_validate_writes_table_metrics_and_plot(
    checkpoint: tuple[Path, RootConfig], tiny_data: Path, tmp_path: Path
) -> None:
    path, _ = checkpoint
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--checkpoint",
            str(path),
            "--data-root",
            str(tiny_data),
            "--split",
            "valid",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    for label in ("L_gauss", "L_sf", "total loss", "sAP10", "msAP", "mAP^J", "AP^H", "F^H", "images/s"):
        assert label in result.output
    doc = json.loads((tmp_path / "metrics.json").read_text())
    metrics = doc["metrics"]
    assert doc["split"] == "valid"
    assert metrics["images"] == 4
    for key in ("loss_total", "sAP5", "sAP10", "sAP15", "msAP", "sF10", "mAPJ", "APH", "FH"):
        assert np.isfinite(metrics[key])
    assert metrics["loss_total"] > 0
    assert 0 <= metrics["facet_precision"] <= 100
    assert 0 <= metrics["facet_recall"] <= 100
    assert metrics["facets_gt"] > 0  # the synthetic roofs' GT wireframes polygonise into facets
    assert "facet P (IoU 0.7)" in result.output
    with Image.open(tmp_path / "pr_curve.png") as im:
        assert im.format == "PNG"
        assert im.width >= 400


def test_metrics_json_agrees_with_metric_functions(
    checkpoint: tuple[Path, RootConfig], tiny_data: Path, tmp_path: Path
) -> None:
    """Recompute sAP and mAP^J independently: predict per image, GT lines from each npz's lpos."""
    from roofmapnet.data.dataset import RoofDataset
    from roofmapnet.evaluation.validate import ValidateOptions, run_validation
    from roofmapnet.models.loading import load_model

    path, _ = checkpoint
    model, cfg = load_model(path)
    report = run_validation(model, cfg, tiny_data, tmp_path, ValidateOptions(split="valid", batch_size=3))
    lines, juncs = LineAPAccumulator(), JunctionAPAccumulator()
    facets = FacetRegionAccumulator(threshold=cfg.model.line_score_thres)
    dataset = RoofDataset(tiny_data, "valid", cfg, train=False)
    scale = 128 / cfg.model.heatmap_size
    for i in range(len(dataset)):
        sample = dataset[i]
        label = np.load(tiny_data / "valid" / f"{sample['name']}_label.npz")
        with torch.no_grad():
            out = model.eval()(sample["image"][None])
            (wf,) = model.decode(out)
        lines.add(wf.lines.numpy() * scale, wf.scores.numpy(), label["lpos"][:, :, :2] * scale)
        juncs.add(out.jmap_prob[0].numpy(), label["junc"][:, :2], out.joff_pred[0].numpy())
        facets.add(wf.lines.numpy() * scale, wf.scores.numpy(), label["lpos"][:, :, :2] * scale)
    expected = {**lines.compute(), **juncs.compute(), **facets.compute()}
    assert lines.n_pred > 0
    for key in ("sAP5", "sAP10", "sAP15", "msAP", "mAPJ", "facet_precision", "facet_recall", "facets_gt"):
        assert report.metrics[key] == pytest.approx(expected[key], abs=1e-9), key


def test_validate_bad_inputs(checkpoint: tuple[Path, RootConfig], tmp_path: Path) -> None:
    path, _ = checkpoint
    runner = CliRunner()
    missing = runner.invoke(app, ["validate", "--checkpoint", str(path), "--data-root", str(tmp_path)])
    assert missing.exit_code == 1
    assert "no preprocessed samples" in missing.output
    corrupt = tmp_path / "bad.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    bad = runner.invoke(app, ["validate", "--checkpoint", str(corrupt), "--data-root", str(tmp_path)])
    assert bad.exit_code == 1
    assert "bad.ckpt" in bad.output
    split = runner.invoke(app, ["validate", "--checkpoint", str(path), "--data-root", str(tmp_path), "--split", "x"])
    assert split.exit_code == 2
