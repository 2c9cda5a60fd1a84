"""The records inference passes between its layers: decoded inputs, per-image results, tiling statistics, the
merged wireframe of a raster and a run's report.

Plain data only (dataclasses and the arithmetic they summarise): every module of :mod:`roofmapnet.inference`
may import this one, and it imports none of them.  The options of a run are the pydantic
:class:`~roofmapnet.config.schema.InferConfig` (``RootConfig.infer``); the model a run drives is any
:class:`~roofmapnet.models.outputs.WireframeModel`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


@dataclass(frozen=True)
class SkippedInput:
    """An input that was not processed, and why (shown in the summary table).

    Attributes:
        path: the input.
        reason: one line; it may name options by their field (:attr:`roofmapnet.errors.RoofMapError.fields`).
        fields: the option fields named in ``reason``.
    """

    path: str
    reason: str
    fields: tuple[str, ...] = ()


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
    """What was produced for one image (or one tiled raster)."""

    image: str
    stem: str
    width: int
    height: int
    lines: int
    junctions: int
    outputs: tuple[str, ...]


Outcome = ImageResult | SkippedInput


@dataclass
class TilingStats:
    """Timings and counts of one raster's tiled inference.

    Attributes:
        image: the raster path.
        height: raster rows.
        width: raster columns.
        tile: tile side (raster pixels).
        overlap: overlap (raster pixels).
        tiles: tiles in the grid.
        tiles_run: tiles sent to the model (tiles with no valid pixel are skipped).
        seconds: wall time from opening the raster to the written outputs.
        predict_seconds: wall time of the tile loop (reading, model, per-tile conversion).
        model_seconds: time inside ``model.predict``.
        merge_seconds: time of the merge across seams.
        write_seconds: time writing the outputs.
        lines_before_merge: tile lines entering the merge.
        lines: merged lines written.
        junctions: merged junctions written.
        peak_tile_pixels: pixels of each window read (every read is one grid window, at most ``tile²``).
    """

    image: str
    height: int
    width: int
    tile: int
    overlap: int
    tiles: int
    tiles_run: int = 0
    seconds: float = 0.0
    predict_seconds: float = 0.0
    model_seconds: float = 0.0
    merge_seconds: float = 0.0
    write_seconds: float = 0.0
    lines_before_merge: int = 0
    lines: int = 0
    junctions: int = 0
    peak_tile_pixels: int = 0

    @property
    def tiles_per_second(self) -> float:
        """Grid tiles per second of total wall time."""
        return self.tiles / self.seconds if self.seconds > 0 else 0.0

    @property
    def merge_share(self) -> float:
        """Merge time as a fraction of the total wall time."""
        return self.merge_seconds / self.seconds if self.seconds > 0 else 0.0

    def record(self) -> dict[str, Any]:
        """The JSON's ``tiling`` object."""
        return {
            "tile": self.tile,
            "overlap": self.overlap,
            "tiles": self.tiles,
            "tiles_run": self.tiles_run,
            "lines_before_merge": self.lines_before_merge,
        }


@dataclass
class TileDetections:
    """Per-tile detections in raster pixels, concatenated (input of the merge).

    Attributes:
        lines: ``[N, 4]`` ``x1, y1, x2, y2``.
        scores: ``[N]``.
        tiles: ``[N]`` flat tile index of each line.
        junctions: ``[J, 2]`` ``x, y``.
        junction_scores: ``[J]``.
        junction_tiles: ``[J]``.
    """

    lines: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tiles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    junctions: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    junction_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    junction_tiles: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def concat(cls, parts: Sequence[TileDetections]) -> TileDetections:
        """Concatenate per-tile parts."""
        if not parts:
            return cls()
        return cls(
            lines=np.concatenate([p.lines.reshape(-1, 4) for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            tiles=np.concatenate([p.tiles for p in parts]).astype(np.int64),
            junctions=np.concatenate([p.junctions.reshape(-1, 2) for p in parts]),
            junction_scores=np.concatenate([p.junction_scores for p in parts]),
            junction_tiles=np.concatenate([p.junction_tiles for p in parts]).astype(np.int64),
        )


@dataclass(frozen=True)
class MergedWireframe:
    """The merged wireframe of a raster, in raster pixels (``x`` right, ``y`` down, pixel edges at integers).

    Attributes:
        lines: ``[L, 4]`` ``x1, y1, x2, y2``, by descending score.
        scores: ``[L]``.
        pieces: ``[L]`` number of tile detections merged into each line.
        junctions: ``[J, 2]`` ``x, y``, by descending score.
        junction_scores: ``[J]``.
        height: raster rows.
        width: raster columns.
    """

    lines: np.ndarray
    scores: np.ndarray
    pieces: np.ndarray
    junctions: np.ndarray
    junction_scores: np.ndarray
    height: int
    width: int

    @classmethod
    def empty(cls, height: int, width: int) -> MergedWireframe:
        """No lines and no junctions on a ``height × width`` raster."""
        return cls(
            lines=np.zeros((0, 4)),
            scores=np.zeros(0),
            pieces=np.zeros(0, dtype=np.int64),
            junctions=np.zeros((0, 2)),
            junction_scores=np.zeros(0),
            height=height,
            width=width,
        )


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
        tiling: per-raster statistics of the inputs run tile by tile (:mod:`roofmapnet.inference.raster`).
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

    def add(self, outcome: Outcome) -> None:
        """Record one input's outcome."""
        if isinstance(outcome, ImageResult):
            self.results.append(outcome)
        else:
            self.failed.append(outcome)
