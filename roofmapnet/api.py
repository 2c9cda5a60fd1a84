"""The Python API: the verbs of the ``roofmap`` command, as functions (``roofmapnet.train`` etc.).

Each verb validates its arguments once and calls the same core as the command line::

    import roofmapnet

    result = roofmapnet.train("config/presets/tiny.yaml", data_root="data/roofs", max_steps=100)
    more = roofmapnet.resume(result.run_dir, max_epochs=4)
    metrics = roofmapnet.validate(result.best_sap10_checkpoint, "data/roofs", split="test")
    roofmapnet.export(result.last_checkpoint, "onnx", "model.onnx")
    model = roofmapnet.Model.load(result.last_checkpoint, device="cpu")
    for wf in model.predict(["roof1.png", "roof2.png"]):
        print(len(wf.lines), wf.to_json()["lines"][:1])

Errors are :class:`~roofmapnet.errors.RoofMapError` subclasses whose one-line messages name fields and values
(``precision 8: expected one of ...``), never command-line flags.  ``docs/python-api.md`` has a runnable example.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from roofmapnet.config import RootConfig, load_config
from roofmapnet.models.outputs import Wireframe as _Wireframe

if TYPE_CHECKING:
    from pytorch_lightning.callbacks import Callback

    from roofmapnet.config.schema import InferConfig
    from roofmapnet.export.api import ExportResult
    from roofmapnet.inference.outputs.writers import RunInfo
    from roofmapnet.inference.predictor import Predictor
    from roofmapnet.train.run import Notify, TrainResult

__all__ = ["Model", "Wireframe", "export", "resume", "train", "validate"]

ImageInput = str | Path | np.ndarray


def train(
    cfg: RootConfig | str | Path | None = None,
    *,
    callbacks: list[Callback] | None = None,
    notify: Notify | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a model: ``roofmap train``.

    Args:
        cfg: a :class:`RootConfig`, a YAML file, or ``None`` for the built-in defaults (never a file of the current
            directory).
        callbacks: extra Lightning callbacks.
        notify: receives one-line notices (default: ``note: …`` on stderr).
        **overrides: dotted config keys (``**{"optim.lr": 5e-4}``), the config shortcuts ``data_root``,
            ``logdir``, ``max_epochs``, ``batch_size``, ``num_workers``, and the run options of
            :class:`~roofmapnet.train.options.TrainOptions` (``max_steps``, ``max_minutes``, ``precision``,
            ``gpus``, ``devices``, ``strategy``, ``seed``, ``init_from``, ``partial``, ``resume_from``, ...).

    Returns:
        The run directory (a logdir that already holds a run gets the next free name, ``exp-2``) and checkpoints.

    Raises:
        ConfigError: an unknown keyword or a bad value (one line each, naming the field).
        RoofMapError: bad data, weights or hardware request.
    """
    from roofmapnet.train.run import configure, fit

    config, options = configure(cfg, overrides)
    return fit(config, options, callbacks=callbacks, notify=notify)


def resume(
    run_dir: str | Path,
    *,
    callbacks: list[Callback] | None = None,
    notify: Notify | None = None,
    **options: Any,
) -> TrainResult:
    """Continue a run where its ``checkpoints/last.ckpt`` left it: ``roofmap resume``.

    Args:
        run_dir: the run directory (or a checkpoint inside one); its saved ``config.yaml`` is the config.
        callbacks, notify: as for :func:`train`.
        **options: as for :func:`train` (e.g. ``max_epochs`` to extend the run, ``data_root`` if the data moved).
    """
    from roofmapnet.train.run import configure_resume, fit

    config, run_options = configure_resume(run_dir, options)
    return fit(config, run_options, callbacks=callbacks, notify=notify)


def validate(
    checkpoint: str | Path,
    data_root: str | Path,
    split: str = "valid",
    *,
    config: RootConfig | str | Path | None = None,
    out: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Measure a checkpoint on a preprocessed split: ``roofmap validate``.

    Args:
        checkpoint: our ``.ckpt``, an exported state-dict or the official ``.pth``.
        data_root: preprocessed data (``<data_root>/<split>/``).
        split: ``train``, ``valid`` or ``test``.
        config: the architecture of weights that carry none (the official ``.pth``).
        out: where ``metrics.json`` and ``pr_curve.png`` go (default ``<checkpoint folder>/validate-<split>``).
        **options: fields of :class:`~roofmapnet.evaluation.validate.ValidateOptions` (``device``,
            ``precision``, ``batch_size``, ``limit``, ``facets``, ...).

    Returns:
        The metrics (losses, sAP5/10/15, msAP, mAP^J, AP^H, F^H, ...) as written to ``metrics.json``.
    """
    from dataclasses import fields

    from roofmapnet.errors import ConfigError
    from roofmapnet.evaluation.validate import ValidateOptions, check_split, run_validation
    from roofmapnet.models.loading import load_model

    check_split(split)
    known = {f.name for f in fields(ValidateOptions)} - {"split"}
    unknown = sorted(set(options) - known)
    if unknown:
        lines = [f"{key}: unknown option (expected one of {', '.join(sorted(known))})" for key in unknown]
        raise ConfigError(lines, fields=tuple(unknown))
    checkpoint = Path(checkpoint)
    model, cfg = load_model(checkpoint, device="cpu", cfg=_config(config))
    out_dir = Path(out) if out is not None else checkpoint.parent / f"validate-{split}"
    report = run_validation(
        model, cfg, data_root, out_dir, ValidateOptions(split=split, **options), checkpoint=checkpoint
    )
    return report.metrics


def export(
    checkpoint: str | Path,
    format: str,
    out: str | Path,
    *,
    config: RootConfig | str | Path | None = None,
    **options: Any,
) -> ExportResult:
    """Export a checkpoint as ``onnx``, ``torchscript`` or ``state-dict``: ``roofmap export``.

    Args:
        checkpoint: the weights.
        format: ``onnx``, ``torchscript`` or ``state-dict``.
        out: the file to write.
        config: the architecture of weights that carry none (the official ``.pth``).
        **options: ``precision``, ``opset``, ``max_junctions``, ``device``, ``parity`` (see
            :func:`roofmapnet.export.api.export_checkpoint`).

    Returns:
        The written files and the parity report.
    """
    from roofmapnet.export.api import export_checkpoint

    return export_checkpoint(checkpoint, format, out, cfg=_config(config), **options)


def _config(config: RootConfig | str | Path | None) -> RootConfig | None:
    if config is None or isinstance(config, RootConfig):
        return config
    return load_config(config)


@dataclass
class Wireframe(_Wireframe):
    """The wireframe of one image, in that image's pixel frame, with its outputs.

    A :class:`roofmapnet.models.outputs.Wireframe` (``lines``, ``scores``, ``junctions``, ... in heatmap space;
    ``lines_xyxy()`` in image pixels) that also knows its image and the run's settings, so that it writes what
    ``roofmap infer`` writes for it.
    """

    image: str = ""
    info: RunInfo | None = field(default=None, repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON document of ``roofmap infer`` (``<stem>.json``) as a dict: lines ``[x1, y1, x2, y2]`` in image
        pixels, scores, junctions, the model and thresholds used."""
        from roofmapnet.inference.outputs.writers import prediction_record

        if self.info is None:
            msg = "this wireframe has no run record (make it with Model.predict)"
            raise ValueError(msg)
        return prediction_record(self, self.image, self.info)

    def to_geojson(self, *, junctions: bool | None = None) -> dict[str, Any]:
        """The GeoJSON FeatureCollection of ``roofmap infer`` (``<stem>.geojson``; image pixels, y down)."""
        from roofmapnet.inference.outputs.writers import geojson_record

        if junctions is None:
            junctions = self.info.geojson_junctions if self.info is not None else True
        return geojson_record(self, self.image, junctions=junctions)

    def overlay(self, path: str | Path | None = None, *, image: np.ndarray | None = None) -> np.ndarray:
        """The lines coloured by score over the image (RGB uint8), as ``roofmap infer``'s ``_overlay.png``.

        Args:
            path: also write the overlay there as PNG (atomically).
            image: the original RGB uint8 image (default: the one that was predicted).
        """
        from PIL import Image

        from roofmapnet.inference.outputs.writers import render_overlay
        from roofmapnet.utils.io import atomic_path

        base = image if image is not None else self.pixels
        if base is None:
            msg = "no image to draw on: pass image= (RGB uint8, the predicted image's size)"
            raise ValueError(msg)
        threshold = self.info.threshold if self.info is not None else 0.0
        rgb = render_overlay(base, self, threshold)
        if path is not None:
            with atomic_path(Path(path)) as tmp:
                Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG", compress_level=1)
        return rgb


class Model:
    """A trained model, ready to parse images: ``Model.load(path).predict(images)``.

    Wraps the :class:`~roofmapnet.inference.predictor.Predictor` of ``roofmap infer`` (the same resizing,
    thresholds, post-processing and precision), for images in memory or on disk.
    """

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        precision: str = "32",
        config: RootConfig | str | Path | None = None,
    ) -> Model:
        """Load a checkpoint (``.ckpt``, exported state-dict, official ``.pth``) or an exported ONNX / TorchScript
        model.

        Args:
            path: the weights or exported model.
            device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
            precision: ``32``, ``bf16``, ``16`` or ``auto``.
            config: the architecture of weights that carry none (the official ``.pth``).
        """
        from roofmapnet.inference.predictor import Predictor

        return cls(Predictor.from_checkpoint(path, device=device, precision=precision, cfg=_config(config)))

    @property
    def config(self) -> RootConfig:
        """The configuration the model was built with."""
        return self.predictor.cfg

    def options(self, **values: Any) -> InferConfig:
        """The model's ``infer`` options with ``values`` (``threshold``, ``max_lines``, ``postprocess``, ...)
        applied and validated.

        Raises:
            ConfigError: a bad value, naming ``infer.<field>``.
        """
        from roofmapnet.config.schema import InferConfig

        if not values:
            return self.config.infer
        return InferConfig.from_options(**{**self.config.infer.model_dump(), **values})

    def predict(self, images: ImageInput | Sequence[ImageInput], **options: Any) -> list[Wireframe]:
        """Parse images: file paths or RGB uint8 arrays ``[H, W, 3]`` of any size, one or a list.

        Args:
            images: what to parse.
            **options: ``infer`` options for this call (``threshold``, ``junction_threshold``, ``max_lines``,
                ``postprocess``, ``postprocess_t``, ``batch_size``).

        Returns:
            One :class:`Wireframe` per image, in order, in that image's pixel frame.

        Raises:
            DataError: an unreadable image file (one line naming it).
            ConfigError: a bad option.
        """
        from roofmapnet.inference.images import read_image
        from roofmapnet.inference.runner import run_info

        items = [images] if isinstance(images, (str, Path, np.ndarray)) else list(images)
        settings = self.options(**options)
        info = run_info(self.predictor, settings)
        size = settings.batch_size or self.config.model.batch_size_eval
        out: list[Wireframe] = []
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            names = [str(x) if not isinstance(x, np.ndarray) else f"<array {start + i}>" for i, x in enumerate(chunk)]
            pixels = [read_image(x) if not isinstance(x, np.ndarray) else _rgb(x) for x in chunk]
            for name, rgb, wf in zip(names, pixels, self.predictor.predict_images(pixels, settings), strict=True):
                out.append(Wireframe(**vars(wf), image=name, info=info, pixels=rgb))
        return out


def _rgb(array: np.ndarray) -> np.ndarray:
    """An in-memory image as RGB uint8 [H, W, 3] (a grey [H, W] image is repeated to three channels)."""
    from roofmapnet.errors import DataError

    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        msg = f"image array of shape {arr.shape} and dtype {arr.dtype}: expected RGB uint8 [H, W, 3]"
        raise DataError(msg)
    return arr
