"""RoofMapNet network: backbone, heads, junction refinement, line verifier, proposals and sampling.

Re-exports are resolved lazily so that importing a light submodule (e.g. :mod:`roofmapnet.models.loi`) does not
build the whole network module tree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from roofmapnet.models.loading import load_model, load_state_dict_file
    from roofmapnet.models.outputs import HeadOutputs, LineSamples, Wireframe, WireframeModel
    from roofmapnet.models.roofmapnet import RoofMapNet

_EXPORTS = {
    "HeadOutputs": "roofmapnet.models.outputs",
    "LineSamples": "roofmapnet.models.outputs",
    "Wireframe": "roofmapnet.models.outputs",
    "WireframeModel": "roofmapnet.models.outputs",
    "RoofMapNet": "roofmapnet.models.roofmapnet",
    "load_model": "roofmapnet.models.loading",
    "load_state_dict_file": "roofmapnet.models.loading",
}

__all__ = [
    "HeadOutputs",
    "LineSamples",
    "RoofMapNet",
    "Wireframe",
    "WireframeModel",
    "load_model",
    "load_state_dict_file",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
