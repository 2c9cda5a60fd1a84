"""Restricted unpickling of user files: numpy arrays, tuples, lists, dicts, numbers and strings, nothing else.

Some public datasets (HEAT / Conv-MPN "cities" graphs) ship ``.npy`` files holding a pickled Python dict, which
``np.load`` reads only with ``allow_pickle=True``, i.e. by running whatever code the file names.  This module
reads them without that risk: :class:`RestrictedUnpickler` resolves only the few numpy globals needed to rebuild
arrays, dtypes and numpy scalars (:data:`ALLOWED_GLOBALS`); any other global (``os.system``, ``builtins.eval``,
``subprocess.Popen``, ...) and persistent ids are refused *before* anything is called, with a one-line
:class:`~roofmapnet.errors.DataError`.  The opcodes themselves can only build the Python containers
(tuple, list, dict, set), strings, bytes and numbers, so nothing else can be reached.

The ``.npy`` header is parsed with numpy's own ``ast.literal_eval``-based reader; a file with a plain numeric
dtype is read with ``allow_pickle=False``.  Python 2 pickles (HEAT's files) are decoded with ``latin1``, as numpy
recommends for them.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Final

import numpy as np

from roofmapnet.errors import DataError

#: ``(module, name)`` pairs the unpickler may resolve: what numpy's own pickles of arrays, dtypes and scalars
#: reference (both the numpy 1 ``numpy.core`` and the numpy 2 ``numpy._core`` spellings).
ALLOWED_GLOBALS: Final = frozenset(
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("_codecs", "encode")}  # protocol-2 pickles of bytes: _codecs.encode(text, "latin1"), see _latin1_bytes
)

_ALLOWED_TEXT: Final = "numpy arrays, tuples, lists, dicts, numbers and strings"


def _latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    """What protocol-2 pickles call ``_codecs.encode`` for: ``str`` → ``bytes`` in latin-1, no other codec."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        msg = f"forbidden global _codecs.encode with codec {encoding!r}"
        raise pickle.UnpicklingError(msg)
    return text.encode("latin1")


def _resolve(module: str, name: str) -> Any:
    if module == "_codecs":
        return _latin1_bytes
    if module.startswith("numpy._core") and not hasattr(np, "_core"):  # numpy 1 reading a numpy 2 pickle
        module = module.replace("numpy._core", "numpy.core", 1)
    if module.startswith("numpy.core") and hasattr(np, "_core"):  # numpy 2: numpy.core is a deprecated alias
        module = module.replace("numpy.core", "numpy._core", 1)
    import importlib

    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and refuses persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global; refuse everything else."""
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve(module, name)
        msg = f"forbidden global {module}.{name}"
        raise pickle.UnpicklingError(msg)

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are never valid in a data file."""
        msg = "forbidden persistent id"
        raise pickle.UnpicklingError(msg)


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises:
        DataError: ``SOURCE: refused to unpickle (forbidden global os.system; only … are allowed)`` or
            ``SOURCE: cannot unpickle (…)`` for a damaged stream.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        text = str(exc).splitlines()[0] if str(exc) else "invalid pickle"
        if text.startswith("forbidden"):
            raise DataError(f"{source}: refused to unpickle ({text}; only {_ALLOWED_TEXT} are allowed)") from None
        raise DataError(f"{source}: cannot unpickle ({text})") from None
    except Exception as exc:  # EOFError, ValueError, TypeError, MemoryError, RecursionError from a crafted stream
        text = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise DataError(f"{source}: cannot unpickle ({text})") from None


def load_npy(path: str | Path) -> Any:
    """Read a ``.npy`` file that may hold pickled objects, safely.

    Numeric arrays are returned as arrays; an object array is unpickled with :func:`safe_loads` and a 0-d one
    (``np.save`` of a dict) is returned as its item.  A file that is a bare pickle (no ``.npy`` header) is read
    with :func:`safe_loads` too, as ``np.load`` would.

    Raises:
        DataError: unreadable file, damaged header, or a pickle that is refused (see :func:`safe_loads`).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data.startswith(b"\x93NUMPY"):
        if data[:1] == b"\x80":  # a pickle protocol >= 2 header
            return _unwrap(safe_loads(data, source=str(path)))
        raise DataError(f"{path}: not a .npy file (no \\x93NUMPY header)")
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            _shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            _shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as exc:  # ValueError, SyntaxError from a damaged header
        raise DataError(f"{path}: damaged .npy header ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    if dtype.hasobject:
        return _unwrap(safe_loads(data[fh.tell() :], source=str(path)))
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def _unwrap(obj: Any) -> Any:
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject and obj.ndim == 0:
        return obj.item()
    return obj
