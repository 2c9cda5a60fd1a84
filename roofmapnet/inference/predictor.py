"""Run a trained RoofMapNet on image files and write the results (the engine of ``roofmap infer``).

Pipeline of :meth:`Predictor.run` (one process): inputs are discovered
(:func:`~roofmapnet.inference.images.discover_inputs`), decoded and resized in a pool of background threads
(``workers``; decoding overlaps the model), batched by ``batch_size``, run through ``model.predict`` (under
autocast for bf16 / fp16), post-processed, and the outputs are written by a background writer thread,
atomically.  A file that cannot be read or written is recorded as failed with its reason and the run goes
on.  The same :meth:`Predictor.process_batch` serves the multi-process path
(:mod:`roofmapnet.inference.distributed`).

Decoding rules (``roofmap infer`` options):

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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from roofmapnet.config.schema import RootConfig
from roofmapnet.data.resize import ResizeGeometry
from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.inference.images import (
    SkippedInput,
    discover_inputs,
    output_stems,
    prepare_image,
    read_image,
)
from roofmapnet.inference.postprocess import DEFAULT_POSTPROCESS_T, postprocess_lines
from roofmapnet.inference.writers import OUTPUT_KINDS, RunInfo, postprocess_threshold_px, write_outputs
from roofmapnet.models.loading import load_model
from roofmapnet.models.outputs import Wireframe
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.device import autocast, resolve_device, resolve_precision

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from roofmapnet.inference.tiling import RasterOptions, TilingStats


@dataclass(frozen=True)
class InferOptions:
    """Decoding and output settings of a run (``None`` fields take their value from the config).

    Attributes:
        threshold: minimum line score (default ``cfg.model.line_score_thres``).
        junction_threshold: junction proposal threshold (default ``cfg.model.eval_junc_thres``).
        max_lines: keep the model's best this-many lines per image, before post-processing; ``None``: no cap.
        postprocess: apply L-CNN's duplicate/overlap removal.
        postprocess_t: its factor t (τ = t·image diagonal).
        outputs: which of ``json``, ``geojson``, ``overlay`` to write.
        geojson_junctions: add junction Point features to the GeoJSON.
        batch_size: images per forward pass (default ``cfg.model.batch_size_eval``).
        workers: background decoding threads (0: decode in the main thread).
        recursive: descend into sub-folders of folder inputs.
    """

    threshold: float | None = None
    junction_threshold: float | None = None
    max_lines: int | None = None
    postprocess: bool = True
    postprocess_t: float = DEFAULT_POSTPROCESS_T
    outputs: tuple[str, ...] = OUTPUT_KINDS
    geojson_junctions: bool = True
    batch_size: int | None = None
    workers: int = 2
    recursive: bool = False

    def __post_init__(self) -> None:
        unknown = [k for k in self.outputs if k not in OUTPUT_KINDS]
        if unknown or not self.outputs:
            msg = f"--outputs: expected a comma-separated subset of {','.join(OUTPUT_KINDS)}, got {','.join(self.outputs) or '<empty>'}"
            raise RoofMapError(msg, exit_code=2)
        for name, value in (("threshold", self.threshold), ("junction_threshold", self.junction_threshold)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise RoofMapError(f"--{name.replace('_', '-')} {value}: must be in [0, 1]", exit_code=2)
        if self.max_lines is not None and self.max_lines < 1:
            raise RoofMapError(f"--max-lines {self.max_lines}: must be at least 1", exit_code=2)
        if self.batch_size is not None and self.batch_size < 1:
            raise RoofMapError(f"--batch-size {self.batch_size}: must be at least 1", exit_code=2)
        if self.workers < 0:
            raise RoofMapError(f"--workers {self.workers}: must be 0 or more", exit_code=2)
        if not 0.0 < self.postprocess_t < 1.0:
            raise RoofMapError(f"--postprocess-t {self.postprocess_t}: must be in (0, 1)", exit_code=2)


@dataclass
class LoadedImage:
    """One decoded input (or the reason it could not be decoded).

    Attributes:
        index: position in the run's image list.
        path: the input path.
        tensor: [3, S, S] network input, ``None`` if decoding failed.
        size: (H, W) of the original image.
        image: the original RGB uint8 image when an overlay is wanted, else ``None``.
        error: one-line failure reason, ``None`` on success.
    """

    index: int
    path: Path
    tensor: Tensor | None = None
    size: tuple[int, int] = (0, 0)
    image: np.ndarray | None = None
    error: str | None = None


@dataclass(frozen=True)
class ImageResult:
    """What was produced for one image."""

    image: str
    stem: str
    width: int
    height: int
    lines: int
    junctions: int
    outputs: tuple[str, ...]


@dataclass
class InferReport:
    """Summary of a run.

    Attributes:
        out_dir: where outputs were written.
        results: processed images, in input order.
        failed: inputs that failed or were skipped, with their reasons.
        seconds: wall time of the whole run (decode, model, post-processing, writing).
        model_seconds: time spent in the model (``model.predict``) alone, summed over processes.
        global_rank: the process that holds this report (multi-process runs; only rank 0 should print).
        tiling: per-raster statistics of the inputs run tile by tile (:mod:`roofmapnet.inference.tiling`).
    """

    out_dir: Path
    results: list[ImageResult] = field(default_factory=list)
    failed: list[SkippedInput] = field(default_factory=list)
    seconds: float = 0.0
    model_seconds: float = 0.0
    global_rank: int = 0
    tiling: list[TilingStats] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Processed images per second of wall time."""
        return len(self.results) / self.seconds if self.seconds > 0 else 0.0

    @property
    def total_lines(self) -> int:
        """Lines written over all images."""
        return sum(r.lines for r in self.results)

    @property
    def exit_code(self) -> int:
        """1 if any input failed, else 0."""
        return 1 if self.failed else 0


class ImageFiles:
    """Map-style dataset of image files → :class:`LoadedImage` (decode errors are returned, not raised).

    Args:
        paths: the image files.
        image_size: network input side.
        cfg: the configuration (``model.image`` normalisation).
        keep_original: keep the original RGB image (needed for overlays).
    """

    def __init__(self, paths: Sequence[Path], image_size: int, cfg: RootConfig, *, keep_original: bool) -> None:
        self.paths = list(paths)
        self.image_size = image_size
        self.image_cfg = cfg.model.image
        self.resize = cfg.data.resize
        self.keep_original = keep_original

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> LoadedImage:
        path = self.paths[index]
        try:
            rgb = read_image(path)
        except DataError as exc:
            return LoadedImage(index, path, error=str(exc))
        tensor = prepare_image(rgb, self.image_size, self.image_cfg, resize=self.resize)
        return LoadedImage(
            index,
            path,
            tensor=tensor,
            size=(int(rgb.shape[0]), int(rgb.shape[1])),
            image=rgb if self.keep_original else None,
        )


def iter_loaded(dataset: ImageFiles | Dataset[LoadedImage], workers: int, prefetch: int) -> Iterator[LoadedImage]:
    """Yield ``dataset[i]`` in order, decoding up to ``prefetch`` items ahead in ``workers`` threads."""
    n = len(dataset)  # type: ignore[arg-type]
    if workers <= 0:
        yield from (dataset[i] for i in range(n))
        return
    indices = iter(range(n))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="roofmap-decode") as pool:
        pending: deque[Future[LoadedImage]] = deque(
            pool.submit(dataset.__getitem__, i) for i in islice(indices, prefetch)
        )
        while pending:
            done = pending.popleft()
            pending.extend(pool.submit(dataset.__getitem__, i) for i in islice(indices, 1))
            yield done.result()


class Predictor:
    """A model ready for inference, with its configuration, device and precision.

    Args:
        model: a :class:`~roofmapnet.models.roofmapnet.RoofMapNet` (or a module with the same ``predict``).
        cfg: the configuration the model was built with (``cfg.model``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a :class:`torch.device`.
        precision: ``fp32`` / ``32``, ``bf16``, ``fp16`` / ``16`` or ``auto``
            (:func:`roofmapnet.utils.device.resolve_precision`).
        checkpoint: the checkpoint path, recorded in the JSON outputs.

    Example::

        predictor = Predictor.from_checkpoint("logs/checkpoints/last.ckpt", device="cpu")
        report = predictor.run(["tiles/"], "out/", InferOptions(outputs=("json", "overlay")))
    """

    def __init__(
        self,
        model: RoofMapNet,
        cfg: RootConfig,
        device: str | torch.device = "cpu",
        precision: str = "32",
        *,
        checkpoint: str | Path = "",
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        self.autocast_dtype, self.precision_notice = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.checkpoint = str(checkpoint)
        #: Seconds spent in ``model.predict`` (input transfer, network, proposals, verification) by
        #: :meth:`predict`, reset when :meth:`run` starts.
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
        from roofmapnet.export.runtime import is_exported_model, load_exported_model

        if is_exported_model(path):  # an ONNX / TorchScript pipeline: its config travels inside it
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if dev.type == "cuda" else None
            exported, root = load_exported_model(path, device=dev, providers=providers)
            return cls(exported, root, dev, "32", checkpoint=path)  # type: ignore[arg-type]
        model, root = load_model(path, dev, cfg)
        return cls(model, root, dev, precision, checkpoint=path)

    # ------------------------------------------------------------------------------------------ model
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The run's autocast context on its device (a no-op for fp32)."""
        return autocast(self.device, self.autocast_dtype)

    def _thresholds(self, options: InferOptions) -> tuple[float, float]:
        m = self.cfg.model
        thr = m.line_score_thres if options.threshold is None else options.threshold
        jthr = m.eval_junc_thres if options.junction_threshold is None else options.junction_threshold
        return float(thr), float(jthr)

    def run_info(self, options: InferOptions) -> RunInfo:
        """The per-run record written into each JSON."""
        thr, jthr = self._thresholds(options)
        return RunInfo(
            checkpoint=self.checkpoint,
            model=self.cfg.model,
            threshold=thr,
            junction_threshold=jthr,
            max_lines=options.max_lines,
            postprocess_t=options.postprocess_t if options.postprocess else None,
            geojson_junctions=options.geojson_junctions,
        )

    def predict(
        self,
        images: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        options: InferOptions | None = None,
    ) -> list[Wireframe]:
        """Wireframes of a batch of prepared images, in each original image's frame.

        Args:
            images: [B, 3, S, S] from :func:`~roofmapnet.inference.images.prepare_image`.
            image_sizes: (H, W) of each original image.
            options: thresholds, post-processing and ``max_lines`` (defaults: :class:`InferOptions`).

        Returns:
            One wireframe per image: lines score-descending, finite, capped, post-processed if enabled.
        """
        options = options or InferOptions()
        thr, jthr = self._thresholds(options)
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

    def _finish(self, wf: Wireframe, options: InferOptions) -> Wireframe:
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
            (h, w), (big_h, big_w) = wf.heatmap_size, wf.image_size
            scale = torch.tensor([big_h / h, big_w / w], dtype=torch.float64)
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

    def predict_images(self, images: Sequence[np.ndarray], options: InferOptions | None = None) -> list[Wireframe]:
        """Wireframes of RGB uint8 [H, W, 3] images (any sizes) held in memory."""
        size = self.cfg.model.image_size
        resize = self.cfg.data.resize
        batch = torch.stack([prepare_image(im, size, self.cfg.model.image, resize=resize) for im in images])
        return self.predict(batch, [(int(im.shape[0]), int(im.shape[1])) for im in images], options)

    # ------------------------------------------------------------------------------------------ files
    def dataset(self, paths: Sequence[Path], options: InferOptions) -> ImageFiles:
        """The decoding dataset for ``paths``."""
        return ImageFiles(paths, self.cfg.model.image_size, self.cfg, keep_original="overlay" in options.outputs)

    def process_batch(
        self,
        batch: Sequence[LoadedImage],
        stems: Sequence[str],
        out_dir: Path,
        options: InferOptions,
        info: RunInfo,
        *,
        writer: ThreadPoolExecutor | None = None,
    ) -> list[Future[ImageResult | SkippedInput]]:
        """Predict a batch of decoded images and write their outputs.

        Args:
            batch: decoded images (failed ones are reported, not run).
            stems: output base name of every image of the run, by :attr:`LoadedImage.index`.
            out_dir: output folder.
            options: the run's options.
            info: the run's record (:meth:`run_info`).
            writer: executor for the writes (``None``: write now, in this thread).

        Returns:
            One future per image, resolving to its :class:`ImageResult` or its :class:`SkippedInput`.
        """
        good = [item for item in batch if item.error is None and item.tensor is not None]
        wfs: dict[int, Wireframe] = {}
        if good:
            images = torch.stack([item.tensor for item in good if item.tensor is not None])
            predicted = self.predict(images, [item.size for item in good], options)
            wfs = {item.index: wf for item, wf in zip(good, predicted, strict=True)}
        futures: list[Future[ImageResult | SkippedInput]] = []
        for item in batch:
            wf = wfs.get(item.index)
            if wf is None:
                failed: Future[ImageResult | SkippedInput] = Future()
                reason = item.error or "not decoded"
                failed.set_result(SkippedInput(str(item.path), reason.removeprefix(f"{item.path}: ")))
                futures.append(failed)
                continue
            job = _WriteJob(item, stems[item.index], wf, out_dir, options, info)
            if writer is None:
                done: Future[ImageResult | SkippedInput] = Future()
                done.set_result(job())
                futures.append(done)
            else:
                futures.append(writer.submit(job))
        return futures

    def discover(
        self, inputs: Sequence[str | Path], options: InferOptions, out_dir: str | Path | None = None
    ) -> tuple[list[Path], list[SkippedInput]]:
        """Images to run on and the inputs skipped (files under ``out_dir`` are not taken from folders / globs).

        Raises:
            RoofMapError: (exit code 2) when no image matched the inputs.
        """
        found = discover_inputs(
            inputs, recursive=options.recursive, extensions=self.cfg.data.image_extensions, exclude=out_dir
        )
        if not found.images:
            names = " ".join(str(i) for i in inputs) or "<none>"
            extra = f" ({len(found.skipped)} skipped: {found.skipped[0].reason})" if found.skipped else ""
            raise RoofMapError(f"no image matched the inputs: {names}{extra}", exit_code=2)
        return found.images, found.skipped

    def run(
        self,
        inputs: Sequence[str | Path],
        out_dir: str | Path,
        options: InferOptions | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
        raster: RasterOptions | None = None,
        tile_progress: Callable[[int, int], None] | None = None,
    ) -> InferReport:
        """Run on image files / folders / globs and write the outputs (single process).

        GeoTIFFs and other GDAL rasters (and every input when ``raster.tile_all``) are run tile by tile with
        georeferenced outputs (:func:`roofmapnet.inference.tiling.run_raster`), one raster at a time, before
        the plain images.

        Args:
            inputs: files, folders or glob patterns.
            out_dir: output folder (created if needed).
            options: run options.
            progress: called as ``progress(done, total)`` after each image (processed or failed).
            raster: tiling and GIS output options (default: :class:`~roofmapnet.inference.tiling.RasterOptions`).
            tile_progress: called as ``progress(done_tiles, total_tiles)`` during each tiled raster.

        Returns:
            The run's summary; ``report.exit_code`` is 1 if any input failed.

        Raises:
            RoofMapError: no image matched (exit code 2), or the output folder cannot be created.
        """
        options = options or InferOptions()
        start = time.perf_counter()
        paths, skipped = self.discover(inputs, options, out_dir)
        out = prepare_out_dir(out_dir)
        stems = output_stems(paths)
        info = self.run_info(options)
        batch_size = options.batch_size or self.cfg.model.batch_size_eval
        report = InferReport(out_dir=out, failed=list(skipped))
        self.model_seconds = 0.0
        total = len(paths)
        done_count = 0
        outcomes: list[ImageResult | SkippedInput] = []
        from roofmapnet.inference.tiling import RasterOptions, route_inputs, run_raster

        raster = raster or RasterOptions()
        tiled = route_inputs(paths, raster)
        for path, stem in [(p, s) for p, s, t in zip(paths, stems, tiled, strict=True) if t]:
            outcome, stats = run_raster(self, path, stem, out, options, raster, info, progress=tile_progress)
            outcomes.append(outcome)
            if stats is not None:
                report.tiling.append(stats)
            done_count += 1
            if progress is not None:
                progress(done_count, total)
        position = {str(p): i for i, p in enumerate(paths)}
        paths = [p for p, t in zip(paths, tiled, strict=True) if not t]
        stems = [s for s, t in zip(stems, tiled, strict=True) if not t]
        prefetch = max(2 * batch_size, options.workers)
        # Outstanding writes are bounded so that decoded originals do not pile up in memory.
        max_pending = 2 * batch_size + 2
        pending: deque[Future[ImageResult | SkippedInput]] = deque()

        def drain(limit: int) -> None:
            nonlocal done_count
            while len(pending) > limit:
                outcomes.append(pending.popleft().result())
                done_count += 1
                if progress is not None:
                    progress(done_count, total)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roofmap-write") as writer:
            batch: list[LoadedImage] = []
            loaded = iter_loaded(self.dataset(paths, options), options.workers, prefetch)
            for item in loaded:
                batch.append(item)
                if len(batch) == batch_size:
                    pending.extend(self.process_batch(batch, stems, out, options, info, writer=writer))
                    batch = []
                    drain(max_pending)
            if batch:
                pending.extend(self.process_batch(batch, stems, out, options, info, writer=writer))
            drain(0)
        if any(tiled):  # back to input order
            outcomes.sort(key=lambda o: position.get(o.image if isinstance(o, ImageResult) else o.path, 0))
        for outcome in outcomes:
            (report.results if isinstance(outcome, ImageResult) else report.failed).append(outcome)  # type: ignore[arg-type]
        report.seconds = time.perf_counter() - start
        report.model_seconds = self.model_seconds
        return report


@dataclass
class _WriteJob:
    """Writes one image's outputs; a write failure becomes a :class:`SkippedInput`."""

    item: LoadedImage
    stem: str
    wf: Wireframe
    out_dir: Path
    options: InferOptions
    info: RunInfo

    def __call__(self) -> ImageResult | SkippedInput:
        try:
            written = write_outputs(
                self.out_dir,
                self.stem,
                self.wf,
                self.item.path,
                self.info,
                kinds=self.options.outputs,
                image=self.item.image,
            )
        except OSError as exc:
            return SkippedInput(str(self.item.path), f"cannot write outputs ({exc.strerror or exc})")
        h, w = self.item.size
        return ImageResult(
            image=str(self.item.path),
            stem=self.stem,
            width=w,
            height=h,
            lines=int(self.wf.lines.shape[0]),
            junctions=int(self.wf.junctions.shape[0]),
            outputs=tuple(str(p) for p in written),
        )


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output folder.

    Raises:
        RoofMapError: when it cannot be created (exists as a file, permissions, ...).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RoofMapError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    return out
