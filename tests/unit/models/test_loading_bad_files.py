"""Weights files that are not PyTorch files at all are named as such, not as "pickled objects" (issue 16)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from roofmapnet.errors import CheckpointError
from roofmapnet.models.loading import load_state_dict_file


def _error(path: Path) -> str:
    with pytest.raises(CheckpointError) as exc:
        load_state_dict_file(path)
    text = str(exc.value)
    assert "\n" not in text
    return text


class _Shell:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


def test_random_bytes_are_not_a_pytorch_file(tmp_path: Path) -> None:
    path = tmp_path / "random.ckpt"
    path.write_bytes(bytes([0x84, 0xE6, 0x5C, 0x44]) + bytes(range(256)) * 8)
    assert _error(path) == (
        f"{path}: not a PyTorch file (it starts with bytes 84 e6 5c 44; torch.save writes a zip archive, 50 4b 03 04)"
    )


def test_empty_text_and_plain_pickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert _error(empty) == f"{empty}: empty file (0 bytes), not a PyTorch file"
    text = tmp_path / "notes.pth"
    text.write_text("hello", encoding="utf-8")
    assert "not a PyTorch file (it starts with bytes 68 65 6c 6c;" in _error(text)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"w": _Shell()}))
    assert _error(plain) == f"{plain}: not a PyTorch file: a plain Python pickle, not a file written by torch.save"
    assert not (tmp_path / "PWNED").exists()


def test_torch_files_with_forbidden_objects_keep_their_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for legacy in (False, True):
        path = tmp_path / f"evil-{legacy}.pth"
        torch.save({"w": _Shell()}, path, _use_new_zipfile_serialization=not legacy)
        assert "contains pickled Python objects that are not allowed" in _error(path)
    assert not (tmp_path / "PWNED").exists()


def test_legacy_and_zip_files_still_load(tmp_path: Path) -> None:
    for legacy in (False, True):
        path = tmp_path / f"w-{legacy}.pth"
        torch.save({"detection.w": torch.ones(2)}, path, _use_new_zipfile_serialization=not legacy)
        sd, cfg = load_state_dict_file(path)
        assert torch.equal(sd["detection.w"], torch.ones(2))
        assert cfg is None


def test_truncated_files_are_named_truncated(tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save({"detection.w": torch.ones(4096)}, good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:2000])
    line = _error(cut)
    assert line.startswith(f"{cut}: corrupt or truncated PyTorch file (")
    assert len(line) < 200 + len(str(cut))
