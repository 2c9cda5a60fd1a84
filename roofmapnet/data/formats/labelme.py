"""``--format labelme``: roof lines drawn with LabelMe (one ``.json`` per image).

Layout::

    ROOT/**/*.json              # all LabelMe files below ROOT, split by the seeded permutation, or
    ROOT/{train,val|valid,test}/**/*.json      # split folders, used as given (val → valid)

Each file is LabelMe's JSON: ``shapes`` (each ``{label, points: [[x, y], ...], shape_type}``), ``imagePath``
(relative to the JSON file's folder; it must stay inside ROOT), optional ``imageData`` (the image, base64,
used instead of ``imagePath`` when present, as LabelMe does) and ``imageHeight``/``imageWidth`` (checked
against the image).  Points are image pixels ``(x, y)`` (LabelMe's convention: x = column, y = row).

* ``line`` shapes (2 points) are one segment each; ``linestrip`` shapes (2+ points) are their consecutive
  segments.  Every other shape (``polygon``, ``rectangle``, ``point``, ...) is ignored and counted in a warning.
* Zero-length and repeated segments (a double click, a line drawn twice) are dropped with a warning.
* A file fails when it is not LabelMe JSON, a ``line`` does not have 2 points, a ``linestrip`` has fewer than
  2, a point is not two finite numbers, the image is missing, escapes ROOT or disagrees with
  ``imageHeight``/``imageWidth``, or when no segment is left.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from roofmapnet.data.formats.base import (
    Annotation,
    SampleReader,
    clean_segments,
    finite_points,
    swap_axes,
)
from roofmapnet.data.raw import SPLITS, RawSample, RawSplit, decode_image_bytes, load_image, split_assignment
from roofmapnet.errors import DataError

if TYPE_CHECKING:
    from roofmapnet.data.preprocess import PreprocessOptions

#: Split folder → our split name.
SPLIT_FOLDERS: Final = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}
#: Shape types that become segments.
LINE_SHAPES: Final = ("line", "linestrip")
#: Largest LabelMe file read (its embedded image included).
MAX_FILE_BYTES: Final = 512 * 1024 * 1024


def _json_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*.json")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _is_labelme(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and b'"shapes"' in head


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    return [(split, root / folder) for folder, split in SPLIT_FOLDERS.items() if (root / folder).is_dir()]


def _name(path: Path, base: Path) -> str:
    parts = PurePosixPath(path.relative_to(base).as_posix()).parts
    return "__".join([*parts[:-1], PurePosixPath(parts[-1]).stem])


def shape_segments(shapes: Any) -> tuple[np.ndarray, Counter[str]]:
    """The ``[L, 4]`` segments of LabelMe ``shapes`` and a count of the ignored shape types.

    Raises:
        DataError: ``shapes`` not a list, a shape not an object, bad points, wrong point counts.
    """
    if not isinstance(shapes, list):
        raise DataError(f"'shapes' must be a list, got {type(shapes).__name__}")
    blocks: list[np.ndarray] = []
    ignored: Counter[str] = Counter()
    for k, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise DataError(f"shapes[{k}]: not an object")
        kind = shape.get("shape_type") or "polygon"  # LabelMe's default when the key is absent
        if kind not in LINE_SHAPES:
            ignored[str(kind)] += 1
            continue
        points = finite_points(shape.get("points"), f"shapes[{k}].points")
        if kind == "line" and len(points) != 2:
            raise DataError(f"shapes[{k}]: a 'line' has 2 points, got {len(points)}")
        if len(points) < 2:
            raise DataError(f"shapes[{k}]: a 'linestrip' needs at least 2 points, got {len(points)}")
        blocks.append(np.concatenate([points[:-1], points[1:]], axis=1))
    segments = np.concatenate(blocks) if blocks else np.zeros((0, 4))
    return segments, ignored


class LabelMeReader(SampleReader):
    """LabelMe JSON files with ``line`` / ``linestrip`` shapes."""

    name = "labelme"
    summary = "LabelMe *.json files (line and linestrip shapes) with their images, optionally in split folders"

    @classmethod
    def detect(cls, root: Path) -> bool:
        """A ``.json`` (in ``root`` or a split folder) that is an object with ``shapes``."""
        if not root.is_dir():
            return False
        for folder in [root, *(d for _, d in _split_dirs(root))]:
            for path in sorted(folder.glob("*.json"))[:3]:
                if path.stem not in SPLITS and _is_labelme(path):
                    return True
        return False

    def scan(self, root: Path, options: PreprocessOptions) -> list[RawSplit]:
        """Split folders as given, else every ``.json`` below ``root`` split by the seeded permutation."""
        folders = _split_dirs(root)
        groups: dict[str, list[tuple[Path, Path]]] = {s: [] for s in SPLITS}
        if folders:
            for split, folder in folders:
                groups[split].extend((p, folder) for p in _json_files(folder))
        else:
            files = _json_files(root)
            assignment = split_assignment(len(files), options.split_fractions, options.seed).tolist()
            for path, k in zip(files, assignment, strict=True):
                groups[SPLITS[k]].append((path, root))
        if not any(groups.values()):
            raise DataError(f"{root}: no LabelMe .json files")
        present = [s for s in SPLITS if groups[s] or not folders]
        if options.splits is not None:
            missing = [s for s in options.splits if s not in present]
            if missing:
                raise DataError(f"{root}: no {missing[0]} split folder (requested split {missing[0]!r})")
            present = [s for s in present if s in options.splits]
        out = []
        for split in present:
            raw = RawSplit(split)
            for path, base in groups[split]:
                raw.samples.append(
                    self.file_sample(split, _name(path, base), path, None, options, params={"root": str(root)})
                )
            out.append(raw)
        return out

    @classmethod
    def load(cls, sample: RawSample) -> Annotation:
        """Parse the LabelMe file and decode its image (embedded or beside it)."""
        path = sample.annotation_path
        assert path is not None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise DataError(f"file larger than {MAX_FILE_BYTES >> 20} MiB")
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        except UnicodeDecodeError:
            raise DataError("invalid JSON: not UTF-8 text") from None
        except (OSError, RecursionError) as exc:
            raise DataError(f"cannot read ({type(exc).__name__}: {exc})".splitlines()[0]) from None
        if not isinstance(data, dict) or "shapes" not in data:
            raise DataError("not a LabelMe file (expected an object with 'shapes')")
        segments, ignored = shape_segments(data["shapes"])
        segments, notes = clean_segments(swap_axes(segments, sample.axis_order))
        if ignored:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(ignored.items()))
            notes.insert(0, f"{sum(ignored.values())} non-line shape(s) ignored ({kinds})")
        if len(segments) == 0:
            raise DataError("no line or linestrip shapes")
        rgb = _image(data, path, Path(sample.params["root"]))
        declared = (data.get("imageHeight"), data.get("imageWidth"))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in declared) and declared != rgb.shape[:2]:
            raise DataError(
                f"'imageHeight'/'imageWidth' ({declared[0]}×{declared[1]}) differ from the image's size "
                f"({rgb.shape[0]}×{rgb.shape[1]})"
            )
        return Annotation(segments, warnings=tuple(notes), rgb=rgb)


def _image(data: dict[str, Any], path: Path, root: Path) -> np.ndarray:
    """The sample's RGB pixels: ``imageData`` when present, else the file ``imagePath`` inside ``root``."""
    embedded = data.get("imageData")
    if isinstance(embedded, str) and embedded:
        try:
            raw = base64.b64decode(embedded, validate=False)
        except (binascii.Error, ValueError):
            raise DataError("'imageData': not base64") from None
        return decode_image_bytes(raw, f"{path.name}:imageData")
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path:
        raise DataError("no 'imageData' and no 'imagePath'")
    target = (path.parent / image_path.replace("\\", "/")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DataError(f"'imagePath' {image_path!r} escapes the dataset root {root}")
    return load_image(target)
