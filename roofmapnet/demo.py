"""``roofmap demo``: the whole pipeline on the embedded default (synthetic roofs) or on real data, end to end.

synth → preprocess → train (small preset, bounded time) → validate → infer → export (ONNX + parity check).
With ``data="FORMAT:PATH"`` (e.g. ``roofvec:…/SimpleRoofTXT``) the synth stage is replaced by that raw data set,
read by ``roofmap preprocess --format FORMAT``'s reader; validation then uses its ``test`` split, else ``valid``.
Each stage calls the same core function as its subcommand. Stages that finished are skipped on a re-run
(a marker file per stage); an interrupted training resumes from ``last.ckpt``. Validation, inference and export use
the checkpoint of the best validation sAP10 (``best-sAP10.ckpt``; ``last.ckpt`` if validation never ran).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roofmapnet.config import RootConfig, load_config
from roofmapnet.errors import RoofMapError
from roofmapnet.utils.io import atomic_write_text

#: The small CPU preset shipped with the project (relative to the repository / installed package data).
SMALL_PRESET = Path(__file__).resolve().parents[1] / "config" / "presets" / "small.yaml"

STAGES = ("synth", "preprocess", "train", "validate", "infer", "export")


@dataclass(frozen=True)
class DemoOptions:
    """Size and budget of a demo run."""

    out_dir: Path = Path("runs/demo")
    train_images: int = 240
    valid_images: int = 24
    test_images: int = 24
    image_size: int = 256
    minutes: float = 10.0
    max_epochs: int = 200
    infer_images: int = 6
    infer_threshold: float = 0.5
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    config: Path | None = None
    export: bool = True
    fresh: bool = False
    data: str | None = None


@dataclass
class DemoReport:
    """Where each artefact is."""

    artefacts: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _done(out: Path, stage: str) -> Path:
    return out / ".stages" / f"{stage}.done"


def _mark(out: Path, stage: str, info: dict[str, Any] | None = None) -> None:
    atomic_write_text(_done(out, stage), json.dumps(info or {}, default=str) + "\n")


def _check_same_data(out: Path, data: str | None) -> None:
    """Refuse to continue a demo folder that was made from other data (its finished stages would be reused)."""
    marker = _done(out, "preprocess")
    if not marker.is_file():
        return
    try:
        before = json.loads(marker.read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        before = None
    if before != data:
        was = before or "synthetic roofs"
        msg = f"{out} holds a demo of {was}: use another out_dir, or fresh to start over"
        raise RoofMapError(msg, fields=("out_dir", "fresh"))


def demo_config(options: DemoOptions) -> RootConfig:
    """The small preset (or ``options.config``) with the demo's run and data folders."""
    path = options.config or SMALL_PRESET
    if not path.is_file():
        msg = f"{path}: demo config not found"
        raise RoofMapError(msg)
    out = options.out_dir.resolve()
    return load_config(
        path,
        {
            "io.logdir": out / "train",
            "io.datadir": out / "data",
            "io.num_workers": min(options.workers, 2),
            "optim.max_epoch": options.max_epochs,
        },
    )


def parse_data_source(text: str) -> tuple[str, Path]:
    """``"roofvec:/data/SimpleRoofTXT"`` → ``("roofvec", Path(...))``, checked against the available readers.

    Raises:
        RoofMapError: not ``FORMAT:PATH``, an unknown format, or a missing folder.
    """
    fmt, sep, raw = text.partition(":")
    if not sep or not fmt or not raw:
        msg = f"data {text}: expected FORMAT:PATH, e.g. roofvec:~/Vectorization-Roof-Data-Set/SimpleRoofTXT"
        raise RoofMapError(msg, fields="data")
    from roofmapnet.data.formats import FORMAT_NAMES

    if fmt not in FORMAT_NAMES:
        msg = f"data {text}: unknown format {fmt!r} (this roofmap reads {', '.join(FORMAT_NAMES)})"
        raise RoofMapError(msg, fields="data")
    path = Path(raw).expanduser()
    if not path.exists():
        raise RoofMapError(f"data {text}: {path} not found", fields="data")
    return fmt, path


def _held_out_images(root: Path, extensions: tuple[str, ...], count: int) -> list[Path]:
    """Up to ``count`` original images of a raw data set's validation or test part (for ``infer``)."""
    images = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file())
    held = [p for p in images if {"val", "valid", "test"} & {part.lower() for part in p.relative_to(root).parts}]
    return (held or images)[:count]


def run_demo(options: DemoOptions, say: Callable[[str], None] = print) -> DemoReport:
    """Run (or continue) the demo pipeline into ``options.out_dir``."""
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess
    from roofmapnet.data.synth import generate_dataset
    from roofmapnet.train.main import BEST_SAP_FILENAME, resume, train

    out = options.out_dir.resolve()
    if options.fresh and _done(out, "synth").parent.exists():
        for marker in _done(out, "synth").parent.glob("*.done"):
            marker.unlink()
    cfg = demo_config(options)
    report = DemoReport()
    raw, data, run = out / "raw", Path(cfg.io.datadir), Path(cfg.io.logdir)
    source = parse_data_source(options.data) if options.data else None
    if source is not None:
        raw = source[1]
    _check_same_data(out, options.data)

    # 1. synth (or the given real data set)
    if source is not None:
        say(f"[1/6] data: {raw} ({source[0]})")
    elif _done(out, "synth").is_file():
        report.skipped.append("synth")
    else:
        say(f"[1/6] synth: {options.train_images}+{options.valid_images}+{options.test_images} roofs → {raw}")
        counts = {"train": options.train_images, "valid": options.valid_images, "test": options.test_images}
        generate_dataset(
            raw,
            counts=counts,
            image_size=options.image_size,
            seed=options.seed,
            workers=options.workers,
            overwrite=True,
        )
        _mark(out, "synth", counts)
    report.artefacts["raw dataset"] = raw

    # 2. preprocess
    if _done(out, "preprocess").is_file():
        report.skipped.append("preprocess")
    else:
        say(f"[2/6] preprocess → {data}")
        summary = preprocess(
            raw,
            data,
            PreprocessOptions(
                image_size=cfg.model.image_size,
                heatmap_size=cfg.model.heatmap_size,
                raw_format=source[0] if source is not None else None,  # type: ignore[arg-type]
                workers=options.workers,
                skip_existing=True,
                resize=cfg.data.resize,
                fill=cfg.model.image.mean,
            ),
            show_progress=True,
        )
        if not summary.ok and source is None:
            msg = f"{raw}: preprocessing failed for some samples (run `roofmap preprocess {raw} {data}` for details)"
            raise RoofMapError(msg)
        if not summary.ok:  # real data sets have bad files: they are left out and counted, the demo goes on
            say(f"      {len(summary.failures)} samples failed and are left out (`roofmap preprocess` lists them)")
        _mark(out, "preprocess", {"data": options.data})
    report.artefacts["training data"] = data

    # 3. train
    last = run / "checkpoints" / "last.ckpt"
    if _done(out, "train").is_file():
        report.skipped.append("train")
    else:
        gpus = 0 if options.device == "cpu" else None
        common: dict[str, Any] = {"gpus": gpus, "max_minutes": options.minutes, "seed": options.seed}
        if last.is_file():
            say(f"[3/6] train: resuming {run} (budget {options.minutes:g} min)")
            resume(run, **common)
        else:
            say(f"[3/6] train: small preset, budget {options.minutes:g} min → {run}")
            run = train(cfg=cfg, precision="32", **common).run_dir  # the next free name if `run` holds a run
        _mark(out, "train")
    # Validate, infer and export the checkpoint of the best validation sAP10: the time budget stops training
    # mid-epoch, after the last validation, so last.ckpt is not the one validation vouches for.
    best = run / "checkpoints" / f"{BEST_SAP_FILENAME}.ckpt"
    chosen = best if best.is_file() else last
    report.artefacts["checkpoint"] = chosen
    report.artefacts["TensorBoard logs"] = run

    # 4. validate
    val_dir = out / "validate"
    if _done(out, "validate").is_file():
        report.skipped.append("validate")
    else:
        split = "test" if any((data / "test").glob("*_label.npz")) else "valid"
        say(f"[4/6] validate on the {split} split")
        from roofmapnet.evaluation.validate import ValidateOptions, run_validation
        from roofmapnet.models.loading import load_model

        model, mcfg = load_model(chosen)
        run_validation(
            model, mcfg, data, val_dir, ValidateOptions(split=split, device=options.device), checkpoint=chosen
        )
        _mark(out, "validate")
    metrics_path = val_dir / "metrics.json"
    report.metrics = json.loads(metrics_path.read_text())["metrics"]
    report.artefacts["metrics"] = metrics_path
    report.artefacts["PR curves"] = val_dir / "pr_curve.png"

    # 5. infer on held-out raw images (their original size)
    infer_dir = out / "infer"
    if _done(out, "infer").is_file():
        report.skipped.append("infer")
    else:
        say(f"[5/6] infer on {options.infer_images} held-out images → {infer_dir}")
        from roofmapnet.config.schema import InferConfig
        from roofmapnet.inference.predictor import Predictor
        from roofmapnet.inference.runner import run_inference

        if source is None:
            images = sorted((raw / "images").glob("test_*.png"))[: options.infer_images]
        else:
            images = _held_out_images(raw, cfg.data.image_extensions, options.infer_images)
        predictor = Predictor.from_checkpoint(chosen, device=options.device)
        # L-CNN's 0.5 score threshold for the demo's pictures (`roofmap infer` defaults to the reference's 0.1).
        run_inference(predictor, images, infer_dir, InferConfig(workers=0, threshold=options.infer_threshold))
        _mark(out, "infer")
    report.artefacts["predictions (JSON, GeoJSON, overlays)"] = infer_dir

    # 6. export
    onnx_path = out / "export" / "roofmapnet.onnx"
    if not options.export:
        report.skipped.append("export")
    elif _done(out, "export").is_file():
        report.skipped.append("export")
        report.artefacts["ONNX model"] = onnx_path
    else:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            say("[6/6] export skipped: install the export extra (pip install 'roofmapnet[export]')")
        else:
            say(f"[6/6] export ONNX with parity check → {onnx_path}")
            from roofmapnet.export import export_checkpoint

            result = export_checkpoint(chosen, "onnx", onnx_path)
            if not result.passed:
                msg = f"{onnx_path}: the ONNX export does not reproduce PyTorch (run `roofmap export` for the table)"
                raise RoofMapError(msg)
            _mark(out, "export")
            report.artefacts["ONNX model"] = onnx_path
    return report
