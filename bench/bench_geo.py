"""Tiled GeoTIFF inference (``roofmap infer`` on a raster): tiles/s, total time and the merge step's share.

A ``--size``² GeoTIFF (UTM 32N, 10 cm pixels, deflate-compressed 256² blocks) is built from synthetic roof scenes
(``roofmapnet.data.synth``, 512² each, repeated as a mosaic) and run end to end through
:func:`~roofmapnet.inference.runner.run_inference`: windowed reads in a background thread,
batched ``model.predict``, per-tile conversion, the merge across seams, and the JSON / GeoJSON (WGS 84) /
GeoPackage writers.  The merge is then re-run alone on the same tile detections (best of 3) to time it without
any other load.  The issue's goal: merge ≤ 5 % of the total::

    python bench/bench_geo.py                                  # 4096², tiny model, default tile (= its 64 px input)
    python bench/bench_geo.py --model default --size 1024      # the 512² default model, 3×3 tiles
    python bench/bench_geo.py --checkpoint logs/checkpoints/last.ckpt --size 8192 --json geo.json
    python bench/bench_geo.py --raster tests/data/real-rasters/deepforest_test_tiled.tif   # a real orthophoto

Weights are random unless ``--checkpoint`` is given; as in ``bench/bench_infer.py``, ``--junctions K`` forces K
proposals per tile and ``--max-lines`` caps the lines kept per tile, so that the merge sees a realistic load
(reported as ``lines_before_merge``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from roofmapnet.config.schema import InferConfig, RasterConfig
from roofmapnet.inference.raster import run as raster_run
from roofmapnet.inference.raster.grid import TileGrid
from roofmapnet.inference.raster.merge import MergeParams
from roofmapnet.inference.runner import run_inference
from roofmapnet.inference.types import TileDetections
from roofmapnet.utils.memory import peak_rss_mib

if __package__ in (None, ""):  # run as `python bench/<script>.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import build_predictor, emit

SCENE = 512


def make_raster(path: Path, size: int, scenes: int, seed: int) -> Path:
    """Write a ``size``² 3-band GeoTIFF mosaic of ``scenes`` distinct synthetic 512² roof scenes, strip by strip."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from roofmapnet.data.synth import render_sample

    tiles = [render_sample(np.random.default_rng(seed + i), SCENE, SCENE)[0] for i in range(scenes)]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=size,
        width=size,
        count=3,
        dtype="uint8",
        crs="EPSG:32632",
        transform=Affine(0.1, 0.0, 500_000.0, 0.0, -0.1, 5_000_000.0),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        photometric="RGB",
    ) as ds:
        for row in range(0, size, SCENE):
            h = min(SCENE, size - row)
            strip = np.concatenate(
                [tiles[(row // SCENE * 7 + c // SCENE) % scenes][:h] for c in range(0, size, SCENE)], axis=1
            )[:, :size]
            ds.write(np.moveaxis(strip, -1, 0), window=Window(0, row, size, h))
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build the raster, run tiled inference once, re-time the merge alone; return the figures."""
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = build_predictor(args)
    captured: list[tuple[TileGrid, TileDetections, MergeParams]] = []
    original_merge = raster_run.merge_tiles

    def capturing_merge(grid: TileGrid, det: TileDetections, params: MergeParams) -> Any:
        captured.append((grid, det, params))
        return original_merge(grid, det, params)

    with tempfile.TemporaryDirectory(prefix="bench-geo-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        if args.raster is not None:
            raster = args.raster
        else:
            raster = make_raster(folder / "ortho.tif", args.size, args.scenes, args.seed)
        build_seconds = time.perf_counter() - t0
        options = InferConfig.from_options(
            max_lines=args.max_lines or None,
            batch_size=args.batch_size,
            workers=args.workers,
            outputs=args.outputs,
            raster=RasterConfig(tile=args.tile, overlap=args.overlap),
        )
        raster_run.merge_tiles = capturing_merge  # type: ignore[assignment]
        try:
            report = run_inference(predictor, [raster], folder / "out", options)
        finally:
            raster_run.merge_tiles = original_merge  # type: ignore[assignment]
        if report.failed:
            raise SystemExit(f"failed: {report.failed}")
        (stats,) = report.tiling
        outputs = {p.name: p.stat().st_size for p in (folder / "out").iterdir()}
        grid, det, params = captured[0]
        merge_alone = []
        for _ in range(3):
            t0 = time.perf_counter()
            original_merge(grid, det, params)
            merge_alone.append(time.perf_counter() - t0)
        raster_bytes = raster.stat().st_size
    if args.raster is not None:
        described = f"{raster.name}: {stats.width}x{stats.height} real orthophoto ({raster_bytes / 2**20:.2f} MiB)"
    else:
        described = f"{args.size}x{args.size} uint8 RGB GeoTIFF ({raster_bytes / 2**20:.1f} MiB deflate)"
    return {
        "raster": described,
        "model": "checkpoint" if args.checkpoint else f"{args.model} (random weights, {args.junctions} proposals)",
        "device": str(predictor.device),
        "torch_threads": torch.get_num_threads(),
        "tile": stats.tile,
        "overlap": stats.overlap,
        "tiles": stats.tiles,
        "tiles_run": stats.tiles_run,
        "batch_size": args.batch_size,
        "total_seconds": round(stats.seconds, 3),
        "tiles_per_second": round(stats.tiles_per_second, 2),
        "predict_loop_seconds": round(stats.predict_seconds, 3),
        "model_seconds": round(stats.model_seconds, 3),
        "merge_seconds": round(stats.merge_seconds, 4),
        "merge_share_percent": round(100 * stats.merge_share, 2),
        "merge_alone_seconds_best_of_3": round(min(merge_alone), 4),
        "merge_alone_share_percent": round(100 * min(merge_alone) / stats.seconds, 2),
        "write_seconds": round(stats.write_seconds, 3),
        "lines_before_merge": stats.lines_before_merge,
        "lines": stats.lines,
        "junctions": stats.junctions,
        "largest_window_read_px": stats.peak_tile_pixels,
        "outputs_bytes": outputs,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "raster_build_seconds": round(build_seconds, 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--size", type=int, default=4096, help="raster side in pixels")
    p.add_argument("--raster", type=Path, default=None, help="run on this raster instead of a synthetic one")
    p.add_argument("--scenes", type=int, default=16, help="distinct 512² synthetic scenes in the mosaic")
    p.add_argument("--model", choices=("tiny", "default"), default="tiny", help="random-weight architecture")
    p.add_argument("--checkpoint", help="use these weights instead of a random model")
    p.add_argument("--junctions", type=int, default=16, help="forced proposals per tile (random weights)")
    p.add_argument("--max-lines", type=int, default=16, help="lines kept per tile before post-processing (0: all)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default: the model input size)")
    p.add_argument("--overlap", type=int, default=None, help="tile overlap (default: tile / 8)")
    p.add_argument("--batch-size", type=int, default=32, help="tiles per forward pass")
    p.add_argument("--workers", type=int, default=1, help="0: read tiles in the main thread")
    p.add_argument("--outputs", default="json,geojson", help="json,geojson,overlay (the GeoPackage is always written)")
    p.add_argument("--precision", default="32", choices=("32", "bf16", "16", "auto"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the result to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures as JSON."""
    args = _parse(argv)
    result = run(args)
    emit(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
