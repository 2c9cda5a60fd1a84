"""``roofmap demo`` end to end with a tiny budget: every stage runs its real code path and leaves its artefacts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app


def test_demo_tiny_budget_produces_every_artefact_and_resumes(tiny_config_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = [
        "demo", "--out", str(out), "--config", str(tiny_config_path), "--minutes", "0.3", "--max-epochs", "1",
        "--train-images", "4", "--valid-images", "2", "--test-images", "2", "--image-size", "96",
        "--infer-images", "2", "--device", "cpu", "--workers", "1",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "sAP10" in result.output
    assert json.loads((out / "raw" / "train.json").read_text())
    assert len(list((out / "data" / "train").glob("*_label.npz"))) == 4
    assert (out / "train" / "checkpoints" / "last.ckpt").is_file()
    assert (out / "train" / "config.yaml").is_file()
    validated = json.loads((out / "validate" / "metrics.json").read_text())
    metrics = validated["metrics"]
    assert metrics["images"] == 2
    # The stages after training use the best-validation-sAP10 checkpoint, not the time-stopped last.ckpt.
    best = out / "train" / "checkpoints" / "best-sAP10.ckpt"
    assert best.is_file()
    assert validated["checkpoint"] == str(best)
    with Image.open(out / "validate" / "pr_curve.png") as im:
        assert im.format == "PNG"
    for stem in ("test_000000", "test_000001"):
        doc = json.loads((out / "infer" / f"{stem}.json").read_text())
        assert (doc["width"], doc["height"]) == (96, 96)
        assert (out / "infer" / f"{stem}.geojson").is_file()
        with Image.open(out / "infer" / f"{stem}_overlay.png") as im:
            assert im.size == (96, 96)
    assert (out / "export" / "roofmapnet.onnx").is_file()
    # A re-run skips every finished stage.
    start = time.perf_counter()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "skipped (already done): synth, preprocess, train, validate, infer, export" in " ".join(again.output.split())
    assert time.perf_counter() - start < 30
