r"""The predictor: a model on a device at a precision, turning batches of network inputs into :class:`Wireframe`\ s.

:class:`Predictor` wraps any :class:`~roofmapnet.models.outputs.WireframeModel` (the eager
:class:`~roofmapnet.models.roofmapnet.RoofMapNet`, or an exported ONNX / TorchScript runtime) and knows nothing
about files: the file job is :mod:`roofmapnet.inference.runner`, tiled rasters :mod:`roofmapnet.inference.raster`.

Image ↔ model frames
    :func:`model_input` is the one place an image becomes the network input (resized to
    ``model.image_size``² and normalised, :func:`~roofmapnet.inference.images.prepare_image`), and
    :func:`image_scale` the one place predictions are mapped back to the image's pixels (per axis, ``H/h`` and
    ``W/w``; the same scale :class:`Wireframe` applies in ``lines_xyxy``).

Decoding rules (``RootConfig.infer``, :class:`~roofmapnet.config.schema.InferConfig`):

* ``threshold`` (default ``cfg.model.line_score_thres`` = 0.1, the reference's value; L-CNN used 0.5):
  lines with score > threshold are kept.
* ``postprocess`` (default on): L-CNN's duplicate/overlap removal
  (:func:`roofmapnet.inference.postprocess.postprocess_lines`) in the original image's pixels with
  τ = ``postprocess_t``·diagonal (default t = 0.010, the L-CNN AP^H setting).
* ``max_lines``: the model's best ``max_lines`` lines per image are kept *before* post-processing (as the
  reference's ``n_out_line`` cap, and it bounds the post-processing cost), so fewer may be written.
* Lines or scores that are not finite (possible in fp16) are dropped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from roofmapnet.config.schema import InferConfig, ModelConfig, RootConfig
from roofmapnet.data.resize import ResizeGeometry
from roofmapnet.export.runtime import is_exported_model, load_exported_model
from roofmapnet.inference.images import prepare_image
from roofmapnet.inference.postprocess import postprocess_lines, postprocess_threshold_px
from roofmapnet.models.loading import load_model
from roofmapnet.models.outputs import Wireframe, WireframeModel
from roofmapnet.utils.device import autocast, resolve_device, resolve_precision


def model_input(image: np.ndarray | Tensor, cfg: ModelConfig, resize: str = "stretch") -> Tensor:
    """An RGB [H, W, 3] image (0-255, any size) → the [3, S, S] network input (resized as ``resize`` says, the
    model's ``data.resize``, and normalised)."""
    return prepare_image(image, cfg.image_size, cfg.image, resize=resize)


def image_scale(wf: Wireframe) -> Tensor:
    """``[sy, sx]`` (float64) taking ``wf``'s heatmap (y, x) coordinates to its original image's pixels."""
    (h, w), (big_h, big_w) = wf.heatmap_size, wf.image_size
    return torch.tensor([big_h / h, big_w / w], dtype=torch.float64)


class Predictor:
    """A model ready for inference, with its configuration, device and precision.

    Args:
        model: any :class:`~roofmapnet.models.outputs.WireframeModel`: a
            :class:`~roofmapnet.models.roofmapnet.RoofMapNet` (moved to ``device``, eval mode) or an exported
            runtime (its device was fixed when it was loaded).
        cfg: the configuration the model was built with (``cfg.model``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a :class:`torch.device`.
        precision: ``fp32`` / ``32``, ``bf16``, ``fp16`` / ``16`` or ``auto``
            (:func:`roofmapnet.utils.device.resolve_precision`).
        checkpoint: the checkpoint path, recorded in the JSON outputs.

    Example::

        predictor = Predictor.from_checkpoint("logs/checkpoints/last.ckpt", device="cpu")
        report = run_inference(predictor, ["tiles/"], "out/", InferConfig(outputs=("json", "overlay")))
    """

    def __init__(
        self,
        model: WireframeModel,
        cfg: RootConfig,
        device: str | torch.device = "cpu",
        precision: str = "32",
        *,
        checkpoint: str | Path = "",
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        self.autocast_dtype, self.precision_notice = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval() if isinstance(model, nn.Module) else model
        self.checkpoint = str(checkpoint)
        #: Seconds spent in ``model.predict`` (input transfer, network, proposals, verification) by
        #: :meth:`predict`, reset when a run starts (:func:`roofmapnet.inference.runner.run_inference`).
        self.model_seconds = 0.0

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        precision: str = "32",
        cfg: RootConfig | None = None,
    ) -> Predictor:
        """Load weights (official ``.pth``, Lightning ``.ckpt``, exported weights + sidecar) or an exported pipeline.

        An ``.onnx`` file runs through onnxruntime and a TorchScript archive through ``torch.jit``, with the same
        outputs and writers as PyTorch inference (their precision is the one they were exported with).

        Args:
            path: the weights file.
            device: see :func:`roofmapnet.utils.device.resolve_device`.
            precision: see :func:`roofmapnet.utils.device.resolve_precision`.
            cfg: configuration for weights that do not carry their own (the official ``.pth``).

        Raises:
            CheckpointError: missing, corrupt or incompatible weights (one line).
        """
        path = Path(path)
        dev = resolve_device(device)
        if is_exported_model(path):  # an ONNX / TorchScript pipeline: its config travels inside it
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.type == "cuda" else None
            exported, root = load_exported_model(path, device=dev, providers=providers)
            return cls(exported, root, dev, "fp32", checkpoint=path)
        model, root = load_model(path, dev, cfg)
        return cls(model, root, dev, precision, checkpoint=path)

    # ------------------------------------------------------------------------------------------ model
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The run's autocast context on its device (a no-op for fp32)."""
        return autocast(self.device, self.autocast_dtype)

    def thresholds(self, options: InferConfig) -> tuple[float, float]:
        """``(line score threshold, junction threshold)`` of a run (the options', else the model config's)."""
        m = self.cfg.model
        thr = m.line_score_thres if options.threshold is None else options.threshold
        jthr = m.eval_junc_thres if options.junction_threshold is None else options.junction_threshold
        return float(thr), float(jthr)

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        options: InferConfig | None = None,
    ) -> list[Wireframe]:
        """Wireframes of a batch of network inputs, each in its original image's frame.

        Args:
            images: [B, 3, S, S] from :func:`model_input`.
            image_sizes: (H, W) of each original image.
            options: thresholds, post-processing and ``max_lines`` (default: ``cfg.infer``).

        Returns:
            One wireframe per image: lines score-descending, finite, capped, post-processed if enabled.
        """
        options = self.cfg.infer if options is None else options
        thr, jthr = self.thresholds(options)
        t0 = time.perf_counter()
        with torch.inference_mode(), self.autocast():
            raw = self.model.predict(
                images.to(self.device, non_blocking=True),
                list(image_sizes),
                max_lines=options.max_lines,
                junction_threshold=jthr,
                score_threshold=thr,
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.model_seconds += time.perf_counter() - t0
        return [self._finish(wf, options) for wf in raw]

    def _finish(self, wf: Wireframe, options: InferConfig) -> Wireframe:
        """Move to CPU/float64, undo a letterbox, drop non-finite lines and post-process in image space."""
        lines = wf.lines.detach().to("cpu", torch.float64)
        scores = wf.scores.detach().to("cpu", torch.float64)
        junctions = wf.junctions.detach().to("cpu", torch.float64)
        if self.cfg.data.resize != "stretch" and wf.heatmap_size[0] == wf.heatmap_size[1]:
            # Letterboxed input: map the heatmap frame to the one Wireframe scales per axis to image pixels.
            geometry = ResizeGeometry.fit(wf.image_size, self.cfg.model.image_size, self.cfg.data.resize)
            lines = geometry.to_stretch_frame(lines, wf.heatmap_size[0])
            junctions = geometry.to_stretch_frame(junctions, wf.heatmap_size[0])
        finite = torch.isfinite(lines).flatten(1).all(dim=1) & torch.isfinite(scores)
        lines, scores = lines[finite], scores[finite]
        if options.postprocess and lines.shape[0] > 1:
            big_h, big_w = wf.image_size
            scale = image_scale(wf)
            tau = postprocess_threshold_px(options.postprocess_t, big_w, big_h)
            pp_lines, pp_scores = postprocess_lines(lines * scale, scores, tau, tol=0, do_clip=False)
            lines = torch.as_tensor(pp_lines, dtype=torch.float64).reshape(-1, 2, 2) / scale
            scores = torch.as_tensor(pp_scores, dtype=torch.float64).reshape(-1)
        return Wireframe(
            lines=lines,
            scores=scores,
            junctions=junctions,
            junction_scores=wf.junction_scores.detach().to("cpu", torch.float64),
            heatmap_size=wf.heatmap_size,
            image_size=wf.image_size,
        )

    def predict_images(self, images: Sequence[np.ndarray], options: InferConfig | None = None) -> list[Wireframe]:
        """Wireframes of RGB uint8 [H, W, 3] images (any sizes) held in memory."""
        batch = torch.stack([model_input(im, self.cfg.model, self.cfg.data.resize) for im in images])
        return self.predict(batch, [(int(im.shape[0]), int(im.shape[1])) for im in images], options)
