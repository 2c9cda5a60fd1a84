"""The Lightning ``Trainer`` of a run: hardware (accelerator, devices, precision), logging and the callbacks.

:func:`resolve_hardware` turns :class:`~roofmapnet.train.options.TrainOptions` into what Lightning takes (and the
notices to show the user); :func:`build_trainer` builds the trainer for a run directory.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, RichProgressBar
from pytorch_lightning.loggers import TensorBoardLogger

from roofmapnet.config import RootConfig
from roofmapnet.errors import RoofMapError
from roofmapnet.train.callbacks import AtomicCheckpointIO, FinalStep, PlainProgress, checkpoint_callbacks
from roofmapnet.train.options import TrainOptions
from roofmapnet.utils.device import TRAIN_PRECISIONS, parse_precision


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


def lightning_precision(value: str | int) -> str:
    """A training precision spelling (:func:`~roofmapnet.utils.device.parse_precision`) → Lightning's name."""
    return parse_precision(value, TRAIN_PRECISIONS).lightning


@dataclass(frozen=True)
class Hardware:
    """What Lightning runs on: ``accelerator`` (``gpu`` / ``cpu``), ``devices``, ``precision`` (Lightning's name)."""

    accelerator: str
    devices: Any
    precision: str
    notices: tuple[str, ...] = ()


def resolve_hardware(options: TrainOptions) -> Hardware:
    """Choose accelerator, devices and precision from ``options`` and the machine.

    Raises:
        RoofMapError: GPUs were asked for and CUDA is not available (naming the field ``gpus``).
    """
    notices: list[str] = []
    cuda = torch.cuda.is_available()
    gpus = options.gpus
    if gpus is None:  # seed default: 1 GPU, falling back to CPU
        gpus = 1
        if not cuda:
            notices.append("no CUDA GPU found: training on the CPU")
            gpus = 0
    elif gpus > 0 and not cuda:
        msg = f"gpus {gpus}: no CUDA GPU is available (use gpus 0 for the CPU)"
        raise RoofMapError(msg, fields="gpus")
    accelerator = "gpu" if gpus > 0 else "cpu"
    devices: Any = options.devices if options.devices is not None else max(gpus, 1)
    precision = options.precision.lightning
    if accelerator == "cpu" and precision == "16-mixed":
        notices.append("fp16 mixed precision is not supported on the CPU: using bf16-mixed")
        precision = "bf16-mixed"
    return Hardware(accelerator, devices, precision, tuple(notices))


def validation_interval(cfg: RootConfig, steps_per_epoch: int) -> dict[str, Any]:
    """Validate every ``io.validation_interval`` training steps, counted over the whole run (steps 500, 1000, 1500, …
    across epoch boundaries), or at each epoch end if that exceeds an epoch.

    ``check_val_every_n_epoch=None`` is what makes Lightning count the interval over the run: with ``1`` it counts
    the batches of each epoch, so an interval that does not divide the epoch drifted (1,875-step epochs and an
    interval of 500 validated at steps 500, 1,000, 1,500, 2,375, …).  :class:`~roofmapnet.train.callbacks.FinalStep`
    adds the validation after the last step.
    """
    interval = cfg.io.validation_interval
    if interval < steps_per_epoch:
        return {"val_check_interval": interval, "check_val_every_n_epoch": None}
    return {"val_check_interval": 1.0, "check_val_every_n_epoch": 1}


def build_trainer(
    cfg: RootConfig,
    run_dir: Path,
    hardware: Hardware,
    options: TrainOptions,
    *,
    steps_per_epoch: int,
    extra_callbacks: list[Callback] | None = None,
) -> pl.Trainer:
    """A :class:`pytorch_lightning.Trainer` for ``run_dir`` configured from ``cfg`` and ``options``.

    Checkpoints (:func:`~roofmapnet.train.callbacks.checkpoint_callbacks`, written atomically), TensorBoard events
    in ``run_dir``, gradient clipping, the validation interval, and a rich bar on a terminal or plain lines in logs.
    """
    callbacks: list[Callback] = [*checkpoint_callbacks(run_dir), FinalStep(), *(extra_callbacks or [])]
    interactive = sys.stdout.isatty() if options.progress is None else options.progress
    if interactive:
        callbacks.append(RichProgressBar())
    else:
        callbacks.append(PlainProgress(every=max(1, min(50, steps_per_epoch))))
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    return pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        num_nodes=options.num_nodes,
        strategy=options.strategy,
        precision=hardware.precision,  # type: ignore[arg-type]
        max_epochs=cfg.optim.max_epoch,
        max_steps=options.max_steps,
        max_time=timedelta(minutes=options.max_minutes) if options.max_minutes else None,
        gradient_clip_val=cfg.optim.gradient_clip or None,
        callbacks=callbacks,
        logger=logger,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=interactive,
        enable_model_summary=False,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        num_sanity_val_steps=0,
        limit_val_batches=options.limit_val_batches,
        default_root_dir=str(run_dir),
        **validation_interval(cfg, steps_per_epoch),
    )
