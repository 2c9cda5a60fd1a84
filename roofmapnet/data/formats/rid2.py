"""``--format rid2``: RID2 edge files, ``<raw>/<stem>.npz`` (array ``edges`` [N, 2, 2]) + ``<raw>/images/``.

The parsing lives in :mod:`roofmapnet.data.raw`; :func:`scan_rid2` (the edge files and their images) serves both
this reader and ``preprocess_flat`` (the seed's ``preprocess_rid2``).  The train/valid/test split is drawn with a
seeded permutation (``split_fractions``, ``seed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from roofmapnet.data.formats.base import FormatReader, images_folder
from roofmapnet.data.raw import RawSplit, read_rid2_splits
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions


def scan_rid2(root: Path, images: Path, options: PreprocessOptions, *, fractions: Sequence[float]) -> list[RawSplit]:
    """The RID2 edge files of ``root`` with their images in ``images``, split by ``fractions`` (``options.seed``).

    Raises:
        DataError: ``root`` holds no ``*.npz``.
    """
    if not any(root.glob("*.npz")):
        raise DataError(f"{root}: no RID2 *.npz edge files")
    return read_rid2_splits(
        root,
        images,
        axis_order=options.axis_order,
        fractions=fractions,
        seed=options.seed,
        extensions=options.image_extensions,
        follow_symlinks=options.follow_symlinks,
    )


class Rid2Reader(FormatReader):
    """RID2 ``<stem>.npz`` edge files with images found by stem."""

    name = "rid2"
    summary = "<stem>.npz files with `edges` [N, 2, 2] + images/<stem>.* (RID2), split by a seeded permutation"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """``root`` holds ``*.npz`` files."""
        return any(root.glob("*.npz"))

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """The edge files, split by the seeded permutation."""
        splits = scan_rid2(root, images_folder(root / "images", options), options, fractions=options.split_fractions)
        return [sp for sp in splits if options.splits is None or sp.split in options.splits]
