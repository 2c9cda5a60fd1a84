"""TorchScript export of the whole inference pipeline, loadable with ``torch.jit.load`` alone (no roofmapnet).

The :class:`~roofmapnet.export.pipeline.ExportPipeline` is traced (``torch.jit.trace``; every data-dependent size
is a tensor operation, so the trace is valid for any batch and any number of junctions / lines) and wrapped in a
small scripted module whose thresholds are optional arguments defaulting to the config's::

    m = torch.jit.load("roofmapnet.ts")
    lines, scores, line_counts, junctions, junction_scores, junction_counts = m(pixels)       # config thresholds
    ... = m(pixels, 0.5)                                                                       # score threshold 0.5

The metadata of :func:`~roofmapnet.export.pipeline.export_metadata` is stored as the archive's extra file
``roofmapnet.json`` (``torch.jit.load(path, _extra_files={"roofmapnet.json": ""})``).  The trace records the
device it was made on: export with ``--device cuda`` for a CUDA deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from roofmapnet.config.schema import RootConfig
from roofmapnet.errors import RoofMapError
from roofmapnet.export.onnx import export_precision, quiet_tracing, trace_inputs
from roofmapnet.export.pipeline import TORCHSCRIPT_FORMAT, TORCHSCRIPT_METADATA_FILE, export_metadata, ieee_fp32
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.io import atomic_path


class ThresholdDefaults(nn.Module):
    """Scripted front of the traced pipeline: optional float thresholds with the config's defaults.

    Args:
        core: the traced :class:`~roofmapnet.export.pipeline.ExportPipeline`.
        score_threshold: default minimum line score.
        junction_threshold: default junction proposal threshold.
    """

    def __init__(self, core: nn.Module, score_threshold: float, junction_threshold: float) -> None:
        super().__init__()
        self.core = core
        self.score_threshold = float(score_threshold)
        self.junction_threshold = float(junction_threshold)

    def forward(
        self,
        image: Tensor,
        score_threshold: Optional[float] = None,  # noqa: UP045 - TorchScript needs typing.Optional
        junction_threshold: Optional[float] = None,  # noqa: UP045
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Run the pipeline on ``image`` [B, 3, S, S] (RGB 0-255 float32); see the export contract."""
        sthr = self.score_threshold if score_threshold is None else score_threshold
        jthr = self.junction_threshold if junction_threshold is None else junction_threshold
        s = torch.tensor(sthr, dtype=torch.float32, device=image.device)
        j = torch.tensor(jthr, dtype=torch.float32, device=image.device)
        return self.core(image, s, j)


def export_torchscript(model: RoofMapNet, cfg: RootConfig, out: str | Path, *, precision: str = "fp32") -> Path:
    """Write the whole pipeline of ``model`` as a TorchScript archive (traced on the model's device).

    Args:
        model: the network (not modified).
        cfg: the configuration it decodes with (``cfg.model`` must equal ``model.cfg``).
        out: the archive to write (atomically), e.g. ``roofmapnet.ts``.
        precision: ``fp32`` or ``fp16``.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Raises:
        RoofMapError: a bad option (exit code 2; fp16 on a CPU: :func:`~roofmapnet.export.onnx.check_trace_device`)
            or a failed trace (one line).
    """
    out = Path(out)
    precision = export_precision(precision)
    was_training = model.training
    try:
        pipe, example, sthr, jthr = trace_inputs(model, cfg, precision, "export_torchscript")
        try:
            with torch.no_grad(), quiet_tracing(), ieee_fp32():  # the trace keeps the TF32 flag: keep it off
                traced = torch.jit.trace(pipe, (example, sthr, jthr), check_trace=False)
                scripted = torch.jit.script(
                    ThresholdDefaults(traced, cfg.model.line_score_thres, cfg.model.eval_junc_thres)
                )
        except Exception as exc:  # tracing / scripting raise many types; one line for the user
            text = str(exc).strip()
            raise RoofMapError(
                f"{out}: TorchScript export failed ({text.splitlines()[0] if text else exc!r})"
            ) from None
        meta = export_metadata(cfg, fmt=TORCHSCRIPT_FORMAT, precision=precision)
        with atomic_path(out) as tmp, quiet_tracing():
            torch.jit.save(scripted, str(tmp), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(meta)})
    finally:
        model.train(was_training)
    return out
