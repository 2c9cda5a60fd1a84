"""LabelMe reader: line and linestrip shapes, other shapes counted, imagePath rules, embedded imageData."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from roofmapnet.data.formats import detect_format
from roofmapnet.data.formats.labelme import LabelMeReader
from roofmapnet.data.preprocess import PreprocessOptions, preprocess
from roofmapnet.data.raw import RawSample
from tests.unit.data.formats._fuzz import result_or_one_line_error

OPTS = PreprocessOptions(image_size=64, heatmap_size=16, workers=0)


def png(width: int = 100, height: int = 80) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 60, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def shape(kind: str | None, points: list[list[float]], label: str = "ridge") -> dict[str, object]:
    out: dict[str, object] = {"label": label, "points": points, "group_id": None, "flags": {}}
    if kind is not None:
        out["shape_type"] = kind
    return out


SHAPES = [
    shape("line", [[10, 10], [90, 10]]),
    shape("linestrip", [[10, 70], [50, 40], [50, 40], [90, 70]]),  # a double click: one zero-length segment
    shape("polygon", [[0, 0], [5, 0], [5, 5]]),
    shape("rectangle", [[1, 1], [4, 4]]),
    shape(None, [[2, 2], [3, 3], [2, 3]]),  # no shape_type: LabelMe's default, polygon
    shape("line", [[90, 10], [10, 10]]),  # the first line again, reversed
]


def write_labelme(path: Path, shapes: list[dict[str, object]], image: str | None = "roof.png", **extra: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image, "imageData": None}
    doc.update({"imageHeight": 80, "imageWidth": 100, **extra})
    path.write_text(json.dumps(doc))
    return path


def load(path: Path, root: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    ann = LabelMeReader.load(
        RawSample(
            "train", path.stem, str(path), None, reader="labelme", annotation_path=path, params={"root": str(root)}
        )
    )
    assert ann.rgb is not None
    assert ann.rgb.shape == (80, 100, 3)
    return ann.lines_xy, ann.warnings


def test_line_and_linestrip_shapes_become_exact_segments(tmp_path: Path) -> None:
    (tmp_path / "roof.png").write_bytes(png())
    lines, warnings = load(write_labelme(tmp_path / "roof.json", SHAPES), tmp_path)
    np.testing.assert_array_equal(lines, [[10, 10, 90, 10], [10, 70, 50, 40], [50, 40, 90, 70]])
    assert warnings == (
        "3 non-line shape(s) ignored (2 polygon, 1 rectangle)",
        "1 zero-length segment(s) dropped",
        "1 repeated segment(s) dropped",
    )


def test_embedded_image_data_needs_no_file(tmp_path: Path) -> None:
    path = write_labelme(
        tmp_path / "a.json", SHAPES[:2], image="missing.png", imageData=base64.b64encode(png()).decode()
    )
    lines, _ = load(path, tmp_path)
    assert len(lines) == 3


def test_preprocess_split_folders_failures_and_escape(tmp_path: Path) -> None:
    root = tmp_path / "labels"
    (root / "train" / "img").mkdir(parents=True)
    (root / "train" / "img" / "a.png").write_bytes(png())
    write_labelme(root / "train" / "a.json", SHAPES, image="img\\a.png")  # Windows separators, as LabelMe writes
    write_labelme(root / "train" / "b.json", SHAPES, image="../../outside.png")
    (tmp_path / "outside.png").write_bytes(png())
    write_labelme(root / "train" / "c.json", SHAPES, image="img/a.png", imageHeight=81)
    write_labelme(root / "train" / "d.json", [shape("line", [[1, 1], [2, 2], [3, 3]])], image="img/a.png")
    write_labelme(root / "train" / "e.json", [shape("polygon", [[1, 1], [2, 2], [3, 1]])], image="img/a.png")
    write_labelme(root / "val" / "f.json", [shape("linestrip", [[1, "x"], [2, 2]])], image="x.png")
    assert detect_format(root) == "labelme"
    summary = preprocess(root, tmp_path / "out", OPTS)
    reasons = {Path(f).name: r for _, f, r in summary.failures}
    assert reasons == {
        "b.json": f"'imagePath' '../../outside.png' escapes the dataset root {root}",
        "c.json": "'imageHeight'/'imageWidth' (81×100) differ from the image's size (80×100)",
        "d.json": "shapes[0]: a 'line' has 2 points, got 3",
        "e.json": "no line or linestrip shapes",
        "f.json": "shapes[0].points: expected numbers, got [[1, 'x'], [2, 2]]",
    }
    assert summary.counts["train"].written == 1
    assert (tmp_path / "out" / "train" / "a_label.npz").is_file()
    assert next(w for _, _, w in summary.warnings) == "3 non-line shape(s) ignored (2 polygon, 1 rectangle)"


def test_flat_folder_is_split_by_the_seed(tmp_path: Path) -> None:
    for i in range(10):
        write_labelme(tmp_path / "in" / f"{i}.json", SHAPES[:1], image=None, imageData=base64.b64encode(png()).decode())
    summary = preprocess(tmp_path / "in", tmp_path / "out", OPTS)
    assert summary.ok
    assert {s: c.written for s, c in summary.counts.items()} == {"train": 8, "valid": 1, "test": 1}


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 200) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["points", "shape_type", "x"]), inner),
    max_leaves=10,
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(shapes=_json, kind=st.sampled_from(["line", "linestrip", "polygon", None]))
def test_fuzz_any_shapes(tmp_path_factory: pytest.TempPathFactory, shapes: object, kind: str | None) -> None:
    root = tmp_path_factory.mktemp("fz")
    doc = {"shapes": [{"shape_type": kind, "points": shapes}], "imageData": base64.b64encode(png(8, 8)).decode()}
    path = root / "a.json"
    path.write_text(json.dumps(doc))
    sample = RawSample(
        "train", "a", str(path), None, reader="labelme", annotation_path=path, params={"root": str(root)}
    )
    result_or_one_line_error(lambda: LabelMeReader.load(sample))


@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_fuzz_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    root = tmp_path_factory.mktemp("fz")
    path = root / "a.json"
    path.write_bytes(data)
    sample = RawSample(
        "train", "a", str(path), None, reader="labelme", annotation_path=path, params={"root": str(root)}
    )
    result_or_one_line_error(lambda: LabelMeReader.load(sample))
