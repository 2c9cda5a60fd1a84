"""Mosaics: a folder of GeoTIFF tiles as one VRT raster, with the member of every pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from affine import Affine  # noqa: E402

from roofmapnet.errors import DataError  # noqa: E402
from roofmapnet.inference.mosaic import build_vrt, mosaic_members  # noqa: E402


def _tile(path: Path, data: np.ndarray, col: int, row: int, *, gsd: float = 0.5, crs: str = "EPSG:2056") -> Path:
    transform = Affine(gsd, 0, 2_600_000 + col * gsd, 0, -gsd, 1_200_000 - row * gsd)
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype.name, crs=crs, transform=transform,
    ) as ds:  # fmt: skip
        ds.write(data)
    return path


def test_vrt_stitches_members_and_masks_the_gaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    whole = rng.integers(1, 255, (3, 60, 90), dtype=np.uint8)
    # Three of the four 30 × 45 quadrants (the south-east one is missing), named out of order.
    _tile(tmp_path / "b.tif", whole[:, :30, 45:], 45, 0)
    _tile(tmp_path / "a.tif", whole[:, :30, :45], 0, 0)
    _tile(tmp_path / "c.tif", whole[:, 30:, :45], 0, 30)
    (tmp_path / "notes.txt").write_text("not a raster")
    members = mosaic_members(tmp_path)
    assert [p.name for p in members] == ["a.tif", "b.tif", "c.tif"]
    xml, index = build_vrt(members)
    with rasterio.open(xml) as ds:
        assert (ds.width, ds.height, ds.count) == (90, 60, 3)
        assert ds.crs.to_epsg() == 2056
        assert ds.transform == Affine(0.5, 0, 2_600_000, 0, -0.5, 1_200_000)
        data = ds.read()
        mask = ds.dataset_mask()
        window = ds.read(1, window=((25, 35), (40, 50)))  # a window across three members' seams
    assert np.array_equal(data[:, :30], whole[:, :30])
    assert np.array_equal(data[:, 30:, :45], whole[:, 30:, :45])
    assert (mask[30:, 45:] == 0).all()
    assert (mask[:30] == 255).all()
    assert np.array_equal(window[:5], whole[0, 25:30, 40:50])
    assert index.names_at(np.array([[10, 10], [50, 10], [10, 50], [80, 50]])).tolist() == [
        "a.tif",
        "b.tif",
        "c.tif",
        "",
    ]


def test_members_that_do_not_share_a_grid_are_named(tmp_path: Path) -> None:
    data = np.zeros((1, 8, 8), dtype=np.uint8)
    a = _tile(tmp_path / "a.tif", data, 0, 0)
    cases = {
        "crs": (_tile(tmp_path / "crs.tif", data, 8, 0, crs="EPSG:32632"), "CRS"),
        "gsd": (_tile(tmp_path / "gsd.tif", data, 8, 0, gsd=0.25), "pixel size"),
        "bands": (_tile(tmp_path / "bands.tif", np.zeros((3, 8, 8), np.uint8), 8, 0), "band count"),
        "grid": (_tile(tmp_path / "grid.tif", data, 8.5, 0), "pixel grid"),  # type: ignore[arg-type]
    }
    for path, text in cases.values():
        with pytest.raises(DataError, match=rf"{path.name}: .*{text}"):
            build_vrt([a, path])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: no GeoTIFF tiles"):
        mosaic_members(empty)
