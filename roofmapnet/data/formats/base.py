r"""The interface every raw-format reader implements, and the helpers they share.

A reader has two halves:

* :meth:`FormatReader.scan` runs once in the parent process and is cheap bookkeeping: it lists the samples of
  each split as :class:`~roofmapnet.data.raw.RawSample` records (image path, annotation path, per-sample
  parameters), recording what already failed (missing image, path escaping the dataset root, ...) in the
  sample's ``error`` and whole-file failures in the split's ``file_errors``.
* :meth:`SampleReader.load` runs in a worker process for one sample and returns an :class:`Annotation`: the
  lines in image pixels (x, y), warnings for the summary, per-sample metadata (e.g. the ground sample
  distance) and, when the image is not a file of its own (an embedded LabelMe image, a GIS crop), its pixels.
  Readers whose samples carry their lines already (the wireframe JSON and RID2 layouts, parsed by
  :mod:`roofmapnet.data.raw`) are plain :class:`FormatReader`\ s without ``load``.

Bad content raises :class:`~roofmapnet.errors.DataError` with a one-line reason; the batch driver
(:mod:`roofmapnet.data.preprocess`) turns it into a failed sample and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions
    from roofmapnet.data.raw import RawSample, RawSplit


@dataclass(frozen=True)
class Annotation:
    """What a reader returns for one sample.

    Attributes:
        lines_xy: ``[L, 4]`` float64 ``x1, y1, x2, y2`` in pixels of the image (continuous coordinates, pixel
            edges at integers), before resizing to the network input.
        warnings: one-line notes for the summary (e.g. segments that disagree with an adjacency matrix); they
            do not fail the sample.
        meta: per-sample metadata recorded in ``dataset.json`` (``gsd_m``: metres per image pixel, if known).
        rgb: ``uint8 [H, W, 3]`` pixels when the image is not the sample's ``image_path`` (embedded image, crop).
    """

    lines_xy: NDArray[np.float64]
    warnings: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    rgb: NDArray[np.uint8] | None = None


class FormatReader(ABC):
    """A raw annotation layout understood by ``roofmap preprocess --format NAME``."""

    #: The ``--format`` value.
    name: ClassVar[str]
    #: One line for ``--help`` and the docs.
    summary: ClassVar[str]

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this format (cheap: a few directory listings and file heads)."""

    @abstractmethod
    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """The samples of ``root`` per split (only the splits of ``options.splits`` when it is set).

        Raises:
            DataError: when the input as a whole is unusable (nothing to read, a requested split missing).
        """


class SampleReader(FormatReader):
    """A reader whose samples are parsed one by one in the worker (``RawSample.reader`` names it).

    :meth:`scan` lists the samples (usually with :meth:`file_sample`); :meth:`load` parses one.
    """

    @classmethod
    @abstractmethod
    def load(cls, sample: RawSample) -> Annotation:
        """Parse one sample's annotation (in a worker process).

        Raises:
            DataError: a one-line reason for the summary.
        """

    def file_sample(
        self,
        split: str,
        name: str,
        annotation: Path,
        image: Path | None,
        options: PreprocessOptions,
        *,
        error: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> RawSample:
        """The record of a sample whose annotation is the file ``annotation`` (named in the summary) and whose image
        is ``image`` (``None``: the annotation holds it, or ``error`` says why the sample already failed)."""
        from roofmapnet.data.raw import RawSample

        return RawSample(
            split,
            name,
            str(annotation),
            image if error is None else None,
            axis_order=options.axis_order,
            error=error,
            reader=self.name,
            annotation_path=annotation,
            params=dict(params or {}),
        )


# ----------------------------------------------------------------------------------------------- shared helpers
def wanted_splits(options: PreprocessOptions, present: Sequence[str]) -> list[str]:
    """The splits of ``present`` to process: all of them, or those of ``options.splits`` (each must exist).

    Raises:
        DataError: a requested split is not present.
    """
    if options.splits is None:
        return list(present)
    missing = [s for s in options.splits if s not in present]
    if missing:
        found = ", ".join(present) or "none"
        raise DataError(f"requested split {missing[0]!r} not found (splits present: {found})")
    return [s for s in present if s in options.splits]


def images_folder(default: Path, options: PreprocessOptions) -> Path:
    """The images folder of a layout: ``options.images_dir``, else ``default``; it must exist.

    Raises:
        DataError: ``…: images folder not found (set images_dir)``, naming the field ``images_dir``.
    """
    images = options.images_dir if options.images_dir is not None else default
    if not images.is_dir():
        raise DataError(f"{images}: images folder not found (set images_dir)", fields="images_dir")
    return images


def segment_keys(lines_xy: NDArray[np.float64], decimals: int = 6) -> NDArray[np.float64]:
    """Orientation-free keys ``[L, 4]`` of lines: endpoints rounded and sorted (lexicographically) per line."""
    pts = np.round(np.asarray(lines_xy, dtype=np.float64).reshape(-1, 2, 2), decimals) + 0.0
    swap = (pts[:, 0, 0] > pts[:, 1, 0]) | ((pts[:, 0, 0] == pts[:, 1, 0]) & (pts[:, 0, 1] > pts[:, 1, 1]))
    pts[swap] = pts[swap, ::-1]
    return pts.reshape(-1, 4)


def rows_in(rows: NDArray[np.float64], table: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Whether each row of ``rows`` occurs in ``table`` (exact, vectorised)."""
    if len(rows) == 0 or len(table) == 0:
        return np.zeros(len(rows), dtype=bool)
    _, inverse = np.unique(np.concatenate([rows, table]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return np.isin(inverse[: len(rows)], inverse[len(rows) :])


def clean_segments(lines_xy: NDArray[np.float64], what: str = "segment") -> tuple[NDArray[np.float64], list[str]]:
    """Drop zero-length and repeated lines (either orientation, first kept), with a warning for each kind.

    Returns:
        The kept lines (original order) and the warnings (empty when nothing was dropped).
    """
    lines = np.asarray(lines_xy, dtype=np.float64).reshape(-1, 4)
    notes: list[str] = []
    zero = (lines[:, 0] == lines[:, 2]) & (lines[:, 1] == lines[:, 3])
    if zero.any():
        notes.append(f"{int(zero.sum())} zero-length {what}(s) dropped")
        lines = lines[~zero]
    if len(lines):
        _, first = np.unique(segment_keys(lines), axis=0, return_index=True)
        if len(first) < len(lines):
            notes.append(f"{len(lines) - len(first)} repeated {what}(s) dropped")
            lines = lines[np.sort(first)]
    return lines, notes


def finite_points(values: Any, where: str, width: int = 2) -> NDArray[np.float64]:
    """``values`` as a float64 ``[N, width]`` array of finite numbers.

    Raises:
        DataError: ``WHERE: expected … numbers, got …``.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: expected numbers, got {_short(values)}") from None
    if arr.size == 0:
        return np.zeros((0, width))
    if arr.ndim not in (1, 2) or arr.size % width or (arr.ndim == 2 and arr.shape[1] != width):
        raise DataError(f"{where}: expected [x, y] points, got an array of shape {tuple(arr.shape)}")
    arr = arr.reshape(-1, width)
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: non-finite coordinate in {_short(arr.tolist())}")
    return arr


def swap_axes(lines: NDArray[np.float64], axis_order: str) -> NDArray[np.float64]:
    """Lines read as ``(a, b)`` points → ``x1, y1, x2, y2`` (``axis_order="yx"`` swaps each point)."""
    return lines if axis_order == "xy" else lines[:, [1, 0, 3, 2]]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
