"""``export_checkpoint``: load weights, export them in one format and check parity (the core of ``roofmap export``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roofmapnet.config import RootConfig
from roofmapnet.errors import RoofMapError
from roofmapnet.utils.device import resolve_device

if TYPE_CHECKING:
    from roofmapnet.export.parity import ParityReport

#: ``--format`` values.
FORMATS = ("onnx", "torchscript", "state-dict")


@dataclass(frozen=True)
class ExportResult:
    """Files written, how long the export took, and the parity report (``None`` when not checked)."""

    written: list[Path]
    seconds: float
    parity: ParityReport | None

    @property
    def passed(self) -> bool:
        """True unless a parity check ran and failed."""
        return self.parity is None or self.parity.passed


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    out: str | Path,
    *,
    opset: int = 17,
    precision: str = "fp32",
    cfg: RootConfig | None = None,
    max_junctions: int | None = None,
    device: str = "cpu",
    parity: bool = True,
    on_written: Callable[[list[Path], float], None] | None = None,
) -> ExportResult:
    """Export ``checkpoint`` as ``fmt`` (onnx, torchscript, state-dict) to ``out``, then check parity.

    Args:
        checkpoint: our ``.ckpt``, an exported ``.pth`` (+ sidecar) or the official ``.pth``.
        fmt: output format.
        out: file to write (state-dict also writes ``out.json``).
        opset: ONNX opset.
        precision: ``fp32`` or ``fp16``.
        cfg: config for weights without their own (the official ``.pth``); default: built-in defaults.
        max_junctions: cap of the junction proposals baked into the export (default ``model.n_dyn_junc``).
        device: device for export and parity.
        parity: run the exported model on synthetic images against PyTorch eager.
        on_written: called with the written files and the export time before parity runs (for progress output).
    """
    from roofmapnet.export.onnx import export_onnx, export_precision
    from roofmapnet.export.parity import check_parity, exported_predictor, parity_images
    from roofmapnet.export.pipeline import export_config, with_config
    from roofmapnet.export.runtime import OnnxModel, TorchScriptModel
    from roofmapnet.export.state_dict import export_state_dict
    from roofmapnet.export.torchscript import export_torchscript
    from roofmapnet.models.loading import load_model

    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise RoofMapError(f"format {fmt}: expected one of {', '.join(FORMATS)}", exit_code=2, fields="format")
    precision = export_precision(precision)
    out = Path(out)
    dev = resolve_device(device)
    model, loaded = load_model(checkpoint, dev, cfg)
    loaded = export_config(loaded, max_junctions)
    model = with_config(model, loaded.model)
    t0 = time.perf_counter()
    if fmt == "onnx":
        written = [export_onnx(model, loaded, out, opset=opset, precision=precision)]
    elif fmt == "torchscript":
        written = [export_torchscript(model, loaded, out, precision=precision)]
    else:
        written = list(export_state_dict(model, loaded, out, precision=precision))
    seconds = time.perf_counter() - t0
    if on_written is not None:
        on_written(written, seconds)
    if not parity:
        return ExportResult(written, seconds, None)
    exported: object
    if fmt == "onnx":
        exported, label = OnnxModel(out), f"onnx {precision} (onnxruntime)"
    elif fmt == "torchscript":
        exported, label = TorchScriptModel(out, device=dev), f"torchscript {precision}"
    else:
        exported, label = load_model(out, dev)[0], f"state-dict {precision} (reloaded)"
    m = loaded.model
    predict = exported_predictor(exported, score_threshold=m.line_score_thres, junction_threshold=m.eval_junc_thres)
    report = check_parity(model, predict, parity_images(m), label=label, precision=precision)
    return ExportResult(written, seconds, report)
