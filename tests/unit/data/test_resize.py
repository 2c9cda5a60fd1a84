"""``data.resize``: stretch and letterbox geometry, preprocessing, dataset/evaluation frame and inference mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from roofmapnet.config import RootConfig, load_config
from roofmapnet.data.resize import ResizeGeometry, content_to_frame
from roofmapnet.models.outputs import Wireframe

SHAPES = [(65, 400), (400, 65), (300, 301), (128, 128), (1431, 97)]


@pytest.mark.parametrize("hw", SHAPES)
@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_forward_and_inverse_are_exact_inverses(hw: tuple[int, int], mode: str) -> None:
    g = ResizeGeometry.fit(hw, 256, mode)
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (100, 2)) * np.array(hw)
    for side in (256, 64):
        back = g.inverse(g.forward(pts, side), side)
        np.testing.assert_allclose(back, pts, rtol=0, atol=1e-9)
        xy = pts[:, ::-1]
        np.testing.assert_allclose(g.forward(xy, side, order="xy"), g.forward(pts, side)[:, ::-1], rtol=0, atol=0)
    # The image's edges go to the content's edges, in whole input pixels.
    top, left, ch, cw = g.content_box()
    corners = g.forward(np.array([[0.0, 0.0], [hw[0], hw[1]]]))
    np.testing.assert_allclose(corners, [[top, left], [top + ch, left + cw]], rtol=0, atol=1e-9)
    assert (top, left) == g.offset_yx
    assert (ch, cw) == g.content_hw


def test_letterbox_keeps_the_aspect_and_centres() -> None:
    g = ResizeGeometry.fit((65, 400), 256, "letterbox")
    assert g.content_hw == (42, 256)  # round(65 · 256 / 400) = 42
    assert g.offset_yx == (107, 0)  # (256 - 42) // 2
    sy, sx = g.scale_yx()
    assert sx == 256 / 400
    assert abs(sy - sx) < 0.01
    assert ResizeGeometry.fit((400, 65), 256, "letterbox").offset_yx == (0, 107)
    assert ResizeGeometry.fit((50, 50), 256, "letterbox").content_hw == (256, 256)
    with pytest.raises(ValueError, match="resize mode"):
        ResizeGeometry.fit((65, 400), 256, "crop")


def test_stretch_scale_is_bit_identical_to_the_old_per_axis_scale() -> None:
    for h, w in SHAPES:
        g = ResizeGeometry.fit((h, w), 512, "stretch")
        assert g.scale_yx(128) == (128 / h, 128 / w)
        assert g.offset_in(128) == (0.0, 0.0)


def test_to_stretch_frame_and_content_to_frame() -> None:
    g = ResizeGeometry.fit((65, 400), 256, "letterbox")
    pts = np.array([[0.0, 0.0], [65.0, 400.0], [32.5, 100.0]])
    stretched = ResizeGeometry.fit((65, 400), 256, "stretch")
    np.testing.assert_allclose(g.to_stretch_frame(g.forward(pts, 64), 64), stretched.forward(pts, 64), atol=1e-12)
    t = torch.tensor(g.forward(pts, 64))
    out = content_to_frame(t, g.content_box(64), 64)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), stretched.forward(pts, 64), atol=1e-12)


def test_resize_image_pads_with_the_mean_colour() -> None:
    rgb = np.full((65, 400, 3), 200, np.uint8)
    g = ResizeGeometry.fit((65, 400), 256, "letterbox")
    out = g.resize_image(rgb, (109.73, 103.832, 98.681))
    assert out.shape == (256, 256, 3)
    assert out.dtype == np.uint8
    assert (out[:107] == np.array([110, 104, 99])).all()
    assert (out[107 + 42 :] == np.array([110, 104, 99])).all()
    assert (out[107 : 107 + 42] == 200).all()


# ------------------------------------------------------------------------------------------------ preprocess
def _raw(tmp_path: Path, hw: tuple[int, int], lines_xy: list[list[float]]) -> Path:
    raw = tmp_path / "raw"
    (raw / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(raw / "images" / "a.png")
    for split in ("train", "valid"):
        (raw / f"{split}.json").write_text(json.dumps([{"filename": "a.png", "lines": lines_xy}]))
    return raw


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_preprocess_writes_labels_through_the_geometry(tmp_path: Path, mode: str) -> None:
    from roofmapnet.data.dataset import RoofDataset, collate
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess

    hw = (65, 400)
    lines = [[10.0, 5.0, 390.0, 60.0], [200.0, 0.0, 200.0, 65.0], [0.0, 32.5, 400.0, 32.5]]
    out = tmp_path / "data"
    summary = preprocess(_raw(tmp_path, hw, lines), out, PreprocessOptions(64, 16, resize=mode))
    assert summary.ok, summary.failures
    g = ResizeGeometry.fit(hw, 64, mode)
    with np.load(out / "valid" / "a_label.npz") as npz:
        junc = npz["junc"][:, :2]
        files = set(npz.files)
    pts = np.array(lines, dtype=np.float64).reshape(-1, 2)[:, ::-1]  # (y, x) endpoints
    want = np.clip(g.forward(pts, 16).astype(np.float32), 0, np.float32(16 - 1e-4))
    # Every stored junction is exactly an endpoint mapped by the geometry (then float32, as stored).
    assert all((np.abs(want - j).max(axis=1) == 0).any() for j in junc)
    # Back in image pixels they are the endpoints, up to the float32 rounding of the stored heatmap coordinates
    # (and the 1e-4 heatmap-pixel clip of the far edges, 400 / 16 · 1e-4 = 2.5e-3 px at most).
    back = g.inverse(junc.astype(np.float64), 16)
    inner = (pts[:, 0] < hw[0]) & (pts[:, 1] < hw[1])
    assert all(np.abs(back - p).max(axis=1).min() < 4e-5 for p in pts[inner])
    assert all(np.abs(back - p).max(axis=1).min() < 2.6e-3 for p in pts)
    image = np.asarray(Image.open(out / "valid" / "a.png"))
    assert image.shape == (64, 64, 3)
    if mode == "letterbox":
        assert "content_box" in files
        top, left, ch, cw = g.offset_yx[0], g.offset_yx[1], *g.content_hw
        assert (image[:top] == np.array([110, 104, 99])).all()
        cfg = RootConfig.model_validate(
            {"model": {"image_size": 64, "heatmap_size": 16, "depth": 2}, "data": {"resize": "letterbox"}}
        )
        batch = collate([RoofDataset(out, "valid", cfg, train=False)[0]])
        np.testing.assert_allclose(batch["content_box"][0].numpy(), g.content_box(16), atol=1e-6)
        assert ch < 64
        assert cw == 64
        assert left == 0
    else:
        assert "content_box" not in files


# ------------------------------------------------------------------------------------------------- inference
class _KnownLines(torch.nn.Module):
    """A stand-in network whose predictions are given lines (image pixels) placed through a geometry."""

    def __init__(self, lines_yx: np.ndarray, mode: str, side: int, heatmap: int) -> None:
        super().__init__()
        self.lines_yx, self.mode, self.side, self.heatmap = lines_yx, mode, side, heatmap
        self.inputs: list[torch.Tensor] = []

    def predict(self, images: torch.Tensor, image_sizes: list[tuple[int, int]], **_: object) -> list[Wireframe]:
        self.inputs.append(images)
        out = []
        for hw in image_sizes:
            g = ResizeGeometry.fit(hw, self.side, self.mode)
            lines = torch.tensor(g.forward(self.lines_yx.reshape(-1, 2), self.heatmap).reshape(-1, 2, 2))
            n = lines.shape[0]
            out.append(
                Wireframe(lines, torch.linspace(0.9, 0.5, n), lines[:, 0], torch.ones(n), (self.heatmap,) * 2, hw)
            )
        return out


@pytest.mark.parametrize("hw", [(65, 400), (400, 65), (97, 1431), (256, 256)])
@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_inference_maps_predictions_back_to_image_pixels_exactly(hw: tuple[int, int], mode: str) -> None:
    from roofmapnet.config.schema import InferConfig
    from roofmapnet.inference.predictor import Predictor

    cfg = load_config(None, {"model.image_size": 64, "model.heatmap_size": 16, "model.depth": 2, "data.resize": mode})
    h, w = hw
    lines_xy = np.array([[0.0, 0.0, w, h], [w * 0.25, h * 0.5, w * 0.75, h * 0.1], [w, 0.0, 0.0, h]])
    lines_yx = lines_xy.reshape(-1, 2, 2)[:, :, ::-1].copy()
    model = _KnownLines(lines_yx, mode, 64, 16)
    predictor = Predictor(model, cfg, "cpu")  # type: ignore[arg-type]
    image = np.full((h, w, 3), 180, np.uint8)
    (wf,) = predictor.predict_images([image], InferConfig(postprocess=False))
    np.testing.assert_allclose(wf.lines_xyxy(), lines_xy, rtol=0, atol=1e-5)
    np.testing.assert_allclose(wf.junctions_xy(), lines_xy[:, :2], rtol=0, atol=1e-5)
    # The network saw the image letterboxed: the padding is exactly 0 after normalisation.
    x = model.inputs[0][0]
    g = ResizeGeometry.fit(hw, 64, mode)
    top, left = g.offset_yx
    ch, cw = g.content_hw
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[top : top + ch, left : left + cw] = True
    assert (x[:, ~inside] == 0).all()
    assert (x[:, inside] != 0).all()


def test_evaluator_compares_letterboxed_lines_in_the_stretch_frame() -> None:
    from roofmapnet.evaluation.evaluator import Evaluator

    cfg = load_config(None, {"model.image_size": 64, "model.heatmap_size": 16, "model.depth": 2})
    g = ResizeGeometry.fit((65, 400), 64, "letterbox")
    gt_yx = np.array([[[5.0, 10.0], [60.0, 390.0]]])
    junc = torch.tensor(g.forward(gt_yx.reshape(-1, 2), 16), dtype=torch.float32)
    batch = {
        "junc": junc[None],
        "junc_mask": torch.ones(1, 2, dtype=torch.bool),
        "Lpos": torch.tensor([[[False, True, False], [True, False, False], [False, False, False]]]),
        "content_box": torch.tensor([g.content_box(16)], dtype=torch.float32),
        "name": ["a"],
    }

    class _Model:
        def decode(self, out: object) -> list[Wireframe]:
            lines = junc.double().reshape(1, 2, 2)
            return [Wireframe(lines, torch.ones(1), junc.double(), torch.ones(2), (16, 16), (64, 64))]

    ev = Evaluator(cfg)
    ev.update(_Model(), None, batch)  # type: ignore[arg-type]
    stretched = ResizeGeometry.fit((65, 400), 64, "stretch").forward(gt_yx.reshape(-1, 2), 128)
    np.testing.assert_allclose(ev.records[0].gt_lines.reshape(-1, 2), stretched, atol=1e-4)
    np.testing.assert_allclose(ev.records[0].lines.reshape(-1, 2), stretched, atol=1e-4)
    assert ev.compute()["sAP10"] == pytest.approx(100.0)
