"""RoofMapNet: roof wireframe parsing from aerial imagery (train, evaluate, export, infer)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("roofmapnet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
