"""RoofMapNet: roof wireframe parsing from aerial imagery (train, evaluate, export, infer).

The Python API (``docs/python-api.md``) has the command line's verbs::

    import roofmapnet

    result = roofmapnet.train("config/presets/tiny.yaml", data_root="data/roofs", max_steps=100)
    roofmapnet.resume(result.run_dir, max_epochs=4)
    metrics = roofmapnet.validate(result.last_checkpoint, "data/roofs", split="valid")
    roofmapnet.export(result.last_checkpoint, "onnx", "model.onnx")
    wireframes = roofmapnet.Model.load(result.last_checkpoint).predict(["roof.png"])

Everything is imported on first use (:mod:`roofmapnet.api`), so ``import roofmapnet`` stays light.  ``train``
and ``export`` are also the names of sub-packages (:mod:`roofmapnet.train`, :mod:`roofmapnet.export`): the
attributes ``roofmapnet.train`` / ``roofmapnet.export`` call the verbs and reach the sub-packages' contents
alike (``roofmapnet.train.run.fit``), and every ``import roofmapnet.train...`` form works as usual.
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("roofmapnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["Model", "Wireframe", "__version__", "export", "resume", "train", "validate"]

#: Names served by :mod:`roofmapnet.api`, imported on first access.
_API = ("Model", "Wireframe", "resume", "validate")


class _Verb:
    """``roofmapnet.train`` / ``roofmapnet.export``: calls :mod:`roofmapnet.api`'s verb; any other attribute is
    the sub-package's (``roofmapnet.train.run``), importing the sub-module when needed."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.__name__ = name
        self.__qualname__ = name

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._function().__doc__

    def _function(self) -> Any:
        return getattr(importlib.import_module("roofmapnet.api"), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function()(*args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        package = importlib.import_module(f"{__name__}.{self._name}")
        try:
            return getattr(package, attr)
        except AttributeError:
            return importlib.import_module(f"{package.__name__}.{attr}")

    def __repr__(self) -> str:
        return f"<roofmapnet.{self._name}: the verb (roofmapnet.api.{self._name}) and the sub-package>"


class _VerbAttribute:
    """A data descriptor: the import system's ``setattr(roofmapnet, "train", <sub-package>)`` keeps the verb."""

    def __init__(self, name: str) -> None:
        self.verb = _Verb(name)

    def __get__(self, obj: object, owner: type | None = None) -> _Verb:
        return self.verb

    def __set__(self, obj: object, value: object) -> None:
        """Ignore the binding of the sub-package (it stays in ``sys.modules`` and behind the verb)."""


class _Package(types.ModuleType):
    train = _VerbAttribute("train")
    export = _VerbAttribute("export")


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("roofmapnet.api"), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
