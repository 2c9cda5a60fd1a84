"""``--format json``: wireframe JSON splits, ``<raw>/{train,valid,test}.json`` + ``<raw>/images/`` (L-CNN's layout).

The parsing lives in :mod:`roofmapnet.data.raw` (shared with ``preprocess_flat`` and the seed's module); this
reader plugs it into the format registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from roofmapnet.data.formats.base import FormatReader, images_folder, wanted_splits
from roofmapnet.data.raw import SPLITS, RawSplit, read_json_split
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions


class JsonReader(FormatReader):
    """Wireframe JSON lists of ``{filename, lines: [[x1, y1, x2, y2], …], height?, width?}``."""

    name = "json"
    summary = "{train,valid,test}.json lists of {filename, lines} + images/ (L-CNN wireframe JSON)"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """A ``<split>.json`` file exists in ``root``."""
        return any((root / f"{split}.json").is_file() for split in SPLITS)

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """One split per ``<split>.json`` present (or requested)."""
        images = images_folder(root / "images", options)
        present = [s for s in SPLITS if (root / f"{s}.json").is_file()]
        if not present:
            raise DataError(f"{root}: no train.json / valid.json / test.json")
        missing = [s for s in options.splits or () if s not in present]
        if missing:
            raise DataError(f"{root / (missing[0] + '.json')}: not found (requested split {missing[0]!r})")
        splits = wanted_splits(options, present)
        return [
            read_json_split(root / f"{s}.json", s, images, options.axis_order, follow_symlinks=options.follow_symlinks)
            for s in splits
        ]
