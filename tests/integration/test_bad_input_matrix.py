"""The bad-input matrix of docs/troubleshooting.md, run for real: each input, what the user sees, the exit code.

Every row is executed through the real ``roofmap`` app (in process); the table in the docs is rendered from
:data:`CASES` and must equal the section between the markers, so the page stays true.  Regenerate it with
``python -m tests.integration.test_bad_input_matrix`` after changing a case.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "troubleshooting.md"
BEGIN, END = "<!-- bad-input-matrix:begin -->", "<!-- bad-input-matrix:end -->"
TINY = REPO / "config" / "presets" / "tiny.yaml"


@dataclass(frozen=True)
class Case:
    """One bad input: how it is made (``make(tmp) -> argv``), the message fragment, the exit code."""

    input: str
    command: str
    shows: str
    exit_code: int
    make: Callable[[Path], list[str]]


def _cfg(text: bytes) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        (tmp / "bad.yaml").write_bytes(text)
        return ["train", "-c", str(tmp / "bad.yaml"), "--data-root", str(tmp)]

    return make


def _weights(tmp: Path) -> Path:
    from tests.unit.models.test_model import tiny_model

    path = tmp / "tiny.pth"
    torch.save(tiny_model().state_dict(), path)
    return path


def _infer_ckpt(write: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        image = tmp / "roof.png"
        Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(image)
        write(tmp / "w.ckpt")
        return ["infer", "-k", str(tmp / "w.ckpt"), "-c", str(TINY), str(image), "-o", str(tmp / "out")]

    return make


def _infer_image(data: bytes | Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        image = tmp / "roof.png"
        if callable(data):
            data(image)
        else:
            image.write_bytes(data)
        return ["infer", "-k", str(_weights(tmp)), "-c", str(TINY), str(image), "-o", str(tmp / "out")]

    return make


def _truncated(path: Path) -> None:
    torch.save({"w": torch.ones(4096)}, path)
    path.write_bytes(path.read_bytes()[:3000])


class _Shell:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED",))


def _grey16(path: Path) -> None:
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(path.with_suffix(".tif"))
    path.unlink(missing_ok=True)
    path.with_suffix(".tif").rename(path.with_name("roof.tif"))


def _grey16_args(tmp: Path) -> list[str]:
    _grey16(tmp / "roof.png")
    return ["infer", "-k", str(_weights(tmp)), "-c", str(TINY), str(tmp / "roof.tif"), "-o", str(tmp / "out")]


def _symlink(tmp: Path) -> list[str]:
    (tmp / "raw" / "images").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(tmp / "outside.png")
    (tmp / "raw" / "images" / "a.png").symlink_to(tmp / "outside.png")
    (tmp / "raw" / "train.json").write_text('[{"filename": "a.png", "lines": [[1, 1, 30, 30]]}]', encoding="utf-8")
    return ["preprocess", str(tmp / "raw"), str(tmp / "data"), "--image-size", "64", "--workers", "0"]


CASES = [
    Case("config that is not UTF-8 (random bytes)", "train -c", "FILE: not a UTF-8 text file (byte 0x… at offset N)", 2, _cfg(b"io: \xff\xfe\x81")),
    Case("invalid YAML", "train -c", "FILE: invalid YAML (line L, column C): …", 2, _cfg(b"io: [1, 2\nmodel: {")),
    Case("a list as config", "train -c", "FILE: the top level must be a mapping of sections, not list", 2, _cfg(b"- 1\n- 2\n")),
    Case("misspelt key", "train -c", "FILE: model.batchsize: unknown key (did you mean 'batch_size'?)", 2, _cfg(b"model: {batchsize: 2}\n")),
    Case("loss key `off` written as `false` by PyYAML", "train -c", "FILE: loss.weights: the key false is a boolean, not a name: an unquoted off …", 2, _cfg(b"loss: {weights: {false: 0.25}}\n")),
    Case("bad `--set`", "train --set", "--set lr: expected SECTION.KEY=VALUE, e.g. optim.lr=5e-4", 2, lambda t: ["train", "--set", "lr"]),
    Case("missing data root", "train --data-root", "DIR: data root not found (make one with `roofmap synth` + `roofmap preprocess`)", 1, lambda t: ["train", "-c", str(TINY), "--data-root", str(t / "nope")]),
    Case("random bytes as a checkpoint", "infer -k", "FILE: not a PyTorch file (it starts with bytes …; torch.save writes a zip archive, 50 4b 03 04)", 1, _infer_ckpt(lambda p: p.write_bytes(bytes([0x84, 0xE6, 0x5C, 0x44]) * 100))),
    Case("truncated checkpoint", "infer -k", "FILE: corrupt or truncated PyTorch file (…)", 1, _infer_ckpt(_truncated)),
    Case("pickle that would run a shell command (nothing runs)", "infer -k", "FILE: contains pickled Python objects that are not allowed in a weights file (…)", 1, _infer_ckpt(lambda p: torch.save({"w": _Shell()}, p))),
    Case("plain Python pickle", "infer -k", "FILE: not a PyTorch file: a plain Python pickle, not a file written by torch.save", 1, _infer_ckpt(lambda p: p.write_bytes(pickle.dumps({"w": 1})))),
    Case("foreign state dict", "infer -k", "FILE is not a RoofMapNet checkpoint: missing N keys, e.g. …; unexpected …", 1, _infer_ckpt(lambda p: torch.save({"fc.weight": torch.ones(2, 2)}, p))),
    Case("broken PNG", "infer", "skipped: FILE: corrupt or unreadable image (…)", 1, _infer_image(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00")),
    Case("0-byte image", "infer", "skipped: FILE: empty file (0 bytes)", 1, _infer_image(b"")),
    Case("text named `.png`", "infer", "skipped: FILE: not an image (Pillow cannot identify the format)", 1, _infer_image(b"hello, not an image\n")),
    Case("decompression bomb (a header claiming 30,000²)", "infer", "skipped: FILE: image too large (…)", 1, _infer_image(b"P6\n30000 30000\n255\n")),
    Case("16-bit grey TIFF", "infer", "works: stretched min..max to 0..255, written", 0, _grey16_args),
    Case("symlink in images/ pointing outside", "preprocess", "filename 'a.png' is a symbolic link (a.png -> …) that leaves the images folder …; … --follow-symlinks", 1, _symlink),
    Case("bad export format", "export -f", "--format tflite: expected one of onnx, torchscript, state-dict", 2, lambda t: ["export", "-k", str(_weights(t)), "-c", str(TINY), "-f", "tflite", "-o", str(t / "m")]),
]  # fmt: skip

#: Rows of behaviour tested elsewhere (a live training run is needed), rendered into the same table.
TESTED_ELSEWHERE = [
    ("`resume` into a run directory in use", "resume", "RUN_DIR is in use by another run (pid N on HOST since T (…); lock file …): wait for it to finish or stop it", 1, "tests/integration/test_run_faults.py"),
    ("new run into a logdir that holds a run", "train --logdir", "note: LOGDIR already holds a run: this one writes to LOGDIR-2 (…)", 0, "tests/integration/test_run_faults.py"),
    ("disk full / unwritable logdir while training", "train", "FILE: cannot write the checkpoint: No space left on device (the previous one is kept)", 1, "tests/integration/test_run_faults.py"),
    ("SIGTERM (scheduler) while training", "train", "stopped by SIGTERM at epoch E, global step S: the resumable checkpoint is …/last.ckpt (continue with `roofmap resume RUN_DIR`)", 143, "tests/integration/test_run_faults.py"),
]  # fmt: skip


def render() -> str:
    """The markdown table of :data:`CASES` and :data:`TESTED_ELSEWHERE`."""
    rows = ["| input | command | what you see (one line on stderr, no traceback) | exit |", "|---|---|---|---|"]
    rows += [f"| {c.input} | `roofmap {c.command}` | `{c.shows}` | {c.exit_code} |" for c in CASES]
    rows += [f"| {i} | `roofmap {cmd}` | `{shows}` | {code} |" for i, cmd, shows, code, _ in TESTED_ELSEWHERE]
    return "\n".join(rows)


def _pattern(shows: str) -> re.Pattern[str]:
    """``shows`` as a regex: FILE / DIR / N / L / C / … stand for anything."""
    parts = re.split(r"(…|\bFILE\b|\bDIR\b|\bN\b|\bL\b|\bC\b)", shows.removeprefix("works: "))
    return re.compile("".join(".*?" if p in ("…", "FILE", "DIR", "N", "L", "C") else re.escape(p) for p in parts))


@pytest.mark.parametrize("case", CASES, ids=[c.input for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 89_478_485)  # Pillow's default, whatever other tests set
    result = CliRunner().invoke(app, case.make(tmp_path))
    out = " ".join(result.output.split())
    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    if case.exit_code:
        assert _pattern(case.shows).search(out), f"{case.shows!r} not in {out!r}"
    assert not (tmp_path / "PWNED").exists()


def test_the_doc_table_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert BEGIN in text, f"{DOC} lacks the {BEGIN} marker"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert section == render(), f"stale table in {DOC}: run python -m tests.integration.test_bad_input_matrix"


def _write_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    DOC.write_text(f"{head}{BEGIN}\n{render()}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")


if __name__ == "__main__":
    _write_doc()
    sys.exit(0)
