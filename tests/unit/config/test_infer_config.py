"""RootConfig.infer: the options of `roofmap infer`, validated once, in the schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from roofmapnet.config import RootConfig, load_config
from roofmapnet.config.schema import InferConfig, RasterConfig
from roofmapnet.errors import ConfigError


def test_defaults_are_the_cli_defaults() -> None:
    cfg = RootConfig().infer
    assert cfg == InferConfig()
    assert cfg.outputs == ("json", "geojson", "overlay")
    assert (cfg.workers, cfg.postprocess, cfg.postprocess_t, cfg.batch_size) == (2, True, 0.01, None)
    assert cfg.raster == RasterConfig()
    assert (cfg.raster.crs, cfg.raster.vector_formats, cfg.raster.tile_all, cfg.raster.stretch) == (
        "wgs84",
        ("gpkg",),
        False,
        (2, 98),
    )


def test_comma_separated_values_are_parsed() -> None:
    cfg = InferConfig.from_options(outputs="JSON, overlay,json", raster={"bands": "4, 3,2"})
    assert cfg.outputs == ("json", "overlay")
    assert cfg.raster.bands == (4, 3, 2)
    assert RasterConfig.from_options(bands="").bands is None


@pytest.mark.parametrize(
    ("values", "line", "field"),
    [
        ({"outputs": "json,svg"}, "infer.outputs json,svg: expected a comma-separated subset of", "infer.outputs"),
        ({"threshold": 1.5}, "infer.threshold 1.5: Input should be less than or equal to 1", "infer.threshold"),
        ({"max_lines": 0}, "infer.max_lines 0: Input should be greater than or equal to 1", "infer.max_lines"),
        ({"workers": -1}, "infer.workers -1:", "infer.workers"),
        ({"postprocess_t": 1.0}, "infer.postprocess_t 1.0:", "infer.postprocess_t"),
        (
            {"raster": {"tile": 8}},
            "infer.raster.tile 8: Input should be greater than or equal to 16",
            "infer.raster.tile",
        ),
        (
            {"raster": {"tile": 64, "overlap": 32}},
            "infer.raster.overlap 32: must be less than half",
            "infer.raster.overlap",
        ),
        ({"raster": {"gsd": float("nan")}}, "infer.raster.gsd nan:", "infer.raster.gsd"),
        ({"raster": {"bands": "0"}}, "infer.raster.bands 0: band numbers start at 1", "infer.raster.bands"),
        ({"nonsense": 1}, "infer.nonsense: unknown option", "infer.nonsense"),
    ],
)
def test_bad_options_are_one_line_naming_field_and_value(values: dict, line: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        InferConfig.from_options(**values)
    assert err.value.exit_code == 2
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(line)
    assert err.value.fields == (field,)


def test_the_section_loads_from_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("infer:\n  workers: 0\n  raster:\n    tile: 256\n")
    cfg = load_config(path, {"infer.raster.crs": "native"})
    assert (cfg.infer.workers, cfg.infer.raster.tile, cfg.infer.raster.crs) == (0, 256, "native")
    with pytest.raises(ConfigError, match=r"command line: infer\.raster\.tile: Input should be greater"):
        load_config(path, {"infer.raster.tile": 8})
    path.write_text("infer:\n  raster:\n    tile: 8\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: infer\.raster\.tile: Input should be greater"):
        load_config(path)
