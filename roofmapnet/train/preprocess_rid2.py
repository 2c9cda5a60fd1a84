"""The seed's preprocessing API: roof lines → a RoofMapNet ``*_label.npz`` (same core as ``roofmap preprocess``).

Python::

    from roofmapnet.train.preprocess_rid2 import preprocess_roof_lines
    preprocess_roof_lines(lines=[[(y1, x1), (y2, x2)], ...], output_filename="out/image_001_label.npz",
                          image_size=512, heatmap_size=128)

Command line (one JSON file, or a folder of RID2 ``<stem>.npz`` edge files, into one output folder)::

    python -m roofmapnet.train.preprocess_rid2 --input data/train.json --output data/train/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from roofmapnet.errors import RoofMapError


def preprocess_roof_lines(
    lines: Sequence[Any] | np.ndarray,
    output_filename: str | Path,
    image_size: int = 512,
    heatmap_size: int = 128,
) -> Path:
    """Write the label file of one image from its roof lines.

    Args:
        lines: line segments ``[(y1, x1), (y2, x2)]`` in pixels of the original ``image_size`` × ``image_size``
            image (continuous coordinates, pixel edges at integers).
        output_filename: the ``*_label.npz`` to write (atomically; folders are created).
        image_size: side of the original image the coordinates refer to.
        heatmap_size: side of the label heatmaps (typically ``image_size / 4`` of the model input).

    Returns:
        The written path.

    Raises:
        DataError: malformed, non-finite, zero-length or wholly-outside lines, or no lines at all.
    """
    from roofmapnet.data.preprocess import validated_targets
    from roofmapnet.data.raw import check_lines
    from roofmapnet.data.targets import write_label
    from roofmapnet.errors import DataError

    if image_size < 1 or heatmap_size < 2:
        raise DataError(f"image_size ({image_size}) and heatmap_size ({heatmap_size}) must be positive")
    try:
        arr = np.asarray(lines, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{output_filename}: lines must be a list of [(y1, x1), (y2, x2)] pairs of numbers") from None
    if arr.size == 0:
        raise DataError(f"{output_filename}: no lines")
    if arr.ndim != 3 or arr.shape[1:] != (2, 2):
        raise DataError(
            f"{output_filename}: lines have shape {arr.shape}, expected [(y1, x1), (y2, x2)] pairs (N, 2, 2)"
        )
    lines_xy = arr[:, :, ::-1].reshape(-1, 4)
    try:
        targets = validated_targets(check_lines(lines_xy), (image_size, image_size), heatmap_size)
    except DataError as exc:
        raise DataError(f"{output_filename}: {exc}") from None
    write_label(output_filename, targets)
    return Path(output_filename)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m roofmapnet.train.preprocess_rid2``: returns the exit status (1 if any file failed)."""
    from rich.console import Console
    from rich.markup import escape

    from roofmapnet.data.preprocess import PreprocessOptions, default_workers, preprocess_flat, print_summary

    parser = argparse.ArgumentParser(
        prog="python -m roofmapnet.train.preprocess_rid2",
        description="Convert roof line annotations (a wireframe JSON file or a folder of RID2 <stem>.npz edge "
        "files) into <stem>.png + <stem>_label.npz in one output folder.",
    )
    parser.add_argument("--input", required=True, type=Path, help="wireframe JSON file, or RID2 edge-file folder")
    parser.add_argument("--output", required=True, type=Path, help="output folder")
    parser.add_argument("--images", type=Path, default=None, help="images folder (default: images/ beside the input)")
    parser.add_argument("--axis-order", choices=("xy", "yx"), default="xy", help="point order in the input")
    parser.add_argument("--image-size", type=int, default=512, help="written image side (model input)")
    parser.add_argument("--heatmap-size", type=int, default=None, help="heatmap side (default: image size / 4)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU cores, ≤ 8)")
    parser.add_argument("--skip-existing", action="store_true", help="keep samples already written")
    args = parser.parse_args(argv)
    try:
        options = PreprocessOptions(
            image_size=args.image_size,
            heatmap_size=args.heatmap_size if args.heatmap_size is not None else max(2, args.image_size // 4),
            axis_order=args.axis_order,
            images_dir=args.images,
            workers=default_workers() if args.workers is None else args.workers,
            skip_existing=args.skip_existing,
        )
        summary = preprocess_flat(args.input, args.output, options, show_progress=sys.stdout.isatty())
    except RoofMapError as exc:
        err_console = Console(stderr=True)
        for line in exc.lines:
            text = line.replace("images_dir", "--images") if "images_dir" in exc.fields else line  # this program's flag
            err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    print_summary(summary)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
