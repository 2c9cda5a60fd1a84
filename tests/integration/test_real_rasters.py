"""``roofmap infer`` on real orthophotos (tests/data/real-rasters, with their licences): CRS, masks, vector layers.

No roof-line labels exist for these rasters; a tiny random-weight model produces lines, so what is checked is
the GIS plumbing on real files: the map CRS of every vector output, WGS 84 GeoJSON inside the raster's footprint,
facets, the image-pixel frame, and that the masked corner of the RGBA raster yields nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from tests.tiny import write_tiny_checkpoint

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")
pytest.importorskip("shapely")

pytestmark = pytest.mark.usefixtures("one_thread")

REAL = Path(__file__).resolve().parents[1] / "data" / "real-rasters"
DEEPFOREST = REAL / "deepforest_test_tiled.tif"  # 1000², RGB, 0.25 m, EPSG:28992 (MIT)
RIOTILER = REAL / "riotiler_cog_rgba.tif"  # 383 × 232, RGBA (alpha = mask), 0.15 m, EPSG:26913 (BSD-3)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Permissive thresholds: a random model then gives lines on every tile.
    model = {"num_stacks": 1, "batch_size_eval": 8, "line_score_thres": 0.0, "eval_junc_thres": 0.0}
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", model)


def _infer(ckpt: Path, raster: Path, out: Path, *extra: str) -> str:
    args = ["infer", "-k", str(ckpt), str(raster), "-o", str(out), "--device", "cpu", "--workers", "0", *extra]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_dutch_orthophoto_every_vector_format(ckpt: Path, tmp_path: Path) -> None:
    from rasterio.warp import transform_bounds

    out = tmp_path / "out"
    _infer(ckpt, DEEPFOREST, out, "--tile", "250", "--outputs", "json,geojson", "--vector-format", "gpkg,fgb,shp")
    doc = json.loads((out / "deepforest_test_tiled.json").read_text())
    assert doc["georeference"]["epsg"] == 28992
    n_lines = len(doc["lines"])
    assert n_lines > 0
    gpkg = out / "deepforest_test_tiled.gpkg"
    layers = dict(pyogrio.list_layers(gpkg))
    assert layers == {"lines": "LineString", "junctions": "Point", "facets": "Polygon"}
    for layer in layers:
        assert pyogrio.read_info(gpkg, layer=layer)["crs"] == "EPSG:28992"
    assert pyogrio.read_info(gpkg, layer="lines")["features"] == n_lines
    for suffix in ("fgb", "shp"):
        info = pyogrio.read_info(out / f"deepforest_test_tiled_lines.{suffix}")
        assert info["crs"] == "EPSG:28992"
        assert info["features"] == n_lines
    frame = json.loads((out / "deepforest_test_tiled_frame.json").read_text())
    with rasterio.open(DEEPFOREST) as ds:
        assert frame["pixel_to_map"] == list(ds.transform)[:6]
        west, south, east, north = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    # Lengths in metres are 0.25 m per pixel of the line's pixel length.
    _, _, _, fields = pyogrio.raw.read(gpkg, layer="lines")
    names = pyogrio.read_info(gpkg, layer="lines")["fields"].tolist()
    cols = dict(zip(names, fields, strict=True))
    np.testing.assert_allclose(cols["length_m"], 0.25 * cols["length_px"], rtol=1e-9, atol=1e-6)
    # The GeoJSON is RFC 7946: WGS 84 longitude / latitude inside the raster's footprint in the Netherlands.
    fc = json.loads((out / "deepforest_test_tiled.geojson").read_text())
    assert "crs" not in fc
    xy = np.array(
        [c for f in fc["features"] if f["geometry"]["type"] == "LineString" for c in f["geometry"]["coordinates"]]
    )
    eps = 1e-6
    assert (xy[:, 0] >= west - eps).all()
    assert (xy[:, 0] <= east + eps).all()
    assert (xy[:, 1] >= south - eps).all()
    assert (xy[:, 1] <= north + eps).all()


def test_alpha_masked_corner_yields_nothing(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _infer(ckpt, RIOTILER, out, "--tile", "128", "--outputs", "json", "--vector-format", "none")
    doc = json.loads((out / "riotiler_cog_rgba.json").read_text())
    assert doc["georeference"]["epsg"] == 26913
    lines = np.array(doc["lines"]).reshape(-1, 4)
    assert lines.shape[0] > 0
    with rasterio.open(RIOTILER) as ds:
        valid = ds.dataset_mask() > 0
    assert (~valid).sum() > 1000  # the file really has a masked area
    from scipy import ndimage

    near_valid = ndimage.binary_dilation(valid, iterations=2)
    mid = (lines[:, :2] + lines[:, 2:]) / 2
    cols = np.clip(mid[:, 0].astype(int), 0, valid.shape[1] - 1)
    rows = np.clip(mid[:, 1].astype(int), 0, valid.shape[0] - 1)
    assert near_valid[rows, cols].all()  # no line in the masked corner
    assert not (out / "riotiler_cog_rgba.gpkg").exists()


def test_plain_image_facets_are_pixel_polygons(ckpt: Path, tmp_path: Path) -> None:
    from PIL import Image

    with rasterio.open(DEEPFOREST) as ds:
        crop = ds.read(window=((0, 200), (0, 300)))
    png = tmp_path / "crop.png"
    Image.fromarray(np.moveaxis(crop, 0, -1)).save(png)
    out = tmp_path / "out"
    _infer(ckpt, png, out, "--outputs", "json,facets")
    assert sorted(p.name for p in out.iterdir()) == ["crop.json", "crop_facets.json"]
    doc = json.loads((out / "crop_facets.json").read_text())
    assert (doc["width"], doc["height"]) == (300, 200)
    assert doc["coordinate_system"].startswith("image pixels")
    for facet in doc["facets"]:
        ring = np.array(facet["exterior"])
        assert (ring[0] == ring[-1]).all()
        assert (ring >= -1e-6).all()
        assert (ring[:, 0] <= 300 + 1e-6).all()
        assert facet["edges"] >= 3
        assert 0 <= facet["building"] < doc["buildings"]
