"""Device, precision and autocast: the one vocabulary of training, validation, inference and export.

Precision names (:class:`Precision`) are ``fp32``, ``bf16``, ``fp16`` and ``auto``; :func:`parse_precision` also
accepts the seed document's and Lightning's spellings (``32``, ``16``, ``32-true``, ``16-mixed``, ``bf16-mixed``),
so ``--precision 16`` means the same to ``roofmap train``, ``infer``, ``validate`` and ``export``.  Each command
accepts the subset it can run (:data:`TRAIN_PRECISIONS`, :data:`INFER_PRECISIONS`, :data:`EXPORT_PRECISIONS`).

* :func:`resolve_device` turns ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` into a usable :class:`torch.device`.
* :func:`choose_precision` is what ``auto`` means on a device (the single place that decides it).
* :func:`resolve_precision` gives the autocast dtype of a precision on a device (``None``: plain fp32), with a
  notice when the request cannot be honoured there (fp16 autocast on a CPU runs in fp32).
* :func:`autocast` is the matching context manager (a no-op for fp32).
* :attr:`Precision.lightning` is the name Lightning's ``Trainer(precision=...)`` takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from enum import Enum
from typing import Any, Final

import torch

from roofmapnet.errors import ConfigError, RoofMapError


class Precision(str, Enum):
    """Numeric precision of a run: fp32, bf16 or fp16 autocast (mixed precision), fp64 (training only), or ``auto``."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    fp64 = "fp64"
    auto = "auto"

    @property
    def lightning(self) -> str:
        """Lightning's ``Trainer(precision=...)`` name (``32-true``, ``bf16-mixed``, ``16-mixed``, ``64-true``).

        Raises:
            ValueError: for ``auto`` (resolve it first with :func:`choose_precision`).
        """
        if self is Precision.auto:
            msg = "precision 'auto' has no Lightning name: resolve it with choose_precision(device)"
            raise ValueError(msg)
        return _LIGHTNING[self]

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (``float32`` for fp32).

        Raises:
            ValueError: for ``auto``.
        """
        if self is Precision.auto:
            msg = "precision 'auto' has no dtype: resolve it with choose_precision(device)"
            raise ValueError(msg)
        return _DTYPES[self]


_LIGHTNING: Final = {
    Precision.fp32: "32-true",
    Precision.bf16: "bf16-mixed",
    Precision.fp16: "16-mixed",
    Precision.fp64: "64-true",
}
_DTYPES: Final = {
    Precision.fp32: torch.float32,
    Precision.bf16: torch.bfloat16,
    Precision.fp16: torch.float16,
    Precision.fp64: torch.float64,
}
#: Every accepted spelling → its precision.
PRECISION_ALIASES: Final[dict[str, Precision]] = {
    "fp32": Precision.fp32,
    "32": Precision.fp32,
    "32-true": Precision.fp32,
    "bf16": Precision.bf16,
    "bf16-mixed": Precision.bf16,
    "fp16": Precision.fp16,
    "16": Precision.fp16,
    "16-mixed": Precision.fp16,
    "fp64": Precision.fp64,
    "64": Precision.fp64,
    "64-true": Precision.fp64,
    "auto": Precision.auto,
}
#: Precisions ``roofmap train`` runs (mixed precision through Lightning).
TRAIN_PRECISIONS: Final = (Precision.fp32, Precision.fp16, Precision.bf16, Precision.fp64)
#: Precisions of ``roofmap infer`` and ``roofmap validate`` (autocast).
INFER_PRECISIONS: Final = (Precision.fp32, Precision.bf16, Precision.fp16, Precision.auto)
#: Precisions of an exported graph or state dict.
EXPORT_PRECISIONS: Final = (Precision.fp32, Precision.fp16)


def precision_spellings(choices: Collection[Precision]) -> list[str]:
    """The accepted spellings of ``choices``, in :data:`PRECISION_ALIASES` order (for messages)."""
    return [name for name, p in PRECISION_ALIASES.items() if p in choices]


def parse_precision(value: str | int | Precision, choices: Collection[Precision] = INFER_PRECISIONS) -> Precision:
    """Any accepted spelling (``fp32``, ``32``, ``32-true``, ``bf16``, ``bf16-mixed``, ``fp16``, ``16``,
    ``16-mixed``, ``auto``; case-insensitive) → a :class:`Precision` among ``choices``.

    Raises:
        ConfigError: (exit code 2) an unknown spelling or one outside ``choices`` (naming the field ``precision``).
    """
    if isinstance(value, Precision):
        found: Precision | None = value
    else:
        found = PRECISION_ALIASES.get(str(value).strip().lower())
    if found is None or found not in choices:
        raise ConfigError(
            [f"precision {value}: expected one of {', '.join(precision_spellings(choices))}"], fields="precision"
        )
    return found


def resolve_device(spec: str | torch.device) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` → a usable :class:`torch.device`.

    Raises:
        RoofMapError: (exit code 2) for an unknown name or a CUDA device that is not available.
    """
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise RoofMapError(f"device {spec}: expected auto, cpu, cuda or cuda:N", exit_code=2, fields="device") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RoofMapError(f"device {spec}: CUDA is not available on this machine", exit_code=2, fields="device")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            msg = f"device {spec}: only {torch.cuda.device_count()} CUDA device(s) present"
            raise RoofMapError(msg, exit_code=2, fields="device")
    elif dev.type != "cpu":
        raise RoofMapError(f"device {spec}: expected auto, cpu, cuda or cuda:N", exit_code=2, fields="device")
    return dev


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``'s ``flags`` line on Linux; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_amx_bf16() -> bool:
    """Whether the CPU has AMX bf16 tiles (``amx_bf16``), where oneDNN's bf16 convolutions run several times faster
    than fp32 (and want channels_last); PyTorch's own probe where the flags cannot be read."""
    if "amx_bf16" in cpu_flags():
        return True
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if callable(probe) and not cpu_flags() else False


def cpu_supports_bf16() -> bool:
    """Whether the CPU has native bf16 dot products: AMX or AVX512_BF16 (bf16 autocast runs on any x86 CPU, but
    without these it is emulated and slower than fp32)."""
    if cpu_has_amx_bf16() or "avx512_bf16" in cpu_flags():
        return True
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if callable(probe) and not cpu_flags() else False


def cpu_description() -> str:
    """One line for benchmark reports: CPU model, PyTorch's capability, the bf16-relevant flags, threads."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        import platform

        model = platform.processor() or platform.machine()
    flags = cpu_flags()
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile") if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model}; torch capability {capability}; flags {' '.join(shown) or 'none of avx2/avx512/amx'}; {torch.get_num_threads()} threads"


def choose_precision(device: torch.device) -> Precision:
    """What ``auto`` means on ``device`` (the one place that decides it).

    * CPU: bf16 where the CPU has AMX (``amx_bf16``), fp32 elsewhere.  With AMX, bf16 convolutions run ≈7×
      faster than fp32 (docs/performance.md).  Without AMX bf16 is emulated (slower than fp32) or, with
      AVX512_BF16, ≈2.4× faster in the dense part but it moves the junction proposals of a lightly trained model
      (docs/performance.md, issue 14), so fp32 stays the default there; ``--precision bf16`` is one flag away.
    * CUDA: fp32 (cuDNN's default TF32 convolutions).  Measured on an H200 (docs/performance.md, "GPU"): inference
      at batch 1 is launch-bound, and fp16 / bf16 autocast were 1.2-1.3× *slower* than fp32 at 4,186 and 44,850
      lines (the casts add kernels); mixed precision halves the memory of training, where ``--precision 16`` is
      the documented choice.  ``bench/gpu_check.py --only layout_amp`` re-measures this (channels-last + AMP).
    """
    if device.type == "cuda":
        return Precision.fp32
    return Precision.bf16 if cpu_has_amx_bf16() else Precision.fp32


def resolve_precision(precision: str | int | Precision, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype of ``precision`` on ``device`` (``None`` = plain fp32), plus an optional notice.

    ``fp32``: fp32.  ``bf16``: bf16 autocast (CPU or CUDA).  ``fp16``: fp16 autocast on CUDA; elsewhere fp32,
    with a notice (naming the field ``precision``).  ``auto``: :func:`choose_precision`.

    Raises:
        ConfigError: (exit code 2) for an unknown value.
    """
    p = parse_precision(precision, INFER_PRECISIONS)
    if p is Precision.auto:
        p = choose_precision(device)
    if p is Precision.fp32:
        return None, None
    if p is Precision.fp16 and device.type != "cuda":
        return None, f"precision {precision} (fp16 autocast) needs CUDA; running in fp32 on {device.type}"
    return p.dtype, None


def autocast(
    device: torch.device, precision: str | int | Precision | torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Autocast on ``device`` for ``precision`` (a name, or an already resolved dtype; fp32 / ``None``: a no-op)."""
    dtype: torch.dtype | None
    if precision is None or isinstance(precision, torch.dtype):
        dtype = precision
    else:
        dtype = resolve_precision(precision, device)[0]
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
