"""Deployable exports of the whole RoofMapNet inference pipeline, and the runtimes and parity checks that go with them.

* :mod:`~roofmapnet.export.pipeline` — :class:`ExportPipeline` (pixels in, padded wireframes out) and the
  input/output contract, metadata writer and reader.
* :mod:`~roofmapnet.export.onnx` — :func:`export_onnx` (one ONNX graph, dynamic batch / junctions / lines).
* :mod:`~roofmapnet.export.torchscript` — :func:`export_torchscript` (loadable with ``torch.jit.load`` alone).
* :mod:`~roofmapnet.export.state_dict` — :func:`export_state_dict` (official-format ``.pth`` + JSON sidecar).
* :mod:`~roofmapnet.export.runtime` — :func:`load_exported_model`: onnxruntime / TorchScript models with
  :meth:`RoofMapNet.predict`'s interface, returning the same :class:`~roofmapnet.models.outputs.Wireframe` list.
* :mod:`~roofmapnet.export.parity` — :func:`check_parity` against PyTorch eager on synthetic images.

* :mod:`~roofmapnet.export.api` — :func:`export_checkpoint`: load, export, check parity (``roofmap export``).

Names are resolved lazily so that importing this package does not import onnx / onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from roofmapnet.export.api import ExportResult, export_checkpoint
    from roofmapnet.export.onnx import export_onnx
    from roofmapnet.export.parity import ParityReport, check_parity, parity_images
    from roofmapnet.export.pipeline import ExportInfo, ExportPipeline
    from roofmapnet.export.runtime import (
        ExportedModel,
        OnnxModel,
        TorchScriptModel,
        is_exported_model,
        load_exported_model,
    )
    from roofmapnet.export.state_dict import export_state_dict
    from roofmapnet.export.torchscript import export_torchscript

_EXPORTS = {
    "export_checkpoint": "roofmapnet.export.api",
    "ExportResult": "roofmapnet.export.api",
    "ExportPipeline": "roofmapnet.export.pipeline",
    "ExportInfo": "roofmapnet.export.pipeline",
    "export_onnx": "roofmapnet.export.onnx",
    "export_torchscript": "roofmapnet.export.torchscript",
    "export_state_dict": "roofmapnet.export.state_dict",
    "ExportedModel": "roofmapnet.export.runtime",
    "OnnxModel": "roofmapnet.export.runtime",
    "TorchScriptModel": "roofmapnet.export.runtime",
    "is_exported_model": "roofmapnet.export.runtime",
    "load_exported_model": "roofmapnet.export.runtime",
    "ParityReport": "roofmapnet.export.parity",
    "check_parity": "roofmapnet.export.parity",
    "parity_images": "roofmapnet.export.parity",
}

__all__ = [
    "ExportInfo",
    "ExportPipeline",
    "ExportResult",
    "ExportedModel",
    "OnnxModel",
    "ParityReport",
    "TorchScriptModel",
    "check_parity",
    "export_checkpoint",
    "export_onnx",
    "export_state_dict",
    "export_torchscript",
    "is_exported_model",
    "load_exported_model",
    "parity_images",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
