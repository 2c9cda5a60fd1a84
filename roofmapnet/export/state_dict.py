"""Plain official-format state_dict export: ``<out>`` (``torch.save`` of ``model.state_dict()``) + ``<out>.json``.

The weights file has exactly the official manifest's keys (``detection.…``, the released ``.pth`` layout), CPU
tensors only, so tools that expect the official checkpoint load it with ``load_state_dict(torch.load(p))``.
The sidecar ``<out>.json`` is ``{"format": "roofmapnet-state-dict", "version": ..., "precision": ...,
"config": {...}}``, the format :func:`roofmapnet.models.loading.load_model` reads back (so the pair reloads with
its architecture and decoding settings).  ``fp16`` stores the floating-point tensors in half precision (half the
size; loading casts them back to the model's dtype).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from roofmapnet import __version__
from roofmapnet.config.schema import RootConfig
from roofmapnet.export.onnx import export_precision
from roofmapnet.models.loading import SIDECAR_FORMAT, sidecar_paths
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.device import Precision
from roofmapnet.utils.io import atomic_path, atomic_write_text


def sidecar_path(out: str | Path) -> Path:
    """The JSON sidecar written next to ``out``: ``<out>.json`` (e.g. ``model.pth.json``)."""
    return sidecar_paths(Path(out))[0]


def export_state_dict(
    model: RoofMapNet, cfg: RootConfig, out: str | Path, *, precision: str = "fp32"
) -> tuple[Path, Path]:
    """Write ``model``'s weights in the official layout plus the JSON sidecar with ``cfg``.

    Args:
        model: the network.
        cfg: its configuration (stored whole in the sidecar).
        out: the weights file, e.g. ``roofmapnet.pth``.
        precision: ``fp32``, or ``fp16`` for half-precision floating-point tensors.

    Returns:
        ``(weights_path, sidecar_path)``.

    Raises:
        RoofMapError: (exit code 2) an unknown precision.
    """
    out = Path(out)
    precision = export_precision(precision)
    dtype = Precision(precision).dtype
    state = {
        key: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().to("cpu")).contiguous().clone()
        for key, t in model.state_dict().items()
    }
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    side = sidecar_path(out)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "version": __version__,
        "precision": precision,
        "config": cfg.model_dump(mode="json"),
    }
    atomic_write_text(side, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return out, side
