"""Readers of the raw inputs of ``roofmap preprocess``: wireframe JSON splits, RID2 edge files, images.

Two raw layouts are understood (docs/data-format.md):

* **json**: ``<raw>/{train,valid,test}.json``, each a list of ``{"filename", "lines": [[x1, y1, x2, y2], …],
  "height"?, "width"?}``, with the images under ``<raw>/images/`` (``filename`` is relative to it and may not
  escape it);
* **rid2**: ``<raw>/<stem>.npz`` files holding ``edges`` [N, 2, 2] (two endpoints per line, each (x, y) in image
  pixels by default) and ``<images>/<stem>.{png,jpg,tif,…}``; the train/valid/test split is drawn with a
  seeded permutation.

Coordinates are continuous image pixels with pixel edges at integers.  ``axis_order="yx"`` reads every point as
(y, x) instead (RoofMapSet-style files).  Everything here is cheap bookkeeping; image decoding and line
validation run in the worker processes (:func:`load_image`, :func:`parse_lines`, :func:`load_rid2_edges`) and
raise :class:`~roofmapnet.errors.DataError` with a reason meant for the summary table.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from roofmapnet.errors import DataError

AxisOrder = Literal["xy", "yx"]
RawFormat = Literal["json", "rid2", "roofvec", "heat", "labelme", "gis"]
#: The splits in their canonical order.
SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Image suffixes looked up by stem when the config does not say otherwise (RID2 input).
DEFAULT_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass(frozen=True)
class RawSample:
    """One image to preprocess, as found by a reader (nothing decoded yet).

    Attributes:
        split: ``train``, ``valid`` or ``test``.
        name: output stem (``<name>.png`` and ``<name>_label.npz``).
        source: what the summary names for this sample, e.g. ``train.json[3] (roof_01.png)``.
        image_path: the image file (resolved inside the images folder), or ``None`` when ``error`` is set.
        lines: the JSON ``lines`` value as read (validated later by :func:`parse_lines`), or ``None`` for RID2.
        edges_path: the RID2 ``.npz`` holding ``edges`` (read later by :func:`load_rid2_edges`), or ``None``.
        axis_order: ``xy`` or ``yx``, the order of each point's coordinates in the input.
        declared_hw: ``(height, width)`` given in the JSON entry, if any.
        error: why this sample already failed while reading (bad entry, path escape, …), else ``None``.
        reader: the :mod:`roofmapnet.data.formats` reader whose ``load`` parses this sample in the worker
            (``None``: the JSON ``lines`` or the RID2 ``edges_path`` above).
        annotation_path: the annotation file that reader parses (RoofVec ``.txt``, HEAT ``.npy``, LabelMe ``.json``).
        params: reader-specific settings of this sample (e.g. a GIS crop window), picklable.
    """

    split: str
    name: str
    source: str
    image_path: Path | None
    lines: Any = None
    edges_path: Path | None = None
    axis_order: AxisOrder = "xy"
    declared_hw: tuple[int, int] | None = None
    error: str | None = None
    reader: str | None = None
    annotation_path: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RawSplit:
    """The samples of one split, plus failures (e.g. malformed JSON) and warnings that concern a whole file."""

    split: str
    samples: list[RawSample] = field(default_factory=list)
    file_errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def detect_format(raw_dir: Path) -> RawFormat:
    """``json`` if any ``<split>.json`` exists in ``raw_dir``, else ``rid2`` if it holds ``*.npz`` files.

    Raises:
        DataError: when ``raw_dir`` is not a folder or holds neither.
    """
    if not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: not a folder")
    if any((raw_dir / f"{split}.json").is_file() for split in SPLITS):
        return "json"
    if any(raw_dir.glob("*.npz")):
        return "rid2"
    raise DataError(f"{raw_dir}: no train.json / valid.json / test.json and no RID2 *.npz edge files")


def output_name(filename: str) -> str:
    """Output stem of an image ``filename`` relative to the images folder: ``a/b/roof.png`` → ``a__b__roof``."""
    parts = [p for p in PurePosixPath(filename.replace("\\", "/")).parts if p != "/"]
    return "__".join([*parts[:-1], PurePosixPath(parts[-1]).stem]) if parts else ""


def resolve_image(images_root: Path, filename: str, *, follow_symlinks: bool = False) -> Path:
    """Resolve ``filename`` against ``images_root``, refusing anything that escapes it.

    Absolute paths and ``..`` components that climb out are always rejected (the annotation file names a place
    outside the folder).  A symbolic link inside the folder that points outside is rejected too unless
    ``follow_symlinks`` (the user made the link, e.g. a subset folder of links into a larger collection); the
    file itself need not exist (that is reported when it is read).

    Raises:
        DataError: ``filename '…' escapes the images folder`` or ``filename '…' is a symbolic link to …``.
    """
    if not filename or PurePosixPath(filename).is_absolute() or PureWindowsPath(filename).is_absolute():
        raise DataError(f"filename {filename!r} escapes the images folder {images_root}")
    if "\x00" in filename:
        raise DataError(f"filename {filename!r} contains a NUL character")
    root = images_root.resolve()
    lexical = Path(os.path.normpath(root / filename))
    if not lexical.is_relative_to(root) or lexical == root:
        raise DataError(f"filename {filename!r} escapes the images folder {images_root}")
    path = (root / filename).resolve()
    if follow_symlinks or (path.is_relative_to(root) and path != root):
        return path
    link = next(
        (p for p in (root / filename, *(root / filename).parents) if p.is_relative_to(root) and p.is_symlink()), None
    )
    if link is None:  # not reached: only a link moves a lexically contained path out
        raise DataError(f"filename {filename!r} escapes the images folder {images_root}")
    raise DataError(
        f"filename {filename!r} is a symbolic link ({link.relative_to(root)} -> {link.readlink()}) that leaves "
        f"the images folder {images_root}; links out of the folder are followed only when asked "
        "(follow_symlinks, roofmap preprocess --follow-symlinks)"
    )


def _json_error(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return "invalid JSON: not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    return f"cannot read ({exc})"


def read_json_split(
    path: Path, split: str, images_root: Path, axis_order: AxisOrder = "xy", *, follow_symlinks: bool = False
) -> RawSplit:
    """Read one wireframe JSON file into samples; never raises for bad content (it is recorded instead).

    Args:
        path: ``<split>.json``.
        split: the split it feeds.
        images_root: folder the ``filename`` entries are relative to.
        axis_order: coordinate order of the points in ``lines``.
        follow_symlinks: accept symbolic links in ``images_root`` that point outside it (:func:`resolve_image`).

    Returns:
        The split's samples; a malformed file gives one ``file_errors`` entry, a malformed entry a sample
        with ``error`` set.
    """
    out = RawSplit(split)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        out.file_errors.append((str(path), _json_error(exc)))
        return out
    if not isinstance(data, list):
        reason = f"expected a list of {{filename, lines}} objects, got {type(data).__name__}"
        out.file_errors.append((str(path), reason))
        return out
    seen: dict[str, int] = {}
    for i, entry in enumerate(data):
        where = f"{path.name}[{i}]"
        if not isinstance(entry, dict):
            out.samples.append(RawSample(split, "", where, None, error="entry is not an object"))
            continue
        filename = entry.get("filename")
        if not isinstance(filename, str) or not filename:
            out.samples.append(RawSample(split, "", where, None, error="missing or empty 'filename'"))
            continue
        source = f"{where} ({filename})"
        error = None
        image_path: Path | None = None
        try:
            image_path = resolve_image(images_root, filename, follow_symlinks=follow_symlinks)
        except DataError as exc:
            error = str(exc)
        if error is None and "lines" not in entry:
            error = "missing 'lines'"
        declared: tuple[int, int] | None = None
        if error is None and ("height" in entry or "width" in entry):
            hw = (entry.get("height"), entry.get("width"))
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw):
                error = f"'height' and 'width' must both be positive integers, got {hw[0]!r} and {hw[1]!r}"
            else:
                declared = (int(hw[0]), int(hw[1]))  # type: ignore[arg-type]
        name = output_name(filename)
        if error is None and name in seen:
            error = f"duplicate output name {name!r} (also {path.name}[{seen[name]}])"
        seen.setdefault(name, i)
        out.samples.append(
            RawSample(
                split,
                name,
                source,
                image_path if error is None else None,
                lines=entry.get("lines"),
                axis_order=axis_order,
                declared_hw=declared,
                error=error,
            )
        )
    return out


def split_assignment(n: int, fractions: Sequence[float], seed: int) -> NDArray[np.int64]:
    """Split index (0 = train, 1 = valid, 2 = test) of each of ``n`` sorted items, by a seeded permutation.

    The first ``round(f_train·n)`` items of the permutation go to train, the next up to ``round((f_train +
    f_valid)·n)`` to valid, the rest to test.
    """
    bounds = np.round(np.cumsum(np.asarray(fractions, dtype=np.float64)) * n).astype(np.int64)
    bounds[-1] = n
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)
    return np.searchsorted(bounds, rank, side="right").astype(np.int64)


def index_images(images_root: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """Map image stem → path for the files of ``images_root`` with a recognised suffix (first suffix wins)."""
    found: dict[str, Path] = {}
    if not images_root.is_dir():
        return found
    rank = {ext.lower(): i for i, ext in enumerate(extensions)}
    best: dict[str, int] = {}
    for path in images_root.iterdir():
        r = rank.get(path.suffix.lower())
        if r is not None and path.is_file() and r < best.get(path.stem, len(rank)):
            best[path.stem] = r
            found[path.stem] = path
    return found


def read_rid2_splits(
    raw_dir: Path,
    images_root: Path,
    *,
    axis_order: AxisOrder = "xy",
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    extensions: Sequence[str] = DEFAULT_IMAGE_EXTENSIONS,
    follow_symlinks: bool = False,
) -> list[RawSplit]:
    """Find the RID2 ``<stem>.npz`` edge files of ``raw_dir`` and their images, and split them.

    ``follow_symlinks`` accepts image links that point out of ``images_root`` (:func:`resolve_image`).

    Returns:
        One :class:`RawSplit` per split (train, valid, test), possibly empty.
    """
    edge_files = sorted(p for p in raw_dir.glob("*.npz") if p.is_file())
    images = index_images(images_root, extensions)
    assignment = split_assignment(len(edge_files), fractions, seed)
    splits = [RawSplit(split) for split in SPLITS]
    wanted = "|".join(e.lstrip(".") for e in extensions)
    for path, k in zip(edge_files, assignment.tolist(), strict=True):
        split = SPLITS[k]
        image = images.get(path.stem)
        if image is not None:
            try:
                image = resolve_image(images_root, image.name, follow_symlinks=follow_symlinks)
            except DataError as exc:
                splits[k].samples.append(RawSample(split, path.stem, str(path), None, error=str(exc)))
                continue
        error = None if image is not None else f"no image {path.stem}.{{{wanted}}} in {images_root}"
        splits[k].samples.append(
            RawSample(split, path.stem, str(path), image, edges_path=path, axis_order=axis_order, error=error)
        )
    return splits


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _bad_line(lines: Sequence[Any]) -> int:
    """Index of the first line that is not a sequence of four numbers (error path only)."""
    for i, line in enumerate(lines):
        if not isinstance(line, (list, tuple, np.ndarray)) or len(line) != 4 or not all(_is_number(v) for v in line):
            return i
    return 0


def _short(value: object) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, np.ndarray) else str(value.tolist())
    return text if len(text) <= 60 else text[:57] + "..."


def parse_lines(lines: object, axis_order: AxisOrder = "xy") -> NDArray[np.float64]:
    """Validate a ``lines`` value and return ``[L, 4]`` float64 ``x1, y1, x2, y2``.

    Args:
        lines: a list of ``[a1, b1, a2, b2]`` (``(a, b)`` = (x, y) or, with ``axis_order="yx"``, (y, x)).
        axis_order: the order of each point's coordinates.

    Raises:
        DataError: ``no lines``; ``lines[i]: expected four finite numbers …``; ``lines[i]: zero length …``.
    """
    if not isinstance(lines, (list, tuple, np.ndarray)):
        raise DataError(f"'lines' must be a list of [x1, y1, x2, y2], got {type(lines).__name__}")
    if len(lines) == 0:
        raise DataError("no lines")
    try:
        arr = np.asarray(lines)
    except (ValueError, TypeError):
        arr = np.zeros((0,))
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] != 4:
        i = _bad_line(lines)  # type: ignore[arg-type]
        raise DataError(f"lines[{i}]: expected four finite numbers [x1, y1, x2, y2], got {_short(lines[i])}")
    arr = arr.astype(np.float64)
    return check_lines(arr if axis_order == "xy" else arr[:, [1, 0, 3, 2]])


def check_lines(lines_xy: NDArray[np.float64]) -> NDArray[np.float64]:
    """Reject non-finite and zero-length lines of an ``[L, 4]`` ``x1, y1, x2, y2`` array (returned unchanged)."""
    if len(lines_xy) == 0:
        raise DataError("no lines")
    bad = np.flatnonzero(~np.isfinite(lines_xy).all(axis=1))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"lines[{i}]: expected four finite numbers [x1, y1, x2, y2], got {lines_xy[i].tolist()}")
    zero = np.flatnonzero((lines_xy[:, 0] == lines_xy[:, 2]) & (lines_xy[:, 1] == lines_xy[:, 3]))
    if zero.size:
        i = int(zero[0])
        raise DataError(f"lines[{i}]: zero length at (x={lines_xy[i, 0]:g}, y={lines_xy[i, 1]:g})")
    return lines_xy


def check_inside(lines_xy: NDArray[np.float64], image_hw: tuple[int, int]) -> None:
    """Reject lines that do not meet the image rectangle ``[0, W] × [0, H]`` at all (Liang–Barsky, vectorised).

    Raises:
        DataError: ``lines[i]: lies wholly outside the W×H image``.
    """
    h, w = image_hw
    x0, y0, x1, y1 = lines_xy.T
    p = np.stack([-(x1 - x0), x1 - x0, -(y1 - y0), y1 - y0])
    q = np.stack([x0, w - x0, y0, h - y0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = q / p
    t_in = np.max(np.where(p < 0, t, 0.0), axis=0, initial=0.0)
    t_out = np.min(np.where(p > 0, t, 1.0), axis=0, initial=1.0)
    outside = ((p == 0) & (q < 0)).any(axis=0) | (t_in > t_out)
    bad = np.flatnonzero(outside)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"lines[{i}]: lies wholly outside the {w}×{h} image ({_fmt_line(lines_xy[i])})")


def _fmt_line(line: NDArray[np.float64]) -> str:
    return f"({line[0]:g}, {line[1]:g}) to ({line[2]:g}, {line[3]:g})"


def load_rid2_edges(path: Path, axis_order: AxisOrder = "xy") -> NDArray[np.float64]:
    """Read ``edges`` [N, 2, 2] from a RID2 ``.npz`` and return ``[N, 4]`` ``x1, y1, x2, y2`` (validated).

    Raises:
        DataError: unreadable file, missing ``edges``, wrong shape or dtype, bad lines (see :func:`check_lines`).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "edges" not in npz.files:
                raise DataError(f"no 'edges' array (found: {', '.join(npz.files) or 'nothing'})")
            edges = np.asarray(npz["edges"])
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, zlib.error
        raise DataError(f"cannot read ({type(exc).__name__}: {exc})") from None
    if edges.dtype.kind not in "iuf" or edges.ndim != 3 or edges.shape[1:] != (2, 2):
        raise DataError(f"'edges' has shape {tuple(edges.shape)} and dtype {edges.dtype}, expected numbers [N, 2, 2]")
    lines = edges.astype(np.float64).reshape(-1, 4)
    return check_lines(lines if axis_order == "xy" else lines[:, [1, 0, 3, 2]])


def load_image(path: Path) -> NDArray[np.uint8]:
    """Decode an image file into an ``[H, W, 3]`` uint8 RGB array.

    Palette, grey, alpha and CMYK images are converted to RGB; 16-bit and float single-band images (common
    for TIFF) are stretched linearly from their min..max to 0..255.

    Raises:
        DataError: ``image not found`` or ``cannot read image (…)``.
    """
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    return _decode_image(path, path.name)


def decode_image_bytes(data: bytes, name: str) -> NDArray[np.uint8]:
    """Decode an encoded image held in memory (e.g. LabelMe's embedded ``imageData``) like :func:`load_image`.

    Raises:
        DataError: ``cannot read image NAME (…)``.
    """
    import io

    return _decode_image(io.BytesIO(data), name)


def _decode_image(source: Any, name: str) -> NDArray[np.uint8]:
    from PIL import Image

    try:
        with Image.open(source) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                a = np.asarray(img, dtype=np.float64)
                lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
                scale = 255.0 / (hi - lo) if hi > lo and math.isfinite(hi - lo) else 0.0
                grey = np.clip(np.nan_to_num((a - lo) * scale), 0, 255).round().astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError (truncated), DecompressionBombError, ...
        raise DataError(f"cannot read image {name} ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"cannot read image {name} (empty)")
    return rgb
