"""``--format heat``: planar roof graphs of HEAT, Conv-MPN and buildings2vec (the "cities" data set layout).

Layout::

    ROOT/
      rgb/N.jpg                      # the image (any suffix of data.image_extensions)
      annot/N.npy                    # a pickled dict {(x, y): [array([x, y]), ...]}: corner → its neighbours
      train_list.txt  valid_list.txt  [test_list.txt]    # one N per line

Corners and neighbours are image pixels ``(x, y)`` (``--axis-order yx`` reads them as ``(y, x)``).  Every
corner–neighbour pair is a line; the graph is undirected, so a pair listed from both ends is one line.
Without any ``*_list.txt`` the files of ``annot/`` are split by the seeded permutation of ``--split-fractions``.

The ``.npy`` files hold pickles, which ``np.load(allow_pickle=True)`` would execute: they are read with
:func:`roofmapnet.utils.safe_pickle.load_npy`, which accepts numpy arrays, tuples, lists, dicts and numbers
only, and refuses anything else without running it.  Warnings (not failures): a neighbour that is not a corner
of the dict, a pair listed from one end only, a corner listed as its own neighbour, repeated pairs.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from roofmapnet.data.formats.base import (
    Annotation,
    SampleReader,
    clean_segments,
    finite_points,
    rows_in,
    segment_keys,
)
from roofmapnet.data.raw import SPLITS, RawSample, RawSplit, index_images, split_assignment
from roofmapnet.errors import DataError
from roofmapnet.utils.safe_pickle import load_npy

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions

LIST_FILES: Final = {split: f"{split}_list.txt" for split in SPLITS}


def graph_lines(graph: Any) -> tuple[np.ndarray, list[str]]:
    """The undirected lines ``[L, 4]`` (``a1, b1, a2, b2`` as stored) of a corner → neighbours dict, and warnings.

    Raises:
        DataError: not a dict, a key that is not a point, a neighbour list that is not points.
    """
    if not isinstance(graph, dict):
        raise DataError(f"expected a dict {{(x, y): [neighbour points]}}, got {type(graph).__name__}")
    if not graph:
        raise DataError("no corners (empty graph)")
    corners = finite_points(list(graph), "corner keys")
    if len(corners) != len(graph):
        raise DataError("corner keys: expected (x, y) pairs")
    blocks = [
        finite_points(v, f"neighbours of corner {tuple(corners[i].tolist())}") for i, v in enumerate(graph.values())
    ]
    counts = np.array([len(b) for b in blocks], dtype=np.int64)
    ends = np.concatenate(blocks) if blocks else np.zeros((0, 2))
    lines = np.concatenate([np.repeat(corners, counts, axis=0), ends], axis=1)
    notes: list[str] = []
    strangers = int((~rows_in(ends, corners)).sum())
    if strangers:
        notes.append(f"{strangers} neighbour(s) that are not corners of the graph (kept as line ends)")
    loops = (lines[:, :2] == lines[:, 2:]).all(axis=1)
    if loops.any():
        notes.append(f"{int(loops.sum())} corner(s) listed as their own neighbour (ignored)")
        lines = lines[~loops]
    # A pair seen once only (after orienting) was listed from one end: not a symmetric adjacency.
    keys = segment_keys(lines)
    if len(keys):
        _, count = np.unique(keys, axis=0, return_counts=True)
        one_way = int((count == 1).sum())
        if one_way:
            notes.append(f"{one_way} pair(s) listed from one corner only (used)")
        over = int((count > 2).sum())
        if over:
            notes.append(f"{over} pair(s) listed more than once from the same corner")
    lines, _ = clean_segments(lines)
    return lines, notes


class HeatReader(SampleReader):
    """``rgb/N.jpg`` + ``annot/N.npy`` corner graphs + ``{train,valid,test}_list.txt``."""

    name = "heat"
    summary = "HEAT / Conv-MPN 'cities' graphs: rgb/N.jpg + annot/N.npy (pickled corner dict) + *_list.txt"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """``annot/`` holds ``*.npy`` files and ``rgb/`` exists."""
        return (root / "rgb").is_dir() and (root / "annot").is_dir() and any((root / "annot").glob("*.npy"))

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """The samples named by each ``<split>_list.txt`` (or a seeded split of ``annot/``)."""
        annot, rgb = root / "annot", options.images_dir or root / "rgb"
        if not annot.is_dir() or not rgb.is_dir():
            raise DataError(f"{root}: expected rgb/ and annot/ folders (HEAT layout)")
        images = index_images(rgb, options.image_extensions)
        out: list[RawSplit] = []
        lists = {s: root / f for s, f in LIST_FILES.items() if (root / f).is_file()}
        if lists:
            names: dict[str, list[str]] = {}
            for split, path in lists.items():
                try:
                    names[split] = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
                except (OSError, UnicodeDecodeError) as exc:
                    out.append(RawSplit(split, file_errors=[(str(path), f"cannot read ({exc})")]))
            present = [s for s in SPLITS if s in names]
        else:
            stems = sorted(p.stem for p in annot.glob("*.npy") if p.is_file())
            assignment = split_assignment(len(stems), options.split_fractions, options.seed).tolist()
            names = {s: [n for n, k in zip(stems, assignment, strict=True) if SPLITS[k] == s] for s in SPLITS}
            present = list(SPLITS)
        if options.splits is not None:
            missing = [s for s in options.splits if s not in present]
            if missing:
                raise DataError(f"{root / LIST_FILES[missing[0]]}: not found (requested split {missing[0]!r})")
            present = [s for s in present if s in options.splits]
        for split in present:
            raw = RawSplit(split)
            seen: set[str] = set()
            for name in names[split]:
                stem = PurePosixPath(name).stem if name.endswith((".npy", ".jpg", ".png")) else name
                annotation = annot / f"{stem}.npy"
                error = None
                if "/" in stem or "\\" in stem or stem in (".", ".."):
                    error = f"{LIST_FILES[split]}: name {name!r} is not a plain file name"
                elif stem in seen:
                    error = f"{LIST_FILES[split]}: {stem!r} listed twice"
                elif not annotation.is_file():
                    error = f"no annotation {stem}.npy in {annot}"
                elif stem not in images:
                    error = f"no image {stem}.jpg (or other image suffix) in {rgb}"
                seen.add(stem)
                raw.samples.append(self.file_sample(split, stem, annotation, images.get(stem), options, error=error))
            out.append(raw)
        return out

    @classmethod
    def load(cls, sample: RawSample) -> Annotation:
        """Read the graph with the restricted unpickler and turn its edges into lines."""
        assert sample.annotation_path is not None
        try:
            graph = load_npy(sample.annotation_path)
        except DataError as exc:  # the summary names the file already
            raise DataError(str(exc).removeprefix(f"{sample.annotation_path}: ")) from None
        lines, notes = graph_lines(graph)
        if sample.axis_order == "yx":
            lines = lines[:, [1, 0, 3, 2]]
        if len(lines) == 0:
            raise DataError("no lines (no corner has a neighbour)")
        return Annotation(lines, warnings=tuple(notes))
