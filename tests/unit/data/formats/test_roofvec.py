"""RoofVec reader: exact junctions and lines from the adjacency matrix, the disagreement report, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.data.formats import detect_format
from roofmapnet.data.formats.roofvec import RoofVecReader, adjacency_lines, parse_roofvec
from roofmapnet.data.preprocess import PreprocessOptions, preprocess
from roofmapnet.data.raw import RawSample
from roofmapnet.data.targets import scale_lines
from tests.unit.data.formats._fuzz import result_or_one_line_error

OPTS = PreprocessOptions(image_size=64, heatmap_size=16, workers=0)


def roofvec_text(junctions: list[list[float]], segments: list[list[float]], adjacency: list[list[int]] | None) -> str:
    """A RoofVec ``.txt`` printed the way the published files are (numpy ``%.2f`` rows)."""
    out = ["#1#", *(f"[{x:.2f} {y:.2f}]" for x, y in junctions), "#2#"]
    for x1, y1, x2, y2 in segments:
        out += [f"[[{x1:.2f} {y1:.2f}]", f" [{x2:.2f} {y2:.2f}]]"]
    if adjacency is not None:
        out.append("#3#")
        rows = [" ".join(f"{float(v):.2f}" for v in row) for row in adjacency]
        out += [("[[" if i == 0 else " [") + r + ("]]" if i == len(rows) - 1 else "]") for i, r in enumerate(rows)]
    return "\n".join(out)


def write_sample(folder: Path, stem: str, text: str, size: tuple[int, int] = (120, 80)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 90, dtype=np.uint8)).save(folder / f"{stem}.jpg")
    (folder / f"{stem}.txt").write_text(text)
    return folder / f"{stem}.txt"


# A hip roof: 4 eave corners and a ridge (2 inner junctions); 9 edges.
JUNC = [[10, 10], [110, 10], [110, 70], [10, 70], [40, 40], [80, 40]]
EDGES = [(0, 1), (1, 2), (2, 3), (0, 3), (0, 4), (3, 4), (4, 5), (1, 5), (2, 5)]


def matrix(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    a = np.zeros((n, n), dtype=int)
    for i, j in edges:
        a[i, j] = a[j, i] = 1
    return a.tolist()


def segs(edges: list[tuple[int, int]]) -> list[list[float]]:
    return [[*JUNC[i], *JUNC[j]] for i, j in edges]


def load(path: Path, axis_order: str = "xy") -> tuple[np.ndarray, tuple[str, ...], dict[str, int]]:
    sample = RawSample("train", path.stem, str(path), path.with_suffix(".jpg"), reader="roofvec", annotation_path=path)
    if axis_order != "xy":
        sample = RawSample("train", path.stem, str(path), None, axis_order="yx", reader="roofvec", annotation_path=path)
    ann = RoofVecReader.load(sample)
    return ann.lines_xy, ann.warnings, dict(ann.meta.get("disagreements", {}))


def test_exact_junctions_and_lines_from_the_matrix(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "train", "000000", roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))
    junc, seg, adj = parse_roofvec(path.read_text())
    np.testing.assert_array_equal(junc, np.array(JUNC, dtype=float))
    np.testing.assert_array_equal(seg, np.array(segs(EDGES), dtype=float))
    assert adj is not None
    assert adj.shape == (6, 6)
    lines, warnings, kinds = load(path)
    # The matrix's upper triangle, row-major: (0,1) (0,3) (0,4) (1,2) (1,5) (2,3) (2,5) (3,4) (4,5).
    order = sorted(EDGES)
    np.testing.assert_array_equal(lines, np.array(segs(order), dtype=float))
    assert warnings == ()
    assert kinds == {}


def test_preprocess_writes_the_exact_junctions(tmp_path: Path) -> None:
    root = tmp_path / "SimpleRoofTXT"
    write_sample(root / "train", "000000", roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))
    write_sample(root / "val", "000007", roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))
    assert detect_format(tmp_path) == "roofvec"  # the checkout that holds SimpleRoofTXT/
    out = tmp_path / "out"
    summary = preprocess(tmp_path, out, OPTS)
    assert summary.ok
    assert summary.counts["train"].written == 1
    assert summary.counts["valid"].written == 1
    assert (out / "valid" / "000007.png").is_file()  # val → valid
    with np.load(out / "train" / "000000_label.npz") as z:
        junc = z["junc"][:, :2]
    expected = np.unique(scale_lines(np.array(segs(EDGES), dtype=float), (80, 120), (16, 16)).reshape(-1, 2), axis=0)
    np.testing.assert_array_equal(np.unique(junc, axis=0), expected)
    record = json.loads((out / "dataset.json").read_text())
    assert record["format"] == "roofvec"
    assert record["gsd_m"] is None
    assert record["samples"]["train/000000"] == {"source_hw": [80, 120], "gsd_m": None}


def test_disagreement_kinds_are_counted_and_the_matrix_wins(tmp_path: Path) -> None:
    # Segments: edge (0,1) twice, (4,5) missing, (0,2) extra, a zero-length one, an endpoint off the junctions.
    listed = [*segs(EDGES[:6]), *segs([(0, 1)]), *segs([(1, 5), (2, 5)]), *segs([(0, 2)])]
    listed += [[10, 10, 10, 10], [10, 10, 55, 55]]
    adj = np.array(matrix(6, EDGES))
    adj[4, 5] = 1
    adj[5, 4] = 0  # asymmetric: listed one way only
    adj[3, 3] = 1  # self-loop
    path = write_sample(tmp_path, "000001", roofvec_text(JUNC, listed, adj.tolist()))
    lines, warnings, kinds = load(path)
    np.testing.assert_array_equal(lines, np.array(segs(sorted(EDGES)), dtype=float))
    assert kinds == {
        "zero_length_segments": 1,
        "repeated_segments": 1,
        "segment_endpoints_not_junctions": 1,
        "self_loops": 1,
        "asymmetric_pairs": 1,
        "segments_not_in_matrix": 2,
        "matrix_edges_not_in_segments": 1,
    }
    assert len(warnings) == 1
    assert warnings[0].startswith("segments (#2#) and adjacency matrix (#3#, used) disagree: 1 repeated segment(s)")
    assert "2 segment(s) not in the matrix" in warnings[0]
    assert "1 matrix edge(s) not in the segments" in warnings[0]


def test_duplicate_junctions_are_merged(tmp_path: Path) -> None:
    junc = [*JUNC, JUNC[0]]  # junction 6 repeats junction 0
    edges = [*EDGES, (6, 1), (6, 0)]  # (6,1) repeats (0,1); (6,0) has zero length
    listed = [*segs(EDGES), [*JUNC[0], *JUNC[1]], [*JUNC[0], *JUNC[0]]]
    path = write_sample(tmp_path, "000002", roofvec_text(junc, listed, matrix(7, edges)))
    lines, _, kinds = load(path)
    assert len(lines) == len(EDGES)
    assert kinds["duplicate_junctions"] == 1


def test_summary_cli_warnings_failures_and_nothing_half_written(tmp_path: Path) -> None:
    root = tmp_path / "rv"
    write_sample(root / "train", "000000", roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))
    write_sample(root / "train", "000001", roofvec_text(JUNC, segs([*EDGES, (0, 1)]), matrix(6, EDGES)))
    write_sample(root / "train", "000002", roofvec_text(JUNC, segs(EDGES), None))  # no #3#: segments used
    write_sample(root / "train", "000003", roofvec_text(JUNC, segs(EDGES), matrix(5, EDGES[:3])))
    write_sample(root / "train", "000004", "#2#\n[[1 2]\n [3 4]]\n#1#\n[1 2]")
    write_sample(root / "train", "000005", roofvec_text(JUNC, [], np.zeros((6, 6), int).tolist()))
    write_sample(root / "val", "000006", "#1#\n[1.0 2.0]\n[3 x]\n#2#\n#3#\n[[0]]")
    (root / "val" / "000007.txt").write_text(roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))  # no image
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["preprocess", str(root), str(out), "--format", "roofvec", "--workers", "0"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "000001.txt: segments (#2#) and adjacency matrix (#3#, used) disagree: 1 repeated segment(s)" in text
    assert "000002.txt: no #3# adjacency matrix: lines taken from the #2# segments" in text
    assert "000003.txt: #3# adjacency: 25 numbers, expected 6×6 for the 6 junctions of #1#" in text
    assert "000004.txt: expected blocks #1# (junctions), #2# (segments), #3# (adjacency) in order, found #2##1#" in text
    assert "000005.txt: no lines (the adjacency matrix has no edge)" in text
    assert "000006.txt: #1# junctions: unexpected text 'x'" in text
    assert "000007.txt: no image 000007.jpg" in text
    written = sorted(p.name for p in (out / "train").iterdir())
    assert written == [f"00000{i}{s}" for i in (0, 1, 2) for s in (".png", "_label.npz")]
    assert not (out / "valid").exists() or not any((out / "valid").iterdir())
    record = json.loads((out / "dataset.json").read_text())
    assert record["samples"]["train/000001"]["disagreements"] == {"repeated_segments": 1}
    assert set(record["samples"]) == {"train/000000", "train/000001", "train/000002"}


def test_axis_order_yx_swaps_every_point(tmp_path: Path) -> None:
    path = write_sample(tmp_path, "000000", roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES)))
    lines_xy, _, _ = load(path)
    lines_yx, _, _ = load(path, "yx")
    np.testing.assert_array_equal(lines_yx, lines_xy[:, [1, 0, 3, 2]])


def test_adjacency_lines_is_vectorised_over_an_empty_graph() -> None:
    lines, kinds = adjacency_lines(np.zeros((0, 2)), np.zeros((0, 4)), np.zeros((0, 0)))
    assert lines.shape == (0, 4)
    assert kinds == {}


# ------------------------------------------------------------------------------------------------ fuzzing
_VALID = roofvec_text(JUNC, segs(EDGES), matrix(6, EDGES))
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _load_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "000000.txt"
    path.write_bytes(data)
    sample = RawSample("train", "000000", str(path), None, reader="roofvec", annotation_path=path)
    ann = result_or_one_line_error(lambda: RoofVecReader.load(sample))
    if ann is None:
        return
    assert ann.lines_xy.ndim == 2
    assert ann.lines_xy.shape[1] == 4
    assert np.isfinite(ann.lines_xy).all()


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_any_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _load_bytes(tmp_path_factory.mktemp("fz"), data)


@FUZZ
@given(cut=st.integers(0, len(_VALID)), insert=st.text(alphabet="#123[]. -e0x\n", max_size=8))
def test_fuzz_mutated_valid_file(tmp_path_factory: pytest.TempPathFactory, cut: int, insert: str) -> None:
    _load_bytes(tmp_path_factory.mktemp("fz"), (_VALID[:cut] + insert + _VALID[cut + len(insert) :]).encode())


def test_skip_existing_keeps_the_earlier_records(tmp_path: Path) -> None:
    root = tmp_path / "rv"
    write_sample(root / "train", "000001", roofvec_text(JUNC, segs([*EDGES, (0, 1)]), matrix(6, EDGES)))
    out = tmp_path / "out"
    preprocess(root, out, OPTS)
    first = json.loads((out / "dataset.json").read_text())
    summary = preprocess(root, out, PreprocessOptions(image_size=64, heatmap_size=16, workers=0, skip_existing=True))
    assert summary.counts["train"].skipped == 1
    assert json.loads((out / "dataset.json").read_text()) == first
    assert first["samples"]["train/000001"]["disagreements"] == {"repeated_segments": 1}
