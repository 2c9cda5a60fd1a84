"""Run exported models (ONNX through onnxruntime, or TorchScript) and get the same :class:`Wireframe` list as
:meth:`RoofMapNet.predict <roofmapnet.models.roofmapnet.RoofMapNet.predict>`.

An :class:`ExportedModel` has the model's ``predict(images, image_sizes, *, max_lines, junction_threshold,
score_threshold)`` signature on *normalised* images (what :func:`roofmapnet.inference.images.prepare_image`
returns), so it is a :class:`~roofmapnet.models.outputs.WireframeModel`: :class:`roofmapnet.inference.predictor.Predictor`
runs it unchanged and the same writers produce the same JSON / GeoJSON / overlays::

    model, cfg = load_exported_model("roofmapnet.onnx")
    predictor = Predictor(model, cfg, device="cpu", checkpoint="roofmapnet.onnx")

The normalised images are mapped back to 0-255 pixels (``x·stddev + mean``, about one float32 ulp from the
original) and fed to the graph, whose outputs (network-input pixels, (x, y)) are turned back into heatmap (y, x)
coordinates (a division by the stride 4, exact).  :meth:`ExportedModel.predict_pixels` takes pixels directly.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from roofmapnet.config.schema import RootConfig
from roofmapnet.errors import CheckpointError, RoofMapError
from roofmapnet.export.pipeline import (
    INPUT_NAMES,
    ONNX_FORMAT,
    OUTPUT_NAMES,
    TORCHSCRIPT_FORMAT,
    TORCHSCRIPT_METADATA_FILE,
    ExportInfo,
    read_metadata,
)
from roofmapnet.models.outputs import Wireframe


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def outputs_to_wireframes(
    outputs: Mapping[str, np.ndarray],
    info: ExportInfo,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    *,
    max_lines: int | None = None,
) -> list[Wireframe]:
    """Turn the padded graph outputs into one :class:`Wireframe` per image (heatmap (y, x) coordinates).

    Args:
        outputs: ``{name: array}`` for the names of :data:`~roofmapnet.export.pipeline.OUTPUT_NAMES`.
        info: the model's metadata (stride, heatmap size).
        image_sizes: (H, W) of each original image (default: the network input size).
        max_lines: keep at most this many lines per image (the best).
    """
    lines, scores, counts = outputs["lines"], outputs["scores"], outputs["line_counts"]
    junc, jscores, jcounts = outputs["junctions"], outputs["junction_scores"], outputs["junction_counts"]
    bsz = int(counts.shape[0])
    sizes = list(image_sizes) if image_sizes is not None else [info.input_size] * bsz
    if len(sizes) != bsz:
        msg = f"image_sizes has {len(sizes)} entries for a batch of {bsz} images"
        raise ValueError(msg)
    stride = np.float32(info.stride)
    # (x, y) input pixels -> (y, x) heatmap; dividing by a power of two is exact.
    lines_hm = np.ascontiguousarray(lines[..., ::-1], dtype=np.float32) / stride
    junc_hm = np.ascontiguousarray(junc[..., ::-1], dtype=np.float32) / stride
    result = []
    for b in range(bsz):
        n = int(counts[b]) if max_lines is None else min(int(counts[b]), max_lines)
        k = int(jcounts[b])
        result.append(
            Wireframe(
                lines=torch.from_numpy(lines_hm[b, :n].copy()),
                scores=torch.from_numpy(np.ascontiguousarray(scores[b, :n], dtype=np.float32)),
                junctions=torch.from_numpy(junc_hm[b, :k].copy()),
                junction_scores=torch.from_numpy(np.ascontiguousarray(jscores[b, :k], dtype=np.float32)),
                heatmap_size=info.heatmap_size,
                image_size=(int(sizes[b][0]), int(sizes[b][1])),
            )
        )
    return result


class ExportedModel(ABC):
    """An exported RoofMapNet pipeline with the model's ``predict`` interface.

    Attributes:
        path: the file it was loaded from.
        info: its metadata (config, precision, versions).
    """

    def __init__(self, path: Path, info: ExportInfo) -> None:
        self.path = path
        self.info = info
        m = info.config.model
        self._mean = np.asarray(m.image.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(m.image.stddev, dtype=np.float32).reshape(1, 3, 1, 1)

    @property
    def cfg(self) -> RootConfig:
        """The configuration the model was exported with."""
        return self.info.config

    def to(self, device: str | torch.device) -> ExportedModel:
        """No-op: the runtime device is fixed at load."""
        return self

    def eval(self) -> ExportedModel:
        """No-op: exported graphs are always in inference mode."""
        return self

    @abstractmethod
    def _run(self, pixels: np.ndarray, score_threshold: float, junction_threshold: float) -> dict[str, np.ndarray]:
        """Run the graph on float32 pixels [B, 3, S, S] and return its outputs by name."""

    def _check_pixels(self, pixels: np.ndarray) -> np.ndarray:
        s = self.info.config.model.image_size
        arr = np.ascontiguousarray(pixels, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1:] != (3, s, s):
            msg = f"{self.path}: expected images of shape [B, 3, {s}, {s}], got {list(arr.shape)}"
            raise RoofMapError(msg)
        return arr

    def run(
        self,
        pixels: np.ndarray | Tensor,
        *,
        score_threshold: float | None = None,
        junction_threshold: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw padded outputs (network-input pixels, (x, y)) for RGB 0-255 ``pixels`` [B, 3, S, S]."""
        m = self.info.config.model
        arr = pixels.detach().to("cpu", torch.float32).numpy() if isinstance(pixels, Tensor) else pixels
        return self._run(
            self._check_pixels(arr),
            m.line_score_thres if score_threshold is None else float(score_threshold),
            m.eval_junc_thres if junction_threshold is None else float(junction_threshold),
        )

    def predict_pixels(
        self,
        pixels: np.ndarray | Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        """Wireframes of RGB 0-255 ``pixels`` [B, 3, S, S] (already resized to the network input)."""
        outputs = self.run(pixels, score_threshold=score_threshold, junction_threshold=junction_threshold)
        return outputs_to_wireframes(outputs, self.info, image_sizes, max_lines=max_lines)

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        max_lines: int | None = None,
        junction_threshold: float | None = None,
        score_threshold: float | None = None,
    ) -> list[Wireframe]:
        """Same as :meth:`RoofMapNet.predict`: ``images`` [B, 3, S, S] normalised by the config's mean / stddev."""
        norm = images.detach().to("cpu", torch.float32).numpy()
        pixels = norm * self._std + self._mean
        return self.predict_pixels(
            pixels,
            image_sizes,
            max_lines=max_lines,
            junction_threshold=junction_threshold,
            score_threshold=score_threshold,
        )


class OnnxModel(ExportedModel):
    """An exported ``.onnx`` pipeline run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers (default: every available one, in onnxruntime's order).
        threads: intra-op threads (default: onnxruntime's choice).

    Raises:
        CheckpointError: missing, unreadable or non-roofmapnet file.
        RoofMapError: onnxruntime is not installed.
    """

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RoofMapError("onnxruntime is not installed: pip install 'roofmapnet[export]'") from None
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warning about the overridable threshold initializers
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                str(path), options, providers=list(providers or ort.get_available_providers())
            )
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt or invalid graphs
            raise CheckpointError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None
        info = read_metadata(session.get_modelmeta().custom_metadata_map, str(path), ONNX_FORMAT)
        super().__init__(path, info)
        self.session = session

    @property
    def providers(self) -> list[str]:
        """Execution providers the session uses."""
        return list(self.session.get_providers())

    def _run(self, pixels: np.ndarray, score_threshold: float, junction_threshold: float) -> dict[str, np.ndarray]:
        feed = {
            INPUT_NAMES[0]: pixels,
            INPUT_NAMES[1]: np.asarray(score_threshold, dtype=np.float32),
            INPUT_NAMES[2]: np.asarray(junction_threshold, dtype=np.float32),
        }
        values = self.session.run(list(OUTPUT_NAMES), feed)
        return dict(zip(OUTPUT_NAMES, values, strict=True))


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder), not a ``torch.save`` file."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in name for name in zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class TorchScriptModel(ExportedModel):
    """An exported TorchScript pipeline.

    Args:
        path: the archive.
        device: where to run it (the one it was exported on, see :mod:`roofmapnet.export.torchscript`).

    Raises:
        CheckpointError: missing, unreadable or non-roofmapnet archive.
    """

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu") -> None:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
        extra = {TORCHSCRIPT_METADATA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export (torch >= 2.9)
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
        except Exception as exc:  # torch.jit.load raises RuntimeError / ValueError / zip errors
            raise CheckpointError(f"{path}: not a loadable TorchScript archive ({_first_line(exc)})") from None
        raw = extra[TORCHSCRIPT_METADATA_FILE]
        try:
            meta: Any = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: {TORCHSCRIPT_METADATA_FILE} is not valid JSON") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: {TORCHSCRIPT_METADATA_FILE} must be a JSON object")
        super().__init__(path, read_metadata(meta, str(path), TORCHSCRIPT_FORMAT))
        self.module = module
        self.device = torch.device(device)

    def _run(self, pixels: np.ndarray, score_threshold: float, junction_threshold: float) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            values = self.module(torch.from_numpy(pixels).to(self.device), score_threshold, junction_threshold)
        return {name: v.detach().cpu().numpy() for name, v in zip(OUTPUT_NAMES, values, strict=True)}


def is_exported_model(path: str | Path) -> bool:
    """Whether ``path`` names an exported pipeline (``.onnx`` or a TorchScript archive), not a weights file."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" or is_torchscript_archive(path)


def load_exported_model(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    providers: Sequence[str] | None = None,
    threads: int | None = None,
) -> tuple[ExportedModel, RootConfig]:
    """Open an exported pipeline: ``.onnx`` (onnxruntime) or a TorchScript archive.

    Args:
        path: the exported file.
        device: TorchScript device (ONNX: choose ``providers`` instead).
        providers: onnxruntime execution providers (default: all available).
        threads: onnxruntime intra-op threads.

    Returns:
        ``(model, config)``; ``model.predict`` mirrors :meth:`RoofMapNet.predict`.

    Raises:
        CheckpointError: not an exported model, or a missing / corrupt / foreign file (one line).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        onnx_model = OnnxModel(path, providers=providers, threads=threads)
        return onnx_model, onnx_model.cfg
    if is_torchscript_archive(path):
        ts_model = TorchScriptModel(path, device=device)
        return ts_model, ts_model.cfg
    if not path.exists():
        raise CheckpointError(f"{path}: file not found")
    raise CheckpointError(f"{path}: not an exported model (expected a .onnx file or a TorchScript archive)")
