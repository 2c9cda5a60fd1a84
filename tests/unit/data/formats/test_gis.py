"""GIS labels: crops of a GeoTIFF with roof lines from a vector layer in another CRS, exact to 1e-6 px."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")
pyogrio = pytest.importorskip("pyogrio")
shapely = pytest.importorskip("shapely")

from affine import Affine  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from rasterio.warp import transform as warp  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from roofmapnet.cli.app import app  # noqa: E402
from roofmapnet.data.formats import detect_format  # noqa: E402
from roofmapnet.data.formats.gis import GisOptions, GisReader, clip_segments, stripe_splits  # noqa: E402
from roofmapnet.data.preprocess import PreprocessOptions, preprocess  # noqa: E402
from tests.unit.data.formats._fuzz import result_or_one_line_error  # noqa: E402

UTM = "EPSG:32632"
X0, Y0, RES = 500_000.0, 5_200_000.0, 0.5  # top-left corner and pixel size of the raster (metres)
H, W = 160, 256


def write_raster(path: Path, dtype: str = "uint8") -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, H, W)).astype(dtype)
    profile = {"driver": "GTiff", "height": H, "width": W, "count": 3, "dtype": dtype, "crs": UTM}
    with rasterio.open(path, "w", **profile, transform=Affine(RES, 0.0, X0, 0.0, -RES, Y0)) as ds:
        ds.write(data)
    return path


def to_map(px: np.ndarray) -> np.ndarray:
    """Raster pixels (col, row) → UTM metres."""
    return np.stack([X0 + px[..., 0] * RES, Y0 - px[..., 1] * RES], axis=-1)


def write_layer(path: Path, geoms: list[object], crs: str) -> Path:
    kind = "Polygon" if isinstance(geoms[0], shapely.Polygon) else "LineString"
    wkb = shapely.to_wkb(np.array(geoms, dtype=object))
    pyogrio.raw.write(path, wkb, [], [], crs=crs, driver="GPKG", geometry_type=kind)
    return path


def lines_in_wgs84(pixel_lines: np.ndarray) -> list[object]:
    """LineStrings in EPSG:4326 whose vertices are the given raster-pixel polylines."""
    out = []
    for poly in pixel_lines:
        xy = to_map(np.asarray(poly, dtype=np.float64))
        lon, lat = warp(UTM, "EPSG:4326", xy[:, 0], xy[:, 1])
        out.append(shapely.linestrings(np.stack([lon, lat], axis=1)))
    return out


# Two roofs: a polyline crossing the crop boundary at x = 64, and three short lines in one crop.
POLYS = [
    [[10.25, 20.5], [100.75, 30.125], [100.75, 50.0]],
    [[140.0, 100.0], [180.0, 100.0]],
    [[140.0, 100.0], [140.0, 140.0]],
    [[150.5, 110.5], [170.25, 130.75]],
]


def options(tmp_path: Path, **gis: object) -> PreprocessOptions:
    layer = write_layer(tmp_path / "lines.gpkg", lines_in_wgs84(np.array(POLYS, dtype=object)), "EPSG:4326")
    return PreprocessOptions(
        image_size=64, heatmap_size=16, workers=0, split_fractions=(1.0, 0.0, 0.0), gis=GisOptions(layer, **gis)
    )


def crops(tmp_path: Path, **gis: object) -> dict[str, np.ndarray]:
    raster = write_raster(tmp_path / "ortho.tif")
    (train,) = [sp for sp in GisReader().scan(raster, options(tmp_path, **gis)) if sp.samples]
    return {s.name: s.params["lines"] for s in train.samples}


def test_grid_crops_hold_the_reprojected_lines_exactly(tmp_path: Path) -> None:
    got = crops(tmp_path, min_lines=1)
    # The 64-px grid: rows 0, 64, 96 (last aligned with the edge), cols 0, 64, 128, 192.
    first = got["ortho_r0_c0_s64"]
    slope = (30.125 - 20.5) / (100.75 - 10.25)
    expected = np.array([[10.25, 20.5, 64.0, 20.5 + (64 - 10.25) * slope]])
    np.testing.assert_allclose(first, expected, atol=1e-6, rtol=0)
    second = got["ortho_r0_c64_s64"]  # the rest of the polyline, shifted to the crop's origin
    np.testing.assert_allclose(
        second,
        [[0.0, 20.5 + (64 - 10.25) * slope - 0, 100.75 - 64, 30.125], [100.75 - 64, 30.125, 100.75 - 64, 50.0]],
        atol=1e-6,
        rtol=0,
    )
    roof = got["ortho_r96_c128_s64"]  # rows 96..160, cols 128..192
    np.testing.assert_allclose(
        roof,
        [[12.0, 4.0, 52.0, 4.0], [12.0, 4.0, 12.0, 44.0], [22.5, 14.5, 42.25, 34.75]],
        atol=1e-6,
        rtol=0,
    )


def test_min_lines_keeps_only_crops_with_enough_lines(tmp_path: Path) -> None:
    assert set(crops(tmp_path, min_lines=3)) == {"ortho_r64_c128_s64", "ortho_r96_c128_s64"}


def test_footprints_centre_the_crops(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "ortho.tif")
    small = shapely.Polygon(to_map(np.array([[136.0, 96.0], [184.0, 96.0], [184.0, 144.0], [136.0, 144.0]])))
    big = shapely.Polygon(to_map(np.array([[0.0, 0.0], [110.0, 0.0], [110.0, 80.0], [0.0, 80.0]])))
    far = shapely.Polygon(to_map(np.array([[1000.0, 1000.0], [1010.0, 1000.0], [1010.0, 1010.0]])))
    foot = write_layer(tmp_path / "foot.gpkg", [small, big, far], UTM)
    opts = options(tmp_path, footprints=foot, min_lines=1)
    (train,) = [sp for sp in GisReader().scan(raster, opts) if sp.samples]
    names = [s.name for s in train.samples]
    # small: centre (160, 120), 64-px crop → col 128, row 88; big: 110 px × 1.2 = 132 px, moved inside.
    assert names == ["ortho_r88_c128_s64", "ortho_r0_c0_s132"]
    assert train.warnings == [(str(raster), "1 footprint(s) outside the raster skipped")]
    lines = train.samples[0].params["lines"]
    np.testing.assert_allclose(lines[0], [12.0, 12.0, 52.0, 12.0], atol=1e-6, rtol=0)


def test_preprocess_writes_crops_and_the_dataset_gsd(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "ortho.tif", dtype="uint16")
    assert detect_format(raster) == "gis"
    out = tmp_path / "out"
    opts = options(tmp_path, min_lines=3, crop_size=128)
    summary = preprocess(raster, out, opts)
    assert summary.ok, summary.failures
    record = json.loads((out / "dataset.json").read_text())
    assert record["format"] == "gis"
    assert record["gsd_m"] == pytest.approx(RES * 128 / 64)  # metres per network-input pixel
    (name, sample), *_ = record["samples"].items()
    assert sample["gsd_m"] == pytest.approx(1.0)
    assert sample["crs"] == UTM
    assert sample["source_hw"] == [128, 128]
    row, col = sample["window"][:2]
    assert sample["transform"] == pytest.approx([RES, 0.0, X0 + col * RES, 0.0, -RES, Y0 - row * RES])
    assert (out / f"{name}.png").is_file()
    with np.load(out / f"{name}_label.npz") as z:
        assert len(z["Lpos"]) >= 3


def test_cli_gis_and_missing_layer(tmp_path: Path) -> None:
    raster = write_raster(tmp_path / "ortho.tif")
    result = CliRunner().invoke(app, ["preprocess", str(raster), str(tmp_path / "o"), "--image-size", "64"])
    assert result.exit_code == 1
    assert "--format gis needs --lines VECTOR_FILE" in " ".join(result.output.split())
    result = CliRunner().invoke(
        app, ["preprocess", str(raster), str(tmp_path / "o"), "--lines", str(tmp_path / "none.gpkg")]
    )
    assert result.exit_code == 1
    assert "none.gpkg: vector file not found" in " ".join(result.output.split())
    options(tmp_path)  # writes lines.gpkg
    args = ["preprocess", str(raster), str(tmp_path / "o"), "--lines", str(tmp_path / "lines.gpkg")]
    result = CliRunner().invoke(app, [*args, "--image-size", "64", "--split-fractions", "1,0,0", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "o" / "train").glob("*_label.npz"))) == 2


def test_clip_and_stripes_are_exact() -> None:
    seg = np.array([[-10.0, 5.0, 30.0, 5.0], [2.0, 2.0, 8.0, 8.0], [0.0, 20.0, 10.0, 20.0]])
    win = np.array([[0.0, 0.0, 10.0, 10.0]])
    pairs = np.array([[0, 0, 0], [0, 1, 2]])
    pieces, keep = clip_segments(seg, pairs, win)
    np.testing.assert_array_equal(pieces[keep], [[0.0, 5.0, 10.0, 5.0], [2.0, 2.0, 8.0, 8.0]])
    assert keep.tolist() == [True, True, False]
    windows = np.array([[0, 0, 10], [0, 75, 10], [0, 80, 10], [0, 95, 5]])
    assert stripe_splits(windows, 20, 100, (0.8, 0.1, 0.1)).tolist() == [0, -1, 1, 2]


@pytest.fixture(scope="module")
def fuzz_raster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_raster(tmp_path_factory.mktemp("fz") / "ortho.tif")


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    data=st.binary(max_size=300) | st.text(alphabet='{}[]":,0123456789.-typeLinStrgcord ', max_size=200).map(str.encode)
)
def test_fuzz_any_vector_bytes(tmp_path_factory: pytest.TempPathFactory, fuzz_raster: Path, data: bytes) -> None:
    root = tmp_path_factory.mktemp("fz")
    raster = fuzz_raster
    (root / "lines.geojson").write_bytes(data)
    opts = PreprocessOptions(image_size=64, heatmap_size=16, workers=0, gis=GisOptions(root / "lines.geojson"))
    splits = result_or_one_line_error(lambda: GisReader().scan(raster, opts))
    for split in splits or []:
        assert all(len(reason.splitlines()) == 1 for _, reason in split.file_errors)
