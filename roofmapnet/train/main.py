"""Training entry points: :func:`train`, :func:`resume` and ``python -m roofmapnet.train.main``.

The seed document's Python API works as documented::

    from roofmapnet.train.main import train, RoofMapNetLightningModule, RoofMapNetDataModule
    train(config_path="config/config.yaml", data_root="/path/to/data", gpus=1, precision="16", max_epochs=30)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from roofmapnet.config import RootConfig, dump_config, load_config
from roofmapnet.data.preprocess import dataset_gsd
from roofmapnet.errors import CheckpointError, ConfigError, RoofMapError
from roofmapnet.models.loading import InitReport, init_weights
from roofmapnet.train.lightning import MONITOR, RoofMapNetDataModule, RoofMapNetLightningModule, check_data_root
from roofmapnet.train.rundir import RUN_DIR_ENV, claim_run_dir
from roofmapnet.utils.device import TRAIN_PRECISIONS, parse_precision
from roofmapnet.utils.io import atomic_path, atomic_write_text

__all__ = [
    "RoofMapNetDataModule",
    "RoofMapNetLightningModule",
    "TrainResult",
    "resolve_resume",
    "resume",
    "train",
]

#: Checkpoint file name pattern of the seed, e.g. ``roofmapnet-epoch=07-val_total_loss=0.9685.ckpt``.
CHECKPOINT_PATTERN = "roofmapnet-epoch={epoch:02d}-val_total_loss={val_total_loss:.4f}"
#: The checkpoint of the highest validation sAP10 so far (``checkpoints/best-sAP10.ckpt``), next to the seed's ones.
BEST_SAP_FILENAME = "best-sAP10"
BEST_SAP_MONITOR = "val/sAP10"
#: What ``--init-from`` loaded and skipped, in the run directory.
INIT_REPORT_NAME = "init_from.json"
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn", "fsdp", "deepspeed")


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    best_val_total_loss: float | None
    global_step: int
    epoch: int
    best_sap10_checkpoint: Path | None = None
    best_val_sap10: float | None = None
    init_report: InitReport | None = None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename, so a kill never leaves a truncated ``last.ckpt``.

    A write that fails (disk full, directory made read-only, quota) is a :class:`CheckpointError` naming the file
    and the reason; the earlier checkpoint of that name is untouched and no temporary file is left.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        target = Path(path)
        try:
            with atomic_path(target) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            kept = " (the previous one is kept)" if target.is_file() else ""
            msg = f"{target}: cannot write the checkpoint: {reason}{kept}"
            raise CheckpointError(msg) from None


class TrainingStoppedError(RoofMapError):
    """Training was stopped by a signal after saving a resumable checkpoint."""


class SaveOnSigterm(Callback):
    """On SIGTERM (what schedulers send before killing a job) write a resumable ``last.ckpt`` before exiting.

    Lightning finishes the running batch and raises ``SIGTERMException``; the checkpoint is written then, so it
    holds the loop position, the data position and the generators' state of a finished step.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Save when the exception is the SIGTERM one."""
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)


class PlainProgress(Callback):
    """Periodic one-line progress for logs (used when stdout is not a terminal)."""

    def __init__(self, every: int = 50) -> None:
        self.every = every

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Print a line every ``every`` steps."""
        step = trainer.global_step
        if trainer.is_global_zero and step % self.every == 0:
            loss = trainer.callback_metrics.get("train/total_loss")
            text = f"{float(loss):.4f}" if loss is not None else "n/a"
            print(f"epoch {trainer.current_epoch} step {step} total_loss {text}", flush=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the validation summary."""
        if trainer.is_global_zero and not trainer.sanity_checking:
            m = trainer.callback_metrics
            parts = [f"{k} {float(m[k]):.4f}" for k in (MONITOR, "val/sAP10") if k in m]
            print(
                f"validation epoch {trainer.current_epoch} step {trainer.global_step}: " + ", ".join(parts), flush=True
            )


class _DropTips(logging.Filter):
    """Drop Lightning's advertising "Tip" lines (cloud logging) from the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


def quiet_lightning() -> None:
    """Silence Lightning's known-harmless noise (tips, an internal deprecation warning)."""
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in logger.filters):
        logger.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def _precision(value: str | int) -> str:
    """A ``--precision`` spelling (:func:`~roofmapnet.utils.device.parse_precision`) → Lightning's name."""
    return parse_precision(value, TRAIN_PRECISIONS).lightning


def _accelerator(gpus: int | None, devices: int | str | None, precision: str) -> tuple[str, Any, str, list[str]]:
    """Choose accelerator, devices and precision; returns notices for the user."""
    notices: list[str] = []
    cuda = torch.cuda.is_available()
    if gpus is None:  # seed default: 1 GPU, falling back to CPU
        gpus = 1
        if not cuda:
            notices.append("no CUDA GPU found: training on the CPU")
            gpus = 0
    elif gpus > 0 and not cuda:
        msg = f"--gpus {gpus}: no CUDA GPU is available (use --gpus 0 for the CPU)"
        raise RoofMapError(msg)
    accelerator = "gpu" if gpus > 0 else "cpu"
    n_devices: Any = devices if devices is not None else max(gpus, 1)
    if accelerator == "cpu" and precision == "16-mixed":
        notices.append("fp16 mixed precision is not supported on the CPU: using bf16-mixed")
        precision = "bf16-mixed"
    return accelerator, n_devices, precision, notices


def _validation_interval(cfg: RootConfig, steps_per_epoch: int) -> dict[str, Any]:
    """Validate every ``io.validation_interval`` steps, or at each epoch end if that exceeds an epoch."""
    interval = cfg.io.validation_interval
    if interval < steps_per_epoch:
        return {"val_check_interval": interval, "check_val_every_n_epoch": 1}
    return {"val_check_interval": 1.0, "check_val_every_n_epoch": 1}


def build_trainer(
    cfg: RootConfig,
    run_dir: Path,
    *,
    accelerator: str,
    devices: Any,
    precision: str,
    num_nodes: int = 1,
    strategy: str = "auto",
    steps_per_epoch: int,
    max_steps: int = -1,
    max_minutes: float | None = None,
    limit_val_batches: int | float | None = None,
    extra_callbacks: list[Callback] | None = None,
    progress: bool | None = None,
) -> pl.Trainer:
    """A :class:`pytorch_lightning.Trainer` configured from ``cfg`` (checkpoints, logging, clipping)."""
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=CHECKPOINT_PATTERN,
        auto_insert_metric_name=False,
        monitor=MONITOR,
        mode="min",
        save_top_k=3,
        save_last=True,
    )
    best_sap = ModelCheckpoint(  # the pick for evaluation and deployment: wireframe quality, not the loss
        dirpath=run_dir / "checkpoints",
        filename=BEST_SAP_FILENAME,
        auto_insert_metric_name=False,
        monitor=BEST_SAP_MONITOR,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    callbacks: list[Callback] = [checkpoint, best_sap, *(extra_callbacks or [])]
    interactive = sys.stdout.isatty() if progress is None else progress
    if interactive:
        callbacks.append(RichProgressBar())
    else:
        callbacks.append(PlainProgress(every=max(1, min(50, steps_per_epoch))))
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    return pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,  # type: ignore[arg-type]
        max_epochs=cfg.optim.max_epoch,
        max_steps=max_steps,
        max_time=timedelta(minutes=max_minutes) if max_minutes else None,
        gradient_clip_val=cfg.optim.gradient_clip or None,
        callbacks=callbacks,
        logger=logger,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=interactive,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        num_sanity_val_steps=0,
        limit_val_batches=limit_val_batches,
        default_root_dir=str(run_dir),
        **_validation_interval(cfg, steps_per_epoch),
    )


def train(
    config_path: str | Path | None = "config/config.yaml",
    data_root: str | Path | None = None,
    gpus: int | None = None,
    precision: str | int = "32",
    max_epochs: int | None = None,
    resume_from: str | Path | None = None,
    *,
    devices: int | str | None = None,
    num_nodes: int = 1,
    strategy: str = "auto",
    seed: int = 0,
    batch_size: int | None = None,
    num_workers: int | None = None,
    logdir: str | Path | None = None,
    max_steps: int = -1,
    max_minutes: float | None = None,
    limit_val_batches: int | float | None = None,
    overrides: dict[str, Any] | None = None,
    cfg: RootConfig | None = None,
    progress: bool | None = None,
    notify: Any = None,
    callbacks: list[Callback] | None = None,
    init_from: str | Path | None = None,
    partial: bool = False,
) -> TrainResult:
    """Train RoofMapNet (the seed's ``train()``; every argument of the seed keeps its meaning).

    Args:
        config_path: YAML config (``None`` = built-in defaults); ignored when ``cfg`` is given.
        data_root: preprocessed data with ``train/`` and ``valid/`` (default: ``io.datadir``).
        gpus: GPUs to use, 0 = CPU; ``None`` (the default) = 1 GPU if present, else the CPU with a notice.
        precision: ``32``, ``16``, ``bf16`` or Lightning's names (``16-mixed``, ``bf16-mixed``, ...).
        max_epochs: overrides ``optim.max_epoch``.
        resume_from: a ``.ckpt`` to continue from (epoch, step, optimiser, scheduler restored).
        devices: devices per node (overrides ``gpus``' count); ``num_nodes`` and ``strategy`` go to Lightning.
        seed: seeds Python, numpy and torch (workers too).
        batch_size, num_workers, logdir: override ``model.batch_size``, ``io.num_workers``, ``io.logdir``.
        max_steps: stop after this many optimiser steps (``-1`` = no limit).
        max_minutes: stop after this much wall-clock training time (a checkpoint is written).
        limit_val_batches: validate on at most this many batches (or fraction).
        overrides: further dotted config overrides.
        cfg: an already validated config (takes precedence over ``config_path``).
        progress: force the rich bar on/off (default: on when stdout is a terminal).
        notify: callable receiving one-line notices (default: print to stderr).
        callbacks: extra Lightning callbacks.
        init_from: start from the weights of this file (official ``.pth``, our ``.ckpt`` or an exported
            state-dict); the architecture is the config's, the optimiser, schedule and step count start fresh.
        partial: with ``init_from``, load the keys whose names and shapes match and report the others
            (without it, any difference is an error).

    Returns:
        A :class:`TrainResult` with the run directory and checkpoint paths.
    """
    say = notify or (lambda text: print(f"note: {text}", file=sys.stderr))
    quiet_lightning()
    if strategy not in STRATEGIES:
        raise ConfigError([f"--strategy: '{strategy}' is not one of {', '.join(STRATEGIES)}"])
    all_overrides: dict[str, Any] = dict(overrides or {})
    flags = {
        "optim.max_epoch": max_epochs,
        "model.batch_size": batch_size,
        "io.num_workers": num_workers,
        "io.logdir": Path(logdir) if logdir is not None else None,
        "io.datadir": Path(data_root) if data_root is not None else None,
    }
    all_overrides.update({k: v for k, v in flags.items() if v is not None})  # flags not given keep --set values
    if cfg is None:
        cfg = load_config(config_path, all_overrides)
    else:  # re-validate the given config with the overrides applied on top
        cfg = load_config(None, {**_flatten(cfg.model_dump(mode="json")), **all_overrides})
    data = Path(cfg.io.datadir)
    check_data_root(data)
    if cfg.data.gsd_m is None and (gsd := dataset_gsd(data)) is not None:  # recorded by `roofmap preprocess`
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"gsd_m": gsd})})
    prec = _precision(precision)
    accelerator, n_devices, prec, notices = _accelerator(gpus, devices, prec)
    for text in notices:
        say(text)
    if init_from is not None and resume_from is not None:
        msg = "--init-from starts a new run from weights, --resume-from continues one: give only one of them"
        raise ConfigError([msg])
    if partial and init_from is None:
        raise ConfigError(["--partial only applies to --init-from"])
    ckpt = None
    if resume_from is not None:
        ckpt = Path(resume_from)
        if not ckpt.is_file():
            msg = f"{ckpt}: checkpoint not found"
            raise CheckpointError(msg)
    logdir = Path(cfg.io.logdir)
    continuing = ckpt is not None and ckpt.resolve().is_relative_to(logdir.resolve())
    run_dir, lock = claim_run_dir(logdir, continuing=continuing)
    try:
        if run_dir != logdir:
            say(f"{logdir} already holds a run: this one writes to {run_dir} (continue that run with `roofmap resume`)")
            cfg = cfg.model_copy(update={"io": cfg.io.model_copy(update={"logdir": run_dir})})
        return _fit(cfg, data, run_dir, ckpt, accelerator, n_devices, prec, seed, num_nodes, strategy, max_steps,
                    max_minutes, limit_val_batches, callbacks, progress, init_from, partial, say)  # fmt: skip
    finally:
        if lock is not None:
            lock.release()
            os.environ.pop(RUN_DIR_ENV, None)


def _fit(
    cfg: RootConfig,
    data: Path,
    run_dir: Path,
    ckpt: Path | None,
    accelerator: str,
    n_devices: Any,
    prec: str,
    seed: int,
    num_nodes: int,
    strategy: str,
    max_steps: int,
    max_minutes: float | None,
    limit_val_batches: int | float | None,
    callbacks: list[Callback] | None,
    progress: bool | None,
    init_from: str | Path | None = None,
    partial: bool = False,
    say: Any = print,
) -> TrainResult:
    """Build the module, data and trainer for a claimed ``run_dir`` and fit (the second half of :func:`train`)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    module = RoofMapNetLightningModule(cfg)
    init_report = _init_from(module, init_from, partial, say) if init_from is not None else None
    datamodule = RoofMapNetDataModule(data, cfg, seed=seed)
    steps = datamodule.steps_per_epoch()
    trainer = build_trainer(
        cfg,
        run_dir,
        accelerator=accelerator,
        devices=n_devices,
        precision=prec,
        num_nodes=num_nodes,
        strategy=strategy,
        steps_per_epoch=steps,
        max_steps=max_steps,
        max_minutes=max_minutes,
        limit_val_batches=limit_val_batches,
        extra_callbacks=[SaveOnSigterm(run_dir / "checkpoints" / "last.ckpt"), *(callbacks or [])],
        progress=progress,
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        if init_report is not None:
            atomic_write_text(run_dir / INIT_REPORT_NAME, json.dumps(init_report.to_dict(), indent=2) + "\n")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except SIGTERMException:
        msg = (
            f"stopped by SIGTERM at epoch {trainer.current_epoch}, global step {trainer.global_step}: the resumable "
            f"checkpoint is {run_dir / 'checkpoints' / 'last.ckpt'} (continue with `roofmap resume {run_dir}`)"
        )
        raise TrainingStoppedError(msg, exit_code=128 + signal.SIGTERM) from None
    if trainer.interrupted:
        raise KeyboardInterrupt
    cb = trainer.checkpoint_callback
    assert isinstance(cb, ModelCheckpoint)
    last = run_dir / "checkpoints" / "last.ckpt"
    best = Path(cb.best_model_path) if cb.best_model_path else None
    score = float(cb.best_model_score) if cb.best_model_score is not None else None
    sap = next(
        c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor == BEST_SAP_MONITOR
    )
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=last if last.is_file() else None,
        best_checkpoint=best,
        best_val_total_loss=score,
        global_step=trainer.global_step,
        epoch=trainer.current_epoch,
        best_sap10_checkpoint=Path(sap.best_model_path) if sap.best_model_path else None,
        best_val_sap10=float(sap.best_model_score) if sap.best_model_score is not None else None,
        init_report=init_report,
    )


def _init_from(module: RoofMapNetLightningModule, path: str | Path, partial: bool, say: Any) -> InitReport:
    """Load ``path``'s weights into the fresh network and tell the user what was loaded and what was skipped."""
    report = init_weights(module.model, path, partial=partial)
    say(report.summary())
    for key, reason, detail in report.rows():
        say(f"skipped {key} ({reason}: {detail})")
    return report


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def resolve_resume(target: str | Path) -> tuple[Path, Path]:
    """``RUN_DIR`` or a ``.ckpt`` -> (checkpoint, saved config).  Raises :class:`CheckpointError` if missing."""
    target = Path(target)
    if target.is_dir():
        ckpt = target / "checkpoints" / "last.ckpt"
        run_dir = target
    else:
        ckpt = target
        run_dir = target.parent.parent if target.parent.name == "checkpoints" else target.parent
    if not ckpt.is_file():
        msg = f"{ckpt}: no checkpoint to resume from (is {run_dir} a run directory of `roofmap train`?)"
        raise CheckpointError(msg)
    config = run_dir / "config.yaml"
    if not config.is_file():
        msg = f"{config}: the run's saved config is missing"
        raise CheckpointError(msg)
    return ckpt, config


def resume(target: str | Path, **kwargs: Any) -> TrainResult:
    """Continue a run exactly where ``last.ckpt`` left it (epoch, step, optimiser, scheduler, RNG where kept).

    ``target`` is a run directory (``checkpoints/last.ckpt`` and ``config.yaml`` inside) or a checkpoint in one.
    Keyword arguments go to :func:`train` (e.g. ``max_epochs`` to extend the run, ``gpus``).
    """
    ckpt, config = resolve_resume(target)
    kwargs.setdefault("logdir", config.parent)
    return train(config_path=config, resume_from=ckpt, **kwargs)


def _main(argv: list[str] | None = None) -> None:
    """``python -m roofmapnet.train.main``: the same options as ``roofmap train``."""
    from roofmapnet.cli.train import standalone_train_app

    standalone_train_app(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _main()
