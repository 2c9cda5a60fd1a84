"""``roofmap demo --data FORMAT:PATH``: the demo pipeline on a raw data set instead of synthetic roofs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.demo import parse_data_source
from roofmapnet.errors import RoofMapError


def test_demo_on_a_raw_data_set_validates_its_valid_split_and_infers_its_images(
    tiny_config_path: Path, tmp_path: Path
) -> None:
    from roofmapnet.data.synth import generate_dataset

    raw = tmp_path / "raw"  # a raw data set in the wireframe JSON format, without a test split
    generate_dataset(raw, counts={"train": 4, "valid": 2}, image_size=96, seed=3, progress=False)
    out = tmp_path / "demo"
    args = [
        "demo", "--data", f"json:{raw}", "--out", str(out), "--config", str(tiny_config_path), "--minutes", "0.2",
        "--max-epochs", "1", "--infer-images", "2", "--device", "cpu", "--workers", "1", "--no-export",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not (out / "raw").exists()  # nothing synthesised
    assert len(list((out / "data" / "train").glob("*_label.npz"))) == 4
    validated = json.loads((out / "validate" / "metrics.json").read_text())
    assert validated["split"] == "valid"
    assert validated["metrics"]["images"] == 2
    assert len(list((out / "infer").glob("*.json"))) == 2
    # The folder now belongs to this data set: a synthetic demo into it is refused instead of mixing the two.
    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--config", str(tiny_config_path), "--no-export"])
    assert again.exit_code == 1
    assert "holds a demo of json:" in " ".join(again.output.split())
    assert "use another --out, or --fresh to start over" in " ".join(again.output.split())


def test_data_source_errors(tmp_path: Path) -> None:
    assert parse_data_source(f"json:{tmp_path}") == ("json", tmp_path)
    with pytest.raises(RoofMapError, match="expected FORMAT:PATH"):
        parse_data_source(str(tmp_path))
    with pytest.raises(RoofMapError, match="unknown format 'shapefile'"):
        parse_data_source(f"shapefile:{tmp_path}")
    with pytest.raises(RoofMapError, match="not found"):
        parse_data_source(f"json:{tmp_path / 'nope'}")


def test_demo_on_a_tiny_roofvec_checkout(tiny_config_path: Path, tmp_path: Path) -> None:
    from tests.unit.data.formats.test_roofvec import EDGES, JUNC, matrix, roofvec_text, segs, write_sample

    root = tmp_path / "SimpleRoofTXT"  # train/ and val/ of NNNNNN.jpg + NNNNNN.txt, non-square crops
    text = roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES))
    for i in range(3):
        write_sample(root / "train", f"{i:06d}", text)
    for i in (7, 8):
        write_sample(root / "val", f"{i:06d}", text)
    out = tmp_path / "demo"
    args = [
        "demo", "--data", f"roofvec:{root}", "--out", str(out), "--config", str(tiny_config_path), "--minutes",
        "0.2", "--max-epochs", "1", "--infer-images", "2", "--device", "cpu", "--workers", "1", "--no-export",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(list((out / "data" / "train").glob("*_label.npz"))) == 3
    validated = json.loads((out / "validate" / "metrics.json").read_text())
    assert (validated["split"], validated["metrics"]["images"]) == ("valid", 2)
    inferred = sorted(p.name for p in (out / "infer").glob("*.json"))
    assert inferred == ["000007.json", "000008.json"]  # the original val crops, at their own size
    assert json.loads((out / "infer" / "000007.json").read_text())["width"] == 120
