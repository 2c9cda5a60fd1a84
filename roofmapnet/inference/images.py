"""Finding, reading and preparing the images that ``roofmap infer`` runs on.

Input discovery (:func:`discover_inputs`)
    Each INPUT is an image file, a folder, or a glob pattern (``*``, ``?``, ``[`` in a path that does not
    exist as given; ``**`` matches sub-folders).  A folder contributes its files in sorted order, only its
    top level unless ``recursive``.  Files found in a folder or through a glob whose suffix is not an image
    suffix (``cfg.data.image_extensions``, case-insensitive) are *skipped with a reason*; hidden files (name
    starting with ``.``, e.g. ``.DS_Store`` or our own ``.tmp-`` files) and files inside the output folder
    (``exclude``: a re-run must not read its own overlays) are ignored silently.  A file named
    explicitly is always tried, whatever its suffix (Pillow identifies the format from the content).  An
    input that names nothing (missing file, glob without a match) is reported as a failure.  The same file
    reached twice is processed once.

Output names (:func:`output_stems`)
    Outputs are named after the image's stem.  When several inputs share a stem (case-insensitively, e.g.
    ``a/roof.png`` and ``b/roof.png``, or ``roof.png`` and ``roof.tif``), the first one in input order keeps
    ``<stem>`` and each later one becomes ``<stem>-<h>``, where ``<h>`` is the first 8 hex digits of the
    SHA-1 of its absolute POSIX path: deterministic, and stable from one run to the next.

Pixel reading rule (:func:`read_image`)
    Every image becomes RGB ``uint8`` [H, W, 3] with its pixels as stored (EXIF orientation is *not*
    applied, so coordinates match the raster as GIS tools read it; a multi-page TIFF gives its first page).

    * ``RGB``: as is.  ``L`` (grey) is replicated to three channels; ``1`` (bilevel) maps to 0 / 255.
    * ``RGBA``, ``LA``, ``PA``: the alpha channel is dropped (colour values are used as stored).
    * ``P`` (palette), ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted to RGB by Pillow.
    * High bit depth (``I;16`` / ``I;16B`` / ``I;16L`` 16-bit, ``I`` 32-bit, ``F`` float): a linear
      **min-max stretch** of the image's own finite values to 0-255 (``round(255·(v - min)/(max - min))``;
      a constant image becomes 0, NaN/inf become 0).  Aerial 16-bit rasters rarely use the full 0-65535
      range (often 10-12 bits), so a fixed ``v/257`` would give almost black inputs.

Network input (:func:`prepare_image`)
    The RGB image is resized to ``model.image_size``² with bilinear interpolation in torch, *anisotropically*
    (no crop, no padding: every pixel is kept, as the reference's §5.1) with antialiasing when downsampling, which
    matches Pillow's ``BILINEAR`` resize that ``roofmap preprocess`` applies to training images (within uint8
    rounding), then normalised with
    ``model.image.mean`` / ``stddev`` (0-255 scale, RGB).  Predictions are mapped back per axis
    (``y·H/h``, ``x·W/w``; :class:`roofmapnet.models.outputs.Wireframe`).  A model trained with
    ``data.resize: letterbox`` gets its images letterboxed instead (:mod:`roofmapnet.data.resize`: aspect kept,
    centred, the padding exactly 0 after normalisation), and its predictions are mapped back through the same
    geometry (:meth:`~roofmapnet.inference.predictor.Predictor.predict`).
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.nn import functional as F

from roofmapnet.config.schema import ImageConfig
from roofmapnet.data.resize import ResizeGeometry
from roofmapnet.errors import DataError
from roofmapnet.inference.types import SkippedInput

#: Image suffixes used when no config is given (the default of ``cfg.data.image_extensions``).
DEFAULT_IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_GLOB_CHARS = frozenset("*?[")
_HIGH_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_CONVERT_MODES = frozenset({"P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"})


@dataclass
class DiscoveredInputs:
    """Result of :func:`discover_inputs`.

    Attributes:
        images: files to run on, in input order (each folder's entries sorted), without repeats.
        skipped: inputs that will not be processed: non-image files in folders / glob matches, missing
            paths and globs without a match.
    """

    images: list[Path] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)


def _is_glob(text: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in text)


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _folder_files(folder: Path, recursive: bool) -> list[Path]:
    """Regular, non-hidden files of ``folder`` (sorted); hidden sub-folders are not entered."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.is_file() and not _is_hidden(p))
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
    return found


def discover_inputs(
    inputs: Sequence[str | Path],
    *,
    recursive: bool = False,
    extensions: Iterable[str] = DEFAULT_IMAGE_EXTENSIONS,
    exclude: str | Path | None = None,
) -> DiscoveredInputs:
    """Expand image files, folders and glob patterns into the list of images to process.

    Args:
        inputs: paths or glob patterns, as the user gave them.
        recursive: descend into sub-folders of folder inputs (and let ``**`` in globs match folders).
        extensions: image suffixes (with the dot, any case) accepted from folders and globs.
        exclude: a folder (the output folder) whose files are not taken from folder or glob inputs.

    Returns:
        The images (in input order, no repeats) and the inputs that are skipped, each with its reason.
    """
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    out = DiscoveredInputs()
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.images.append(path)

    excluded = Path(exclude).resolve() if exclude is not None else None

    def add_listed(path: Path) -> None:
        if excluded is not None and path.resolve().is_relative_to(excluded):
            return
        if path.suffix.lower() in exts:
            add(path)
        else:
            out.skipped.append(SkippedInput(str(path), f"not an image (suffix '{path.suffix or '<none>'}')"))

    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            for f in _folder_files(path, recursive):
                add_listed(f)
        elif path.is_file():
            add(path)
        elif path.exists():
            out.skipped.append(SkippedInput(text, "not a regular file"))
        elif _is_glob(text):
            # Path.glob takes no absolute patterns; glob.glob does.
            matches = sorted(glob.glob(str(Path(text).expanduser()), recursive=recursive))  # noqa: PTH207
            matched = [Path(m) for m in matches if not _is_hidden(Path(m))]
            if not matched:
                out.skipped.append(SkippedInput(text, "no file matches this pattern"))
            for m in matched:
                if m.is_dir():
                    for f in _folder_files(m, recursive):
                        add_listed(f)
                elif m.is_file():
                    add_listed(m)
        else:
            out.skipped.append(SkippedInput(text, "no such file or directory"))
    return out


def output_stems(paths: Sequence[Path]) -> list[str]:
    """Output base names for ``paths``, unique case-insensitively (rule in the module docstring)."""
    used: set[str] = set()
    stems: list[str] = []
    for path in paths:
        stem = path.stem or path.name
        if stem.casefold() in used:
            digest = hashlib.sha1(path.resolve().as_posix().encode("utf-8"), usedforsecurity=False).hexdigest()
            stem = f"{stem}-{digest[:8]}"
        used.add(stem.casefold())
        stems.append(stem)
    return stems


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Min-max stretch of a high-bit-depth array to uint8 (non-finite values become 0)."""
    data = values.astype(np.float64, copy=False)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    scaled = np.where(finite, (data - lo) * (255.0 / (hi - lo)), 0.0)
    return np.rint(scaled).clip(0, 255).astype(np.uint8)


def image_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image to RGB uint8 [H, W, 3] following the module's pixel reading rule."""
    mode = img.mode
    if mode in _HIGH_BIT_MODES:
        grey = _stretch_to_uint8(np.asarray(img))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "1":
        grey = np.asarray(img, dtype=np.uint8) * np.uint8(255)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("L", "LA"):
        grey = np.asarray(img)
        grey = grey[:, :, 0] if grey.ndim == 3 else grey
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "RGB":
        return np.asarray(img)
    if mode == "RGBA":
        return np.ascontiguousarray(np.asarray(img)[:, :, :3])
    if mode == "PA":
        return np.asarray(img.convert("RGBA"))[:, :, :3].copy()
    if mode in _CONVERT_MODES:
        return np.asarray(img.convert("RGB"))
    msg = f"unsupported pixel mode {mode}"
    raise ValueError(msg)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3] (rules in the module docstring).

    Raises:
        DataError: ``<path>: <reason>`` when the file is empty, not an image, corrupt, of an unsupported
            pixel mode, larger than Pillow's decompression-bomb limit, or unreadable.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            if img.width == 0 or img.height == 0:
                raise DataError(f"{path}: image has zero size ({img.width}×{img.height})")
            rgb = image_to_rgb(img)
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image (Pillow cannot identify the format)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: corrupt or unreadable image ({reason})") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def prepare_image(
    image: np.ndarray | Tensor,
    image_size: int,
    image_cfg: ImageConfig,
    *,
    antialias: bool = True,
    resize: str = "stretch",
) -> Tensor:
    """Resize an RGB uint8 [H, W, 3] image to the network input and normalise it.

    Args:
        image: RGB image, 0-255 (uint8 or float).
        image_size: network input side S (``cfg.model.image_size``).
        image_cfg: normalisation (``cfg.model.image``), RGB order, 0-255 scale.
        antialias: low-pass filter when downsampling (torch's ``antialias=True``, equal to Pillow's bilinear
            resize used for the training images, and to the ``skimage.transform.resize`` of L-CNN's demo).
        resize: ``stretch`` or ``letterbox`` (``data.resize``; letterbox pads with 0 after normalisation, i.e.
            with the mean colour).

    Returns:
        [3, S, S] float32 tensor, ``(resize(image) - mean) / stddev``.
    """
    # numpy: one copy to float32 (astype always copies, so Pillow's read-only arrays are safe to wrap).
    x = torch.from_numpy(image.astype(np.float32)) if isinstance(image, np.ndarray) else image.to(torch.float32)
    if x.ndim != 3 or x.shape[2] != 3:
        msg = f"expected an [H, W, 3] RGB image, got shape {tuple(x.shape)}"
        raise ValueError(msg)
    x = x.permute(2, 0, 1)
    geometry = ResizeGeometry.fit((int(x.shape[1]), int(x.shape[2])), image_size, resize)
    if tuple(x.shape[1:]) != geometry.content_hw:
        x = F.interpolate(x[None], size=geometry.content_hw, mode="bilinear", align_corners=False, antialias=antialias)[
            0
        ]
    mean = torch.tensor(image_cfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(image_cfg.stddev, dtype=torch.float32).view(3, 1, 1)
    x = (x - mean) / std
    if geometry.is_identity_frame:
        return x
    (top, left), (ch, cw) = geometry.offset_yx, geometry.content_hw
    return F.pad(x, (left, image_size - left - cw, top, image_size - top - ch), value=0.0)
