"""RoofDataset + collate: the batch contract, normalisation, static lines, label-consistent augmentation, errors."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from roofmapnet.config import RootConfig
from roofmapnet.data.dataset import RoofDataset, collate, transform_points, transform_sample
from roofmapnet.data.preprocess import PreprocessOptions, preprocess
from roofmapnet.errors import DataError

S, H = 64, 16  # image and heatmap sides
LINE = ((8.5, 12.25), (52.5, 36.75))  # (x, y) image pixels of the drawn line: asymmetric under every flip/turn
SQUARE = [[10, 10, 90, 10], [90, 10, 90, 70], [90, 70, 10, 70], [10, 70, 10, 10], [10, 10, 90, 70]]


def make_cfg(**augment: bool) -> RootConfig:
    return RootConfig.model_validate(
        {
            "model": {"image_size": S, "heatmap_size": H, "depth": 2, "n_stc_posl": 3, "n_stc_negl": 2},
            "data": {"augment": {"hflip": False, "vflip": False, "rot90": False, **augment}},
        }
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train: ``line`` (one bright line on black, 64²) and ``square`` / ``tri`` (flat grey 100×80, more lines)."""
    raw = tmp_path_factory.mktemp("raw")
    (raw / "images").mkdir()
    img = Image.new("RGB", (S, S))
    # PIL puts integer coordinates at pixel centres; ours put pixel edges at integers.
    (x0, y0), (x1, y1) = LINE
    ImageDraw.Draw(img).line([(x0 - 0.5, y0 - 0.5), (x1 - 0.5, y1 - 0.5)], fill=(255, 255, 255), width=3)
    img.save(raw / "images" / "line.png")
    for name in ("square.png", "tri.png"):
        Image.fromarray(np.full((80, 100, 3), 40, dtype=np.uint8)).save(raw / "images" / name)
    train = [
        {"filename": "line.png", "lines": [[x0, y0, x1, y1]]},
        {"filename": "square.png", "lines": SQUARE},
        {"filename": "tri.png", "lines": SQUARE[:2]},
    ]
    (raw / "train.json").write_text(json.dumps(train))
    (raw / "valid.json").write_text(json.dumps(train[1:]))
    out = tmp_path_factory.mktemp("data")
    assert preprocess(raw, out, PreprocessOptions(image_size=S, heatmap_size=H, workers=0)).ok
    return out


def index_of(ds: RoofDataset, name: str) -> int:
    return ds.names.index(name)


# ----------------------------------------------------------------------------------------- contract
def test_sample_and_batch_contract(data_root: Path) -> None:
    cfg = make_cfg()
    ds = RoofDataset(data_root, "train", cfg, train=False, seed=1)
    assert ds.names == ["line", "square", "tri"]
    sq, tri = ds[index_of(ds, "square")], ds[index_of(ds, "tri")]
    assert sq["image"].shape == (3, S, S)
    assert sq["image"].dtype == torch.float32
    assert (sq["jmap"].shape, sq["joff"].shape, sq["lmap"].shape) == ((1, H, H), (1, 2, H, H), (H, H))
    assert (sq["junc"].shape, sq["Lpos"].shape, sq["Lneg"].shape) == ((4, 2), (5, 2), (1, 2))
    assert (tri["junc"].shape, tri["Lpos"].shape, tri["Lneg"].shape) == ((3, 2), (2, 2), (1, 2))
    batch = collate([tri, sq])
    expected = {
        "image": ((2, 3, S, S), torch.float32),
        "jmap": ((2, 1, H, H), torch.float32),
        "joff": ((2, 1, 2, H, H), torch.float32),
        "lmap": ((2, H, H), torch.float32),
        "junc": ((2, 4, 2), torch.float32),
        "junc_mask": ((2, 4), torch.bool),
        "Lpos": ((2, 5, 5), torch.bool),
        "Lneg": ((2, 5, 5), torch.bool),
        "lpre": ((2, 4, 2, 2), torch.float32),
        "lpre_label": ((2, 4), torch.float32),
        "lpre_mask": ((2, 4), torch.bool),
        "content_box": ((2, 4), torch.float32),
    }
    assert set(batch) == {*expected, "name"}
    for key, (shape, dtype) in expected.items():
        assert (tuple(batch[key].shape), batch[key].dtype) == (shape, dtype), key
    # Not letterboxed: each image fills the whole heatmap.
    assert batch["content_box"].tolist() == [[0.0, 0.0, H, H]] * 2
    assert batch["name"] == ["tri", "square"]
    # Padding: tri has 3 junctions and 2 + 1 static lines, square 4 and 3 (of 5) + 1.
    assert batch["junc_mask"].tolist() == [[True, True, True, False], [True] * 4]
    assert batch["junc"][0, 3].tolist() == [0.0, 0.0]
    assert batch["lpre_mask"].tolist() == [[True, True, True, False], [True] * 4]
    assert batch["lpre_label"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0]]
    # Adjacency: symmetric, exactly the npz pairs, the sentinel row/column N = 4 empty.
    for b, s in enumerate((tri, sq)):
        for key in ("Lpos", "Lneg"):
            adj = batch[key][b]
            assert torch.equal(adj, adj.T)
            want = {tuple(sorted(p)) for p in s[key].tolist()}
            got = {(i, j) for i, j in torch.nonzero(adj).tolist() if i < j}
            assert got == want, key
            assert not adj[4].any()
    assert batch["Lpos"][1, 0, 2]  # the diagonal of the square is a line
    assert not batch["Lneg"][1, 0, 2]
    assert batch["Lneg"][1, 1, 3]  # the other diagonal is the hard negative


def test_normalisation_by_config_mean_and_std(data_root: Path) -> None:
    cfg = make_cfg()
    ds = RoofDataset(data_root, "valid", cfg, train=False)
    img = ds[0]["image"]
    mean, std = np.array(cfg.model.image.mean), np.array(cfg.model.image.stddev)
    want = torch.tensor((40 - mean) / std, dtype=torch.float32)
    assert torch.allclose(img, want[:, None, None].expand_as(img), atol=1e-6)
    assert not torch.allclose(want, torch.tensor(40.0))  # the value is really normalised


def test_static_lines(data_root: Path) -> None:
    ds = RoofDataset(data_root, "train", make_cfg(), train=True, seed=0)
    i = index_of(ds, "square")
    gt = {frozenset(map(tuple, line)) for line in ds.load(i)["lpos"][:, :, :2].tolist()}
    subsets, orders = set(), set()
    for seed in range(12):
        torch.manual_seed(seed)
        s = ds[i]
        assert s["lpre_label"].tolist() == [1, 1, 1, 0]
        pos = s["lpre"][:3].tolist()
        assert all(frozenset(map(tuple, line)) in gt for line in pos)
        subsets.add(frozenset(frozenset(map(tuple, line)) for line in pos))
        orders.update(tuple(map(tuple, line)) for line in pos)
    assert len(subsets) > 1  # a random subset of the 5 GT lines
    assert len(orders) > len(gt)  # both endpoint orders occur


def test_randomness_is_reproducible(data_root: Path) -> None:
    valid = RoofDataset(data_root, "valid", make_cfg(), train=False, seed=3)
    a, b = valid[0], valid[0]
    assert torch.equal(a["lpre"], b["lpre"])
    again = pickle.loads(pickle.dumps(valid))  # what a spawn worker receives
    assert torch.equal(again[0]["lpre"], a["lpre"])
    train = RoofDataset(data_root, "train", make_cfg(hflip=True), train=True, seed=3)
    torch.manual_seed(11)
    first = [train[1]["lpre"] for _ in range(4)]
    torch.manual_seed(11)
    second = [train[1]["lpre"] for _ in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert not all(torch.equal(first[0], x) for x in first[1:])  # but it varies from call to call


# ------------------------------------------------------------------------------------- augmentation
def _bright_along(image: np.ndarray, line_yx: np.ndarray) -> np.ndarray:
    """Image values (max over RGB) at 13 points of a heatmap-space (y, x) line, scaled to image pixels."""
    s = np.linspace(0.1, 0.9, 13)[:, None]
    pts = ((1 - s) * line_yx[0] + s * line_yx[1]) * (S / H)
    r, c = np.floor(pts).astype(int).T
    return image[r, c].max(axis=-1)


def _segment_distance(points: np.ndarray, seg: np.ndarray) -> np.ndarray:
    a, b = seg
    t = np.clip(((points - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1)


OPS = [
    {"hflip": True, "vflip": False, "rot90": 0},
    {"hflip": False, "vflip": True, "rot90": 0},
    {"hflip": False, "vflip": False, "rot90": 1},
    {"hflip": False, "vflip": False, "rot90": 2},
    {"hflip": False, "vflip": False, "rot90": 3},
    {"hflip": True, "vflip": True, "rot90": 1},
]


@pytest.mark.parametrize("op", OPS, ids=lambda o: f"h{int(o['hflip'])}v{int(o['vflip'])}r{o['rot90']}")
def test_augmentation_moves_labels_with_pixels(data_root: Path, op: dict[str, Any]) -> None:
    ds = RoofDataset(data_root, "train", make_cfg(), train=False)
    raw = ds.load(index_of(ds, "line"))
    line0 = raw["lpos"][0, :, :2]
    np.testing.assert_allclose(line0[:, ::-1] * (S / H), np.array(LINE), atol=1e-4)  # (x, y) as drawn
    assert (_bright_along(raw["image"], line0) > 200).all()
    t = transform_sample(raw, **op)
    line = t["lpos"][0, :, :2]
    # The drawn pixels moved to where the transformed label line is, and away from where it was.
    assert (_bright_along(t["image"], line) > 200).all()
    assert (_bright_along(t["image"], line0) < 60).mean() > 0.5
    # jmap / joff are those of the moved junctions: floor(v) + off + 0.5 = v.
    junc = t["junc"][:, :2].astype(np.float64)
    pix = np.floor(junc).astype(int)
    assert t["jmap"].sum() == len(junc)
    assert (t["jmap"][0, pix[:, 0], pix[:, 1]] == 1).all()
    off = t["joff"][0][:, pix[:, 0], pix[:, 1]].T
    np.testing.assert_allclose(pix + off + 0.5, junc, atol=1e-5)
    assert (off >= -0.5).all()
    assert (off < 0.5).all()
    np.testing.assert_array_equal(t["lpos"], t["junc"][t["Lpos"]])
    # The line map's strong pixels lie along the moved line (pixel centres within 1.5 px of the segment).
    on = np.argwhere(t["lmap"] > 0.5) + 0.5
    assert len(on) >= 10
    assert _segment_distance(on, line).max() < 1.5
    assert _segment_distance(np.argwhere(raw["lmap"] > 0.5) + 0.5, line).max() > 2.0


def test_transform_points_edges_and_inverse() -> None:
    pts = np.array([[0.0, 0.0], [3.25, 15.5], [15.9999, 7.0]], dtype=np.float32)
    flipped = transform_points(pts, (H, H), hflip=True, vflip=False, rot90=0)
    np.testing.assert_allclose(flipped, [[0, H - 1e-4], [3.25, 0.5], [15.9999, 9.0]], atol=1e-5)
    turned = transform_points(pts, (H, H), hflip=False, vflip=False, rot90=1)  # (y, x) -> (w - x, y)
    np.testing.assert_allclose(turned, [[H - 1e-4, 0], [0.5, 3.25], [9.0, 15.9999]], atol=1e-5)
    back = transform_points(turned, (H, H), hflip=False, vflip=False, rot90=3)
    np.testing.assert_allclose(back[1:], pts[1:], atol=1e-5)


@pytest.mark.parametrize("flag", ["hflip", "vflip", "rot90"])
def test_dataset_applies_each_enabled_augmentation(data_root: Path, flag: str) -> None:
    cfg = make_cfg(**{flag: True})
    ds = RoofDataset(data_root, "train", cfg, train=True)
    i = index_of(ds, "line")
    mean, std = np.array(cfg.model.image.mean), np.array(cfg.model.image.stddev)
    seen = set()
    for seed in range(10):
        torch.manual_seed(seed)
        s = ds[i]
        rgb = (s["image"].numpy().transpose(1, 2, 0) * std + mean).round()
        line = s["junc"].numpy()[s["Lpos"][0].numpy()]
        assert (_bright_along(rgb, line) > 200).all(), seed
        seen.add(tuple(np.round(line.ravel(), 3)))
    assert len(seen) >= 2  # the transform was applied on some draws and not on others
    frozen = RoofDataset(data_root, "train", cfg, train=False)  # evaluation: never augmented
    torch.manual_seed(0)
    assert all(np.array_equal(frozen[i]["junc"].numpy(), frozen.load(i)["junc"][:, :2]) for _ in range(4))


# ------------------------------------------------------------------------------------------- errors
def _copy_split(data_root: Path, tmp_path: Path, names: tuple[str, ...] = ("square",)) -> Path:
    folder = tmp_path / "d" / "train"
    folder.mkdir(parents=True)
    for n in names:
        shutil.copy(data_root / "train" / f"{n}.png", folder)
        shutil.copy(data_root / "train" / f"{n}_label.npz", folder)
    return folder


def _rewrite(path: Path, **changes: Any) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"jmap": np.zeros((1, 8, 8), np.float32)}, "field 'jmap' has shape (1, 8, 8), expected (1, 16, 16)"),
        ({"lneg": None}, "missing field 'lneg' (expected jmap, joff, lmap, junc, Lpos, Lneg, lpos, lneg)"),
        (
            {"Lpos": np.array([[0, 1], [1, 2], [2, 3], [3, 0], [0, 9]])},
            "field 'Lpos' has junction indices outside [0, 4)",
        ),
        ({"lpos": np.zeros((3, 2, 3), np.float32)}, "field 'lpos' has shape (3, 2, 3), expected (5, 2, 3)"),
        ({"junc": np.zeros((4, 3), np.int32)}, "field 'junc' has dtype int32, expected float32"),
        ({"joff": np.full((1, 2, 16, 16), np.nan, np.float32)}, "field 'joff' contains non-finite values"),
    ],
)
def test_malformed_label_names_file_and_field(
    data_root: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    folder = _copy_split(data_root, tmp_path)
    _rewrite(folder / "square_label.npz", **change)
    ds = RoofDataset(tmp_path / "d", "train", make_cfg(), train=False)
    with pytest.raises(DataError) as err:
        ds[0]
    assert str(err.value) == f"{folder / 'square_label.npz'}: {message}"


def test_unreadable_files_and_empty_splits(data_root: Path, tmp_path: Path) -> None:
    folder = _copy_split(data_root, tmp_path, ("square", "tri"))
    (folder / "square_label.npz").write_bytes(b"PK\x03\x04 truncated")
    (folder / "tri.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    ds = RoofDataset(tmp_path / "d", "train", make_cfg(), train=False)
    with pytest.raises(DataError, match=r"square_label\.npz: cannot read label file"):
        ds[0]
    with pytest.raises(DataError, match=r"tri\.png: cannot read image"):
        ds[1]
    (folder / "tri.png").unlink()
    with pytest.raises(DataError, match=r"tri\.png: image not found \(for label .*tri_label\.npz\)"):
        RoofDataset(tmp_path / "d", "train", make_cfg(), train=False)
    with pytest.raises(DataError) as err:
        RoofDataset(tmp_path / "d", "valid", make_cfg(), train=False)
    assert str(err.value) == f"{tmp_path / 'd' / 'valid'}: no samples (run `roofmap preprocess` first)"
    small = _copy_split(data_root, tmp_path / "small")
    Image.new("RGB", (32, 32)).save(small / "square.png")
    with pytest.raises(DataError, match=r"square\.png: image is 32×32, expected 64×64"):
        RoofDataset(tmp_path / "small" / "d", "train", make_cfg(), train=False)[0]


@pytest.mark.slow
def test_spawned_dataloader_workers(data_root: Path) -> None:
    loader = torch.utils.data.DataLoader(
        RoofDataset(data_root, "train", make_cfg(hflip=True, vflip=True, rot90=True), train=True, seed=0),
        batch_size=2,
        num_workers=2,
        collate_fn=collate,
        multiprocessing_context="spawn",
    )
    batches = list(loader)
    assert sum(len(b["name"]) for b in batches) == 3
    assert batches[0]["Lpos"].dtype == torch.bool
