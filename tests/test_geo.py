"""GIS-grade inference: GeoTIFF reading in windows, tiling, merging across seams, GeoJSON / GeoPackage outputs.

Most tests run a *stub model* on a synthetic GeoTIFF whose pixels encode their own raster coordinates: the stub
decodes the tile's position from its input and returns the scene's ground-truth roof lines clipped to the tile,
so tiling, merging and georeferencing are checked exactly.  One smoke test runs a tiny real RoofMapNet.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
import sys
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.config import RootConfig
from roofmapnet.config.schema import InferConfig, RasterConfig
from roofmapnet.errors import ConfigError, DataError, RoofMapError
from roofmapnet.inference.predictor import Predictor
from roofmapnet.inference.raster.grid import TileGrid, clip_segments, resolve_tiling
from roofmapnet.inference.raster.merge import MergeParams, merge_tiles
from roofmapnet.inference.raster.run import predict_raster
from roofmapnet.inference.raster.source import (
    ArraySource,
    Georeference,
    Window,
    is_geotiff,
    needs_raster_reader,
    tiff_tag_ids,
)
from roofmapnet.inference.runner import run_inference, run_info
from roofmapnet.inference.types import TileDetections
from roofmapnet.models.outputs import Wireframe
from roofmapnet.utils.io import TMP_PREFIX
from tests.tiny import TINY_MODEL as SHARED_TINY_MODEL

TINY_MODEL = {**SHARED_TINY_MODEL, "num_stacks": 1, "batch_size_eval": 8}
CFG = RootConfig.model_validate({"model": TINY_MODEL})
EPSG = 32632
ORIGIN = (500_000.0, 5_000_300.0)  # upper-left corner, UTM 32N (about 9° E, 45° N)
GSD = 0.25  # metres per pixel
H, W = 200, 260  # raster rows, columns
TILE, OVERLAP = 64, 16


# ------------------------------------------------------------------------------------------------ the scene
def _gable(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    ym = (y0 + y1) / 2
    return [
        [x0, y0, x1, y0],
        [x0, y1, x1, y1],
        [x0, y0, x0, ym],
        [x0, ym, x0, y1],
        [x1, y0, x1, ym],
        [x1, ym, x1, y1],
        [x0, ym, x1, ym],
    ]


def _hip(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    xm = (x0 + x1) / 2
    a, b = y0 + (x1 - x0) / 2, y1 - (x1 - x0) / 2
    return [
        [x0, y0, x1, y0],
        [x1, y0, x1, y1],
        [x1, y1, x0, y1],
        [x0, y1, x0, y0],
        [xm, a, xm, b],
        [x0, y0, xm, a],
        [x1, y0, xm, a],
        [x0, y1, xm, b],
        [x1, y1, xm, b],
    ]


def _pyramid(corners: Sequence[tuple[float, float]]) -> list[list[float]]:
    cx = sum(c[0] for c in corners) / 4
    cy = sum(c[1] for c in corners) / 4
    out = [[*corners[i], *corners[(i + 1) % 4]] for i in range(4)]
    out += [[*c, cx, cy] for c in corners]
    return out


#: Ground truth (raster pixels, x1 y1 x2 y2): a gable roof 130 px wide, a hip roof 150 px tall and a rotated
#: pyramid, each larger than one 64 px tile, so many lines cross tile seams.
GT_LINES = np.array(
    _gable(20.3, 30.7, 150.6, 110.3)
    + _hip(170.2, 20.6, 245.7, 170.4)
    + _pyramid([(30.4, 131.3), (112.7, 124.6), (118.2, 190.8), (36.9, 196.2)]),
    dtype=np.float64,
)
GT_SCORES = np.linspace(0.95, 0.55, len(GT_LINES))
GT_JUNCTIONS = np.unique(GT_LINES.reshape(-1, 2), axis=0)
PYRAMID = slice(16, 24)


def _encoded_scene(height: int, width: int) -> np.ndarray:
    """[3, H, W] uint8: band 1 = x mod 256, band 2 = y mod 256, band 3 = x // 256 + 16·(y // 256)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)]).astype(np.uint8)


def _transform() -> Any:
    from affine import Affine

    return Affine(GSD, 0.0, ORIGIN[0], 0.0, -GSD, ORIGIN[1])


def _write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = f"EPSG:{EPSG}",
    mask: np.ndarray | None = None,
    colorinterp: Sequence[Any] | None = None,
    nodata: float | None = None,
    **profile: Any,
) -> Path:
    rasterio = pytest.importorskip("rasterio")
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=height,
        width=width,
        count=count,
        dtype=data.dtype.name,
        crs=crs,
        transform=_transform(),
        nodata=nodata,
        **profile,
    ) as ds:
        ds.write(data)
        if mask is not None:
            ds.write_mask(mask)
        if colorinterp is not None:
            ds.colorinterp = colorinterp
    return path


class SceneStub(nn.Module):
    """Test double with RoofMapNet's ``predict`` signature.

    It decodes each tile's raster position from the coordinate-encoded pixels (any pixel that is not the
    nodata / padding fill) and returns the ground-truth lines clipped to the tile, in heatmap coordinates.
    """

    def __init__(
        self, cfg: RootConfig, lines: np.ndarray = GT_LINES, scores: np.ndarray = GT_SCORES, jitter: float = 0.0
    ) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.cfg = cfg
        self.lines = lines
        self.scores = scores
        self.jitter = jitter
        self.calls = 0
        self.tiles = 0

    def _offset(self, image: Tensor) -> tuple[int, int] | None:
        std = torch.tensor(self.cfg.model.image.stddev).view(3, 1, 1)
        mean = torch.tensor(self.cfg.model.image.mean).view(3, 1, 1)
        real = image.abs().sum(0) > 1e-6  # the fill (the mean colour) normalises to exactly 0
        if not bool(real.any()):
            return None
        r, c = (int(v) for v in torch.nonzero(real)[0])
        v = torch.round(image[:, r, c] * std[:, 0, 0] + mean[:, 0, 0]).to(torch.int64).tolist()
        gx, gy = v[0] + 256 * (v[2] % 16), v[1] + 256 * (v[2] // 16)
        return gx - c, gy - r

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        self.calls += 1
        hm = self.cfg.model.heatmap_size
        out = []
        for image, (h, w) in zip(images, image_sizes or [], strict=True):
            self.tiles += 1
            offset = self._offset(image)
            if offset is None:
                lines, scores = np.zeros((0, 4)), np.zeros(0)
                junc = np.zeros((0, 2))
            else:
                ox, oy = offset
                lines, keep = clip_segments(self.lines, (ox, oy, ox + w, oy + h))
                lines, scores = lines[keep] - [ox, oy, ox, oy], self.scores[keep]
                if self.jitter:
                    # An imprecise model: endpoints moved up to `jitter` px, and lines cut by the tile border
                    # stop up to 2 px short of it (different in every tile).
                    rng = np.random.default_rng(ox * 7919 + oy)
                    lines = lines + rng.uniform(-self.jitter, self.jitter, lines.shape)
                    lines = np.clip(
                        lines, 0.5 + 1.5 * rng.random(lines.shape), [w, h, w, h] - 2.0 * rng.random(lines.shape)
                    )
                jin = (
                    (GT_JUNCTIONS[:, 0] >= ox)
                    & (GT_JUNCTIONS[:, 0] < ox + w)
                    & (GT_JUNCTIONS[:, 1] >= oy)
                    & (GT_JUNCTIONS[:, 1] < oy + h)
                )
                junc = GT_JUNCTIONS[jin] - [ox, oy]
            scale = np.array([hm / h, hm / w])
            yx = lines.reshape(-1, 2, 2)[:, :, ::-1] * scale
            out.append(
                Wireframe(
                    lines=torch.tensor(yx.copy(), dtype=torch.float64),
                    scores=torch.tensor(scores, dtype=torch.float64),
                    junctions=torch.tensor(junc[:, ::-1] * scale, dtype=torch.float64),
                    junction_scores=torch.full((junc.shape[0],), 0.8, dtype=torch.float64),
                    heatmap_size=(hm, hm),
                    image_size=(int(h), int(w)),
                )
            )
        return out


def _predictor(stub: nn.Module | None = None) -> Predictor:
    return Predictor(stub or SceneStub(CFG), CFG, "cpu", checkpoint="stub.ckpt")  # type: ignore[arg-type]


OPTS = InferConfig(postprocess=False, workers=1, batch_size=8, outputs=("json", "geojson"))
RASTER = RasterConfig(tile=TILE, overlap=OVERLAP)


def _with(options: InferConfig, raster: RasterConfig) -> InferConfig:
    """``options`` with other raster options."""
    return options.model_copy(update={"raster": raster})


def _match(found: np.ndarray, expected: np.ndarray, tol: float) -> np.ndarray:
    """For each expected segment, how many found segments equal it (either orientation) within ``tol``."""
    f = found.reshape(-1, 1, 4)
    e = expected.reshape(1, -1, 4)
    same = np.abs(f - e).max(axis=2) <= tol
    flipped = np.abs(f - e[:, :, [2, 3, 0, 1]]).max(axis=2) <= tol
    return (same | flipped).sum(axis=0)


@pytest.fixture(scope="module")
def scene_tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_geotiff(tmp_path_factory.mktemp("scene") / "scene.tif", _encoded_scene(H, W))


@pytest.fixture(scope="module")
def scene_run(scene_tif: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("out")
    report = run_inference(_predictor(), [scene_tif], out, _with(OPTS, RASTER))
    return out, report


# ------------------------------------------------------------------------------------------------ grid
def test_tile_grid_covers_and_cores_partition() -> None:
    grid = TileGrid.build(H, W, TILE, OVERLAP)
    assert grid.ys.tolist() == [0, 48, 96, 136]  # stride 48, last tile moved back to end at 200
    assert grid.xs.tolist() == [0, 48, 96, 144, 192, 196]
    assert len(grid) == 24
    np.testing.assert_allclose(grid.core_y, [0, 56, 104, 148, 200])
    np.testing.assert_allclose(grid.core_x, [0, 56, 104, 152, 200, 226, 260])
    # Every pixel centre has one owner, whose tile contains it with ≥ overlap / 2 margin from interior edges.
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    owner = grid.owner(xx.ravel(), yy.ravel())
    ext = grid.extents(owner)
    assert np.all((xx.ravel() >= ext[:, 0]) & (xx.ravel() <= ext[:, 2]))
    assert np.all((yy.ravel() >= ext[:, 1]) & (yy.ravel() <= ext[:, 3]))
    interior_left = ext[:, 0] > 0
    assert np.all(xx.ravel()[interior_left] - ext[interior_left, 0] >= OVERLAP / 2)
    assert set(np.unique(owner).tolist()) == set(range(24))
    # A raster smaller than a tile: one padded tile, reads clipped to the raster.
    small = TileGrid.build(40, 300, 64, 8)
    assert (small.rows, small.cols) == (1, 6)  # stride 56: ceil(236 / 56) + 1
    assert small.window(0) == Window(0, 0, 40, 64)
    assert small.window(5) == Window(0, 236, 40, 64)
    with pytest.raises(ValueError, match="overlap"):
        TileGrid.build(100, 100, 64, 32)


def test_resolve_tiling_defaults_and_gsd() -> None:
    assert resolve_tiling(RasterConfig(), 512, 0.1) == (512, 64)
    assert resolve_tiling(RasterConfig(gsd=0.1), 512, 0.05) == (1024, 128)  # finer raster: bigger tile
    assert resolve_tiling(RasterConfig(gsd=0.2, overlap=10), 512, 0.4) == (256, 10)
    assert resolve_tiling(RasterConfig(tile=300, gsd=0.2), 512, 0.4) == (300, 38)  # --tile wins
    with pytest.raises(DataError, match=r"x\.tif: infer\.raster\.gsd 0\.1 needs"):
        resolve_tiling(RasterConfig(gsd=0.1), 512, None, "x.tif")
    with pytest.raises(DataError, match=r"infer\.raster\.overlap 300"):
        resolve_tiling(RasterConfig(overlap=300), 512, None, "x.tif")
    for bad in ({"tile": 8}, {"tile": 64, "overlap": 32}, {"gsd": -1.0}, {"crs": "utm"}, {"bands": (1, 2)}):
        with pytest.raises(RoofMapError) as err:
            RasterConfig.from_options(**bad)
        assert err.value.exit_code == 2
    assert RasterConfig.from_options(bands="4, 3,2").bands == (4, 3, 2)
    assert RasterConfig.from_options(bands=None).bands is None
    for text in ("1,2", "0", "a,b,c"):
        with pytest.raises(ConfigError, match=r"infer\.raster\.bands"):
            RasterConfig.from_options(bands=text)


def test_clip_segments() -> None:
    seg = np.array(
        [
            [-10.0, 5.0, 30.0, 5.0],  # crosses the box
            [1.0, 1.0, 2.0, 2.0],  # inside
            [50.0, 50.0, 60.0, 60.0],  # outside
            [0.0, 15.0, 15.0, 0.0],  # diagonal through two sides
            [0.0, 20.0, 20.0, 0.0],  # touches a corner only: nothing left
            [12.0, 0.0, 12.0, 9.0],  # parallel to a side, outside
        ]
    )
    out, ok = clip_segments(seg, (0.0, 0.0, 10.0, 10.0))
    assert ok.tolist() == [True, True, False, True, False, False]
    np.testing.assert_allclose(out[0], [0, 5, 10, 5])
    np.testing.assert_allclose(out[1], [1, 1, 2, 2])
    np.testing.assert_allclose(out[3], [5, 10, 10, 5])
    np.testing.assert_array_equal(out[2], seg[2])  # rows with nothing left are returned unchanged


# ------------------------------------------------------------------------------------------------ merge
def _det(lines: list[list[float]], tiles: list[int], scores: list[float] | None = None) -> TileDetections:
    n = len(lines)
    return TileDetections(
        lines=np.array(lines, dtype=np.float64).reshape(-1, 4),
        scores=np.array(scores or [0.5] * n, dtype=np.float64),
        tiles=np.array(tiles, dtype=np.int64),
    )


def test_merge_joins_pieces_cut_by_a_seam_and_drops_duplicates() -> None:
    grid = TileGrid.build(64, 112, 64, 16)  # two tiles: x [0, 64) and [48, 112); core boundary x = 56
    params = MergeParams(distance=3.0, gap=4.0)
    # A line crossing the seam: tile 0 sees it up to its border, tile 1 from its border.
    merged = merge_tiles(grid, _det([[10, 20.2, 64, 20.4], [48, 20.3, 100, 20.5]], [0, 1], [0.7, 0.9]), params)
    np.testing.assert_allclose(merged.lines, [[10, 20.2, 100, 20.5]])
    assert merged.scores.tolist() == [0.9]
    assert merged.pieces.tolist() == [2]
    # A short line inside the overlap strip seen by both tiles, on both sides of the core boundary: one kept.
    merged = merge_tiles(grid, _det([[50, 30, 60, 40], [50.2, 30.1, 60.1, 40.2]], [0, 1], [0.6, 0.8]), params)
    assert merged.lines.shape == (1, 4)
    assert merged.scores.tolist() == [0.8]
    # Same, but wholly inside tile 0's core: tile 1's copy is dropped by the ownership rule.
    merged = merge_tiles(grid, _det([[49, 30, 54, 40], [49.1, 30.1, 54.1, 40.1]], [0, 1], [0.6, 0.8]), params)
    np.testing.assert_allclose(merged.lines, [[49, 30, 54, 40]])
    assert merged.pieces.tolist() == [1]
    # Two parallel lines 6 px apart (more than `distance`) stay two lines.
    merged = merge_tiles(grid, _det([[10, 20, 64, 20], [48, 26, 100, 26]], [0, 1]), params)
    assert merged.lines.shape == (2, 4)


def test_merge_touching_pieces_only_at_tile_borders() -> None:
    grid = TileGrid.build(64, 128, 64, 0)  # no overlap: tiles x [0, 64) and [64, 128)
    params = MergeParams(distance=3.0, gap=4.0)
    # Cut by the border (a 1.5 px gap where the model stopped short): joined.
    merged = merge_tiles(grid, _det([[10, 30, 63, 30], [64.5, 30.2, 120, 30.2]], [0, 1]), params)
    np.testing.assert_allclose(merged.lines, [[10, 30, 120, 30.2]])
    # Two collinear roof edges meeting at a real junction far from any tile border: not fused.
    grid2 = TileGrid.build(64, 112, 64, 16)
    lines = [[10, 30, 52, 30], [52, 30, 100, 30], [48, 30, 52, 30], [52, 30, 100, 30]]
    merged = merge_tiles(grid2, _det(lines, [0, 0, 1, 1]), params)
    got = sorted(merged.lines.round(6).tolist())
    assert got == [[10, 30, 52, 30], [52, 30, 100, 30]]
    assert sorted(merged.pieces.tolist()) == [1, 2]


def test_merge_junctions_by_ownership_and_radius() -> None:
    grid = TileGrid.build(64, 112, 64, 16)
    det = TileDetections(
        junctions=np.array([[55.9, 10.0], [56.3, 10.1], [50.0, 40.0], [50.0, 40.0], [20.0, 5.0]]),
        junction_scores=np.array([0.4, 0.7, 0.9, 0.3, 0.5]),
        junction_tiles=np.array([0, 1, 0, 1, 0]),
    )
    merged = merge_tiles(grid, det, MergeParams(distance=2.0, gap=3.0))
    # (50, 40) seen by both tiles is owned by tile 0; the pair straddling x = 56 keeps the better score.
    assert merged.junctions.tolist() == [[50.0, 40.0], [56.3, 10.1], [20.0, 5.0]]
    assert merged.junction_scores.tolist() == [0.9, 0.7, 0.5]


def test_merge_of_the_stub_scene_in_memory_gives_each_gt_line_once() -> None:
    """Plain image path (no rasterio): ArraySource + stub → every GT line exactly once, exact coordinates."""
    rgb = np.moveaxis(_encoded_scene(H, W), 0, -1)
    stub = SceneStub(CFG)
    pred = predict_raster(_predictor(stub), ArraySource("scene.png", rgb), _with(OPTS, RASTER))
    assert pred.stats.tiles == pred.stats.tiles_run == 24
    assert stub.tiles == 24
    assert stub.calls == 3  # 24 tiles in batches of 8
    assert pred.stats.lines_before_merge > 2 * len(GT_LINES)  # many pieces ...
    counts = _match(pred.merged.lines, GT_LINES, 1e-6)
    assert counts.tolist() == [1] * len(GT_LINES)  # ... merged into each GT line exactly once
    assert pred.merged.lines.shape[0] == len(GT_LINES)
    np.testing.assert_allclose(np.sort(pred.merged.scores), np.sort(GT_SCORES))
    assert pred.merged.pieces.max() >= 3  # the long eaves span three or more tiles
    assert _match(pred.merged.junctions.repeat(2, axis=1), GT_JUNCTIONS.repeat(2, axis=1), 1e-6).tolist() == [1] * len(
        GT_JUNCTIONS
    )


def test_merge_is_robust_to_imprecise_tile_predictions() -> None:
    """With ±0.7 px endpoint noise and lines stopping short of tile borders, every GT line is still output once."""
    rgb = np.moveaxis(_encoded_scene(H, W), 0, -1)
    pred = predict_raster(_predictor(SceneStub(CFG, jitter=0.7)), ArraySource("scene.png", rgb), _with(OPTS, RASTER))
    assert pred.merged.lines.shape[0] == len(GT_LINES)
    assert _match(pred.merged.lines, GT_LINES, 2.0).tolist() == [1] * len(GT_LINES)
    # No overlap: pieces cut by a border only touch (gaps of up to ~5 px) and are joined, while collinear
    # edges meeting at a junction stay apart.  (Junctions here are ≥ 7 px from the borders at 64, 128, 192.)
    lines = np.array(
        [*_gable(20.3, 35.3, 170.6, 115.9), [10.5, 150.4, 250.3, 185.2], [100.4, 5.3, 230.2, 180.1]], dtype=np.float64
    )
    stub = SceneStub(CFG, lines=lines, scores=np.linspace(0.9, 0.5, len(lines)), jitter=0.7)
    pred = predict_raster(
        _predictor(stub), ArraySource("scene.png", rgb), _with(OPTS, RasterConfig(tile=TILE, overlap=0))
    )
    assert _match(pred.merged.lines, lines, 2.5).tolist() == [1] * len(lines)
    assert pred.merged.lines.shape[0] == len(lines)
    assert pred.merged.pieces.max() >= 4  # the long diagonals were joined across several borders


# ------------------------------------------------------------------------------------------------ detection
def test_geotiff_detection_without_rasterio(tmp_path: Path) -> None:
    from PIL import Image, TiffImagePlugin, TiffTags

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[33550] = (GSD, GSD, 0.0)
    ifd.tagtype[33550] = TiffTags.DOUBLE
    ifd[33922] = (0.0, 0.0, 0.0, *ORIGIN, 0.0)
    ifd.tagtype[33922] = TiffTags.DOUBLE
    img = Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8))
    img.save(tmp_path / "geo.tif", tiffinfo=ifd)
    img.save(tmp_path / "plain.tif")
    img.save(tmp_path / "plain.png")
    (tmp_path / "world.tif").write_bytes((tmp_path / "plain.tif").read_bytes())
    (tmp_path / "world.tfw").write_text("0.25\n0\n0\n-0.25\n500000\n5000300\n")
    (tmp_path / "data.vrt").write_text("<VRTDataset/>")
    tags = tiff_tag_ids(tmp_path / "geo.tif")
    assert tags is not None
    assert {33550, 33922} <= tags
    assert is_geotiff(tmp_path / "geo.tif")
    assert is_geotiff(tmp_path / "world.tif")
    assert not is_geotiff(tmp_path / "plain.tif")
    assert tiff_tag_ids(tmp_path / "plain.png") is None
    assert [needs_raster_reader(tmp_path / n) for n in ("geo.tif", "plain.tif", "plain.png", "data.vrt")] == [
        True,
        False,
        False,
        True,
    ]


def test_geotiff_without_the_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_ckpt: Path
) -> None:
    from PIL import Image, TiffImagePlugin, TiffTags

    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[33550] = (GSD, GSD, 0.0)
    ifd.tagtype[33550] = TiffTags.DOUBLE
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "ortho.tif", tiffinfo=ifd)
    for name in [m for m in sys.modules if m == "rasterio" or m.startswith("rasterio.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rasterio", None)  # import rasterio → ImportError
    report = run_inference(_predictor(), [tmp_path / "ortho.tif"], tmp_path / "out", OPTS)
    assert report.exit_code == 1
    (failed,) = report.failed
    assert failed.path == str(tmp_path / "ortho.tif")
    assert "'geo' extra" in failed.reason
    assert "pip install 'roofmapnet[geo]'" in failed.reason
    args = ["infer", "-k", str(tiny_ckpt), str(tmp_path / "ortho.tif"), "-o", str(tmp_path / "cli"), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert f"skipped: {tmp_path / 'ortho.tif'}: a georeferenced raster needs the optional 'geo' extra" in text
    assert "pip install 'roofmapnet[geo]'" in text


# ------------------------------------------------------------------------------------------------ reading
def test_band_selection_colour_interpretation_and_rescaling(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.enums import ColorInterp

    from roofmapnet.inference.raster.source import RasterioSource

    four = np.stack([np.full((32, 40), v, dtype=np.uint8) for v in (10, 20, 30, 40)])
    path = _write_geotiff(tmp_path / "bgrn.tif", four, photometric="MINISBLACK")
    with RasterioSource(path, bands=(4, 3, 2)) as src:
        assert src.read(Window(0, 0, 8, 8)).rgb[0, 0].tolist() == [40, 30, 20]
    with RasterioSource(path, bands=(2,)) as src:
        assert src.read(Window(0, 0, 8, 8)).rgb[0, 0].tolist() == [20, 20, 20]
    with pytest.raises(DataError, match=r"bgrn\.tif: infer\.raster\.bands 5,1,2: the raster has 4 band"):
        RasterioSource(path, bands=(5, 1, 2))
    # Default: the bands labelled red, green, blue, in that order.
    labelled = _write_geotiff(
        tmp_path / "labelled.tif",
        four,
        photometric="MINISBLACK",
        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined],
    )
    with RasterioSource(labelled) as src:
        assert src.bands == (3, 2, 1)
        assert src.read(Window(0, 0, 4, 4)).rgb[1, 1].tolist() == [30, 20, 10]
    # uint16: linear stretch of the 2nd-98th percentiles to 0-255, per band, the same for every window.
    ramp = np.tile(np.linspace(1000, 5000, 101).astype(np.uint16), (3, 20, 1))
    ramp[2] //= 2
    p16 = _write_geotiff(tmp_path / "u16.tif", ramp)
    with RasterioSource(p16) as src:
        lo = np.percentile(ramp[0].astype(float), 2)
        hi = np.percentile(ramp[0].astype(float), 98)
        px = src.read(Window(3, 0, 2, 101)).rgb
        expected = np.clip((ramp[0, 3, :].astype(np.float32) - lo) * (255 / (hi - lo)), 0, 255)
        np.testing.assert_allclose(px[0, :, 0], expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(px[0, :, 2], expected, rtol=1e-5, atol=1e-3)  # band 3 stretched by its own range
        assert px.min() == 0.0
        assert px.max() == 255.0
        assert src.description["rescale"]["low"][0] == pytest.approx(lo)
    # float32 with NaN: NaN pixels are nodata.
    fl = np.ones((1, 16, 16), dtype=np.float32)
    fl[0, :4, :4] = np.nan
    with RasterioSource(_write_geotiff(tmp_path / "f.tif", fl)) as src:
        tile = src.read(Window(0, 0, 8, 8))
        assert tile.valid is not None
        assert int((~tile.valid).sum()) == 16
    assert rasterio is not None


def test_reads_are_windows_and_memory_does_not_grow_with_raster_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rasterio = pytest.importorskip("rasterio")
    from rasterio.windows import Window as RioWindow

    from roofmapnet.inference.raster.source import RasterioSource

    class Empty(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def predict(self, images: Tensor, image_sizes: Sequence[tuple[int, int]], **_: Any) -> list[Wireframe]:
            z = torch.zeros((0, 2, 2))
            return [Wireframe(z, torch.zeros(0), torch.zeros((0, 2)), torch.zeros(0), (16, 16), s) for s in image_sizes]

    def make(side: int) -> Path:
        path = tmp_path / f"r{side}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            height=side,
            width=side,
            count=3,
            dtype="uint8",
            crs=f"EPSG:{EPSG}",
            transform=_transform(),
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="deflate",
        ) as ds:
            band = np.broadcast_to(np.arange(side, dtype=np.uint8)[None, None, :], (3, 512, side))
            for row in range(0, side, 512):
                ds.write(band, window=RioWindow(0, row, side, 512))
        return path

    reads: list[tuple[int, int]] = []
    original = RasterioSource.read

    def spy(self: RasterioSource, window: Window) -> Any:
        reads.append((window.height, window.width))
        return original(self, window)

    monkeypatch.setattr(RasterioSource, "read", spy)
    opts = InferConfig(postprocess=False, workers=1, batch_size=8, raster=RasterConfig(tile=256, overlap=32))
    peaks = {}
    for side in (1024, 4096):
        path = make(side)
        reads.clear()
        with RasterioSource(path) as src:
            tracemalloc.start()
            pred = predict_raster(_predictor(Empty()), src, opts)
            peaks[side] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert len(reads) == pred.stats.tiles == len(pred.grid)
        assert set(reads) == {(256, 256)}  # only tile-sized windows are read, never the raster
    raster_bytes = 4096 * 4096 * 3
    assert peaks[4096] < raster_bytes / 8  # far below one copy of the raster
    assert peaks[4096] < 1.5 * peaks[1024] + 2**20  # 16× the pixels, about the same peak


# ------------------------------------------------------------------------------------------------ end to end
def _map(xy: np.ndarray) -> np.ndarray:
    return np.stack([ORIGIN[0] + GSD * xy[..., 0], ORIGIN[1] - GSD * xy[..., 1]], axis=-1)


def test_geojson_wgs84_default_and_known_lines_at_map_coordinates(scene_run: tuple[Path, Any], scene_tif: Path) -> None:
    from rasterio.warp import transform

    out, report = scene_run
    assert report.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["scene.geojson", "scene.gpkg", "scene.json"]
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]
    (stats,) = report.tiling
    assert (stats.tiles, stats.tile, stats.overlap) == (24, TILE, OVERLAP)
    doc = json.loads((out / "scene.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    assert "crs" not in doc  # RFC 7946: WGS 84 longitude / latitude, no crs member
    lines = [f for f in doc["features"] if f["properties"]["kind"] == "line"]
    assert len(lines) == len(GT_LINES)  # every line once, including the ones crossing seams
    lonlat = np.array([f["geometry"]["coordinates"] for f in lines])  # [L, 2, 2]
    assert np.all((lonlat[..., 0] > 8.9) & (lonlat[..., 0] < 9.1) & (lonlat[..., 1] > 45.1) & (lonlat[..., 1] < 45.2))
    xs, ys = transform("EPSG:4326", f"EPSG:{EPSG}", lonlat[..., 0].ravel(), lonlat[..., 1].ravel())
    back = np.stack([xs, ys], axis=1).reshape(-1, 4)
    expected = _map(GT_LINES.reshape(-1, 2, 2)).reshape(-1, 4)
    # Each known roof line lands at its known map coordinates within half a pixel (0.125 m).
    assert _match(back, expected, 0.5 * GSD).tolist() == [1] * len(GT_LINES)
    assert np.allclose(doc["bbox"][:2], lonlat.reshape(-1, 2).min(axis=0), atol=1e-9)
    # The pixel JSON carries the georeference and the raster-pixel lines.
    pj = json.loads((out / "scene.json").read_text())
    assert pj["georeference"]["epsg"] == EPSG
    assert pj["georeference"]["transform"] == [GSD, 0.0, ORIGIN[0], 0.0, -GSD, ORIGIN[1]]
    assert _match(np.array(pj["lines"]), GT_LINES, 1e-3).tolist() == [1] * len(GT_LINES)
    assert pj["tiling"]["tiles"] == 24
    assert scene_tif.name in pj["image"]


def test_geojson_native_crs_member(scene_tif: Path, tmp_path: Path) -> None:
    raster = RasterConfig(tile=TILE, overlap=OVERLAP, crs="native", vector_formats=())
    report = run_inference(_predictor(), [scene_tif], tmp_path, _with(OPTS, raster))
    assert report.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.geojson", "scene.json"]
    doc = json.loads((tmp_path / "scene.geojson").read_text())
    assert doc["crs"] == {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{EPSG}"}}
    lines = np.array([f["geometry"]["coordinates"] for f in doc["features"] if f["geometry"]["type"] == "LineString"])
    expected = _map(GT_LINES.reshape(-1, 2, 2)).reshape(-1, 4)
    assert _match(lines.reshape(-1, 4), expected, 0.5 * GSD).tolist() == [1] * len(GT_LINES)
    # A ridge crossing three tiles (x 20.3 → 150.6 at y 70.5) is output once, with its exact end points.
    ridge = _map(np.array([[20.3, 70.5], [150.6, 70.5]])).reshape(4)
    assert _match(lines.reshape(-1, 4), ridge[None], 1e-3).tolist() == [1]
    points = np.array([f["geometry"]["coordinates"] for f in doc["features"] if f["geometry"]["type"] == "Point"])
    assert _match(points.repeat(2, 1), _map(GT_JUNCTIONS).repeat(2, 1), 0.5 * GSD).tolist() == [1] * len(GT_JUNCTIONS)


def _gpkg_geometry(blob: bytes) -> tuple[int, list[float]]:
    assert blob[:2] == b"GP"
    assert blob[2] == 0  # version
    flags = blob[3]
    assert flags & 1  # little-endian
    srs_id = struct.unpack("<i", blob[4:8])[0]
    env = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 7]
    wkb = blob[8 + env :]
    assert wkb[0] == 1
    kind = struct.unpack("<I", wkb[1:5])[0]
    if kind == 1:
        return srs_id, list(struct.unpack("<2d", wkb[5:21]))
    n = struct.unpack("<I", wkb[5:9])[0]
    return srs_id, list(struct.unpack(f"<{2 * n}d", wkb[9 : 9 + 16 * n]))


def test_geopackage_layers_crs_and_geometries(scene_run: tuple[Path, Any]) -> None:
    out, _ = scene_run
    con = sqlite3.connect(out / "scene.gpkg")
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert con.execute("PRAGMA user_version").fetchone()[0] >= 10300  # GeoPackage 1.3 or later (GDAL: 1.4)
        contents = con.execute("SELECT table_name, data_type, srs_id FROM gpkg_contents ORDER BY table_name").fetchall()
        assert contents == [("facets", "features", EPSG), ("junctions", "features", EPSG), ("lines", "features", EPSG)]
        srs = con.execute(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
            (EPSG,),
        ).fetchone()
        assert srs[:2] == ("EPSG", EPSG)
        assert "UTM zone 32N" in srs[2]
        cols = con.execute(
            "SELECT table_name, geometry_type_name, srs_id FROM gpkg_geometry_columns ORDER BY 1"
        ).fetchall()
        assert cols == [("facets", "POLYGON", EPSG), ("junctions", "POINT", EPSG), ("lines", "LINESTRING", EPSG)]
        rows = con.execute("SELECT geom, score, pieces FROM lines ORDER BY fid").fetchall()
        jrows = con.execute("SELECT geom, score FROM junctions").fetchall()
    finally:
        con.close()
    assert len(rows) == len(GT_LINES)
    assert len(jrows) == len(GT_JUNCTIONS)
    decoded = [_gpkg_geometry(r[0]) for r in rows]
    assert {d[0] for d in decoded} == {EPSG}
    coords = np.array([d[1] for d in decoded])
    expected = _map(GT_LINES.reshape(-1, 2, 2)).reshape(-1, 4)
    assert _match(coords, expected, 0.5 * GSD).tolist() == [1] * len(GT_LINES)
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(sorted(scores), sorted(GT_SCORES))
    assert max(r[2] for r in rows) >= 3
    assert {r[1] for r in jrows} == {0.8}


def test_geopackage_reads_in_gdal(scene_run: tuple[Path, Any]) -> None:
    """GDAL's own GeoPackage driver (through pyogrio) opens the layers with the right CRS and geometries."""
    pyogrio = pytest.importorskip("pyogrio")
    out, _ = scene_run
    path = out / "scene.gpkg"
    layers = dict(pyogrio.list_layers(path))
    assert layers == {"lines": "LineString", "junctions": "Point", "facets": "Polygon"}
    info = pyogrio.read_info(path, layer="lines")
    assert info["crs"] == f"EPSG:{EPSG}"
    assert info["features"] == len(GT_LINES)
    assert list(info["fields"]) == ["index", "score", "length_px", "length_m", "azimuth", "pieces", "tile", "source"]
    _, _, geometry, fields = pyogrio.raw.read(path, layer="lines")
    coords = np.array([struct.unpack("<4d", g[9:41]) for g in geometry])  # ISO WKB LineString of 2 points
    assert _match(coords, _map(GT_LINES.reshape(-1, 2, 2)).reshape(-1, 4), 0.5 * GSD).tolist() == [1] * len(GT_LINES)
    np.testing.assert_allclose(np.sort(fields[list(info["fields"]).index("score")]), np.sort(GT_SCORES))


def test_streamed_writers_equal_the_documents(scene_tif: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked JSON writing (7 rows per chunk here) gives the same document; GDAL writes every vector output."""
    from roofmapnet.inference.outputs import geo as geowriters
    from roofmapnet.inference.raster.source import RasterioSource

    monkeypatch.setattr(geowriters, "WRITE_CHUNK", 7)
    predictor = _predictor()
    with RasterioSource(scene_tif) as src:
        pred = predict_raster(predictor, src, _with(OPTS, RASTER))
        info = run_info(predictor, OPTS)
        for crs in ("wgs84", "native"):
            options = _with(OPTS, RasterConfig(tile=TILE, overlap=OVERLAP, crs=crs))
            written = geowriters.write_raster_outputs(
                tmp_path / crs, "s", pred.merged, src, info, options, tiling=pred.tiling_record(), prediction=pred
            )
            assert [p.name for p in written] == ["s.json", "s.geojson", "s.gpkg"]
            doc = json.loads((tmp_path / crs / "s.geojson").read_text())
            kinds = [f["properties"]["kind"] for f in doc["features"]]
            assert kinds.count("line") == len(GT_LINES)
            assert kinds.count("junction") == len(GT_JUNCTIONS)
            assert kinds.count("facet") > 0
            assert ("crs" in doc) == (crs == "native")
        doc = json.loads((tmp_path / "native" / "s.json").read_text())
        assert doc == geowriters.raster_json(pred.merged, src, info, OPTS, pred.tiling_record())
        assert len(doc["lines"]) == len(doc["pieces"]) == len(GT_LINES)
    con = sqlite3.connect(tmp_path / "native" / "s.gpkg")
    try:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT fid) FROM lines").fetchone() == (len(GT_LINES),) * 2
    finally:
        con.close()


def test_nodata_areas_produce_nothing(tmp_path: Path) -> None:
    mask = np.full((H, W), 255, dtype=np.uint8)
    mask[120:, :130] = 0  # the pyramid roof lies entirely in nodata
    path = _write_geotiff(tmp_path / "holes.tif", _encoded_scene(H, W), mask=mask)
    stub = SceneStub(CFG)
    raster = RasterConfig(tile=TILE, overlap=OVERLAP, crs="native")
    report = run_inference(_predictor(stub), [path], tmp_path / "out", _with(OPTS, raster))
    assert report.exit_code == 0
    (stats,) = report.tiling
    assert stats.tiles == 24
    assert stats.tiles_run == 22  # the two tiles wholly inside the hole are not run
    assert stub.tiles == 22
    doc = json.loads((tmp_path / "out" / "holes.json").read_text())
    found = np.array(doc["lines"])
    keep = np.ones(len(GT_LINES), dtype=bool)
    keep[PYRAMID] = False
    assert _match(found, GT_LINES[keep], 1e-3).tolist() == [1] * int(keep.sum())
    assert found.shape[0] == keep.sum()  # nothing from the nodata area
    pts = found.reshape(-1, 2, 2).mean(axis=1)
    assert not np.any((pts[:, 0] < 130) & (pts[:, 1] > 120))
    junc = np.array(doc["junctions"])
    assert not np.any((junc[:, 0] < 130) & (junc[:, 1] >= 120))


def test_plain_images_keep_pixel_outputs(tmp_path: Path) -> None:
    from PIL import Image

    rgb = np.moveaxis(_encoded_scene(H, W), 0, -1)
    Image.fromarray(rgb).save(tmp_path / "scene.png")
    # Without --tile a PNG takes the single-image path (resized whole; the stub sees one image).
    stub = SceneStub(CFG)
    report = run_inference(_predictor(stub), [tmp_path / "scene.png"], tmp_path / "whole", OPTS)
    assert report.exit_code == 0
    assert report.tiling == []
    assert stub.tiles == 1
    # With --tile it is tiled and merged, outputs stay in pixels (no GeoPackage, GeoJSON not georeferenced).
    stub = SceneStub(CFG)
    tiled = RasterConfig(tile=TILE, overlap=OVERLAP, tile_all=True)
    report = run_inference(_predictor(stub), [tmp_path / "scene.png"], tmp_path / "tiled", _with(OPTS, tiled))
    assert report.exit_code == 0
    assert stub.tiles == 24
    assert sorted(p.name for p in (tmp_path / "tiled").iterdir()) == ["scene.geojson", "scene.json"]
    fc = json.loads((tmp_path / "tiled" / "scene.geojson").read_text())
    assert fc["properties"]["georeferenced"] is False
    doc = json.loads((tmp_path / "tiled" / "scene.json").read_text())
    assert doc["georeference"] is None
    assert _match(np.array(doc["lines"]), GT_LINES, 1e-3).tolist() == [1] * len(GT_LINES)


def test_georeference_pixel_to_map_and_ground_resolution() -> None:
    geo = Georeference(transform=(0.5, 0.0, 100.0, 0.0, -0.5, 200.0), crs_wkt="x", metres_per_unit=0.3048)
    np.testing.assert_allclose(geo.pixel_to_map(np.array([[2.0, 4.0]])), [[101.0, 198.0]])
    assert geo.ground_resolution_m(10, 10) == pytest.approx(0.5 * 0.3048)
    geographic = Georeference(transform=(1e-5, 0, 9.0, 0, -1e-5, 60.0), crs_wkt="x", geographic=True)
    assert geographic.ground_resolution_m(10, 10) == pytest.approx(1e-5 * 111319.49 * math.sqrt(0.5), rel=1e-3)
    assert Georeference().ground_resolution_m(10, 10) is None
    assert not Georeference().georeferenced


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from roofmapnet.models.roofmapnet import RoofMapNet

    torch.manual_seed(0)
    net = RoofMapNet(CFG.model)
    sd = {f"model.{k}": v for k, v in net.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"state_dict": sd, "hyper_parameters": {"config": CFG.model_dump(mode="json")}}, path)
    return path


def test_cli_smoke_with_tiny_real_model(tmp_path: Path, tiny_ckpt: Path) -> None:
    pytest.importorskip("rasterio")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (3, 100, 120), dtype=np.uint8)
    path = _write_geotiff(tmp_path / "ortho.tif", data)
    out = tmp_path / "out"
    args = ["infer", "-k", str(tiny_ckpt), str(path), "-o", str(out), "--device", "cpu", "--tile", "64"]
    res = CliRunner().invoke(app, [*args, "--overlap", "8", "--outputs", "json,geojson,overlay"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["ortho.geojson", "ortho.gpkg", "ortho.json", "ortho_overlay.png"]
    text = " ".join(res.output.split())
    assert "raster tiles │ 4 (4 with data)" in text
    assert "merge time" in text
    doc = json.loads((out / "ortho.json").read_text())
    assert (doc["width"], doc["height"]) == (120, 100)
    assert len(doc["lines"]) == len(doc["scores"]) == len(doc["pieces"])
    assert all(0 <= v <= 120 for line in doc["lines"] for v in line[::2])
    fc = json.loads((out / "ortho.geojson").read_text())
    assert len([f for f in fc["features"] if f["properties"]["kind"] == "line"]) == len(doc["lines"])
    con = sqlite3.connect(out / "ortho.gpkg")
    try:
        assert con.execute("SELECT COUNT(*) FROM lines").fetchone()[0] == len(doc["lines"])
    finally:
        con.close()
    from PIL import Image

    with Image.open(out / "ortho_overlay.png") as im:
        assert im.size == (120, 100)


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--tile", "64", "--overlap", "32"], 2, "--overlap 32: must be less than half the tile"),
        (["--bands", "1,2"], 2, "--bands 1,2: give one band"),
        (["--crs", "utm"], 2, "utm"),
        (["--bands", "4,2,1"], 1, "--bands 4,2,1: the raster has 3 band(s)"),
        (["--gsd", "0.1", "--devices", "2", "--strategy", "ddp"], 2, "rasters run tile by tile in one process"),
    ],
)
def test_cli_gis_option_errors(
    tmp_path: Path, tiny_ckpt: Path, scene_tif: Path, extra: list[str], code: int, message: str
) -> None:
    res = CliRunner().invoke(
        app, ["infer", "-k", str(tiny_ckpt), str(scene_tif), "-o", str(tmp_path / "o"), "--device", "cpu", *extra]
    )
    assert res.exit_code == code, res.output
    assert message in " ".join(res.output.split())
    assert "Traceback" not in res.output
