"""``roofmap preprocess``: targets (against a literal per-pair reference), readers, bad inputs, CLI, atomicity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench.bench_preprocess import line_aa_literal, targets_literal, typical_roof
from roofmapnet.cli.app import app
from roofmapnet.data import preprocess as pp
from roofmapnet.data import targets
from roofmapnet.data.preprocess import PreprocessOptions, preprocess, preprocess_flat
from roofmapnet.data.raw import split_assignment
from roofmapnet.data.targets import (
    LABEL_FIELDS,
    MAX_LNEG_LINES,
    MAX_LNEG_PAIRS,
    compute_targets,
    line_aa,
    mean_overlap,
    targets_from_image_lines,
    validate_label,
)
from roofmapnet.errors import DataError
from roofmapnet.train.preprocess_rid2 import main as rid2_main
from roofmapnet.train.preprocess_rid2 import preprocess_roof_lines
from roofmapnet.utils.io import TMP_PREFIX

OPTS = PreprocessOptions(image_size=64, heatmap_size=16, workers=0)


# ----------------------------------------------------------------------------------------------- helpers
def write_image(path: Path, width: int = 100, height: int = 80, value: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)


def make_raw(root: Path, splits: dict[str, Any], images: dict[str, tuple[int, int]]) -> Path:
    """``root/<split>.json`` (objects dumped as given, strings written verbatim) and ``root/images/<name>``."""
    for name, (w, h) in images.items():
        write_image(root / "images" / name, w, h)
    for split, entries in splits.items():
        text = entries if isinstance(entries, str) else json.dumps(entries)
        (root / f"{split}.json").write_text(text)
    return root


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TMP_PREFIX)]


SQUARE = [[10, 10, 90, 10], [90, 10, 90, 70], [90, 70, 10, 70], [10, 70, 10, 10], [10, 10, 90, 70]]


# ------------------------------------------------------------------------------------------ rasteriser
def test_line_aa_equals_the_skimage_loop() -> None:
    rng = np.random.default_rng(3)
    p0 = rng.integers(0, 40, (400, 2))
    p1 = rng.integers(0, 40, (400, 2))
    p1[:20] = p0[:20]  # single pixels
    p1[20:40, 0] = p0[20:40, 0]  # horizontal
    p1[40:60, 1] = p0[40:60, 1]  # vertical
    d = rng.integers(1, 20, 20)
    p1[60:80] = p0[60:80] + np.stack([d, -d], axis=1)  # diagonal
    ras = line_aa(p0, p1)
    for i in range(len(p0)):
        rr, cc, val = line_aa_literal(*p0[i].tolist(), *p1[i].tolist())
        mine = ras.line == i
        assert mine.sum() == len(rr)
        want = dict(zip(zip(rr.tolist(), cc.tolist(), strict=True), val.tolist(), strict=True))
        got = dict(
            zip(zip(ras.rr[mine].tolist(), ras.cc[mine].tolist(), strict=True), ras.val[mine].tolist(), strict=True)
        )
        assert got == want, f"line {i}: {p0[i]} -> {p1[i]}"


def test_mean_overlap_equals_per_pair_average(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    heat = rng.random((16, 16)) - 0.2  # negative values occur after the cubic zoom
    p0 = rng.integers(0, 16, (300, 2))
    p1 = rng.integers(0, 16, (300, 2))
    scores = mean_overlap(p0, p1, heat)
    for i in range(len(p0)):
        rr, cc, val = line_aa_literal(*p0[i].tolist(), *p1[i].tolist())
        assert scores[i] == pytest.approx(np.average(np.minimum(val, heat[rr, cc])), abs=1e-12)
    monkeypatch.setattr(targets, "_CHUNK_STEPS", 37)  # many chunks: the same scores
    np.testing.assert_array_equal(mean_overlap(p0, p1, heat), scores)


# ------------------------------------------------------------------------------------------ the targets
def _random_scene(seed: int, n_lines: int, size: tuple[int, int]) -> np.ndarray:
    """Lines in a ``size`` = (W, H) image sharing endpoints, some partly outside (clipped), one repeated."""
    rng = np.random.default_rng(seed)
    w, h = size
    pts = rng.uniform([-5, -5], [w + 5, h + 5], (n_lines // 2 + 2, 2))
    pts[0] = [w, h]  # on the far edge: clipped to size - 1e-4
    pts[1] = [0, 0]
    idx = rng.choice(len(pts), (n_lines, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    lines = np.concatenate([pts[idx[:, 0]], pts[idx[:, 1]]], axis=1)
    return with_duplicate(lines)


def with_duplicate(lines: np.ndarray) -> np.ndarray:
    """``lines`` plus its first line reversed (a duplicate the targets must drop)."""
    return np.concatenate([lines, lines[:1, [2, 3, 0, 1]]])


@pytest.mark.parametrize(
    ("lines", "image_hw", "heatmap"),
    [
        (with_duplicate(typical_roof(seed=1, size=128)), (128, 128), 32),
        (_random_scene(5, 40, (100, 80)), (80, 100), 16),
        (_random_scene(6, 70, (120, 90)), (90, 120), 32),
    ],
)
def test_targets_equal_the_literal_reference(lines: np.ndarray, image_hw: tuple[int, int], heatmap: int) -> None:
    got = targets_from_image_lines(lines, image_hw, (heatmap, heatmap))
    ref = targets_literal(lines, image_hw, (heatmap, heatmap), return_scores=True)
    for key in ("jmap", "joff", "lmap", "junc", "Lpos", "lpos"):
        assert got[key].dtype == ref[key].dtype, key
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    # Same negatives; our order is the reference's up to float rounding of near-equal scores.
    assert sorted(map(tuple, got["Lneg"].tolist())) == sorted(map(tuple, ref["Lneg"].tolist()))
    score_of = {tuple(p): s for p, s in zip(ref["Lneg"].tolist(), ref["scores"].tolist(), strict=False)}
    ordered = np.array([score_of[tuple(p)] for p in got["Lneg"].tolist()])
    assert (np.diff(ordered) <= 1e-12).all()
    np.testing.assert_array_equal(got["lneg"], got["junc"][got["Lneg"][:MAX_LNEG_LINES]])
    assert got["Lpos"].shape[0] < len(lines)  # the reversed duplicate was dropped


def test_known_line_maps_to_jmap_joff_lpos(tmp_path: Path) -> None:
    # A 100×80 (W×H) image, heatmap 16: x scales by 0.16, y by 0.2.
    line = [10.3, 20.7, 90.1, 60.2]
    raw = make_raw(tmp_path / "raw", {"train": [{"filename": "a.png", "lines": [line]}]}, {"a.png": (100, 80)})
    assert preprocess(raw, tmp_path / "out", OPTS).ok
    z = load_npz(tmp_path / "out" / "train" / "a_label.npz")
    assert list(z) == list(LABEL_FIELDS)
    expect = np.array([[20.7 * 0.2, 10.3 * 0.16], [60.2 * 0.2, 90.1 * 0.16]])  # (y, x)
    np.testing.assert_allclose(z["junc"][:, :2], expect, atol=1e-5)
    np.testing.assert_array_equal(z["junc"][:, 2], 0)
    np.testing.assert_array_equal(z["Lpos"], [[0, 1]])
    np.testing.assert_array_equal(z["lpos"], z["junc"][None, [0, 1]])
    assert z["jmap"].sum() == 2
    assert z["jmap"][0, 4, 1] == 1
    assert z["jmap"][0, 12, 14] == 1
    np.testing.assert_allclose(z["joff"][0, :, 4, 1], [4.14 - 4 - 0.5, 1.648 - 1 - 0.5], atol=1e-5)
    # Junctions decoded from jmap + joff (r + off + 0.5) recover the input to < 1e-3 px (image pixels).
    rows, cols = np.nonzero(z["jmap"][0])
    dec = np.stack([rows + z["joff"][0, 0, rows, cols] + 0.5, cols + z["joff"][0, 1, rows, cols] + 0.5], axis=1)
    in_image = dec[np.lexsort((dec[:, 1], dec[:, 0]))] * [80 / 16, 100 / 16]
    np.testing.assert_allclose(in_image, [[20.7, 10.3], [60.2, 90.1]], atol=1e-3)
    assert (z["Lneg"].shape, z["lneg"].shape) == ((0, 2), (0, 2, 3))  # zero negatives are allowed
    img = Image.open(tmp_path / "out" / "train" / "a.png")
    assert (img.size, img.mode) == ((64, 64), "RGB")


def test_offsets_range_lmap_values_and_clipping() -> None:
    # Endpoints on integers (offset -0.5), on the far edge (clipped: offset just below 0.5) and outside.
    lines = np.array([[0, 0, 160, 0], [160, 0, 160, 160], [160, 160, 0, 160], [0, 160, -20, 40], [0, 0, 37.3, 81.9]])
    t = targets_from_image_lines(lines, (160, 160), (16, 16))
    off = t["joff"][t["jmap"].astype(bool)[:, None].repeat(2, 1)]
    assert off.min() >= -0.5
    assert off.max() < 0.5
    assert off.min() == -0.5
    assert t["junc"][:, :2].max() == np.float32(16 - 1e-4)
    assert t["junc"][:, :2].min() == 0
    assert (t["junc"][:, :2] < 16).all()
    assert t["lmap"].min() >= 0
    assert t["lmap"].max() <= 1
    # 1 along the axis-aligned border lines (floor-ed endpoints 0 and 15) and at every junction pixel.
    np.testing.assert_array_equal(t["lmap"][0, :], 1)
    np.testing.assert_array_equal(t["lmap"][:, 15], 1)
    np.testing.assert_array_equal(t["lmap"][15, :], 1)
    jy, jx = np.floor(t["junc"][:, :2]).astype(int).T
    np.testing.assert_array_equal(t["lmap"][jy, jx], 1)
    assert ((t["lmap"] > 0) & (t["lmap"] < 1)).sum() >= 8  # anti-aliased side pixels of the two slanted lines
    # Endpoint (x=-20, y=40) of line 3 is clipped to x = 0.
    assert (t["junc"][:, 1] == 0).sum() >= 2


def test_junction_dedup_is_exact_and_duplicate_lines_drop() -> None:
    lines = np.array(
        [
            [10, 10, 50, 10],
            [50, 10, 50, 40],  # shares (50, 10) exactly
            [50.001, 40, 10, 40],  # 0.001 px away from (50, 40): a distinct junction
            [50, 40, 50, 10],  # the second line reversed: dropped
        ]
    )
    t = targets_from_image_lines(lines, (64, 64), (64, 64))
    assert len(t["junc"]) == 5
    np.testing.assert_array_equal(t["Lpos"], [[0, 1], [1, 2], [3, 4]])
    # -0.0 and 0.0 are the same junction; a zero-length line is dropped without leaving its junction.
    yx = np.array([[[0.0, 1.0], [5.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]], [[-0.0, 1.0], [3.0, 9.0]]])
    t = compute_targets(yx, (16, 16))
    np.testing.assert_array_equal(t["junc"][:, :2], [[0, 1], [5, 5], [3, 9]])
    np.testing.assert_array_equal(t["Lpos"], [[0, 1], [0, 2]])


def test_hard_negatives_sorted_and_capped() -> None:
    # 60 disjoint short segments: 120 junctions, 7080 non-line pairs > 4000 kept.
    rng = np.random.default_rng(0)
    start = rng.uniform(4, 90, (60, 2))
    lines = np.concatenate([start, start + rng.uniform(2, 6, (60, 2))], axis=1)
    t = targets_from_image_lines(lines, (100, 100), (32, 32))
    assert t["Lneg"].shape == (MAX_LNEG_PAIRS, 2)
    assert t["lneg"].shape == (MAX_LNEG_LINES, 2, 3)
    assert (t["Lneg"][:, 0] < t["Lneg"][:, 1]).all()
    positives = {tuple(sorted(p)) for p in t["Lpos"].tolist()}
    assert not positives & {tuple(p) for p in t["Lneg"].tolist()}
    # Scores recomputed pair by pair (literal rasteriser over zoom(lmap, 0.5)) are non-increasing.
    from scipy.ndimage import zoom

    llmap = zoom(t["lmap"], 0.5)
    half = np.floor(t["junc"][:, :2].astype(np.float64) / 2).astype(int)
    scores = []
    for i, j in t["Lneg"][:300].tolist():
        rr, cc, val = line_aa_literal(*half[i].tolist(), *half[j].tolist())
        scores.append(np.average(np.minimum(val, llmap[rr, cc])))
    assert (np.diff(scores) <= 1e-12).all()
    assert scores[0] > scores[-1]


# ------------------------------------------------------------------------------------- layout and CLI


def test_cli_json_layout_all_splits(tmp_path: Path) -> None:
    raw = make_raw(
        tmp_path / "raw",
        {
            "train": [{"filename": "a.png", "lines": SQUARE}, {"filename": "sub/b.jpg", "lines": SQUARE[:2]}],
            "valid": [{"filename": "c.tif", "lines": SQUARE, "height": 80, "width": 100}],
            "test": [{"filename": "a.png", "lines": SQUARE[:1]}],
        },
        {"a.png": (100, 80), "sub/b.jpg": (100, 80), "c.tif": (100, 80)},
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["preprocess", str(raw), str(out), "--image-size", "64", "--workers", "0"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "dataset.json",
        "test/a.png",
        "test/a_label.npz",
        "train/a.png",
        "train/a_label.npz",
        "train/sub__b.png",
        "train/sub__b_label.npz",
        "valid/c.png",
        "valid/c_label.npz",
    ]
    assert "train │       2 │       0 │      0" in result.output
    z = load_npz(out / "valid" / "c_label.npz")
    assert z["jmap"].shape == (1, 16, 16)
    validate_label(z, "c", (16, 16))


def test_cli_config_sizes_and_only_present_splits(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", {"valid": [{"filename": "a.png", "lines": SQUARE}]}, {"a.png": (100, 80)})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model:\n  image_size: 128\n  heatmap_size: 32\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["preprocess", str(raw), str(out), "-c", str(cfg), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "valid"]
    assert Image.open(out / "valid" / "a.png").size == (128, 128)
    assert load_npz(out / "valid" / "a_label.npz")["lmap"].shape == (32, 32)
    # A requested split that is absent is an error naming the file.
    result = CliRunner().invoke(app, ["preprocess", str(raw), str(out), "--splits", "train", "--workers", "0"])
    assert result.exit_code == 1
    assert "train.json: not found" in result.output


def test_bad_inputs_are_reported_and_the_batch_continues(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    write_image(raw / "images" / "ok.png")
    for name in ("threes.png", "text.png", "nan.png", "zero.png", "outside.png", "empty.png", "hw.png"):
        write_image(raw / "images" / name)
    (raw / "images" / "garbage.png").write_bytes(b"not an image at all")
    write_image(tmp_path / "secret.png")
    (raw / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    entries = [
        {"filename": "ok.png", "lines": SQUARE},
        {"filename": "missing.png", "lines": SQUARE},
        {"filename": "garbage.png", "lines": SQUARE},
        {"filename": "threes.png", "lines": [*SQUARE, [1, 2, 3]]},
        {"filename": "text.png", "lines": [[1, 2, "3", 4]]},
        {"filename": "nan.png", "lines": [[1, 2, 3, 4], [1, float("nan"), 3, 4]]},
        {"filename": "zero.png", "lines": [[1, 2, 3, 4], [5, 6, 5, 6]]},
        {"filename": "outside.png", "lines": [[1, 2, 3, 4], [120, 10, 150, 70]]},
        {"filename": "empty.png", "lines": []},
        {"filename": "hw.png", "lines": SQUARE, "height": 10, "width": 10},
        {"filename": "../secret.png", "lines": SQUARE},
        {"filename": str(tmp_path / "secret.png"), "lines": SQUARE},
        {"filename": "link.png", "lines": SQUARE},
        {"lines": SQUARE},
        "not an object",
    ]
    raw.joinpath("train.json").write_text(json.dumps(entries))
    raw.joinpath("valid.json").write_text('[{"filename": "ok.png", "lines": [[1, 2, 3, 4]')
    out = tmp_path / "out"
    summary = preprocess(raw, out, OPTS)
    reasons = {file: reason for _, file, reason in summary.failures}
    expected = {
        "train.json[1] (missing.png)": "image not found",
        "train.json[2] (garbage.png)": "cannot read image garbage.png",
        "train.json[3] (threes.png)": "lines[5]: expected four finite numbers",
        "train.json[4] (text.png)": "lines[0]: expected four finite numbers",
        "train.json[5] (nan.png)": "lines[1]: expected four finite numbers",
        "train.json[6] (zero.png)": "lines[1]: zero length",
        "train.json[7] (outside.png)": "lines[1]: lies wholly outside the 100×80 image",
        "train.json[8] (empty.png)": "no lines",
        "train.json[9] (hw.png)": "differ from the image's size (80×100)",
        "train.json[10] (../secret.png)": "escapes the images folder",
        f"train.json[11] ({tmp_path / 'secret.png'})": "escapes the images folder",
        "train.json[12] (link.png)": "is a symbolic link (link.png -> ",
        "train.json[13]": "missing or empty 'filename'",
        "train.json[14]": "entry is not an object",
        str(raw / "valid.json"): "invalid JSON",
    }
    assert set(reasons) == set(expected)
    for file, fragment in expected.items():
        assert fragment in reasons[file], (file, reasons[file])
    assert summary.counts["train"].written == 1
    assert summary.counts["train"].failed == 14
    assert summary.counts["valid"].failed == 1
    assert sorted(p.name for p in (out / "train").iterdir()) == ["ok.png", "ok_label.npz"]
    assert not temporaries(tmp_path)
    # The CLI prints the summary and every failure, and exits 1.
    result = CliRunner().invoke(
        app,
        ["preprocess", str(raw), str(tmp_path / "out2"), "--image-size", "64", "--workers", "0"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1
    assert "train │       1 │       0 │     14" in result.output
    assert "lies wholly outside the 100×80 image" in result.output
    assert "lines[5]: expected four finite numbers [x1, y1, x2, y2], got [1, 2, 3]" in result.output
    assert "15 failed:" in result.output
    assert "  train.json[7] (outside.png): lines[1]: lies wholly outside the 100×80 image" in result.output
    assert f"  {raw / 'valid.json'}: invalid JSON" in result.output


def test_axis_order_yx_reads_y_first(tmp_path: Path) -> None:
    xy = [[10.5, 20.25, 90, 60], [90, 60, 30, 75.5]]
    yx = [[y1, x1, y2, x2] for x1, y1, x2, y2 in xy]
    raw_xy = make_raw(tmp_path / "xy", {"train": [{"filename": "a.png", "lines": xy}]}, {"a.png": (100, 80)})
    raw_yx = make_raw(tmp_path / "yx", {"train": [{"filename": "a.png", "lines": yx}]}, {"a.png": (100, 80)})
    assert preprocess(raw_xy, tmp_path / "o1", OPTS).ok
    result = CliRunner().invoke(
        app,
        ["preprocess", str(raw_yx), str(tmp_path / "o2"), "--axis-order", "yx", "--image-size", "64", "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    a, b = load_npz(tmp_path / "o1/train/a_label.npz"), load_npz(tmp_path / "o2/train/a_label.npz")
    for key in LABEL_FIELDS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_allclose(a["junc"][0, :2], [20.25 * 0.2, 10.5 * 0.16], atol=1e-5)
    # Reading the yx file as xy gives different (transposed) junctions.
    assert preprocess(raw_yx, tmp_path / "o3", OPTS).ok
    assert not np.array_equal(load_npz(tmp_path / "o3/train/a_label.npz")["junc"], a["junc"])


def test_rid2_input_seeded_split_and_failures(tmp_path: Path) -> None:
    raw = tmp_path / "rid2"
    raw.mkdir()
    edges = np.array([[[10, 20], [90, 20]], [[90, 20], [50, 70]]], dtype=np.float64)  # (x, y) endpoints
    for i in range(10):
        np.savez(raw / f"roof{i}.npz", edges=edges)
        write_image(raw / "images" / f"roof{i}.{'png' if i % 2 else 'jpg'}")
    np.savez(raw / "nolabel.npz", other=edges)
    write_image(raw / "images" / "nolabel.png")
    np.savez(raw / "orphan.npz", edges=edges)
    opts = PreprocessOptions(image_size=64, heatmap_size=16, workers=0, split_fractions=(0.6, 0.2, 0.2), seed=3)
    summary = preprocess(raw, tmp_path / "out", opts)
    written = {s: c.written for s, c in summary.counts.items()}
    assert sum(written.values()) == 10
    assert sum(c.failed for c in summary.counts.values()) == 2
    reasons = {Path(file).name: reason for _, file, reason in summary.failures}
    assert "no 'edges' array" in reasons["nolabel.npz"]
    assert "no image orphan." in reasons["orphan.npz"]
    # The split is a seeded function of the sorted stems: rerunning gives the same folders.
    stems = sorted(p.stem for p in raw.glob("*.npz"))
    assign = split_assignment(len(stems), (0.6, 0.2, 0.2), 3)
    assert np.bincount(assign, minlength=3).tolist() == [7, 3, 2]  # round(0.6·12), round(0.8·12) - 7, rest
    for stem, k in zip(stems, assign.tolist(), strict=True):
        if stem.startswith("roof"):
            assert (tmp_path / "out" / ("train", "valid", "test")[k] / f"{stem}_label.npz").is_file()
    # Edges are (x, y): the same lines as the equivalent JSON.
    ref = targets_from_image_lines(edges.reshape(-1, 4), (80, 100), (16, 16))
    got = load_npz(next((tmp_path / "out").rglob("roof0_label.npz")))
    np.testing.assert_array_equal(got["junc"], ref["junc"])


def test_skip_existing_atomic_writes_and_parallel_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = {f"r{i}.png": (100, 80) for i in range(4)}
    raw = make_raw(tmp_path / "raw", {"train": [{"filename": n, "lines": SQUARE} for n in images]}, images)
    out = tmp_path / "out"
    summary = preprocess(raw, out, PreprocessOptions(image_size=64, heatmap_size=16, workers=2))
    assert summary.ok
    assert summary.counts["train"].written == 4
    serial = tmp_path / "serial"
    preprocess(raw, serial, OPTS)
    for n in images:
        stem = Path(n).stem
        a, b = load_npz(out / "train" / f"{stem}_label.npz"), load_npz(serial / "train" / f"{stem}_label.npz")
        assert all(np.array_equal(a[k], b[k]) for k in LABEL_FIELDS)
    # --skip-existing leaves complete samples alone.
    (out / "train" / "r1_label.npz").unlink()
    (out / "train" / f"{TMP_PREFIX}stale-abc.npz").write_bytes(b"half")
    summary = preprocess(raw, out, PreprocessOptions(image_size=64, heatmap_size=16, workers=0, skip_existing=True))
    assert (summary.counts["train"].written, summary.counts["train"].skipped) == (1, 3)
    assert not temporaries(out)
    # A failure while writing the label leaves neither file nor temporary, and an earlier pair untouched.
    before = {p.name: p.read_bytes() for p in (out / "train").iterdir()}

    def broken(path: Path, targets: Any) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pp, "save_label", broken)
    summary = preprocess(raw, tmp_path / "broken", OPTS)
    assert summary.counts["train"].failed == 4
    assert all("OSError: disk full" in reason for _, _, reason in summary.failures)
    assert not [p for p in (tmp_path / "broken").rglob("*") if p.is_file()]
    summary = preprocess(raw, out, OPTS)
    assert summary.counts["train"].failed == 4
    assert {p.name: p.read_bytes() for p in (out / "train").iterdir()} == before


# --------------------------------------------------------------------------------------- the seed's API
def test_preprocess_roof_lines_and_module_cli(tmp_path: Path) -> None:
    lines_yx = [[(20.0, 10.0), (20.0, 90.0)], [(20.0, 90.0), (70.0, 50.0)]]
    path = preprocess_roof_lines(lines_yx, tmp_path / "x" / "a_label.npz", image_size=100, heatmap_size=16)
    got = load_npz(path)
    ref = targets_from_image_lines(np.array([[10, 20, 90, 20], [90, 20, 50, 70]]), (100, 100), (16, 16))
    assert list(got) == list(LABEL_FIELDS)
    for key in LABEL_FIELDS:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    with pytest.raises(DataError, match="zero length"):
        preprocess_roof_lines([[(1, 1), (1, 1)]], tmp_path / "bad_label.npz", image_size=100, heatmap_size=16)
    assert not (tmp_path / "bad_label.npz").exists()
    # python -m roofmapnet.train.preprocess_rid2 --input data/train.json --output data/train/
    raw = make_raw(tmp_path / "data", {"train": [{"filename": "a.png", "lines": SQUARE}]}, {"a.png": (100, 80)})
    code = rid2_main(
        ["--input", str(raw / "train.json"), "--output", str(raw / "train"), "--image-size", "64", "--workers", "0"]
    )
    assert code == 0
    assert sorted(p.name for p in (raw / "train").iterdir()) == ["a.png", "a_label.npz"]
    summary = preprocess_flat(raw / "train.json", tmp_path / "flat", OPTS)
    assert summary.ok
    assert rid2_main(["--input", str(tmp_path / "nope.json"), "--output", str(tmp_path / "o")]) == 1
