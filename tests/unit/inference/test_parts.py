"""Partial results of a sharded raster: exact round trip and the single-process order after the merge step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyogrio")
pytest.importorskip("shapely")

from roofmapnet.errors import DataError
from roofmapnet.inference.parts import part_path, read_parts, write_part
from roofmapnet.inference.types import TileDetections


def _det(rng: np.random.Generator, tiles: list[int]) -> TileDetections:
    t = np.repeat(tiles, 3)
    return TileDetections(
        lines=rng.uniform(0, 500, (t.size, 4)) / 3.0,  # values that are not short decimals
        scores=rng.random(t.size),
        tiles=t,
        junctions=rng.uniform(0, 500, (t.size, 2)) / 7.0,
        junction_scores=rng.random(t.size),
        junction_tiles=t,
    )


def test_parts_merge_to_the_single_process_order_bit_for_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    per_tile = {i: _det(rng, [i]) for i in range(7)}
    single = TileDetections.concat([per_tile[i] for i in range(7)])  # what one process collects
    world = 3
    paths = []
    for rank in range(world):
        shard = TileDetections.concat([per_tile[i] for i in range(rank, 7, world)])
        paths.append(write_part(part_path(tmp_path, "ortho", rank, world), shard, 500, 400, "ortho.tif"))
    assert [p.name for p in paths] == [f"ortho.part-0000{r}-of-00003.gpkg" for r in range(3)]
    merged = read_parts(paths[::-1])  # the order of the parts does not matter
    for key in ("lines", "scores", "tiles", "junctions", "junction_scores", "junction_tiles"):
        assert np.array_equal(getattr(merged, key), getattr(single, key)), key


def test_empty_and_missing_parts(tmp_path: Path) -> None:
    empty = write_part(tmp_path / "e.gpkg", TileDetections(), 10, 10, "x.tif")
    assert read_parts([empty]).lines.shape == (0, 4)
    with pytest.raises(DataError, match=r"gone\.gpkg: partial result missing"):
        read_parts([empty, tmp_path / "gone.gpkg"])
