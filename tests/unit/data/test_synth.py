"""``roofmap synth``: determinism, raw-format output, exact GT (graph property, lies on rendered edges), CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.data import synth
from roofmapnet.data.synth import (
    ROOF_TYPES,
    LineKind,
    SynthParams,
    generate_dataset,
    parse_image_size,
    render_sample,
    render_scene,
    sample_rng,
)
from roofmapnet.errors import DataError, RoofMapError

NO_TREES = SynthParams(trees=0.0)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _gradient(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float64).mean(2)
    return np.hypot(ndimage.sobel(grey, 0), ndimage.sobel(grey, 1))


def _mean_along(mag: np.ndarray, lines: np.ndarray, n: int = 24) -> np.ndarray:
    """Mean of ``mag`` at ``n`` points of the inner 80 % of each line (pixel containing the point)."""
    t = np.linspace(0.1, 0.9, n)
    x = lines[:, None, 0] + t * (lines[:, None, 2] - lines[:, None, 0])
    y = lines[:, None, 1] + t * (lines[:, None, 3] - lines[:, None, 1])
    h, w = mag.shape
    rows = np.clip(np.floor(y).astype(int), 0, h - 1)
    cols = np.clip(np.floor(x).astype(int), 0, w - 1)
    return mag[rows, cols].mean(1)


def _graph_problems(lines: np.ndarray, height: int, width: int) -> list[str]:
    """Violations of the wireframe-graph guarantee (empty when the GT is a clean planar graph)."""
    problems = []
    a, b = lines[:, :2], lines[:, 2:]
    length = np.hypot(*(b - a).T)
    if np.any(length <= 0):
        problems.append("zero-length line")
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    canon = np.where(swap[:, None], np.c_[b, a], np.c_[a, b])
    if len(np.unique(canon, axis=0)) != len(lines):
        problems.append("duplicate line")
    if (
        lines[:, 0::2].min() < 0
        or lines[:, 0::2].max() > width
        or lines[:, 1::2].min() < 0
        or lines[:, 1::2].max() > height
    ):
        problems.append("coordinate outside the image")
    points, degree = np.unique(np.r_[a, b], axis=0, return_counts=True)
    border = (points[:, 0] == 0) | (points[:, 0] == width) | (points[:, 1] == 0) | (points[:, 1] == height)
    if np.any((degree < 2) & ~border):
        problems.append(f"dangling endpoints {points[(degree < 2) & ~border].tolist()}")
    d = b - a
    rel = points[None] - a[:, None]
    t = (rel * d[:, None]).sum(2) / (length**2)[:, None]
    dist = np.abs(rel[..., 0] * d[:, None, 1] - rel[..., 1] * d[:, None, 0]) / length[:, None]
    if np.any((dist < 1e-3) & (t > 1e-6) & (t < 1 - 1e-6)):
        problems.append("an endpoint lies inside another line (unsplit T-junction)")

    def orient(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])

    pa, pb, qa, qb = a[:, None], b[:, None], a[None], b[None]
    crossing = (orient(pa, pb, qa) * orient(pa, pb, qb) < -1e-9) & (orient(qa, qb, pa) * orient(qa, qb, pb) < -1e-9)
    if crossing.any():
        problems.append("two lines cross")
    return problems


# ------------------------------------------------------------------------------------------------ rendering


def test_render_is_a_pure_function_of_the_seed() -> None:
    image, lines = render_sample(sample_rng(3, "train", 5), 128, 128)
    again, lines_again = render_sample(sample_rng(3, "train", 5), 128, 128)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(lines, lines_again)
    other, _ = render_sample(sample_rng(4, "train", 5), 128, 128)
    next_index, _ = render_sample(sample_rng(3, "train", 6), 128, 128)
    other_split, _ = render_sample(sample_rng(3, "valid", 5), 128, 128)
    for different in (other, next_index, other_split):
        assert np.abs(different.astype(int) - image).mean() > 5
    assert image.dtype == np.uint8
    assert image.shape == (128, 128, 3)
    assert lines.dtype == np.float64
    assert lines.ndim == 2
    assert lines.shape[1] == 4
    assert len(lines) >= 4


def test_gt_is_a_wireframe_graph_clipped_to_the_image() -> None:
    """Guarantee: no zero-length / duplicate lines, coordinates in the image, every endpoint is on the border or
    shared by >= 2 lines, no endpoint inside another line, no crossings; junctions are not crowded."""
    clipped = 0
    for index in range(16):
        height, width = (160, 224) if index % 2 else (256, 192)
        scene = render_scene(sample_rng(11, "train", index), height, width)
        assert _graph_problems(scene.lines, height, width) == [], f"sample {index}"
        points = np.unique(np.r_[scene.lines[:, :2], scene.lines[:, 2:]], axis=0)
        gaps = np.hypot(*(points[:, None] - points[None]).transpose(2, 0, 1)) + np.eye(len(points)) * 1e9
        assert gaps.min() > 2.0, f"sample {index}: junctions {gaps.min():.2f} px apart"
        on_border = (points[:, 0] % width == 0) | (points[:, 1] % height == 0)
        clipped += int(on_border.sum())
    assert clipped > 0  # partial neighbours are cut by the border


def test_gt_lies_on_rendered_edges() -> None:
    """Without trees, the image gradient peaks on the GT lines: it is several times higher than on random lines
    and than on the same lines shifted by 3 px, for outlines and for ridges / hips / valleys alike.

    (Measured with seed 5: 4.2x the shifted lines, 2.8x random lines, 4.7x for creases; the weakest image, 2.3x,
    has shadow-side eaves next to their own cast shadow.)"""
    on_gt, on_random, shifted = [], [], []
    crease_on, crease_shifted = [], []
    for index in range(8):
        scene = render_scene(sample_rng(5, "test", index), 256, 256, NO_TREES)
        mag = _gradient(scene.image)
        d = scene.lines[:, 2:] - scene.lines[:, :2]
        normal = np.stack([-d[:, 1], d[:, 0]], 1) / np.linalg.norm(d, axis=1, keepdims=True)
        gt = _mean_along(mag, scene.lines)
        off = (
            _mean_along(mag, scene.lines + np.tile(3 * normal, 2))
            + _mean_along(mag, scene.lines - np.tile(3 * normal, 2))
        ) / 2
        random_lines = np.random.default_rng(index).uniform(0, 256, (200, 4))
        on_gt.append(gt.mean())
        shifted.append(off.mean())
        on_random.append(_mean_along(ndimage.maximum_filter(mag, size=3), random_lines).mean())
        assert gt.mean() > 2.0 * off.mean(), f"sample {index}"
        crease = scene.kinds != LineKind.OUTLINE
        crease_on.extend(gt[crease])
        crease_shifted.extend(off[crease])
    assert np.mean(on_gt) > 2.0 * np.mean(on_random)
    assert np.mean(on_gt) > 3.0 * np.mean(shifted)
    assert len(crease_on) > 20
    assert np.mean(crease_on) > 3.0 * np.mean(crease_shifted)


def test_tree_crowns_occlude_edges_but_keep_gt() -> None:
    leafy = SynthParams(trees=8.0, tree_on_edge=1.0)
    bare = render_scene(sample_rng(2, "train", 0), 192, 192, NO_TREES)
    scene = render_scene(sample_rng(2, "train", 0), 192, 192, leafy)
    np.testing.assert_array_equal(scene.lines, bare.lines)
    assert not bare.occluder_mask.any()
    t = np.linspace(0, 1, 50)
    x = scene.lines[:, None, 0] + t * (scene.lines[:, None, 2] - scene.lines[:, None, 0])
    y = scene.lines[:, None, 1] + t * (scene.lines[:, None, 3] - scene.lines[:, None, 1])
    hidden = scene.occluder_mask[np.clip(y.astype(int), 0, 191), np.clip(x.astype(int), 0, 191)]
    assert hidden.any(axis=1).sum() >= 2  # some annotated lines run under crowns
    assert np.abs(scene.image.astype(int) - bare.image).max(2)[scene.occluder_mask].mean() > 10


def test_mix_of_roof_types_and_line_kinds() -> None:
    types: Counter[str] = Counter()
    kinds: Counter[int] = Counter()
    for index in range(16):
        scene = render_scene(sample_rng(7, "train", index), 96, 96, NO_TREES)
        types.update(scene.roof_types)
        kinds.update(scene.kinds.tolist())
        assert 1 <= len(scene.roof_types) <= 6
    assert set(types) == set(ROOF_TYPES)
    assert set(kinds) == {int(k) for k in LineKind}


def test_roof_templates_have_planar_facets() -> None:
    rng = np.random.default_rng(0)
    for kind in ROOF_TYPES:
        for _ in range(20):
            roof = synth._sample_roof(rng, kind)
            for facet in roof.facets:
                design = np.column_stack([facet[:, :2], np.ones(len(facet))])
                residual = facet[:, 2] - design @ np.linalg.lstsq(design, facet[:, 2], rcond=None)[0]
                assert np.abs(residual).max() < 1e-9, kind
            xy = np.concatenate([f[:, :2] for f in roof.facets])
            assert np.isclose((xy.max(0) - xy.min(0)).max(), 1.0)


def test_params_and_sizes_are_validated() -> None:
    assert parse_image_size(512) == (512, 512)
    assert parse_image_size("320x256") == (256, 320)
    assert parse_image_size("96") == (96, 96)
    assert parse_image_size((100, 80)) == (100, 80)
    for bad in ("10x", "0", "512x16", 20000):
        with pytest.raises(RoofMapError, match="image size"):
            parse_image_size(bad)
    with pytest.raises(RoofMapError, match="buildings"):
        SynthParams(buildings=(0, 2))
    with pytest.raises(RoofMapError, match="roof_types"):
        SynthParams(roof_types=("igloo",), roof_type_weights=(1.0,))
    with pytest.raises(RoofMapError, match="each side"):
        render_scene(sample_rng(0, "train", 0), 16, 128)


# ------------------------------------------------------------------------------------------------ dataset writer


def test_dataset_is_byte_identical_per_seed_and_independent_of_workers(tmp_path: Path) -> None:
    counts = {"train": 3, "valid": 1, "test": 1}
    first = generate_dataset(tmp_path / "a", counts=counts, image_size=96, seed=9, workers=1, progress=False)
    generate_dataset(tmp_path / "b", counts=counts, image_size=96, seed=9, workers=2, progress=False)
    generate_dataset(tmp_path / "c", counts=counts, image_size=96, seed=10, workers=1, progress=False)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert set(a) == set(c)
    assert all(a[name] != c[name] for name in a if name.endswith(".png") or name in ("train.json", "valid.json"))
    assert first.counts == counts
    assert first.lines["train"] > 0
    assert not list((tmp_path / "a").rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_raw_format_counts_and_metadata(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    summary = generate_dataset(
        out, counts={"train": 2, "valid": 1, "test": 0}, image_size="160x128", seed=1, progress=False
    )
    assert (summary.height, summary.width) == (128, 160)
    records = {split: json.loads((out / f"{split}.json").read_text()) for split in ("train", "valid", "test")}
    assert [len(records[s]) for s in ("train", "valid", "test")] == [2, 1, 0]
    names = [r["filename"] for rs in records.values() for r in rs]
    assert names == ["train_000000.png", "train_000001.png", "valid_000000.png"]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(names)
    for record in records["train"] + records["valid"]:
        assert set(record) == {"filename", "lines", "height", "width"}
        assert (record["height"], record["width"]) == (128, 160)
        with Image.open(out / "images" / record["filename"]) as image:
            assert image.mode == "RGB"
            assert image.size == (160, 128)
        lines = np.asarray(record["lines"], dtype=np.float64)
        assert lines.shape[1] == 4
        assert len(lines) >= 4
        assert _graph_problems(lines, 128, 160) == []
    meta = json.loads((out / "synth.json").read_text())
    assert meta["seed"] == 1
    assert meta["counts"] == {"train": 2, "valid": 1, "test": 0}
    assert (meta["height"], meta["width"]) == (128, 160)
    assert meta["lines"] == summary.lines
    assert meta["params"]["roof_types"] == list(ROOF_TYPES)


def test_non_square_images_use_both_sides(tmp_path: Path) -> None:
    height, width = 256, 320
    xs, ys = [], []
    for index in range(6):
        scene = render_scene(sample_rng(0, "train", index), height, width, NO_TREES)
        assert scene.image.shape == (height, width, 3)
        assert _graph_problems(scene.lines, height, width) == []
        xs.append(scene.lines[:, 0::2].max())
        ys.append(scene.lines[:, 1::2].max())
    assert max(xs) > height  # lines reach past x = 256, where a square image would end
    assert max(ys) <= height


def test_refuses_non_empty_folder_and_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    generate_dataset(out, counts={"train": 3, "valid": 0, "test": 0}, image_size=64, progress=False)
    with pytest.raises(DataError, match="not empty"):
        generate_dataset(out, counts={"train": 1}, image_size=64, progress=False)
    generate_dataset(out, counts={"train": 1, "valid": 1}, image_size=64, progress=False, overwrite=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["train_000000.png", "valid_000000.png"]
    assert len(json.loads((out / "train.json").read_text())) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate_dataset(tmp_path / "file", counts={"train": 1}, image_size=64, progress=False)
    with pytest.raises(RoofMapError, match="unknown split"):
        generate_dataset(tmp_path / "new", counts={"training": 1}, progress=False)


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_writes_dataset_and_prints_next_step(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = CliRunner().invoke(
        app, ["synth", str(out), "--train", "2", "--valid", "1", "--test", "1", "--size", "80x64", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "roofmap preprocess" in result.output
    assert str(out) in result.output.replace("\n", "")
    assert json.loads((out / "synth.json").read_text())["counts"] == {"train": 2, "valid": 1, "test": 1}
    with Image.open(out / "images" / "test_000000.png") as image:
        assert image.size == (80, 64)


def test_cli_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["synth", str(tmp_path), "--train", "1", "--valid", "0", "--test", "0"])
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert "--overwrite" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    bad = CliRunner().invoke(app, ["synth", str(tmp_path / "x"), "--size", "12x"])
    assert bad.exit_code == 2
    assert "--size" in bad.output
