"""``--format rid2``: RID2 edge files, ``<raw>/<stem>.npz`` (array ``edges`` [N, 2, 2]) + ``<raw>/images/``.

The parsing lives in :mod:`roofmapnet.data.raw` (shared with ``preprocess_flat``); the train/valid/test split
is drawn with a seeded permutation (``--split-fractions``, ``--seed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from roofmapnet.data.formats.base import FormatReader
from roofmapnet.data.formats.wireframe import images_folder
from roofmapnet.data.raw import RawSplit, read_rid2_splits
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions


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
        images = images_folder(root, options)
        if not any(root.glob("*.npz")):
            raise DataError(f"{root}: no RID2 *.npz edge files")
        splits = read_rid2_splits(
            root,
            images,
            axis_order=options.axis_order,
            fractions=options.split_fractions,
            seed=options.seed,
            extensions=options.image_extensions,
            follow_symlinks=options.follow_symlinks,
        )
        return [sp for sp in splits if options.splits is None or sp.split in options.splits]
