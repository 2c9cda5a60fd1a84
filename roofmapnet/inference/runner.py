"""The file job of ``roofmap infer`` in one process: discover → route → batch → write.

:func:`run_inference`: inputs are discovered (:func:`~roofmapnet.inference.images.discover_inputs`) and routed:
GeoTIFFs and other GDAL rasters (every input with ``raster.tile_all``) go tile by tile through
:func:`~roofmapnet.inference.raster.run.run_raster`, one raster at a time, before the plain images.  Plain images
are decoded and resized in ``workers`` background threads (decoding overlaps the model,
:func:`~roofmapnet.inference.batching.prefetch`), batched by ``batch_size``
(:func:`~roofmapnet.inference.batching.batched`), predicted (:meth:`Predictor.predict
<roofmapnet.inference.predictor.Predictor.predict>`), and their outputs are written by a background writer
thread, atomically (:mod:`roofmapnet.inference.outputs.writers`).  A file that cannot be read or written is
recorded as failed with its reason and the run goes on.  The same :func:`process_batch` serves the
multi-process path (:mod:`roofmapnet.inference.distributed`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from roofmapnet.config.schema import InferConfig, RootConfig
from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.inference.batching import batched, prefetch
from roofmapnet.inference.images import discover_inputs, output_stems, read_image
from roofmapnet.inference.outputs.writers import RunInfo, write_outputs
from roofmapnet.inference.predictor import Predictor, model_input
from roofmapnet.inference.raster.grid import route_inputs
from roofmapnet.inference.raster.run import run_raster
from roofmapnet.inference.types import ImageResult, InferReport, LoadedImage, Outcome, SkippedInput
from roofmapnet.models.outputs import Wireframe

ProgressFn = Callable[[int, int], None]


class ImageFiles:
    """Map-style dataset of image files → :class:`LoadedImage` (decode errors are returned, not raised).

    Args:
        paths: the image files.
        cfg: the configuration (``model``: input size and normalisation).
        keep_original: keep the original RGB image (needed for overlays).
    """

    def __init__(self, paths: Sequence[Path], cfg: RootConfig, *, keep_original: bool) -> None:
        self.paths = list(paths)
        self.model_cfg = cfg.model
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
        return LoadedImage(
            index,
            path,
            tensor=model_input(rgb, self.model_cfg, self.resize),
            size=(int(rgb.shape[0]), int(rgb.shape[1])),
            image=rgb if self.keep_original else None,
        )


def image_files(predictor: Predictor, paths: Sequence[Path], options: InferConfig) -> ImageFiles:
    """The decoding dataset of a run's plain images."""
    return ImageFiles(paths, predictor.cfg, keep_original="overlay" in options.outputs)


def run_info(predictor: Predictor, options: InferConfig) -> RunInfo:
    """The per-run record written into each JSON."""
    thr, jthr = predictor.thresholds(options)
    return RunInfo(
        checkpoint=predictor.checkpoint,
        model=predictor.cfg.model,
        threshold=thr,
        junction_threshold=jthr,
        max_lines=options.max_lines,
        postprocess_t=options.postprocess_t if options.postprocess else None,
        geojson_junctions=options.geojson_junctions,
    )


def discover(
    inputs: Sequence[str | Path], options: InferConfig, cfg: RootConfig, out_dir: str | Path | None = None
) -> tuple[list[Path], list[SkippedInput]]:
    """Images to run on and the inputs skipped (files under ``out_dir`` are not taken from folders / globs).

    Raises:
        RoofMapError: (exit code 2) when no image matched the inputs.
    """
    found = discover_inputs(inputs, recursive=options.recursive, extensions=cfg.data.image_extensions, exclude=out_dir)
    if not found.images:
        names = " ".join(str(i) for i in inputs) or "<none>"
        extra = f" ({len(found.skipped)} skipped: {found.skipped[0].reason})" if found.skipped else ""
        raise RoofMapError(f"no image matched the inputs: {names}{extra}", exit_code=2)
    return found.images, found.skipped


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


def process_batch(
    predictor: Predictor,
    batch: Sequence[LoadedImage],
    stems: Sequence[str],
    out_dir: Path,
    options: InferConfig,
    info: RunInfo,
    *,
    writer: ThreadPoolExecutor | None = None,
) -> list[Future[Outcome]]:
    """Predict a batch of decoded images and write their outputs.

    Args:
        predictor: the model.
        batch: decoded images (failed ones are reported, not run).
        stems: output base name of every image of the run, by :attr:`LoadedImage.index`.
        out_dir: output folder.
        options: the run's options.
        info: the run's record (:func:`run_info`).
        writer: executor for the writes (``None``: write now, in this thread).

    Returns:
        One future per image, resolving to its :class:`ImageResult` or its :class:`SkippedInput`.
    """
    good = [item for item in batch if item.error is None and item.tensor is not None]
    wfs: dict[int, Wireframe] = {}
    if good:
        images = torch.stack([item.tensor for item in good if item.tensor is not None])
        predicted = predictor.predict(images, [item.size for item in good], options)
        wfs = {item.index: wf for item, wf in zip(good, predicted, strict=True)}
    futures: list[Future[Outcome]] = []
    for item in batch:
        wf = wfs.get(item.index)
        if wf is None:
            failed: Future[Outcome] = Future()
            reason = item.error or "not decoded"
            failed.set_result(SkippedInput(str(item.path), reason.removeprefix(f"{item.path}: ")))
            futures.append(failed)
            continue
        job = _WriteJob(item, stems[item.index], wf, out_dir, options, info)
        if writer is None:
            done: Future[Outcome] = Future()
            done.set_result(job())
            futures.append(done)
        else:
            futures.append(writer.submit(job))
    return futures


def run_inference(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: InferConfig | None = None,
    *,
    progress: ProgressFn | None = None,
    tile_progress: ProgressFn | None = None,
) -> InferReport:
    """Run on image files / folders / globs and write the outputs (single process; module docstring).

    Args:
        predictor: the model.
        inputs: files, folders or glob patterns.
        out_dir: output folder (created if needed).
        options: run options (default: ``predictor.cfg.infer``).
        progress: called as ``progress(done, total)`` after each image (processed or failed).
        tile_progress: called as ``progress(done_tiles, total_tiles)`` during each tiled raster.

    Returns:
        The run's summary; ``report.exit_code`` is 1 if any input failed.

    Raises:
        RoofMapError: no image matched (exit code 2), or the output folder cannot be created.
    """
    options = predictor.cfg.infer if options is None else options
    start = time.perf_counter()
    paths, skipped = discover(inputs, options, predictor.cfg, out_dir)
    out = prepare_out_dir(out_dir)
    stems = output_stems(paths)
    info = run_info(predictor, options)
    batch_size = options.batch_size or predictor.cfg.model.batch_size_eval
    report = InferReport(out_dir=out, failed=list(skipped))
    predictor.model_seconds = 0.0
    total = len(paths)
    done_count = 0
    outcomes: list[Outcome] = []
    tiled = route_inputs(paths, options.raster)
    for path, stem in [(p, s) for p, s, t in zip(paths, stems, tiled, strict=True) if t]:
        outcome, stats = run_raster(predictor, path, stem, out, options, info, progress=tile_progress)
        outcomes.append(outcome)
        if stats is not None:
            report.tiling.append(stats)
        done_count += 1
        if progress is not None:
            progress(done_count, total)
    position = {str(p): i for i, p in enumerate(paths)}
    plain = [p for p, t in zip(paths, tiled, strict=True) if not t]
    plain_stems = [s for s, t in zip(stems, tiled, strict=True) if not t]
    dataset = image_files(predictor, plain, options)
    # Outstanding writes are bounded so that decoded originals do not pile up in memory.
    max_pending = 2 * batch_size + 2
    pending: deque[Future[Outcome]] = deque()

    def drain(limit: int) -> None:
        nonlocal done_count
        while len(pending) > limit:
            outcomes.append(pending.popleft().result())
            done_count += 1
            if progress is not None:
                progress(done_count, total)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="roofmap-write") as writer:
        loaded = prefetch(
            dataset.__getitem__,
            len(dataset),
            threads=options.workers,
            ahead=max(2 * batch_size, options.workers),
            name="roofmap-decode",
        )
        for batch in batched(loaded, batch_size):
            pending.extend(process_batch(predictor, batch, plain_stems, out, options, info, writer=writer))
            drain(max_pending)
        drain(0)
    if any(tiled):  # back to input order
        outcomes.sort(key=lambda o: position.get(o.image if isinstance(o, ImageResult) else o.path, 0))
    for outcome in outcomes:
        report.add(outcome)
    report.seconds = time.perf_counter() - start
    report.model_seconds = predictor.model_seconds
    return report


@dataclass
class _WriteJob:
    """Writes one image's outputs; a write failure becomes a :class:`SkippedInput`."""

    item: LoadedImage
    stem: str
    wf: Wireframe
    out_dir: Path
    options: InferConfig
    info: RunInfo

    def __call__(self) -> Outcome:
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
