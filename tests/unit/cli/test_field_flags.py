"""The library names fields; the CLI alone writes them as its flags (roofmapnet.cli._common)."""

from __future__ import annotations

from roofmapnet.cli._common import as_flags, command_flags, flag_for


def test_flag_for_and_command_flags() -> None:
    assert flag_for("infer.raster.tile") == "--tile"
    assert flag_for("precision") == "--precision"
    assert flag_for("infer.max_lines") == "--max-lines"

    def cmd(max_lines: int = 0, tile: int = 0, device: str = "auto") -> None: ...

    assert command_flags(cmd) == {"--max-lines", "--tile", "--device"}


def test_as_flags_rewrites_only_the_named_fields_the_command_has() -> None:
    flags = {"--tile", "--overlap", "--precision"}
    line = "x.tif: infer.raster.overlap 300 must be less than half the tile (infer.raster.tile)"
    assert (
        as_flags(line, ("infer.raster.overlap",), flags)
        == "x.tif: --overlap 300 must be less than half the tile (infer.raster.tile)"
    )
    assert (
        as_flags("precision 8: expected fp32; half-precision x", ("precision",), flags)
        == "--precision 8: expected fp32; half-precision x"
    )
    # A field without a flag in this command keeps its name; unnamed fields are never touched.
    assert (
        as_flags("infer.raster.stretch 1,2: bad", ("infer.raster.stretch",), flags) == "infer.raster.stretch 1,2: bad"
    )
    assert as_flags("infer.raster.tile 8: bad", (), flags) == "infer.raster.tile 8: bad"
    assert as_flags("infer.raster.tile_all: x", ("infer.raster.tile",), flags) == "infer.raster.tile_all: x"


def test_fields_named_otherwise_on_the_command_line() -> None:
    assert flag_for("images_dir") == "--images"
    assert flag_for("raw_format") == "--format"
    assert flag_for("out_dir") == "--out"
    line = "data/raw: looks like several formats (json, rid2); choose one with raw_format"
    assert as_flags(line, ["raw_format"], {"--format"}).endswith("choose one with --format")


def test_field_names_inside_paths_stay() -> None:
    line = "data json:/srv/data/roofs: /srv/data/roofs not found"
    assert as_flags(line, ["data"], {"--data"}) == "--data json:/srv/data/roofs: /srv/data/roofs not found"
    assert as_flags("C:\\data\\x: overwrite?", ["data"], {"--data"}) == "C:\\data\\x: overwrite?"
