"""``roofmap infer``: input discovery, image reading, coordinate mapping, writers, CLI behaviour and DDP predict."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.config import RootConfig
from roofmapnet.config.schema import InferConfig
from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.inference.distributed import ShardSampler
from roofmapnet.inference.images import discover_inputs, output_stems, prepare_image, read_image
from roofmapnet.inference.outputs.writers import (
    COORDINATE_SYSTEM,
    RunInfo,
    geojson_record,
    prediction_record,
    render_overlay,
    score_levels,
    write_outputs,
)
from roofmapnet.inference.predictor import Predictor
from roofmapnet.inference.runner import run_inference
from roofmapnet.models.outputs import Wireframe
from roofmapnet.utils.device import resolve_device, resolve_precision
from roofmapnet.utils.io import TMP_PREFIX
from tests.tiny import TINY_MODEL as SHARED_TINY_MODEL

TINY_MODEL = {**SHARED_TINY_MODEL, "num_stacks": 1}
TINY_CFG = RootConfig.model_validate({"model": TINY_MODEL})


# ------------------------------------------------------------------------------------------------ helpers
def _save_png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _wireframe(
    lines: Sequence[Sequence[Sequence[float]]],
    scores: Sequence[float],
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int] = (16, 16),
    junctions: Sequence[Sequence[float]] = ((4.0, 8.0), (12.0, 2.0)),
    junction_scores: Sequence[float] = (0.9, 0.5),
) -> Wireframe:
    return Wireframe(
        lines=torch.tensor(lines, dtype=torch.float32).reshape(-1, 2, 2),
        scores=torch.tensor(scores, dtype=torch.float32),
        junctions=torch.tensor(junctions, dtype=torch.float32).reshape(-1, 2),
        junction_scores=torch.tensor(junction_scores, dtype=torch.float32),
        heatmap_size=heatmap_size,
        image_size=image_size,
    )


class StubModel(nn.Module):
    """Test double with RoofMapNet's ``predict`` signature: returns a fixed wireframe per image (heatmap 16²)."""

    def __init__(self, lines: Sequence[Sequence[Sequence[float]]], scores: Sequence[float]) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.lines = lines
        self.scores = scores
        self.calls: list[dict[str, Any]] = []

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        self.calls.append(
            {
                "images": images.detach().clone(),
                "sizes": list(image_sizes),
                "max_lines": max_lines,
                "junction_threshold": junction_threshold,
                "score_threshold": score_threshold,
            }
        )
        return [_wireframe(self.lines, self.scores, (int(h), int(w))) for h, w in image_sizes]


def _tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    from roofmapnet.models.roofmapnet import RoofMapNet

    torch.manual_seed(seed)
    net = RoofMapNet(TINY_CFG.model)
    sd = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": sd, "hyper_parameters": {"config": TINY_CFG.model_dump(mode="json")}}, path)
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, ["infer", *args])


def _no_tmp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.startswith(TMP_PREFIX)]


# ------------------------------------------------------------------------------------------------ structural validators
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_prediction_json(doc: dict[str, Any]) -> None:
    """Structure of the per-image JSON (writers module docstring)."""
    required = {
        "image": str,
        "width": int,
        "height": int,
        "lines": list,
        "scores": list,
        "junctions": list,
        "junction_scores": list,
        "model": dict,
        "threshold": float,
        "junction_threshold": float,
        "postprocess": dict,
        "coordinate_system": str,
    }
    for key, typ in required.items():
        assert isinstance(doc.get(key), typ), f"{key}: {type(doc.get(key)).__name__}"
    assert "max_lines" in doc
    assert doc["max_lines"] is None or isinstance(doc["max_lines"], int)
    w, h = doc["width"], doc["height"]
    assert w > 0
    assert h > 0
    assert len(doc["lines"]) == len(doc["scores"])
    assert len(doc["junctions"]) == len(doc["junction_scores"])
    for line in doc["lines"]:
        assert len(line) == 4
        assert all(_is_number(v) for v in line)
        x1, y1, x2, y2 = line
        assert 0 <= x1 <= w
        assert 0 <= x2 <= w
        assert 0 <= y1 <= h
        assert 0 <= y2 <= h
    for xy in doc["junctions"]:
        assert len(xy) == 2
        assert all(_is_number(v) for v in xy)
    scores = doc["scores"]
    assert all(_is_number(s) and 0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert set(doc["model"]) == {"checkpoint", "config", "roofmapnet_version"}
    assert isinstance(doc["model"]["config"]["sha256"], str)
    assert len(doc["model"]["config"]["sha256"]) == 64
    assert set(doc["postprocess"]) == {"enabled", "t", "threshold_px"}
    assert doc["coordinate_system"] == COORDINATE_SYSTEM


def validate_geojson(doc: dict[str, Any], n_lines: int, n_junctions: int) -> None:
    """RFC 7946 FeatureCollection of LineStrings (2 positions each) and junction Points."""
    assert doc["type"] == "FeatureCollection"
    assert isinstance(doc["features"], list)
    assert doc["properties"]["georeferenced"] is False
    kinds: dict[str, list[dict[str, Any]]] = {"line": [], "junction": []}
    for feat in doc["features"]:
        assert feat["type"] == "Feature"
        assert isinstance(feat["properties"], dict)
        geom = feat["geometry"]
        assert isinstance(geom, dict)
        if geom["type"] == "LineString":
            assert feat["properties"]["kind"] == "line"
            assert len(geom["coordinates"]) == 2
            for pos in geom["coordinates"]:
                assert len(pos) == 2
                assert all(_is_number(v) for v in pos)
        else:
            assert geom["type"] == "Point"
            assert feat["properties"]["kind"] == "junction"
            assert len(geom["coordinates"]) == 2
            assert all(_is_number(v) for v in geom["coordinates"])
        assert _is_number(feat["properties"]["score"])
        kinds[feat["properties"]["kind"]].append(feat)
    assert [f["properties"]["index"] for f in kinds["line"]] == list(range(n_lines))
    assert [f["properties"]["index"] for f in kinds["junction"]] == list(range(n_junctions))


def test_validators_reject_bad_documents() -> None:
    wf = _wireframe([[[4.0, 8.0], [12.0, 2.0]]], [0.8], (480, 640))
    info = RunInfo(checkpoint="c.ckpt", model=TINY_CFG.model, threshold=0.1, junction_threshold=0.008)
    good = prediction_record(wf, "a.png", info)
    validate_prediction_json(good)
    for broken in ({**good, "lines": [[1.0, 2.0, 3.0]]}, {**good, "scores": [0.8, 0.7]}, {**good, "width": "640"}):
        with pytest.raises(AssertionError):
            validate_prediction_json(broken)
    fc = geojson_record(wf, "a.png")
    validate_geojson(fc, 1, 2)
    bad = json.loads(json.dumps(fc))
    bad["features"][0]["geometry"]["coordinates"].append([1.0, 1.0])
    with pytest.raises(AssertionError):
        validate_geojson(bad, 1, 2)


# ------------------------------------------------------------------------------------------------ discovery
def test_discover_folder_glob_missing_and_duplicates(tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", ".hidden.png", "sub/c.tif"):
        (d / name).write_bytes(b"x")
    (d / "notes.txt").write_text("hello")
    found = discover_inputs([d])
    assert found.images == [d / "a.JPG", d / "b.png"]
    assert [(Path(s.path).name, s.reason) for s in found.skipped] == [("notes.txt", "not an image (suffix '.txt')")]

    rec = discover_inputs([d], recursive=True)
    assert rec.images == [d / "a.JPG", d / "b.png", d / "sub" / "c.tif"]

    g = discover_inputs([str(d / "*.png"), str(d / "nothing*.tif"), tmp_path / "missing.png", d / "b.png"])
    assert g.images == [d / "b.png"]  # the explicit repeat of b.png is dropped
    assert [s.reason for s in g.skipped] == ["no file matches this pattern", "no such file or directory"]
    # An explicit file is tried whatever its suffix.
    assert discover_inputs([d / "notes.txt"]).images == [d / "notes.txt"]
    # The output folder (here imgs/sub) is not read back from folder inputs.
    assert discover_inputs([d], recursive=True, exclude=d / "sub").images == [d / "a.JPG", d / "b.png"]


def test_output_stems_are_unique_and_deterministic(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "roof.png", tmp_path / "b" / "roof.png", tmp_path / "a" / "Roof.tif", tmp_path / "x.png"]
    stems = output_stems(paths)

    def h(p: Path) -> str:
        return hashlib.sha1(p.resolve().as_posix().encode()).hexdigest()[:8]

    assert stems == ["roof", f"roof-{h(paths[1])}", f"Roof-{h(paths[2])}", "x"]
    assert output_stems(paths) == stems


# ------------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize(
    ("mode", "make", "expected"),
    [
        ("L", lambda: Image.fromarray(np.array([[0, 100]], dtype=np.uint8)), [[0, 0, 0], [100, 100, 100]]),
        ("LA", lambda: Image.fromarray(np.array([[[7, 0], [9, 255]]], dtype=np.uint8), "LA"), [[7] * 3, [9] * 3]),
        (
            "RGBA",
            lambda: Image.fromarray(np.array([[[1, 2, 3, 0], [4, 5, 6, 255]]], dtype=np.uint8), "RGBA"),
            [[1, 2, 3], [4, 5, 6]],
        ),
        ("1", lambda: Image.fromarray(np.array([[False, True]])), [[0, 0, 0], [255, 255, 255]]),
        (
            "I;16",
            lambda: Image.fromarray(np.array([[1000, 3000, 5000]], dtype=np.uint16)),
            [[0, 0, 0], [128, 128, 128], [255, 255, 255]],
        ),
    ],
)
def test_read_image_pixel_rules(tmp_path: Path, mode: str, make: Any, expected: list[list[int]]) -> None:
    img = make()
    assert img.mode == mode
    path = tmp_path / "im.png"
    img.save(path)
    rgb = read_image(path)
    assert rgb.dtype == np.uint8
    assert rgb.shape == (1, len(expected), 3)
    np.testing.assert_array_equal(rgb[0], np.array(expected, dtype=np.uint8))


def test_read_palette_and_tiff(tmp_path: Path) -> None:
    pal = Image.fromarray(np.array([[0, 1]], dtype=np.uint8), "P")
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0], [[10, 20, 30], [200, 100, 50]])
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    Image.fromarray(arr).save(tmp_path / "t.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "t.tif"), arr)


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    good = _save_png(tmp_path / "good.png", 32, 32)
    (tmp_path / "trunc.png").write_bytes(good.read_bytes()[:60])
    cases = {"empty.png": "empty file", "text.png": "not an image", "trunc.png": "corrupt or unreadable"}
    for name, reason in cases.items():
        with pytest.raises(DataError) as err:
            read_image(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: {reason}")
        assert "\n" not in str(err.value)


def test_prepare_image_resizes_anisotropically_and_normalises() -> None:
    cfg = TINY_CFG.model
    mean = np.array(cfg.image.mean)
    img = np.zeros((30, 200, 3), dtype=np.uint8)
    img[:, 100:] = 255  # right half white
    x = prepare_image(img, 64, cfg.image)
    assert x.shape == (3, 64, 64)
    assert x.dtype == torch.float32
    std = torch.tensor(cfg.image.stddev).view(3, 1)
    raw = x[:, :, :] * std.view(3, 1, 1) + torch.tensor(mean).float().view(3, 1, 1)
    # Each half of the width maps to each half of the 64 columns, every row alike (no crop, no padding).
    torch.testing.assert_close(raw[:, :, :31], torch.zeros(3, 64, 31), atol=1e-3, rtol=0)
    torch.testing.assert_close(raw[:, :, 33:], torch.full((3, 64, 31), 255.0), atol=1e-3, rtol=0)
    # An image equal to the mean normalises to zero.
    flat = np.broadcast_to(mean, (10, 10, 3)).astype(np.float32)
    torch.testing.assert_close(prepare_image(flat, 64, cfg.image), torch.zeros(3, 64, 64), atol=1e-5, rtol=0)


def test_prepare_image_matches_training_resize() -> None:
    """Inference resizing equals Pillow's bilinear resize that ``roofmap preprocess`` uses (within uint8 rounding)."""
    cfg = TINY_CFG.model
    img = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BILINEAR)).astype(np.float32)
    x = prepare_image(img, 64, cfg.image)
    raw = x * torch.tensor(cfg.image.stddev).view(3, 1, 1) + torch.tensor(cfg.image.mean).view(3, 1, 1)
    diff = (raw.permute(1, 2, 0) - torch.from_numpy(pil)).abs()
    assert float(diff.max()) <= 1.0
    assert float(diff.mean()) < 0.5


# ------------------------------------------------------------------------------------------------ writers
def test_overlay_colours_by_score_and_keeps_size() -> None:
    h, w = 96, 128
    image = np.full((h, w, 3), 128, dtype=np.uint8)
    # Heatmap 16² → x·8, y·6.  A horizontal line at y=48 (score 1.0) and a vertical at x=64 (score 0.1 = thr).
    wf = _wireframe(
        [[[8.0, 2.0], [8.0, 14.0]], [[2.0, 8.0], [14.0, 8.0]]],
        [1.0, 0.1],
        (h, w),
        junctions=[[1.0, 1.0]],
        junction_scores=[0.9],
    )
    out = render_overlay(image, wf, threshold=0.1)
    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[48, 40], [255, 0, 0])  # high score: red
    np.testing.assert_array_equal(out[30, 64], [0, 0, 255])  # threshold score: blue
    np.testing.assert_array_equal(out[48, 64], [255, 0, 0])  # crossing: the higher score is on top
    np.testing.assert_array_equal(out[6, 8], [255, 255, 255])  # junction dot centre (x=8, y=6)
    np.testing.assert_array_equal(out[80, 20], [128, 128, 128])  # untouched background
    np.testing.assert_array_equal(score_levels(np.array([0.1, 0.55, 1.0, 0.0]), 0.1), [0, 128, 255, 0])


def test_write_outputs_atomic_and_structured(tmp_path: Path) -> None:
    wf = _wireframe([[[4.0, 8.0], [12.0, 2.0]], [[1.0, 1.0], [2.0, 3.0]]], [0.9, 0.4], (48, 64))
    info = RunInfo(checkpoint="m.ckpt", model=TINY_CFG.model, threshold=0.2, junction_threshold=0.01)
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    written = write_outputs(tmp_path, "img", wf, "in/img.png", info, image=image)
    assert [p.name for p in written] == ["img.json", "img.geojson", "img_overlay.png"]
    doc = json.loads((tmp_path / "img.json").read_text())
    validate_prediction_json(doc)
    assert doc["lines"] == [[32.0, 12.0, 8.0, 36.0], [4.0, 3.0, 12.0, 6.0]]
    assert doc["junctions"] == [[32.0, 12.0], [8.0, 36.0]]
    assert doc["postprocess"] == {"enabled": True, "t": 0.01, "threshold_px": 0.8}
    fc = json.loads((tmp_path / "img.geojson").read_text())
    validate_geojson(fc, 2, 2)
    assert fc["features"][0]["geometry"]["coordinates"] == [[32.0, 12.0], [8.0, 36.0]]
    with Image.open(tmp_path / "img_overlay.png") as im:
        assert im.size == (64, 48)
    assert _no_tmp_files(tmp_path)
    # A failing write leaves neither the output nor a temporary file.
    with pytest.raises(ValueError, match="needs the original image"):
        write_outputs(tmp_path / "second", "img", wf, "in/img.png", info, kinds=("overlay",))
    assert not (tmp_path / "second" / "img_overlay.png").exists()
    assert _no_tmp_files(tmp_path)


# ------------------------------------------------------------------------------------------------ predictor
def test_known_line_maps_back_to_640x480_pixels(tmp_path: Path) -> None:
    path = tmp_path / "scene.png"
    Image.fromarray(np.full((480, 640, 3), 100, dtype=np.uint8)).save(path)
    # (y, x) in the 16×16 heatmap: (4, 8) → (120, 320) px and (12, 2) → (360, 80) px for a 640×480 image.
    stub = StubModel([[[4.0, 8.0], [12.0, 2.0]]], [0.75])
    predictor = Predictor(stub, TINY_CFG, "cpu", checkpoint="stub.ckpt")  # type: ignore[arg-type]
    opts = InferConfig(postprocess=False, threshold=0.3, junction_threshold=0.05, max_lines=7, workers=0)
    report = run_inference(predictor, [path], tmp_path / "out", opts)
    assert report.exit_code == 0
    assert [r.stem for r in report.results] == ["scene"]
    (call,) = stub.calls
    assert call["sizes"] == [(480, 640)]
    assert tuple(call["images"].shape) == (1, 3, 64, 64)
    assert (call["score_threshold"], call["junction_threshold"], call["max_lines"]) == (0.3, 0.05, 7)
    expected_input = (100.0 - torch.tensor(TINY_CFG.model.image.mean)) / torch.tensor(TINY_CFG.model.image.stddev)
    torch.testing.assert_close(call["images"][0, :, 10, 20], expected_input.float())
    doc = json.loads((tmp_path / "out" / "scene.json").read_text())
    validate_prediction_json(doc)
    assert (doc["width"], doc["height"]) == (640, 480)
    assert doc["lines"] == [[320.0, 120.0, 80.0, 360.0]]
    assert doc["scores"] == [0.75]
    assert doc["junctions"] == [[320.0, 120.0], [80.0, 360.0]]
    assert doc["threshold"] == 0.3
    assert doc["postprocess"]["enabled"] is False
    assert doc["model"]["checkpoint"] == "stub.ckpt"
    fc = json.loads((tmp_path / "out" / "scene.geojson").read_text())
    validate_geojson(fc, 1, 2)
    assert fc["features"][0]["geometry"]["coordinates"] == [[320.0, 120.0], [80.0, 360.0]]
    with Image.open(tmp_path / "out" / "scene_overlay.png") as im:
        assert im.size == (640, 480)
    assert _no_tmp_files(tmp_path)


def test_batching_and_threaded_decoding_keep_input_order(tmp_path: Path) -> None:
    sizes = [(20, 30), (41, 17), (64, 64), (9, 90), (33, 33)]
    paths = [_save_png(tmp_path / f"im{i}.png", h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    stub = StubModel([[[4.0, 8.0], [12.0, 2.0]]], [0.5])
    predictor = Predictor(stub, TINY_CFG, "cpu")  # type: ignore[arg-type]
    opts = InferConfig(postprocess=False, batch_size=2, workers=2, outputs=("json",))
    report = run_inference(predictor, [tmp_path], tmp_path / "out", opts)
    assert [c["sizes"] for c in stub.calls] == [sizes[0:2], sizes[2:4], sizes[4:5]]
    assert [r.image for r in report.results] == [str(p) for p in paths]
    for p, (h, w) in zip(paths, sizes, strict=True):
        doc = json.loads((tmp_path / "out" / f"{p.stem}.json").read_text())
        assert doc["lines"] == [[8 * w / 16, 4 * h / 16, 2 * w / 16, 12 * h / 16]]
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}.json" for p in paths)


def test_precision_and_device_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("32", cpu) == (None, None)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, None)
    dtype, note = resolve_precision("16", cpu)
    assert dtype is None
    assert note is not None
    assert "CUDA" in note
    from roofmapnet.utils.device import cpu_supports_bf16

    assert resolve_precision("auto", cpu) == ((torch.bfloat16 if cpu_supports_bf16() else None), None)
    with pytest.raises(RoofMapError, match=r"^precision 8: expected one of") as err:
        resolve_precision("8", cpu)
    assert err.value.exit_code == 2
    assert resolve_device("cpu") == cpu
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(RoofMapError, match=r"^device tpu"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RoofMapError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_shard_sampler_splits_without_repeats() -> None:
    for n in (0, 1, 3, 4, 7):
        shards = [list(ShardSampler(n, r, 2)) for r in range(2)]
        assert sorted(shards[0] + shards[1]) == list(range(n))
        assert not set(shards[0]) & set(shards[1])
        assert [len(ShardSampler(n, r, 2)) for r in range(2)] == [len(s) for s in shards]
    with pytest.raises(ValueError, match="rank 2"):
        ShardSampler(3, 2, 2)


def test_real_tiny_model_matches_direct_prediction(tmp_path: Path, tiny_ckpt: Path) -> None:
    a = _save_png(tmp_path / "a.png", 48, 80, seed=1)
    b = _save_png(tmp_path / "b.png", 64, 64, seed=2)
    predictor = Predictor.from_checkpoint(tiny_ckpt, device="cpu")
    assert predictor.cfg.model.image_size == 64
    opts = InferConfig(postprocess=False, batch_size=2, workers=1, outputs=("json", "geojson"))
    report = run_inference(predictor, [a, b], tmp_path / "out", opts)
    assert report.exit_code == 0
    assert report.model_seconds > 0
    direct = predictor.predict_images([read_image(a), read_image(b)], opts)
    for path, wf in zip((a, b), direct, strict=True):
        doc = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())
        validate_prediction_json(doc)
        assert len(doc["lines"]) == wf.lines.shape[0] > 0
        np.testing.assert_allclose(doc["lines"], wf.lines_xyxy(), atol=1e-3)
        np.testing.assert_allclose(doc["scores"], wf.scores.numpy(), atol=1e-6)
        assert min(doc["scores"]) > 0.1
        validate_geojson(
            json.loads((tmp_path / "out" / f"{path.stem}.geojson").read_text()),
            len(doc["lines"]),
            len(doc["junctions"]),
        )


def test_postprocess_and_max_lines_with_real_model(tmp_path: Path, tiny_ckpt: Path) -> None:
    pytest.importorskip("roofmapnet.inference.postprocess")
    img = np.random.default_rng(3).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    predictor = Predictor.from_checkpoint(tiny_ckpt, device="cpu")
    (raw,) = predictor.predict_images([img], InferConfig(postprocess=False))
    (pp,) = predictor.predict_images([img], InferConfig(postprocess=True))
    (capped,) = predictor.predict_images([img], InferConfig(postprocess=False, max_lines=5))
    assert 0 < pp.lines.shape[0] <= raw.lines.shape[0]
    assert torch.all(pp.scores[:-1] >= pp.scores[1:])
    torch.testing.assert_close(capped.scores, raw.scores[:5])
    # bf16 autocast runs end to end and gives the same number of junction proposals' shape contract.
    bf = Predictor.from_checkpoint(tiny_ckpt, device="cpu", precision="bf16")
    (low,) = bf.predict_images([img], InferConfig(postprocess=True))
    assert low.lines.dtype == torch.float64
    assert torch.isfinite(low.lines).all()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_folder_with_text_and_corrupt_png(tmp_path: Path, tiny_ckpt: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _save_png(src / "good1.png", 40, 56, seed=4)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(src / "good2.jpg")
    (src / "readme.txt").write_text("not an image")
    # A PNG cut after its header: Pillow identifies it, decoding fails.
    (src / "broken.png").write_bytes(_save_png(tmp_path / "whole.png", 40, 40).read_bytes()[:80])
    out = tmp_path / "out"
    res = _invoke(["--checkpoint", str(tiny_ckpt), str(src), "--out", str(out), "--device", "cpu", "--no-postprocess"])
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "readme.txt" in text
    assert "not an image (suffix '.txt')" in text
    assert "broken.png" in text
    assert "corrupt or unreadable image" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "good1.geojson",
        "good1.json",
        "good1_overlay.png",
        "good2.geojson",
        "good2.json",
        "good2_overlay.png",
    ]
    assert _no_tmp_files(out)
    for stem, (h, w) in (("good1", (40, 56)), ("good2", (30, 30))):
        doc = json.loads((out / f"{stem}.json").read_text())
        validate_prediction_json(doc)
        assert (doc["height"], doc["width"]) == (h, w)
        with Image.open(out / f"{stem}_overlay.png") as im:
            assert im.size == (w, h)


def test_cli_selected_outputs_and_clean_exit(tmp_path: Path, tiny_ckpt: Path) -> None:
    img = _save_png(tmp_path / "one.png", 32, 48)
    out = tmp_path / "out"
    args = ["-k", str(tiny_ckpt), str(img), "-o", str(out), "--outputs", "json", "--no-postprocess", "--device", "cpu"]
    res = _invoke(args)
    assert res.exit_code == 0, res.output
    assert [p.name for p in out.iterdir()] == ["one.json"]
    assert "images processed" in res.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{img}", "--outputs", "json,svg"], 2, "--outputs"),
        (["{tmp}/nothing-*.png"], 2, "no image matched"),
        (["{img}", "--strategy", "horovod"], 2, "--strategy"),
        (["{img}", "--precision", "8"], 2, "--precision"),
        (["{img}", "--threshold", "1.5"], 2, "--threshold"),
    ],
)
def test_cli_usage_errors(tmp_path: Path, tiny_ckpt: Path, args: list[str], code: int, message: str) -> None:
    img = _save_png(tmp_path / "one.png", 16, 16)
    filled = [a.format(img=img, tmp=tmp_path) for a in args]
    res = _invoke(["-k", str(tiny_ckpt), *filled, "-o", str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == code, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_cli_bad_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    img = _save_png(tmp_path / "one.png", 16, 16)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"definitely not a checkpoint")
    for ckpt in (bad, tmp_path / "missing.ckpt"):
        res = _invoke(["-k", str(ckpt), str(img), "-o", str(tmp_path / "out"), "--device", "cpu"])
        assert res.exit_code == 1
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1, res.output
        assert str(ckpt.name) in lines[0]
        assert lines[0].startswith("error:")


# ------------------------------------------------------------------------------------------------ DDP
_SCRIPT = """
import typer
from roofmapnet.cli.infer import register

app = typer.Typer()


@app.callback()
def _root() -> None:
    pass


register(app)
app()
"""


def test_ddp_predict_two_cpu_processes_writes_each_output_once(tmp_path: Path, tiny_ckpt: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i, (h, w) in enumerate([(40, 60), (32, 32), (50, 30)]):
        _save_png(src / f"im{i}.png", h, w, seed=10 + i)
    script = tmp_path / "roofmap_cli.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    common = ["infer", "-k", str(tiny_ckpt), str(src), "--device", "cpu", "--workers", "0", "--outputs", "json,geojson"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    ddp = subprocess.run(
        [sys.executable, str(script), *common, "-o", str(tmp_path / "ddp"), "--devices", "2", "--strategy", "ddp"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    # One summary (rank 0 only) that counts every image exactly once.
    assert ddp.stdout.count("images processed") == 1, ddp.stdout
    assert re.search(r"images processed\W+3\b", ddp.stdout), ddp.stdout
    single = _invoke([*common[1:], "-o", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    names = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == sorted(f"im{i}{s}" for i in range(3) for s in (".json", ".geojson"))
    for name in names:
        assert (tmp_path / "ddp" / name).read_text() == (tmp_path / "single" / name).read_text(), name
