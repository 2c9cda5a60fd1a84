"""Data: raw annotation readers, training targets, ``roofmap preprocess`` and the training Dataset.

Submodules: :mod:`~roofmapnet.data.raw` (JSON / RID2 / image readers), :mod:`~roofmapnet.data.targets`
(``*_label.npz`` computation), :mod:`~roofmapnet.data.preprocess` (batch driver) and
:mod:`~roofmapnet.data.dataset` (``RoofDataset`` + ``collate``).  Attributes are imported lazily, so that the
preprocessing workers never import torch (the ``preprocess()`` function lives in the submodule of that name).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RoofDataset": "roofmapnet.data.dataset",
    "collate": "roofmapnet.data.dataset",
    "load_label": "roofmapnet.data.dataset",
    "transform_sample": "roofmapnet.data.dataset",
    "compute_targets": "roofmapnet.data.targets",
    "targets_from_image_lines": "roofmapnet.data.targets",
    "LABEL_FIELDS": "roofmapnet.data.targets",
    "PreprocessOptions": "roofmapnet.data.preprocess",
    "PreprocessSummary": "roofmapnet.data.preprocess",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'roofmapnet.data' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(import_module(module), name)
