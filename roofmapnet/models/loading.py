"""Read RoofMapNet weights files and build the model they belong to.

Three formats are accepted, all read with ``torch.load(..., weights_only=True)`` (no code runs on load):

1. the official ``.pth``: a plain state_dict with keys ``detection.…`` (config: the one given, else the defaults);
2. our Lightning ``.ckpt``: ``{"state_dict": {"model.detection.…": …}, "hyper_parameters": {"config": {...}}}``;
3. an exported state-dict ``.pth`` with a JSON sidecar ``<file>.json`` (or ``<stem>.json``)
   ``{"format": "roofmapnet-state-dict", "version": ..., "config": {...}}``.

:func:`load_model` builds the network a file belongs to; :func:`init_weights` copies a file's weights into a
given network (``roofmap train --init-from``, strict or ``partial``).

Every problem is a :class:`~roofmapnet.errors.CheckpointError` with a one-line message naming the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from roofmapnet.config import RootConfig, config_from_dict
from roofmapnet.errors import CheckpointError, ConfigError
from roofmapnet.models.roofmapnet import RoofMapNet

#: ``format`` value of the JSON sidecar written next to an exported state dict.
SIDECAR_FORMAT = "roofmapnet-state-dict"
#: Prefix of the network's keys inside our LightningModule's state dict.
LIGHTNING_PREFIX = "model."


def sidecar_paths(path: Path) -> list[Path]:
    """Candidate JSON sidecars of a weights file: ``<file>.json`` then ``<stem>.json``."""
    return [path.with_name(path.name + ".json"), path.with_suffix(".json")]


#: The first bytes of the files ``torch.save`` writes: a zip archive (PyTorch ≥ 1.6), or the legacy format, a
#: protocol-2 pickle of PyTorch's magic number (``0x1950a86a20f9469cfc6c``).
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8"
_EMPTY_ZIP = b"PK\x05\x06"


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _not_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot be a file written by ``torch.save``, from its first bytes; ``None`` if it may be one."""
    try:
        head = _head(path, len(_LEGACY_MAGIC))
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP)) or head == _LEGACY_MAGIC:
        return None
    if not head:
        return "empty file (0 bytes), not a PyTorch file"
    if head[:1] == b"\x80":  # pickle protocol ≥ 2 without PyTorch's magic number
        return "not a PyTorch file: a plain Python pickle, not a file written by torch.save"
    return (
        f"not a PyTorch file (it starts with bytes {head[:4].hex(' ')}; torch.save writes a zip archive, 50 4b 03 04)"
    )


def _torch_load(path: Path, map_location: str | torch.device) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    if (why := _not_torch_file(path)) is not None:
        raise CheckpointError(f"{path}: {why}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: contains pickled Python objects that are not allowed in a weights file "
                "(only tensors, numbers, strings, lists and dicts are read)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch weights file or corrupt ({first})") from None
    except Exception as exc:  # the unpickler raises many types (IndexError, KeyError, ...) on garbage input
        text = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        if zipfile.is_zipfile(path) or _head(path, 4) == _ZIP_MAGIC:
            raise CheckpointError(f"{path}: corrupt or truncated PyTorch file ({text})") from None
        raise CheckpointError(f"{path}: not a PyTorch weights file or corrupt ({text})") from None


def _config_from(data: Any, path: Path, where: str) -> RootConfig:
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: {where} must be a mapping, not {type(data).__name__}")
    try:
        return config_from_dict(data, source=f"{path}: {where}")
    except ConfigError as exc:
        raise CheckpointError(exc.problems[0] if exc.problems else f"{path}: {where} is invalid") from None


def _read_sidecar(path: Path) -> RootConfig | None:
    for side in sidecar_paths(path):
        if not side.is_file():
            continue
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())
            raise CheckpointError(f"{side}: unreadable JSON sidecar ({reason})") from None
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            continue
        if "config" not in meta:
            raise CheckpointError(f"{side}: field 'config' is missing")
        return _config_from(meta["config"], side, "config")
    return None


def _check_tensors(sd: Mapping[Any, Any], path: Path, what: str) -> dict[str, Tensor]:
    bad = next(((k, v) for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, Tensor)), None)
    if bad is not None or not sd:
        detail = "it is empty" if not sd else f"entry {bad[0]!r} is a {type(bad[1]).__name__}"  # type: ignore[index]
        raise CheckpointError(f"{path}: {what} is not a state dict of tensors ({detail})")
    return dict(sd)


def load_state_dict_file(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Tensor], RootConfig | None]:
    """Read a weights file of any accepted format.

    Args:
        path: ``.pth`` (official or exported) or Lightning ``.ckpt``.
        map_location: device the tensors are loaded to.

    Returns:
        The network's state dict (keys ``detection.…``) and the config stored with it (``None`` for an official
        file without sidecar).

    Raises:
        CheckpointError: missing, corrupt or non-state-dict file, or an invalid stored config.
    """
    path = Path(path)
    obj = _torch_load(path, map_location)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a state dict (the file holds a {type(obj).__name__})")
    if "state_dict" in obj:  # Lightning checkpoint
        raw = obj["state_dict"]
        if not isinstance(raw, Mapping):
            raise CheckpointError(f"{path}: 'state_dict' is a {type(raw).__name__}, not a mapping")
        if any(isinstance(k, str) and k.startswith(LIGHTNING_PREFIX) for k in raw):
            raw = {k[len(LIGHTNING_PREFIX) :]: v for k, v in raw.items() if k.startswith(LIGHTNING_PREFIX)}
        sd = _check_tensors(raw, path, "'state_dict'")
        hparams = obj.get("hyper_parameters")
        cfg = None
        if isinstance(hparams, Mapping) and "config" in hparams:
            cfg = _config_from(hparams["config"], path, "hyper_parameters.config")
        return sd, cfg
    sd = _check_tensors(obj, path, "the file")
    if all(k.startswith("module.") for k in sd):  # saved from DataParallel / DDP
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd, _read_sidecar(path)


def _shape(t: Tensor | torch.Size | tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in t) + "]"


def check_state_dict(model: torch.nn.Module, sd: Mapping[str, Tensor], path: str | Path) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``sd`` has exactly the keys and shapes of ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key{'s' * (len(missing) != 1)}, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key{'s' * (len(unexpected) != 1)}, e.g. {unexpected[0]}")
        raise CheckpointError(f"{path} is not a RoofMapNet checkpoint: {'; '.join(parts)}")
    for key, ref in expected.items():
        if sd[key].shape != ref.shape:
            raise CheckpointError(
                f"{path}: {key} has shape {_shape(sd[key].shape)} in the file but {_shape(ref.shape)} in the model "
                "(the weights were probably trained with a different model config)"
            )


def load_model(
    path: str | Path, device: str | torch.device = "cpu", cfg: RootConfig | None = None
) -> tuple[RoofMapNet, RootConfig]:
    """Build the model a weights file belongs to and load it (``strict=True``), in eval mode on ``device``.

    The config stored in the file (Lightning hyper-parameters or the export sidecar) defines the model; otherwise
    ``cfg``, else the built-in defaults (the official architecture).  Decoding thresholds can still be overridden
    per call of :meth:`RoofMapNet.predict`.

    Args:
        path: weights file (official ``.pth``, Lightning ``.ckpt`` or exported ``.pth`` + sidecar).
        device: target device.
        cfg: config for files that carry none.

    Returns:
        ``(model, config)``.

    Raises:
        CheckpointError: unreadable file, wrong keys or shapes (the message names the file and the key).
    """
    path = Path(path)
    sd, file_cfg = load_state_dict_file(path, map_location=device)
    root = file_cfg if file_cfg is not None else (cfg if cfg is not None else RootConfig())
    model = RoofMapNet(root.model).to(device)
    check_state_dict(model, sd, path)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied; kept to one line
        raise CheckpointError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    return model.eval(), root


#: How many keys a one-line ``--init-from`` error names per kind of problem.
_KEYS_NAMED = 3


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_weights` loaded into a model and what it skipped.

    Attributes:
        source: the weights file.
        loaded: model keys whose tensors now come from the file.
        missing: model keys the file lacks (they keep the model's fresh initialisation).
        unexpected: file keys the model has no place for.
        mismatched: ``(key, shape in the file, shape in the model)`` of keys both have with different shapes.
    """

    source: Path
    loaded: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()

    @property
    def skipped(self) -> int:
        """Keys not loaded: missing + unexpected + shape-mismatched."""
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def rows(self) -> list[tuple[str, str, str]]:
        """One ``(key, reason, detail)`` row per skipped key (for tables and logs)."""
        out = [(k, "missing", "not in the file: keeps the fresh initialisation") for k in self.missing]
        out += [(k, "unexpected", "not in the model") for k in self.unexpected]
        out += [(k, "shape", f"{_shape(f)} in the file, {_shape(m)} in the model") for k, f, m in self.mismatched]
        return out

    def summary(self) -> str:
        """One line, e.g. ``initialised 210 of 214 tensors from w.pth; skipped 2 missing, 1 shape-mismatched``."""
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        text = f"initialised {len(self.loaded)} of {total} tensors from {self.source}"
        parts = [
            f"{n} {what}"
            for n, what in (
                (len(self.missing), "missing"),
                (len(self.unexpected), "unexpected"),
                (len(self.mismatched), "shape-mismatched"),
            )
            if n
        ]
        return text + (f"; skipped {', '.join(parts)}" if parts else " (every key matched)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (written as ``init_from.json`` in the run directory)."""
        return {
            "source": str(self.source),
            "loaded": len(self.loaded),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [{"key": k, "file": list(f), "model": list(m)} for k, f, m in self.mismatched],
        }


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:_KEYS_NAMED])
    return shown + (", …" if len(keys) > _KEYS_NAMED else "")


def init_weights(
    model: torch.nn.Module, path: str | Path, *, partial: bool = False, map_location: str | torch.device = "cpu"
) -> InitReport:
    """Copy the weights of any accepted file into ``model`` (a fresh network): fine-tuning's starting point.

    The file may be an official ``.pth``, our Lightning ``.ckpt`` or an exported state-dict; its stored config
    is ignored: ``model``'s architecture is the one trained.  Only weights are taken (never an optimiser state,
    a step count or a schedule).

    Args:
        model: the network to initialise (its keys are ``detection.…``).
        path: the weights file.
        partial: load the keys whose names and shapes match and report the rest, instead of refusing.
        map_location: where the file's tensors are read to (they are copied into ``model``'s device and dtype).

    Returns:
        An :class:`InitReport` of the loaded and skipped keys.

    Raises:
        CheckpointError: an unreadable file; without ``partial`` a file that does not fit ``model`` exactly (one
            line with the counts and the first keys of each kind); with ``partial``, a file of which no key fits.
    """
    path = Path(path)
    sd, _ = load_state_dict_file(path, map_location=map_location)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        (k, tuple(sd[k].shape), tuple(ref.shape)) for k, ref in expected.items() if k in sd and sd[k].shape != ref.shape
    ]
    bad = {k for k, _, _ in mismatched}
    loaded = [k for k in expected if k in sd and k not in bad]
    report = InitReport(path, tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched))
    if report.skipped and not partial:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_named(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_named(unexpected)})")
        if mismatched:
            shapes = [f"{k} {_shape(f)} vs {_shape(m)}" for k, f, m in mismatched]
            parts.append(f"{len(mismatched)} shape-mismatched ({_named(shapes)})")
        raise CheckpointError(
            f"{path} does not fit the model of this config: {'; '.join(parts)} (use partial to load the keys that match)",
            fields="partial",
        )
    if not loaded:
        raise CheckpointError(f"{path}: none of its {len(sd)} keys fits the model (is it a RoofMapNet checkpoint?)")
    try:
        with torch.no_grad():
            for key in loaded:
                expected[key].copy_(sd[key])
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied; kept to one line
        raise CheckpointError(f"{path}: {str(exc).strip().splitlines()[0]}") from None
    return report
