"""Fuzzing image decoding: preprocess's, training's and inference's readers decode a file or raise DataError.

Inputs: random bytes, and real PNG / JPEG / TIFF / BMP / GIF files (8-bit RGB, 16-bit grey, float, palette,
1-bit) with random edits.  Pillow's decompression-bomb guard is lowered for the test so a tiny header claiming a
huge image trips it as a 30,000² file would.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from roofmapnet.data.dataset import load_rgb
from roofmapnet.data.raw import load_image
from roofmapnet.errors import DataError
from roofmapnet.inference.images import read_image
from tests.fuzzing import fuzz, mutated, outcome

pytestmark = pytest.mark.fuzz

READERS = (load_image, load_rgb, read_image)


def _encoded(mode: str, fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16))
    elif mode == "F":
        img = Image.fromarray(rng.normal(size=(9, 7)).astype(np.float32))
    else:
        img = Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = [
    _encoded("RGB", "PNG"),
    _encoded("RGB", "JPEG"),
    _encoded("RGB", "TIFF"),
    _encoded("I;16", "TIFF"),
    _encoded("I;16", "PNG"),
    _encoded("F", "TIFF"),
    _encoded("P", "GIF"),
    _encoded("1", "BMP"),
    _encoded("RGBA", "PNG"),
]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-images") / "image.png"


@pytest.fixture(autouse=True)
def small_bomb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4096)


@fuzz(150)
@given(data=st.binary(max_size=128) | st.sampled_from(SAMPLES).flatmap(lambda b: mutated(b, max_edits=4)))
@example(data=b"")
@example(data=b"\x89PNG\r\n\x1a\n")  # a PNG signature and nothing else
@example(data=SAMPLES[0][: len(SAMPLES[0]) // 2])  # truncated
@example(data=b"P6\n200 200\n255\n")  # a PPM header claiming 40,000 pixels: a decompression bomb here
def test_image_readers(image_path: Path, data: bytes) -> None:
    image_path.write_bytes(data)
    for read in READERS:
        result = outcome(read, image_path)
        if not isinstance(result, DataError):
            assert isinstance(result, np.ndarray)
            assert result.dtype == np.uint8
            assert result.ndim == 3
            assert result.shape[2] == 3
            assert result.shape[0] > 0
            assert result.shape[1] > 0
