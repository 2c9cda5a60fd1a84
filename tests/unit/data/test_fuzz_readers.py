"""Fuzzing the raw-annotation readers (wireframe JSON, RID2 edges) through to the training targets.

Each input goes the whole way ``roofmap preprocess`` takes it, short of writing: the reader, then per sample
:func:`~roofmapnet.data.preprocess.build_sample` (lines parsed, image decoded, lines checked against the image,
targets computed).  The result is samples and targets, or a :class:`DataError` with a one-line reason.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from roofmapnet.data.preprocess import build_sample
from roofmapnet.data.raw import RawSplit, read_json_split, read_rid2_splits
from roofmapnet.errors import DataError
from tests.fuzzing import check_error, fuzz, json_values, mutated, outcome

pytestmark = pytest.mark.fuzz

HEATMAP = 16
IMAGE = 64


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw folder with one real 40×30 image ``images/roof.png`` (and ``images/sub/roof.png``)."""
    root = tmp_path_factory.mktemp("fuzz-raw")
    (root / "images" / "sub").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for rel in ("roof.png", "sub/roof.png"):
        Image.fromarray(rgb).save(root / "images" / rel)
    return root


def _build_all(split: RawSplit) -> None:
    for file, reason in split.file_errors:
        assert file
        assert reason
        assert "\n" not in reason
    for sample in split.samples:
        if sample.error is not None:
            assert "\n" not in sample.error
            continue
        result = outcome(build_sample, sample, IMAGE, HEATMAP)
        if not isinstance(result, DataError):
            rgb, targets = result
            assert rgb.shape == (IMAGE, IMAGE, 3)
            assert targets["jmap"].shape[-2:] == (HEATMAP, HEATMAP)


numbers = st.integers(-50, 100) | st.floats(-50, 100) | st.sampled_from([float("nan"), float("inf"), -1e308, 1e308])
line = st.lists(numbers, min_size=4, max_size=4)
lines = st.lists(line, max_size=6) | json_values
filenames = st.sampled_from(["roof.png", "sub/roof.png", "missing.png", "../roof.png", "/etc/passwd", "", "."])
entry = st.fixed_dictionaries(
    {"filename": filenames | st.text(max_size=8) | json_values, "lines": lines},
    optional={"height": st.integers(-2, 40) | json_values, "width": st.integers(-2, 50) | json_values},
)


@fuzz(120)
@given(entries=st.lists(entry, max_size=4) | json_values)
@example(entries=[{"filename": "\x00", "lines": []}])  # was a ValueError (embedded null byte) from the path checks
@example(entries=[{"filename": ".", "lines": []}])  # was an IndexError in output_name (found by this test)
@example(entries=[{"filename": "roof.png", "lines": [[0, 0, 1e308, 1e308]]}])
@example(entries=[{"filename": "roof.png", "lines": [[5, 5, 5, 5.0000001]]}])  # collapses once scaled
@example(entries=[{"filename": "roof.png", "lines": [[True, 0, 9, 9]]}])
@example(entries=[{"filename": "roof.png", "lines": [[1, 2, 3, [4]]]}])  # ragged
@example(entries=[{"filename": "roof.png", "lines": [[-5, -5, -1, -1]], "height": 30, "width": 40}])
def test_json_reader(raw: Path, entries: Any) -> None:
    path = raw / "train.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    _build_all(read_json_split(path, "train", raw / "images"))


@fuzz(80)
@given(data=st.binary(max_size=200) | mutated(b'[{"filename": "roof.png", "lines": [[1, 2, 30, 20], [3, 3, 9, 1]]}]'))
@example(data=b"\xff\xfe[]")
@example(data=b"[" * 100_000)  # json's own recursion limit
def test_json_reader_bytes(raw: Path, data: bytes) -> None:
    path = raw / "train.json"
    path.write_bytes(data)
    _build_all(read_json_split(path, "train", raw / "images"))


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


VALID_NPZ = _npz_bytes({"edges": np.array([[[1.0, 2.0], [30.0, 20.0]], [[3.0, 3.0], [9.0, 1.0]]])})
edge_arrays = hnp.arrays(
    dtype=hnp.integer_dtypes() | hnp.floating_dtypes() | hnp.boolean_dtypes() | hnp.complex_number_dtypes(),
    shape=st.sampled_from([(0, 2, 2), (1, 2, 2), (3, 2, 2), (2, 2), (2, 3, 2), (4,), ()]),
)


@st.composite
def npz_files(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(("arrays", "mutated", "bytes")))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "mutated":
        return draw(mutated(VALID_NPZ))
    name = draw(st.sampled_from(("edges", "lines", "edges ")))
    return _npz_bytes({name: draw(edge_arrays)})


@fuzz(120)
@given(data=npz_files())
@example(data=_npz_bytes({"edges": np.array([None, 1], dtype=object)}))  # a pickled object array
@example(data=_npz_bytes({"edges": np.full((1, 2, 2), np.inf)}))
def test_rid2_reader(raw: Path, data: bytes) -> None:
    folder = raw / "rid2"
    folder.mkdir(exist_ok=True)
    (folder / "roof.npz").write_bytes(data)
    splits = read_rid2_splits(folder, raw / "images", fractions=(1.0, 0.0, 0.0))
    assert [len(s.samples) for s in splits] == [1, 0, 0]
    _build_all(splits[0])


def test_the_outcome_rule_rejects_multiline_messages() -> None:
    with pytest.raises(AssertionError, match="multi-line"):
        check_error(DataError("first\nsecond"))
