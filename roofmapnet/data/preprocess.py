"""Batch driver of ``roofmap preprocess``: raw annotations → ``<out>/<split>/<stem>.png`` + ``<stem>_label.npz``.

Each image is processed independently (:func:`process_task`), in worker processes started with ``spawn`` (no
state is inherited from the parent; everything a worker needs travels in its :class:`Task`).  Both outputs are
written to temporary files and renamed only once both are complete (:mod:`roofmapnet.utils.io`), the image
first, so a ``*_label.npz`` always has its image and the Dataset (which lists label files) never sees half a
sample.  A bad input never stops the batch: it becomes a failed
:class:`SampleResult` with a one-line reason, collected in the :class:`PreprocessSummary`.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from roofmapnet.config.schema import ImageConfig
from roofmapnet.data.formats.base import Annotation, images_folder
from roofmapnet.data.formats.gis import GisOptions
from roofmapnet.data.formats.rid2 import scan_rid2
from roofmapnet.data.raw import (
    DEFAULT_IMAGE_EXTENSIONS,
    SPLITS,
    AxisOrder,
    RawFormat,
    RawSample,
    RawSplit,
    check_inside,
    check_lines,
    load_image,
    load_rid2_edges,
    parse_lines,
    read_json_split,
)
from roofmapnet.data.resize import RESIZE_MODES, ResizeGeometry
from roofmapnet.data.targets import CONTENT_BOX, compute_targets, save_label, scale_lines
from roofmapnet.errors import ConfigError, DataError
from roofmapnet.utils.io import TMP_PREFIX, atomic_path, atomic_write_text

if TYPE_CHECKING:
    from rich.console import Console

Status = Literal["written", "skipped", "failed"]
LABEL_SUFFIX = "_label.npz"
#: The file describing a preprocessed data root (format, ground sample distance, per-sample metadata).
DATASET_FILE = "dataset.json"


@dataclass(frozen=True)
class PreprocessOptions:
    """Settings of a preprocessing run.

    Attributes:
        image_size: side of the written (square) images, the model input size.
        heatmap_size: side of the label heatmaps.
        axis_order: coordinate order of each input point, ``xy`` (default) or ``yx``.
        raw_format: a :data:`roofmapnet.data.formats.FORMAT_NAMES` name; ``None`` detects it.
        images_dir: images folder; ``None`` means the format's own (``<raw>/images`` for json and rid2).
        splits: splits to process; ``None`` means every split present (json) or all three (rid2).
        split_fractions: train/valid/test fractions of the RID2 split.
        seed: seed of the RID2 split.
        workers: worker processes (0 or 1 = in this process).
        skip_existing: leave samples whose image and label both exist untouched.
        image_extensions: suffixes of images looked up by stem (RID2, RoofVec, HEAT).
        gis: the vector layers and crop settings of ``--format gis``.
        follow_symlinks: accept symbolic links in the images folder that point outside it (by default they are
            refused like ``..`` in a filename).
        resize: ``stretch`` or ``letterbox`` (``data.resize``, :mod:`roofmapnet.data.resize`).
        fill: RGB padding of letterboxed images (0-255): the normalisation mean ``model.image.mean``.
    """

    image_size: int = 512
    heatmap_size: int = 128
    axis_order: AxisOrder = "xy"
    raw_format: RawFormat | None = None
    images_dir: Path | None = None
    splits: tuple[str, ...] | None = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    workers: int = 0
    skip_existing: bool = False
    image_extensions: tuple[str, ...] = DEFAULT_IMAGE_EXTENSIONS
    gis: GisOptions | None = None
    follow_symlinks: bool = False
    resize: str = "stretch"
    fill: tuple[float, float, float] = ImageConfig().mean

    def __post_init__(self) -> None:
        problems = []
        if self.image_size < 1 or self.heatmap_size < 2:
            problems.append(f"image_size ({self.image_size}) and heatmap_size ({self.heatmap_size}) must be positive")
        if self.resize not in RESIZE_MODES:
            problems.append(f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.axis_order not in ("xy", "yx"):
            problems.append(f"axis_order must be 'xy' or 'yx', not {self.axis_order!r}")
        if self.splits is not None and (unknown := [s for s in self.splits if s not in SPLITS]):
            problems.append(f"unknown split(s) {', '.join(unknown)} (choose from {', '.join(SPLITS)})")
        fr = self.split_fractions
        if len(fr) != 3 or any(not 0 <= f <= 1 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            problems.append(f"split fractions must be three numbers in [0, 1] that sum to 1, got {list(fr)}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Task:
    """Everything a worker needs for one sample (picklable, no references to parent state)."""

    sample: RawSample
    dest: Path
    image_size: int
    heatmap_size: int
    resize: str = "stretch"
    fill: tuple[float, float, float] = ImageConfig().mean


@dataclass(frozen=True)
class SampleResult:
    """Outcome of one sample: ``written``, ``skipped`` or ``failed`` (with a one-line ``reason``).

    ``warnings`` are one-line notes of a sample that was written anyway (e.g. a RoofVec file whose segments
    disagree with its adjacency matrix); ``meta`` is what ``dataset.json`` records for it.
    """

    split: str
    name: str
    source: str
    status: Status
    reason: str = ""
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitCounts:
    """Per-split tallies."""

    written: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class PreprocessSummary:
    """What a run did: counts per split, every failure and warning as ``(split, file, reason)``.

    ``samples`` maps ``"<split>/<stem>"`` of every written or skipped sample to its metadata (``dataset.json``).
    """

    counts: dict[str, SplitCounts] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)
    samples: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether no sample or file failed."""
        return not self.failures

    def add(self, result: SampleResult) -> None:
        """Tally one sample's result."""
        counts = self.counts.setdefault(result.split, SplitCounts())
        setattr(counts, result.status, getattr(counts, result.status) + 1)
        if result.status == "failed":
            self.failures.append((result.split, result.source, result.reason))
        else:
            self.samples[f"{result.split}/{result.name}"] = dict(result.meta)
        self.warnings.extend((result.split, result.source, w) for w in result.warnings)

    def add_file_error(self, split: str, file: str, reason: str) -> None:
        """Record the failure of a whole input file (e.g. malformed JSON) as one failure of ``split``."""
        self.counts.setdefault(split, SplitCounts()).failed += 1
        self.failures.append((split, file, reason))


def outputs_of(dest: Path, name: str) -> tuple[Path, Path]:
    """The image and label paths of sample ``name`` in folder ``dest``."""
    return dest / f"{name}.png", dest / f"{name}{LABEL_SUFFIX}"


def write_sample(dest: Path, name: str, rgb: np.ndarray, targets: dict[str, np.ndarray]) -> None:
    """Write ``<name>.png`` and ``<name>_label.npz`` atomically, as a pair.

    Both go to temporary files first; only when both are complete are they renamed, the image first.  A
    failure leaves any earlier pair of the same name untouched and no temporary behind.
    """
    from PIL import Image

    image_path, label_path = outputs_of(dest, name)
    with atomic_path(label_path) as tmp_label, atomic_path(image_path) as tmp_image:
        Image.fromarray(rgb).save(tmp_image, format="PNG")
        save_label(tmp_label, targets)
        for tmp in (tmp_image, tmp_label):
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())


def validated_targets(
    lines_xy: np.ndarray, image_hw: tuple[int, int], heatmap_size: int, geometry: ResizeGeometry | None = None
) -> dict[str, np.ndarray]:
    """Label arrays of validated ``[L, 4]`` ``x1, y1, x2, y2`` lines drawn on an ``image_hw`` image.

    With a letterbox ``geometry`` the labels follow the resized image inside its padding, and ``content_box``
    (float32 ``[top, left, height, width]`` of the image in heatmap coordinates) is added for evaluation.

    Raises:
        DataError: a line wholly outside the image, or one that collapses to a point once clipped and scaled.
    """
    check_inside(lines_xy, image_hw)
    yx = scale_lines(lines_xy, image_hw, (heatmap_size, heatmap_size), geometry)
    degenerate = np.flatnonzero((yx[:, 0] == yx[:, 1]).all(axis=1))
    if degenerate.size:
        i = int(degenerate[0])
        raise DataError(f"lines[{i}]: zero length once clipped to the image and scaled to the heatmap")
    targets = compute_targets(yx, (heatmap_size, heatmap_size))
    if geometry is not None and not geometry.is_identity_frame:
        targets[CONTENT_BOX] = np.asarray(geometry.content_box(heatmap_size), dtype=np.float32)
    return targets


def build_sample(
    sample: RawSample,
    image_size: int,
    heatmap_size: int,
    resize: str = "stretch",
    fill: tuple[float, float, float] = ImageConfig().mean,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Decode, validate and convert one sample: the resized (``stretch`` or ``letterbox``) image and its labels.

    Raises:
        DataError: with the reason for the summary (bad lines, unreadable image, no lines, …).
    """
    rgb, targets, _, _ = build_annotated_sample(sample, image_size, heatmap_size, resize, fill)
    return rgb, targets


def build_annotated_sample(
    sample: RawSample,
    image_size: int,
    heatmap_size: int,
    resize: str = "stretch",
    fill: tuple[float, float, float] = ImageConfig().mean,
) -> tuple[np.ndarray, dict[str, np.ndarray], Annotation, tuple[int, int]]:
    """:func:`build_sample`, plus the reader's :class:`~roofmapnet.data.formats.Annotation` (warnings, metadata)
    and the source image's ``(height, width)``.

    Raises:
        DataError: with the reason for the summary (bad lines, unreadable image, no lines, …).
    """
    if sample.error is not None or (sample.image_path is None and sample.reader is None):
        raise DataError(sample.error or "no image")
    if sample.reader is not None:
        from roofmapnet.data.formats import get_sample_reader

        annotation = get_sample_reader(sample.reader).load(sample)
        lines = check_lines(np.asarray(annotation.lines_xy, dtype=np.float64).reshape(-1, 4))
    elif sample.edges_path is not None:
        lines = load_rid2_edges(sample.edges_path, sample.axis_order)
        annotation = Annotation(lines)
    else:
        lines = parse_lines(sample.lines, sample.axis_order)
        annotation = Annotation(lines)
    if annotation.rgb is not None:
        rgb = annotation.rgb
    elif sample.image_path is not None:
        rgb = load_image(sample.image_path)
    else:
        raise DataError("no image")
    hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    if sample.declared_hw is not None and sample.declared_hw != hw:
        dh, dw = sample.declared_hw
        raise DataError(f"'height'/'width' ({dh}×{dw}) differ from the image's size ({hw[0]}×{hw[1]})")
    geometry = ResizeGeometry.fit(hw, image_size, resize)
    rgb = geometry.resize_image(rgb, fill)
    return rgb, validated_targets(lines, hw, heatmap_size, geometry), annotation, hw


def sample_meta(annotation: Annotation, image_hw: tuple[int, int], image_size: int) -> dict[str, Any]:
    """What ``dataset.json`` records for a written sample: the reader's metadata, the source image size and
    ``gsd_m``, metres per *network-input* pixel (the image's ground sample distance × its longer side /
    ``image_size``; ``None`` when unknown)."""
    meta = dict(annotation.meta)
    gsd = meta.pop("gsd_m", None)
    meta["source_hw"] = [int(image_hw[0]), int(image_hw[1])]
    meta["gsd_m"] = None if gsd is None else float(gsd) * max(image_hw) / image_size
    return meta


def process_task(task: Task) -> SampleResult:
    """Process one sample; never raises for bad input (a failed result carries the reason)."""
    s = task.sample
    try:
        rgb, targets, annotation, hw = build_annotated_sample(
            s, task.image_size, task.heatmap_size, task.resize, task.fill
        )
        write_sample(task.dest, s.name, rgb, targets)
    except DataError as exc:
        return SampleResult(s.split, s.name, s.source, "failed", str(exc).splitlines()[0])
    except Exception as exc:  # disk full, permissions, a bug: reported for this sample, the batch goes on
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        return SampleResult(s.split, s.name, s.source, "failed", reason)
    meta = sample_meta(annotation, hw, task.image_size)
    if annotation.warnings:
        meta["warnings"] = list(annotation.warnings)
    return SampleResult(s.split, s.name, s.source, "written", warnings=annotation.warnings, meta=meta)


def _run(tasks: Sequence[Task], workers: int) -> Iterator[SampleResult]:
    """Results of ``tasks`` in order, computed here (``workers <= 1``) or in spawned worker processes."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(process_task, tasks)
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx)
    try:
        chunk = max(1, min(16, len(tasks) // (4 * workers)))
        yield from pool.map(process_task, tasks, chunksize=chunk)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _known_meta(sample: RawSample) -> dict[str, Any]:
    """The ``dataset.json`` metadata of a skipped sample, as far as the reader knew it without loading."""
    return dict(sample.params.get("meta", {}))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary outputs left in ``folder`` by a killed run (``.tmp-*.png`` / ``.tmp-*.npz``)."""
    removed = 0
    if folder.is_dir():
        for path in folder.glob(f"{TMP_PREFIX}*"):
            if path.suffix in (".png", ".npz") and path.is_file():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


def run_samples(
    samples: Iterable[tuple[RawSample, Path]],
    options: PreprocessOptions,
    summary: PreprocessSummary | None = None,
    *,
    on_result: Callable[[SampleResult], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> PreprocessSummary:
    """Process ``(sample, destination folder)`` pairs, honouring ``skip_existing``, and tally the results.

    Args:
        samples: what to process and where each goes.
        options: sizes, workers, skip-existing.
        summary: summary to add to (a new one if ``None``).
        on_result: called with each result (progress reporting).
        on_total: called once with the number of samples (progress reporting).
    """
    summary = summary if summary is not None else PreprocessSummary()
    tasks: list[Task] = []
    pending: list[SampleResult] = []
    for sample, dest in samples:
        summary.counts.setdefault(sample.split, SplitCounts())
        if options.skip_existing and sample.error is None and all(p.is_file() for p in outputs_of(dest, sample.name)):
            pending.append(SampleResult(sample.split, sample.name, sample.source, "skipped", meta=_known_meta(sample)))
            continue
        tasks.append(Task(sample, dest, options.image_size, options.heatmap_size, options.resize, options.fill))
    if on_total is not None:
        on_total(len(tasks) + len(pending))
    for result in pending:
        summary.add(result)
        if on_result is not None:
            on_result(result)
    for folder in {t.dest for t in tasks}:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
    for result in _run(tasks, options.workers):
        summary.add(result)
        if on_result is not None:
            on_result(result)
    return summary


def read_raw(raw_dir: Path, options: PreprocessOptions) -> list[RawSplit]:
    """Find the samples of ``raw_dir`` for the requested splits with the reader of ``options.raw_format``.

    Raises:
        DataError: no usable input at all, an undetectable format, a requested split missing, no images folder.
    """
    from roofmapnet.data.formats import detect_format, get_reader

    raw_format = options.raw_format or detect_format(raw_dir)
    if raw_format not in ("gis",) and not raw_dir.is_dir():
        raise DataError(f"{raw_dir}: not a folder")
    return get_reader(raw_format)().scan(raw_dir, options)


def preprocess(
    raw_dir: str | Path, out_dir: str | Path, options: PreprocessOptions, *, show_progress: bool = False
) -> PreprocessSummary:
    """Convert a raw annotation folder into the preprocessed layout ``<out>/<split>/``.

    Args:
        raw_dir: the raw folder (JSON splits + ``images/``, or RID2 edge files).
        out_dir: the output data root.
        options: see :class:`PreprocessOptions`.
        show_progress: draw a progress bar on stderr.

    Returns:
        The summary; ``summary.ok`` is False if any sample or file failed.

    Raises:
        DataError: when the input as a whole is unusable (see :func:`read_raw`).
    """
    from roofmapnet.data.formats import detect_format

    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    raw_format = options.raw_format or detect_format(raw_dir)
    splits = read_raw(raw_dir, replace(options, raw_format=raw_format))  # type: ignore[arg-type]
    summary = PreprocessSummary()
    for sp in splits:
        summary.counts.setdefault(sp.split, SplitCounts())
        for file, reason in sp.file_errors:
            summary.add_file_error(sp.split, file, reason)
        summary.warnings.extend((sp.split, file, note) for file, note in sp.warnings)
    pairs = [(s, out_dir / sp.split) for sp in splits for s in sp.samples]
    summary = _with_progress(pairs, options, summary, show_progress)
    if summary.samples:  # a run that wrote nothing leaves nothing behind
        write_dataset_file(out_dir, raw_format, summary, processed=[sp.split for sp in splits])
    return summary


def dataset_gsd(data_root: str | Path) -> float | None:
    """The ``gsd_m`` recorded in ``<data_root>/dataset.json`` (metres per network-input pixel), if any.

    A missing or unreadable file, or a value that is not a positive number, gives ``None``.
    """
    try:
        value = json.loads((Path(data_root) / DATASET_FILE).read_text(encoding="utf-8")).get("gsd_m")
    except (OSError, ValueError, AttributeError):
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0
    return float(value) if ok else None


def write_dataset_file(out_dir: Path, raw_format: str, summary: PreprocessSummary, processed: Sequence[str]) -> Path:
    """Write ``<out_dir>/dataset.json`` atomically: the format, the median ``gsd_m`` and per-sample metadata.

    ``gsd_m`` is the median over the samples with a known ground sample distance of metres per network-input
    pixel (``null`` when none is known).  Samples of splits not processed in this run, and the records of
    samples skipped by ``--skip-existing``, are kept from an earlier ``dataset.json`` of the same format.
    """
    path = out_dir / DATASET_FILE
    earlier: dict[str, Any] = {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and old.get("format") == raw_format and isinstance(old.get("samples"), dict):
            earlier = old["samples"]
    except (OSError, ValueError):
        pass
    samples = {k: v for k, v in earlier.items() if k.split("/", 1)[0] not in processed}
    # A skipped sample whose reader knew nothing without loading keeps the record of the run that wrote it.
    samples.update({k: v or earlier.get(k) or {} for k, v in summary.samples.items()})
    samples = dict(sorted(samples.items()))
    known = [float(v["gsd_m"]) for v in samples.values() if isinstance(v, dict) and v.get("gsd_m") is not None]
    record = {
        "format": raw_format,
        "gsd_m": float(np.median(known)) if known else None,
        "samples": samples,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in samples.items())
    head = {k: v for k, v in record.items() if k != "samples"}
    text = "{\n" + "".join(f" {json.dumps(k)}: {json.dumps(v)},\n" for k, v in head.items())
    atomic_write_text(path, text + ' "samples": {\n' + body + ("\n" if body else "") + " }\n}\n")
    return path


def preprocess_flat(
    input_path: str | Path,
    out_dir: str | Path,
    options: PreprocessOptions,
    *,
    split: str = "train",
    show_progress: bool = False,
) -> PreprocessSummary:
    """Convert one wireframe JSON file, or one folder of RID2 edge files, straight into ``out_dir``.

    This is the seed's ``python -m roofmapnet.train.preprocess_rid2 --input … --output …``: no split
    subfolders are made.

    Args:
        input_path: a wireframe JSON list, or a folder of ``<stem>.npz`` RID2 edge files.
        out_dir: folder receiving ``<stem>.png`` and ``<stem>_label.npz``.
        options: sizes, axis order, workers; ``images_dir`` defaults to ``images/`` next to the JSON file
            (inside the RID2 folder).
        split: the split name used in the summary.
        show_progress: draw a progress bar on stderr.

    Raises:
        DataError: the input or the images folder does not exist, or a RID2 folder holds no ``*.npz``.
    """
    input_path, out_dir = Path(input_path), Path(out_dir)
    is_dir = input_path.is_dir()
    if not is_dir and not input_path.is_file():
        raise DataError(f"{input_path}: not found")
    images = images_folder(input_path / "images" if is_dir else input_path.parent / "images", options)
    summary = PreprocessSummary()
    summary.counts.setdefault(split, SplitCounts())
    if is_dir:
        raws = scan_rid2(input_path, images, options, fractions=(1.0, 0.0, 0.0))
        samples = [replace(s, split=split) for s in raws[0].samples]
    else:
        raw = read_json_split(input_path, split, images, options.axis_order, follow_symlinks=options.follow_symlinks)
        for file, reason in raw.file_errors:
            summary.add_file_error(split, file, reason)
        samples = raw.samples
    return _with_progress([(s, out_dir) for s in samples], options, summary, show_progress)


def _with_progress(
    pairs: list[tuple[RawSample, Path]], options: PreprocessOptions, summary: PreprocessSummary, show: bool
) -> PreprocessSummary:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("preprocess"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=False,
    ) as bar:
        task = bar.add_task("preprocess", total=len(pairs))
        return run_samples(
            pairs,
            options,
            summary,
            on_result=lambda _r: bar.advance(task),
            on_total=lambda n: bar.update(task, total=n),
        )


def default_workers() -> int:
    """Worker processes used when none is given: the usable CPU cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


#: Warnings printed one per line; beyond this many, the rest are counted (all of them are in dataset.json).
MAX_PRINTED_WARNINGS = 200


def print_summary(summary: PreprocessSummary, out: Console | None = None) -> None:
    """Print a preprocessing summary: a per-split table (written / skipped / failed), then ``file: reason`` per failure."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = out or Console()
    table = Table(title="preprocess summary", title_justify="left")
    table.add_column("split")
    table.add_column("written", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    if summary.warnings:
        table.add_column("warnings", justify="right")
    order = {"train": 0, "valid": 1, "test": 2}
    for split in sorted(summary.counts, key=lambda s: order.get(s, 9)):
        c = summary.counts[split]
        failed = f"[bold red]{c.failed}[/]" if c.failed else "0"
        warned = sum(1 for w in summary.warnings if w[0] == split)
        extra = [f"[yellow]{warned}[/]" if warned else "0"] if summary.warnings else []
        table.add_row(split, str(c.written), str(c.skipped), failed, *extra)
    out.print(table)
    if summary.warnings:
        out.print(f"[yellow]{len(summary.warnings)} warning(s)[/] (samples written anyway):")
        ordered = sorted(summary.warnings, key=lambda f: order.get(f[0], 9))
        for _, file, note in ordered[:MAX_PRINTED_WARNINGS]:
            out.print(Text(f"  {file}: {note}"), soft_wrap=True)
        if len(ordered) > MAX_PRINTED_WARNINGS:
            out.print(f"  … and {len(ordered) - MAX_PRINTED_WARNINGS} more (every one is in OUT_DIR/dataset.json)")
    if summary.failures:
        out.print(f"[bold red]{len(summary.failures)} failed:[/]")
        for _, file, reason in sorted(summary.failures, key=lambda f: order.get(f[0], 9)):
            out.print(Text(f"  {file}: {reason}"), soft_wrap=True)  # Text: brackets in reasons are not markup
