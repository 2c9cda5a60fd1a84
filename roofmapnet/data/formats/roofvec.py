"""``--format roofvec``: the RoofVec data set (Hensel et al., ISPRS 2021), folder ``SimpleRoofTXT/{train,val}``.

Layout::

    ROOT/                      # SimpleRoofTXT/, or the checkout that contains it
      train/NNNNNN.jpg + NNNNNN.txt
      val/NNNNNN.jpg + NNNNNN.txt      # → our `valid` split (a `valid/` or `test/` folder is read as such)

Each ``.txt`` holds three blocks, numbers printed by numpy (``%.2f``)::

    #1#                  junctions, one [x y] row each (image pixels, x = column, y = row)
    [520.00 377.00]
    #2#                  segments, [[x1 y1]\\n [x2 y2]] pairs of junction coordinates
    [[520.00 377.00]
     [488.00 430.00]]
    #3#                  adjacency matrix over the junctions (n × n, 1 = edge)
    [[0.00 1.00 ...]
     ...]

**Source of truth: the adjacency matrix** over the junctions.  Over the whole published set (7,501 train and
139 val files) the matrix is binary, symmetric and has an empty diagonal in every file, and its edge set equals
the *set* of the listed segments in every file; the only disagreement is in the segment list: 88 files list an
edge twice (142 repeated segments in all; 58,180 lines remain), which the matrix, being a set, cannot do.
The matrix is also the graph the data set was made from (junction indices, no coordinate matching needed).  The ``#2#`` segments are
used as a cross-check: every kind of disagreement is reported as a warning for that file (repeated segments,
segments absent from the matrix, matrix edges absent from the segments, segment endpoints that are no
junction, zero-length segments), never as a failure.  A file without a ``#3#`` block falls back to its
segments, with a warning.  Quirks handled on the matrix side (each with a warning): an asymmetric matrix (an
edge listed one way counts), self-loops (ignored), duplicated junctions (edges between the copies have zero
length and are dropped; the copies' edges are merged).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from roofmapnet.data.formats.base import (
    Annotation,
    SampleReader,
    clean_segments,
    rows_in,
    segment_keys,
    wanted_splits,
)
from roofmapnet.data.raw import SPLITS, RawSample, RawSplit, index_images
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions

#: Split folder → our split name.
SPLIT_FOLDERS: Final = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)", re.IGNORECASE)
_MARKER = re.compile(r"#([123])#")
_FILLER = re.compile(r"[\s\[\],]*")


def dataset_root(root: Path) -> Path:
    """``root`` itself, or its ``SimpleRoofTXT/`` folder when ``root`` is the RoofVec checkout."""
    inner = root / "SimpleRoofTXT"
    return inner if inner.is_dir() and not _split_dirs(root) else root


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    return [(split, root / folder) for folder, split in SPLIT_FOLDERS.items() if (root / folder).is_dir()]


def _numbers(block: str, what: str) -> NDArray[np.float64]:
    leftover = _FILLER.sub("", _NUMBER.sub("", block))
    if leftover:
        raise DataError(f"{what}: unexpected text {leftover[:20]!r}")
    values = np.array(_NUMBER.findall(block), dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{what}: non-finite number")
    return values


def parse_roofvec(text: str) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """The three blocks of a RoofVec ``.txt``: junctions ``[n, 2]``, segments ``[m, 4]``, adjacency ``[n, n]``.

    The adjacency is ``None`` when the file has no ``#3#`` block.

    Raises:
        DataError: missing or misordered blocks, text that is not numbers, wrong counts.
    """
    parts = _MARKER.split(text)
    markers = parts[1::2]
    if parts[0].strip() or markers not in (["1", "2"], ["1", "2", "3"]):
        found = "".join(f"#{m}#" for m in markers) or "none"
        raise DataError(f"expected blocks #1# (junctions), #2# (segments), #3# (adjacency) in order, found {found}")
    junctions = _numbers(parts[2], "#1# junctions")
    if junctions.size % 2:
        raise DataError(f"#1# junctions: {junctions.size} numbers, expected [x y] pairs")
    segments = _numbers(parts[4], "#2# segments")
    if segments.size % 4:
        raise DataError(f"#2# segments: {segments.size} numbers, expected [[x1 y1] [x2 y2]] pairs")
    junc = junctions.reshape(-1, 2)
    adjacency = None
    if len(markers) == 3:
        matrix = _numbers(parts[6], "#3# adjacency")
        n = len(junc)
        if matrix.size != n * n:
            raise DataError(f"#3# adjacency: {matrix.size} numbers, expected {n}×{n} for the {n} junctions of #1#")
        adjacency = matrix.reshape(n, n)
    return junc, segments.reshape(-1, 4), adjacency


def adjacency_lines(
    junc: NDArray[np.float64], segments: NDArray[np.float64], adjacency: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], dict[str, int]]:
    """The lines of a RoofVec file (from the adjacency matrix) and the count of each disagreement kind.

    Returns:
        ``[L, 4]`` ``x1, y1, x2, y2`` lines, and ``{kind: count}`` of the kinds found (empty when the file is
        consistent).  Kinds: ``repeated_segments``, ``zero_length_segments``, ``segments_not_in_matrix``,
        ``matrix_edges_not_in_segments``, ``segment_endpoints_not_junctions``, ``asymmetric_pairs``,
        ``self_loops``, ``duplicate_junctions``, ``no_matrix``.
    """
    kinds: dict[str, int] = {}

    def note(kind: str, count: int) -> None:
        if count:
            kinds[kind] = kinds.get(kind, 0) + int(count)

    seg_zero = (segments[:, :2] == segments[:, 2:]).all(axis=1)
    note("zero_length_segments", int(seg_zero.sum()))
    seg_keys = segment_keys(segments[~seg_zero])
    unique_seg = np.unique(seg_keys, axis=0) if len(seg_keys) else seg_keys
    note("repeated_segments", len(seg_keys) - len(unique_seg))
    note("segment_endpoints_not_junctions", int((~rows_in(segments.reshape(-1, 2), junc)).sum()))
    if adjacency is None:
        note("no_matrix", 1)
        lines = segments[~seg_zero]
    else:
        edges = adjacency != 0
        note("self_loops", int(np.diag(edges).sum()))
        note("asymmetric_pairs", int(np.triu(edges != edges.T, 1).sum()))
        i, j = np.nonzero(np.triu(edges | edges.T, 1))
        lines = np.concatenate([junc[i], junc[j]], axis=1)
        note("duplicate_junctions", len(junc) - len(np.unique(junc, axis=0)) if len(junc) else 0)
        lines, _ = clean_segments(lines)  # edges between duplicated junctions, edges the copies share
        adj_keys = segment_keys(lines)
        note("segments_not_in_matrix", int((~rows_in(unique_seg, adj_keys)).sum()))
        note("matrix_edges_not_in_segments", int((~rows_in(adj_keys, unique_seg)).sum()))
    return lines, kinds


_KIND_TEXT: Final = {
    "repeated_segments": "{} repeated segment(s)",
    "zero_length_segments": "{} zero-length segment(s)",
    "segments_not_in_matrix": "{} segment(s) not in the matrix",
    "matrix_edges_not_in_segments": "{} matrix edge(s) not in the segments",
    "segment_endpoints_not_junctions": "{} segment endpoint(s) that are no #1# junction",
    "asymmetric_pairs": "{} junction pair(s) listed one way only (used)",
    "self_loops": "{} self-loop(s) ignored",
    "duplicate_junctions": "{} duplicated junction(s) merged",
}


def describe(kinds: dict[str, int]) -> str | None:
    """The one-line warning of a file's disagreement counts, or ``None`` when there is none."""
    if not kinds:
        return None
    if "no_matrix" in kinds:
        return "no #3# adjacency matrix: lines taken from the #2# segments"
    text = "; ".join(fmt.format(kinds[k]) for k, fmt in _KIND_TEXT.items() if k in kinds)
    return f"segments (#2#) and adjacency matrix (#3#, used) disagree: {text}"


class RoofVecReader(SampleReader):
    """RoofVec ``SimpleRoofTXT``: ``{train,val}/NNNNNN.{jpg,txt}``, lines from the adjacency matrix."""

    name = "roofvec"
    summary = "RoofVec SimpleRoofTXT/{train,val}/NNNNNN.jpg + .txt (junctions, segments, adjacency matrix)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """A ``train/``/``val/`` folder (here or in ``SimpleRoofTXT/``) whose first ``.txt`` starts with ``#1#``."""
        for _, folder in _split_dirs(dataset_root(root)):
            first = next(iter(sorted(folder.glob("*.txt"))), None)
            if first is not None:
                try:
                    with first.open("rb") as fh:
                        return fh.read(64).lstrip().startswith(b"#1#")
                except OSError:
                    return False
        return False

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """One split per split folder: every ``.txt`` with the image of the same stem."""
        base = dataset_root(root)
        folders = _split_dirs(base)
        present = [s for s in SPLITS if any(split == s for split, _ in folders)]
        if not present:
            raise DataError(f"{root}: no train/ or val/ folder of RoofVec .txt files (SimpleRoofTXT)")
        out: list[RawSplit] = []
        for split in wanted_splits(options, present):
            raw = RawSplit(split)
            for _, folder in (f for f in folders if f[0] == split):
                images = index_images(folder, options.image_extensions)
                for txt in sorted(p for p in folder.glob("*.txt") if p.is_file()):
                    image = images.get(txt.stem)
                    error = (
                        None if image is not None else f"no image {txt.stem}.jpg (or other image suffix) in {folder}"
                    )
                    raw.samples.append(self.file_sample(split, txt.stem, txt, image, options, error=error))
            out.append(raw)
        return out

    @classmethod
    def load(cls, sample: RawSample) -> Annotation:
        """Parse the ``.txt``; lines from the adjacency matrix, disagreements as warnings."""
        assert sample.annotation_path is not None
        try:
            text = sample.annotation_path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise DataError("not a RoofVec text file (not UTF-8)") from None
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc})") from None
        junc, segments, adjacency = parse_roofvec(text)
        if sample.axis_order == "yx":
            junc, segments = junc[:, ::-1], segments[:, [1, 0, 3, 2]]
        lines, kinds = adjacency_lines(junc, segments, adjacency)
        if len(lines) == 0:
            raise DataError("no lines (the adjacency matrix has no edge)")
        warning = describe(kinds)
        return Annotation(lines, warnings=(warning,) if warning else (), meta={"disagreements": kinds} if kinds else {})
