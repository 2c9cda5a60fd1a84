"""HEAT / "cities" graph reader: exact lines from the corner dict, split lists, warnings, a malicious ``.npy``."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.data.formats import detect_format
from roofmapnet.data.formats.heat import HeatReader, graph_lines
from roofmapnet.data.preprocess import PreprocessOptions, preprocess
from roofmapnet.data.raw import RawSample
from tests.unit.data.formats._fuzz import result_or_one_line_error

OPTS = PreprocessOptions(image_size=64, heatmap_size=16, workers=0)
A, B, C, D = (20, 30), (200, 30), (200, 220), (20, 220)


def square_graph() -> dict[tuple[int, int], list[np.ndarray]]:
    """A closed square plus one diagonal, each pair listed from both ends (as HEAT's files are)."""
    nb = {A: [B, D, C], B: [A, C], C: [B, D, A], D: [C, A]}
    return {k: [np.array(v) for v in vs] for k, vs in nb.items()}


def make_heat(root: Path, graphs: dict[str, object], lists: dict[str, list[str]] | None) -> Path:
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "annot").mkdir(exist_ok=True)
    for name, g in graphs.items():
        Image.fromarray(np.full((256, 256, 3), 70, dtype=np.uint8)).save(root / "rgb" / f"{name}.jpg")
        np.save(root / "annot" / f"{name}.npy", g, allow_pickle=True)
    for split, names in (lists or {}).items():
        (root / f"{split}_list.txt").write_text("\n".join(names) + "\n")
    return root


def test_exact_lines_from_the_corner_dict() -> None:
    lines, notes = graph_lines(square_graph())
    assert notes == []
    expected = np.array([[*A, *B], [*A, *D], [*A, *C], [*B, *C], [*C, *D]], dtype=float)
    np.testing.assert_array_equal(lines, expected)


def test_one_way_pairs_strangers_and_self_loops_are_warned() -> None:
    g = square_graph()
    g[A] = [*g[A], np.array(A), np.array([120, 120])]  # a self-loop, a neighbour that is no corner
    del g[D][1]  # D no longer lists A: (A, D) is one-way now
    lines, notes = graph_lines(g)
    assert notes == [
        "1 neighbour(s) that are not corners of the graph (kept as line ends)",
        "1 corner(s) listed as their own neighbour (ignored)",
        "2 pair(s) listed from one corner only (used)",
    ]
    assert len(lines) == 6


def test_preprocess_with_split_lists(tmp_path: Path) -> None:
    root = make_heat(
        tmp_path / "cities", {"101": square_graph(), "102": square_graph()}, {"train": ["101"], "valid": ["102"]}
    )
    assert detect_format(root) == "heat"
    out = tmp_path / "out"
    summary = preprocess(root, out, OPTS)
    assert summary.ok, summary.failures
    assert (out / "train" / "101_label.npz").is_file()
    assert (out / "valid" / "102_label.npz").is_file()
    with np.load(out / "train" / "101_label.npz") as z:
        assert len(z["Lpos"]) == 5  # five undirected lines


def test_malicious_annotation_fails_that_sample_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    root = make_heat(tmp_path / "cities", {"1": square_graph(), "2": {(1, 2): [Evil()]}}, {"train": ["1", "2"]})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["preprocess", str(root), str(out), "--workers", "0"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "2.npy: refused to unpickle (forbidden global posix.system" in text or "forbidden global nt.system" in text
    assert not marker.exists()
    assert (out / "train" / "1_label.npz").is_file()
    assert not (out / "train" / "2_label.npz").exists()
    assert not (out / "train" / "2.png").exists()


def test_scan_failures_and_the_seeded_split_without_lists(tmp_path: Path) -> None:
    root = make_heat(tmp_path / "a", {"1": square_graph(), "2": square_graph()}, {"train": ["1", "../x", "1", "9"]})
    (root / "rgb" / "2.jpg").unlink()
    summary = preprocess(root, tmp_path / "out", OPTS)
    reasons = sorted(r for _, _, r in summary.failures)
    assert reasons == [
        "no annotation 9.npy in " + str(root / "annot"),
        "train_list.txt: '1' listed twice",
        "train_list.txt: name '../x' is not a plain file name",
    ]
    root = make_heat(tmp_path / "b", {str(i): square_graph() for i in range(10)}, None)
    summary = preprocess(root, tmp_path / "out2", OPTS)
    assert summary.ok
    assert {s: c.written for s, c in summary.counts.items()} == {"train": 8, "valid": 1, "test": 1}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    value=st.recursive(
        st.none() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=3),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner, inner)
            | st.dictionaries(st.tuples(st.integers(0, 99), st.integers(0, 99)) | st.integers(0, 3), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_fuzz_any_pickled_structure(tmp_path_factory: pytest.TempPathFactory, value: object) -> None:
    path = tmp_path_factory.mktemp("fz") / "1.npy"
    path.write_bytes(pickle.dumps(value, protocol=2))
    sample = RawSample("train", "1", str(path), None, reader="heat", annotation_path=path)
    ann = result_or_one_line_error(lambda: HeatReader.load(sample))
    if ann is not None:
        assert ann.lines_xy.shape[1] == 4
        assert np.isfinite(ann.lines_xy).all()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.binary(max_size=300))
def test_fuzz_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fz") / "1.npy"
    path.write_bytes(data)
    result_or_one_line_error(
        lambda: HeatReader.load(RawSample("train", "1", str(path), None, reader="heat", annotation_path=path))
    )
