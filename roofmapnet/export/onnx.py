"""ONNX export of the whole inference pipeline (:class:`~roofmapnet.export.pipeline.ExportPipeline`).

The graph is recorded with ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer): the pipeline is
written so that every data-dependent size is a tensor (``NonZero``, ``TopK`` with a dynamic ``k``, ``Range``),
hence one trace serves every batch size, every number of junction proposals and every number of lines.  After
export the file is post-processed with ``onnx``:

* ``score_threshold`` and ``junction_threshold`` become *overridable initializers* holding the config's values:
  deployers may feed only ``image`` (onnxruntime lists them under ``get_overridable_initializers()``; it logs a
  one-time warning about initializers in the graph inputs, harmless here);
* the metadata of :func:`~roofmapnet.export.pipeline.export_metadata` goes into ``metadata_props``;
* ``onnx.checker`` validates the result, then the file is renamed into place (atomic write).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import torch

from roofmapnet.config.schema import RootConfig
from roofmapnet.errors import RoofMapError
from roofmapnet.export.pipeline import (
    DYNAMIC_AXES,
    INPUT_NAMES,
    ONNX_FORMAT,
    OUTPUT_NAMES,
    ExportPipeline,
    export_metadata,
)
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.device import EXPORT_PRECISIONS, Precision, parse_precision
from roofmapnet.utils.io import atomic_path

#: Default and accepted ONNX opsets (13: ReduceSum with axes as input; 21: the newest checked).
DEFAULT_OPSET: Final = 17
MIN_OPSET: Final = 13
MAX_OPSET: Final = 21
#: Batch of the example input used for tracing (> 1 so that no size-1 batch axis gets specialised).
TRACE_BATCH: Final = 2
#: Largest input side for which a half-precision pipeline may be traced on a CPU (see :func:`check_trace_device`).
MAX_CPU_HALF_SIZE: Final = 128
#: (score, junction) thresholds the graph is traced with: K = 2 proposals per image and every line kept, so
#: tracing runs the backbone plus one candidate line per image (the graph itself stays dynamic).
TRACE_THRESHOLDS: Final = (-1.0, 1.0)


def export_precision(precision: str | Precision) -> str:
    """An export precision in any accepted spelling (``fp32`` / ``32``, ``fp16`` / ``16``) → ``fp32`` or ``fp16``.

    Raises:
        ConfigError: (exit code 2) an unknown precision, or one an export cannot hold (bf16, auto).
    """
    return parse_precision(precision, EXPORT_PRECISIONS).value


def example_pixels(image_size: int, batch: int = TRACE_BATCH, device: torch.device | str = "cpu") -> torch.Tensor:
    """A deterministic [batch, 3, S, S] float32 pixel batch (0-255) to trace with; its content does not matter."""
    gen = torch.Generator().manual_seed(0)
    return (torch.rand((batch, 3, image_size, image_size), generator=gen) * 255.0).round().to(device)


def check_trace_device(precision: str, device: torch.device, image_size: int) -> None:
    """Refuse to trace a half-precision pipeline of a full-size model on a CPU.

    Tracing runs the network once; PyTorch's CPU kernels for float16 convolutions are about 100× slower than
    float32 on CPUs without native half-precision arithmetic (measured on AVX2: 85-200×, e.g. 4.25 s vs 0.048 s
    for one 3×3 128→128 convolution at 64²), i.e. hours for the default 512² model.

    Raises:
        RoofMapError: (exit code 2) ``precision`` is fp16, ``device`` a CPU and ``image_size`` above
            :data:`MAX_CPU_HALF_SIZE`.
    """
    if precision == "fp16" and device.type == "cpu" and image_size > MAX_CPU_HALF_SIZE:
        msg = (
            f"precision fp16: tracing runs the half-precision network once, and PyTorch's CPU half-precision "
            f"convolutions are ~100x slower than fp32 (hours at {image_size}x{image_size}); export with "
            "device cuda, or use precision fp32 (or the fp16 state-dict)"
        )
        raise RoofMapError(msg, exit_code=2, fields=("precision", "device"))


def trace_thresholds(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """:data:`TRACE_THRESHOLDS` as float32 scalars on ``device``."""
    return tuple(torch.tensor(v, dtype=torch.float32, device=device) for v in TRACE_THRESHOLDS)  # type: ignore[return-value]


@contextlib.contextmanager
def quiet_tracing() -> Iterator[None]:
    """Silence the tracer's and exporter's warnings (the pipeline has no Python-side data dependence to warn of)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def trace_inputs(
    model: RoofMapNet, cfg: RootConfig, precision: str, caller: str
) -> tuple[ExportPipeline, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checks shared by the exporters, then the eval-mode pipeline and its example inputs (pixels, thresholds)."""
    precision = export_precision(precision)
    if cfg.model != model.cfg:
        msg = f"{caller}: cfg.model differs from the model's own config"
        raise ValueError(msg)
    check_trace_device(precision, next(model.parameters()).device, cfg.model.image_size)
    pipe = ExportPipeline(model, dtype=Precision(precision).dtype).eval()
    sthr, jthr = trace_thresholds(pipe.mean.device)
    return pipe, example_pixels(cfg.model.image_size, device=pipe.mean.device), sthr, jthr


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def export_onnx(
    model: RoofMapNet,
    cfg: RootConfig,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
) -> Path:
    """Write the whole pipeline of ``model`` as one ONNX graph (contract: :mod:`roofmapnet.export.pipeline`).

    Args:
        model: the network (any device; it is not modified).
        cfg: the configuration it decodes with (stored in the metadata; ``cfg.model`` must equal ``model.cfg``).
        out: the ``.onnx`` file to write (atomically).
        opset: ONNX opset, :data:`MIN_OPSET` to :data:`MAX_OPSET`.
        precision: ``fp32``, or ``fp16`` (half-precision backbone and verifier, for GPU runtimes).

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        RoofMapError: a bad option (exit code 2; fp16 on a CPU: :func:`check_trace_device`) or a failed export.
    """
    import onnx
    from onnx import numpy_helper

    out = Path(out)
    precision = export_precision(precision)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise RoofMapError(f"opset {opset}: must be between {MIN_OPSET} and {MAX_OPSET}", exit_code=2, fields="opset")
    was_training = model.training
    try:
        pipe, example, sthr, jthr = trace_inputs(model, cfg, precision, "export_onnx")
        with atomic_path(out) as tmp:
            try:
                with torch.no_grad(), quiet_tracing():
                    torch.onnx.export(
                        pipe,
                        (example, sthr, jthr),
                        str(tmp),
                        dynamo=False,
                        opset_version=opset,
                        input_names=list(INPUT_NAMES),
                        output_names=list(OUTPUT_NAMES),
                        dynamic_axes=DYNAMIC_AXES,
                        do_constant_folding=True,
                    )
            except Exception as exc:  # the exporter raises many types; keep the message to one line
                raise RoofMapError(f"{out}: ONNX export failed ({_first_line(exc)})") from None
            proto = onnx.load(str(tmp))
            defaults = {
                "score_threshold": np.asarray(cfg.model.line_score_thres, dtype=np.float32),
                "junction_threshold": np.asarray(cfg.model.eval_junc_thres, dtype=np.float32),
            }
            proto.graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in defaults.items())
            del proto.metadata_props[:]
            for key, value in export_metadata(cfg, fmt=ONNX_FORMAT, precision=precision, opset=opset).items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            proto.producer_name = "roofmapnet"
            proto.doc_string = "RoofMapNet roof wireframe parser: image pixels in; lines, scores, junctions out."
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
    finally:
        model.train(was_training)
    return out
