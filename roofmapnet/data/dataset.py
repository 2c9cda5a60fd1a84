"""The training / validation Dataset over the preprocessed layout, and its ``collate``.

``RoofDataset(root, split, cfg, train)`` reads ``<root>/<split>/<stem>.png`` + ``<stem>_label.npz`` (written by
``roofmap preprocess``), validates every label file on load, normalises the image with the config's mean/stddev,
applies label-consistent augmentation when ``train`` (horizontal flip, and, if enabled, vertical flip and 90°
rotations) and samples the static lines.  :func:`collate` pads a list of samples to the batch contract of
docs/internals.md.

Randomness never comes from module state: each ``__getitem__`` builds its own ``numpy.random.Generator``.  Training
reads ``SampleKey(index, epoch)`` items from :class:`~roofmapnet.data.loader.EpochSampler` and draws from
``(seed, epoch, index)``: the sample depends on nothing else (not on the worker, nor on how far a process got), so a
run resumed mid-epoch reproduces it.  A plain integer index draws from ``(seed, index, a draw from torch's
generator)``; PyTorch seeds that generator per DataLoader worker (and ``seed_everything`` / ``torch.manual_seed``
in the main process), so nothing depends on fork inheritance.  An evaluation dataset (``train=False``) with a
``seed`` uses ``(seed, index)`` alone, so its samples are fixed.
The dataset holds only paths and numbers, so it pickles into ``spawn`` workers unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from roofmapnet.config.schema import RootConfig
from roofmapnet.data.targets import CLIP_EPS, CONTENT_BOX, junction_maps, validate_label
from roofmapnet.errors import DataError
from roofmapnet.utils.io import TMP_PREFIX

LABEL_SUFFIX = "_label.npz"


def load_label(path: str | Path, heatmap_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """Load and validate one ``*_label.npz`` (see :func:`roofmapnet.data.targets.validate_label`).

    Raises:
        DataError: naming ``path``, if it is missing, not an npz, truncated or has a wrong field.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return validate_label({name: npz[name] for name in npz.files}, path, heatmap_hw)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except Exception as exc:  # BadZipFile, EOFError, ValueError (pickled / corrupt member), zlib.error, OSError
        raise DataError(f"{path}: cannot read label file ({type(exc).__name__}: {exc})") from None


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as ``[H, W, 3]`` uint8 RGB.

    Raises:
        DataError: naming ``path`` if it is missing or cannot be decoded.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found") from None
    except Exception as exc:  # UnidentifiedImageError, truncated file (OSError), DecompressionBombError
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def transform_points(
    points: np.ndarray, size_hw: tuple[int, int], *, hflip: bool, vflip: bool, rot90: int
) -> np.ndarray:
    """Map (y, x) points (last axis; extra columns such as a type are kept) through a flip/rotation.

    The operations act on a map of ``size_hw`` = (h, w) with pixel edges at integers, in the order hflip
    (``x → w - x``), vflip (``y → h - y``), then ``rot90`` counter-clockwise quarter turns (``np.rot90``
    on the (row, col) axes: ``(y, x) → (w - x, y)`` per turn, the size becoming (w, h)).  The result is
    clipped to ``[0, size - 1e-4]`` like the preprocessing, so ``floor`` stays inside the map.
    """
    out = np.array(points, dtype=np.float32, copy=True)
    y, x = out[..., 0].copy(), out[..., 1].copy()
    h, w = size_hw
    if hflip:
        x = np.float32(w) - x
    if vflip:
        y = np.float32(h) - y
    for _ in range(rot90 % 4):
        y, x = np.float32(w) - x, y
        h, w = w, h
    out[..., 0] = np.clip(y, np.float32(0), np.float32(h - CLIP_EPS)) + np.float32(0)
    out[..., 1] = np.clip(x, np.float32(0), np.float32(w - CLIP_EPS)) + np.float32(0)
    return out


def _transform_map(arr: np.ndarray, *, hflip: bool, vflip: bool, rot90: int, axes: tuple[int, int]) -> np.ndarray:
    if hflip:
        arr = np.flip(arr, axis=axes[1])
    if vflip:
        arr = np.flip(arr, axis=axes[0])
    if rot90 % 4:
        arr = np.rot90(arr, rot90 % 4, axes=axes)
    return np.ascontiguousarray(arr)


def transform_sample(
    sample: Mapping[str, np.ndarray], *, hflip: bool, vflip: bool, rot90: int
) -> dict[str, np.ndarray]:
    """Apply one flip/rotation consistently to an image and its labels.

    Args:
        sample: ``image`` [H, W, 3], ``lmap`` [h, w], ``junc`` [N, ≥2], ``lpos`` / ``lneg`` [·, 2, ≥2] (y, x
            first) in heatmap space; ``jmap`` / ``joff`` are not transformed but recomputed from the moved
            junctions (so offsets stay ``v - floor(v) - 0.5`` under the pixel-edge convention); other keys are
            copied.
        hflip: mirror left-right.
        vflip: mirror top-bottom.
        rot90: number of counter-clockwise quarter turns.

    Returns:
        A new dict with the same keys.
    """
    out = dict(sample)
    h, w = sample["lmap"].shape[-2:]
    kw: dict[str, Any] = {"hflip": hflip, "vflip": vflip, "rot90": rot90}
    out["image"] = _transform_map(sample["image"], axes=(0, 1), **kw)
    out["lmap"] = _transform_map(sample["lmap"], axes=(-2, -1), **kw)
    for key in ("junc", "lpos", "lneg"):
        if key in sample:
            out[key] = transform_points(sample[key], (h, w), **kw)
    new_hw = out["lmap"].shape[-2:]
    out["jmap"], out["joff"] = junction_maps(out["junc"], (int(new_hw[0]), int(new_hw[1])))
    if CONTENT_BOX in sample:  # a letterboxed image's box moves with it (its two corners, re-sorted)
        top, left, bh, bw = np.asarray(sample[CONTENT_BOX], dtype=np.float32).tolist()
        corners = transform_points(np.array([[top, left], [top + bh, left + bw]], np.float32), (h, w), **kw)
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        out[CONTENT_BOX] = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], dtype=np.float32)
    return out


class RoofDataset(Dataset[dict[str, Any]]):
    """Samples of ``<root>/<split>`` as dicts of tensors (see :meth:`__getitem__`)."""

    def __init__(self, root: str | Path, split: str, cfg: RootConfig, train: bool, seed: int | None = None) -> None:
        """Index the split folder.

        Args:
            root: preprocessed data root.
            split: ``train``, ``valid`` or ``test``.
            cfg: the validated config (sizes, normalisation, static-line counts, augmentation flags).
            train: enable augmentation (``cfg.data.augment``).
            seed: base seed mixed into every sample's generator; with ``train=False`` it alone (with the
                index) decides the static lines, so validation samples are reproducible.

        Raises:
            DataError: the folder has no samples, or a label file has no image.
        """
        folder = Path(root) / split
        self.folder = folder
        self.split = split
        self.train = train
        self.seed = seed
        self.image_size = cfg.model.image_size
        self.heatmap_hw = (cfg.model.heatmap_size, cfg.model.heatmap_size)
        mean = np.asarray(cfg.model.image.mean, dtype=np.float32)
        std = np.asarray(cfg.model.image.stddev, dtype=np.float32)
        #: [3, 256] float32: the normalised value of each 8-bit level per channel (a lookup beats arithmetic).
        self.norm_lut = (np.arange(256, dtype=np.float32)[None, :] - mean[:, None]) / std[:, None]
        self.n_stc_posl = cfg.model.n_stc_posl
        self.n_stc_negl = cfg.model.n_stc_negl
        aug = cfg.data.augment
        self.hflip, self.vflip, self.rot90 = (aug.hflip, aug.vflip, aug.rot90) if train else (False, False, False)
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        present = set(names)
        exts = (".png", *(e for e in cfg.data.image_extensions if e != ".png"))
        self.items: list[tuple[str, Path, Path]] = []
        for name in names:
            if not name.endswith(LABEL_SUFFIX) or name.startswith(TMP_PREFIX):
                continue
            stem = name[: -len(LABEL_SUFFIX)]
            image = next((f"{stem}{e}" for e in exts if f"{stem}{e}" in present), None)
            if image is None:
                raise DataError(f"{folder / (stem + '.png')}: image not found (for label {folder / name})")
            self.items.append((stem, folder / image, folder / name))
        if not self.items:
            raise DataError(f"{folder}: no samples (run `roofmap preprocess` first)")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        """Sample stems, in index order."""
        return [stem for stem, _, _ in self.items]

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator for one ``__getitem__`` call (see the module docstring).

        With an ``epoch`` (the :class:`~roofmapnet.data.loader.SampleKey` of a training loader) a training sample
        draws from ``(seed, epoch, index)`` alone.

        Evaluation datasets (``train=False``) with a ``seed`` use ``(seed, index)``: sample ``i`` is the same on
        every call.  Otherwise a fresh 62-bit draw from torch's generator (seeded per DataLoader worker by
        PyTorch, per epoch from the main process's generator) is mixed with ``(seed, index)``, so training
        samples differ between epochs yet a run is reproducible once torch is seeded.
        """
        if self.seed is not None and not self.train:
            return np.random.default_rng((self.seed, index))
        if epoch is not None:
            return np.random.default_rng((self.seed or 0, epoch, index, 1))
        draw = int(torch.randint(0, 2**62, (1,)).item())
        return np.random.default_rng((self.seed or 0, index, draw))

    def load(self, index: int) -> dict[str, np.ndarray]:
        """The raw arrays of sample ``index``: ``image`` [S, S, 3] uint8 and the validated label fields."""
        _, image_path, label_path = self.items[index]
        label = load_label(label_path, self.heatmap_hw)
        image = load_rgb(image_path)
        if image.shape[:2] != (self.image_size, self.image_size):
            raise DataError(
                f"{image_path}: image is {image.shape[1]}×{image.shape[0]}, expected "
                f"{self.image_size}×{self.image_size} (model.image_size; preprocess again with this size)"
            )
        return {"image": image, **label}

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """One sample, by index or by ``SampleKey(index, epoch)``.

        Returns:
            ``image`` [3, S, S] float32 (normalised), ``jmap`` [1, h, w], ``joff`` [1, 2, h, w], ``lmap``
            [h, w], ``junc`` [N, 2] (y, x), ``Lpos`` [P, 2] / ``Lneg`` [Q, 2] int64 junction-index pairs,
            ``lpre`` [M, 2, 2] static lines (≤ n_stc_posl GT then ≤ n_stc_negl negatives, each endpoint
            order flipped with p = 0.5), ``lpre_label`` [M] float32, and ``name`` (the stem).
        """
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        rng = self.rng(index, epoch)
        arrays = self.load(index)
        hflip = self.hflip and bool(rng.random() < 0.5)
        vflip = self.vflip and bool(rng.random() < 0.5)
        rot = int(rng.integers(4)) if self.rot90 else 0
        if hflip or vflip or rot:
            arrays = transform_sample(arrays, hflip=hflip, vflip=vflip, rot90=rot)
        lpre, lpre_label = self.static_lines(arrays["lpos"], arrays["lneg"], rng)
        return {
            "image": torch.from_numpy(self.normalise(arrays["image"])),
            "jmap": torch.from_numpy(arrays["jmap"]),
            "joff": torch.from_numpy(arrays["joff"]),
            "lmap": torch.from_numpy(np.ascontiguousarray(arrays["lmap"])),
            "junc": torch.from_numpy(np.ascontiguousarray(arrays["junc"][:, :2])),
            "Lpos": torch.from_numpy(arrays["Lpos"]),
            "Lneg": torch.from_numpy(arrays["Lneg"]),
            "lpre": torch.from_numpy(lpre),
            "lpre_label": torch.from_numpy(lpre_label),
            "content_box": torch.from_numpy(self.content_box(arrays)),
            "name": self.items[index][0],
        }

    @staticmethod
    def content_box(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[top, left, height, width]`` of the image inside the heatmap: the letterbox of the label file,
        else the whole heatmap."""
        if CONTENT_BOX in arrays:
            return np.asarray(arrays[CONTENT_BOX], dtype=np.float32)
        h, w = arrays["lmap"].shape[-2:]
        return np.array([0, 0, h, w], dtype=np.float32)

    def normalise(self, image: np.ndarray) -> np.ndarray:
        """``(rgb - mean) / stddev`` of an ``[H, W, 3]`` uint8 image, as ``[3, H, W]`` float32."""
        chw = np.ascontiguousarray(image.transpose(2, 0, 1))
        out = np.empty(chw.shape, dtype=np.float32)
        for c in range(3):  # three channels, each one vectorised lookup
            np.take(self.norm_lut[c], chw[c], out=out[c])
        return out

    def static_lines(
        self, lpos: np.ndarray, lneg: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """L-CNN's static sampler: a random ≤ n_stc_posl of ``lpos`` then ≤ n_stc_negl of ``lneg``, (y, x) only,
        each line's endpoint order reversed with probability 0.5.

        Returns:
            ``lpre`` [M, 2, 2] float32 and ``lpre_label`` [M] float32 (1 for GT, 0 for negatives).
        """
        pos = lpos[rng.permutation(len(lpos))[: self.n_stc_posl], :, :2]
        neg = lneg[rng.permutation(len(lneg))[: self.n_stc_negl], :, :2]
        lpre = np.concatenate([pos, neg], axis=0).astype(np.float32).reshape(-1, 2, 2)
        flip = rng.random(len(lpre)) < 0.5
        lpre[flip] = lpre[flip, ::-1]
        label = np.concatenate([np.ones(len(pos), np.float32), np.zeros(len(neg), np.float32)])
        return np.ascontiguousarray(lpre), label


def _adjacency(pairs: Sequence[Tensor], n: int) -> Tensor:
    """[B, n+1, n+1] symmetric bool adjacency from per-sample ``[K_b, 2]`` index pairs (row/col n stay False)."""
    out = torch.zeros((len(pairs), n + 1, n + 1), dtype=torch.bool)
    counts = torch.tensor([len(p) for p in pairs], dtype=torch.long)
    if int(counts.sum()) == 0:
        return out
    b = torch.repeat_interleave(torch.arange(len(pairs)), counts)
    ij = torch.cat([p.reshape(-1, 2).long() for p in pairs])
    out[b, ij[:, 0], ij[:, 1]] = True
    out[b, ij[:, 1], ij[:, 0]] = True
    return out


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`RoofDataset` samples into one batch (docs/internals.md, "Dataset sample and batch").

    Returns:
        ``image`` [B,3,S,S], ``jmap`` [B,1,h,w], ``joff`` [B,1,2,h,w], ``lmap`` [B,h,w], ``junc`` [B,N,2]
        (padding 0) with ``junc_mask`` [B,N], ``Lpos`` / ``Lneg`` [B,N+1,N+1] bool (row/col N = the
        "unmatched" sentinel, all False), ``lpre`` [B,M,2,2], ``lpre_label`` [B,M], ``lpre_mask`` [B,M] and
        ``name`` (list of stems); N / M are the largest junction / static-line counts of the batch.
    """
    if not samples:
        msg = "collate() needs at least one sample"
        raise ValueError(msg)
    bsz = len(samples)
    n = max(int(s["junc"].shape[0]) for s in samples)
    m = max(int(s["lpre"].shape[0]) for s in samples)
    junc = torch.zeros((bsz, n, 2), dtype=torch.float32)
    junc_mask = torch.zeros((bsz, n), dtype=torch.bool)
    lpre = torch.zeros((bsz, m, 2, 2), dtype=torch.float32)
    lpre_label = torch.zeros((bsz, m), dtype=torch.float32)
    lpre_mask = torch.zeros((bsz, m), dtype=torch.bool)
    for b, s in enumerate(samples):
        k, q = int(s["junc"].shape[0]), int(s["lpre"].shape[0])
        junc[b, :k] = s["junc"]
        junc_mask[b, :k] = True
        lpre[b, :q] = s["lpre"]
        lpre_label[b, :q] = s["lpre_label"]
        lpre_mask[b, :q] = True
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "jmap": torch.stack([s["jmap"] for s in samples]),
        "joff": torch.stack([s["joff"] for s in samples]),
        "lmap": torch.stack([s["lmap"] for s in samples]),
        "junc": junc,
        "junc_mask": junc_mask,
        "Lpos": _adjacency([s["Lpos"] for s in samples], n),
        "Lneg": _adjacency([s["Lneg"] for s in samples], n),
        "lpre": lpre,
        "lpre_label": lpre_label,
        "lpre_mask": lpre_mask,
        **({"content_box": torch.stack([s["content_box"] for s in samples])} if "content_box" in samples[0] else {}),
        "name": [str(s["name"]) for s in samples],
    }
