"""A symbolic link in the images folder that points outside it: named as a link, allowed on request (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.data.raw import read_json_split, resolve_image
from roofmapnet.errors import DataError


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    """``raw/images/inside.png`` (a file), ``raw/images/link.png`` -> ``elsewhere/outside.png``, ``raw/train.json``."""
    raw, elsewhere = tmp_path / "raw", tmp_path / "elsewhere"
    (raw / "images").mkdir(parents=True)
    elsewhere.mkdir()
    rgb = np.full((32, 32, 3), 120, np.uint8)
    Image.fromarray(rgb).save(raw / "images" / "inside.png")
    Image.fromarray(rgb).save(elsewhere / "outside.png")
    (raw / "images" / "link.png").symlink_to(elsewhere / "outside.png")
    (raw / "images" / "dirlink").symlink_to(elsewhere, target_is_directory=True)
    lines = [[2, 2, 30, 30], [2, 30, 30, 2]]
    entries = [{"filename": f, "lines": lines} for f in ("inside.png", "link.png", "dirlink/outside.png")]
    (raw / "train.json").write_text(json.dumps(entries), encoding="utf-8")
    return raw, elsewhere


def test_the_message_says_symlink_and_how_to_allow_it(tmp_path: Path) -> None:
    raw, elsewhere = _layout(tmp_path)
    images = raw / "images"
    with pytest.raises(DataError) as exc:
        resolve_image(images, "link.png")
    assert str(exc.value) == (
        f"filename 'link.png' is a symbolic link (link.png -> {elsewhere / 'outside.png'}) that leaves the images "
        f"folder {images}; links out of the folder are followed only when asked (follow_symlinks, roofmap "
        "preprocess --follow-symlinks)"
    )
    with pytest.raises(DataError, match=r"symbolic link \(dirlink -> "):
        resolve_image(images, "dirlink/outside.png")
    assert resolve_image(images, "link.png", follow_symlinks=True) == (elsewhere / "outside.png").resolve()


def test_follow_symlinks_never_lets_the_filename_itself_escape(tmp_path: Path) -> None:
    raw, _ = _layout(tmp_path)
    images = raw / "images"
    for name in ("../../elsewhere/outside.png", str(tmp_path / "elsewhere" / "outside.png"), "dirlink/../../x.png"):
        with pytest.raises(DataError, match="escapes the images folder"):
            resolve_image(images, name, follow_symlinks=True)


def test_reader_records_the_link_and_cli_opt_in_writes_it(tmp_path: Path) -> None:
    raw, _ = _layout(tmp_path)
    split = read_json_split(raw / "train.json", "train", raw / "images")
    errors = [s.error for s in split.samples]
    assert errors[0] is None
    assert all(e is not None and "symbolic link" in e for e in errors[1:])

    runner = CliRunner()
    args = ["preprocess", str(raw), str(tmp_path / "out"), "--image-size", "64", "--workers", "0"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "--follow-symlinks" in " ".join(refused.output.split())
    followed = runner.invoke(app, [*args, "--follow-symlinks"])
    assert followed.exit_code == 0, followed.output
    written = sorted(p.name for p in (tmp_path / "out" / "train").glob("*_label.npz"))
    assert written == ["dirlink__outside_label.npz", "inside_label.npz", "link_label.npz"]
