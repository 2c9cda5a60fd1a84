"""The reader interface: per-sample loaders are explicit, shared helpers name fields (never flags)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.data.formats import detect_format, get_reader, get_sample_reader
from roofmapnet.data.formats.base import SampleReader, images_folder
from roofmapnet.data.preprocess import PreprocessOptions, preprocess_flat
from roofmapnet.errors import DataError


def test_only_sample_readers_have_a_loader() -> None:
    for name in ("roofvec", "heat", "labelme", "gis"):
        assert issubclass(get_sample_reader(name), SampleReader)
    for name in ("json", "rid2"):
        assert not hasattr(get_reader(name), "load")
        with pytest.raises(DataError, match=rf"format '{name}' has no per-sample loader"):
            get_sample_reader(name)

    class Incomplete(SampleReader):
        name = "incomplete"
        summary = "a reader without load"

        @classmethod
        def detect(cls, root: Path) -> bool:
            return False

        def scan(self, root: Path, options: PreprocessOptions) -> list:  # type: ignore[type-arg]
            return []

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_file_sample_records_the_annotation_and_drops_the_image_of_a_failed_sample(tmp_path: Path) -> None:
    reader = get_sample_reader("roofvec")()
    options = PreprocessOptions(axis_order="yx")
    ok = reader.file_sample("train", "a", tmp_path / "a.txt", tmp_path / "a.jpg", options)
    assert (ok.source, ok.annotation_path, ok.image_path) == (
        str(tmp_path / "a.txt"),
        tmp_path / "a.txt",
        tmp_path / "a.jpg",
    )
    assert (ok.reader, ok.axis_order, ok.error) == ("roofvec", "yx", None)
    bad = reader.file_sample("valid", "b", tmp_path / "b.txt", tmp_path / "b.jpg", options, error="no image")
    assert (bad.image_path, bad.error, bad.split) == (None, "no image", "valid")


def test_library_messages_name_fields_and_the_clis_write_their_flags(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(DataError, match=r"images folder not found \(set images_dir\)$") as info:
        images_folder(tmp_path / "images", PreprocessOptions())
    assert info.value.fields == ("images_dir",)
    with pytest.raises(DataError, match=r"set images_dir"):
        preprocess_flat(tmp_path / "train.json", tmp_path / "out", PreprocessOptions())
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"or set raw_format$") as info:
        detect_format(empty)
    assert info.value.fields == ("raw_format",)

    cli = CliRunner().invoke(app, ["preprocess", str(tmp_path), str(tmp_path / "out"), "--format", "json"])
    assert cli.exit_code == 1, cli.output
    assert "images folder not found (set --images)" in " ".join(cli.output.split())
    cli = CliRunner().invoke(app, ["preprocess", str(empty), str(tmp_path / "out")])
    assert "or set --format" in " ".join(cli.output.split())
    seed = subprocess.run(
        [sys.executable, "-m", "roofmapnet.train.preprocess_rid2", "--input", str(tmp_path / "train.json"),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert seed.returncode == 1
    assert "images folder not found (set --images)" in " ".join(seed.stderr.split())
    assert "Traceback" not in seed.stderr
