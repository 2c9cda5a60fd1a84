"""The seed document's training interface: :func:`train`, :func:`resume` and ``python -m roofmapnet.train.main``.

A thin wrapper: the engine is :func:`roofmapnet.train.run.fit` (one validated config plus
:class:`~roofmapnet.train.options.TrainOptions`); this module only maps the seed's arguments onto them.  The seed
document's Python API works as documented::

    from roofmapnet.train.main import train, RoofMapNetLightningModule, RoofMapNetDataModule
    train(config_path="config/config.yaml", data_root="/path/to/data", gpus=1, precision="16", max_epochs=30)

``python -m roofmapnet.train.main`` takes the options of ``roofmap train`` (it runs that command).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytorch_lightning.callbacks import Callback

from roofmapnet.config import RootConfig
from roofmapnet.train.callbacks import BEST_SAP_FILENAME, CHECKPOINT_PATTERN
from roofmapnet.train.module import RoofMapNetDataModule, RoofMapNetLightningModule
from roofmapnet.train.options import STRATEGIES
from roofmapnet.train.run import (
    INIT_REPORT_NAME,
    Notify,
    TrainingStoppedError,
    TrainResult,
    configure,
    fit,
    resolve_resume,
)

__all__ = [
    "BEST_SAP_FILENAME",
    "CHECKPOINT_PATTERN",
    "INIT_REPORT_NAME",
    "STRATEGIES",
    "RoofMapNetDataModule",
    "RoofMapNetLightningModule",
    "TrainResult",
    "TrainingStoppedError",
    "resolve_resume",
    "resume",
    "train",
]


def train(
    config_path: str | Path | None = None,
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
    notify: Notify | None = None,
    callbacks: list[Callback] | None = None,
    init_from: str | Path | None = None,
    partial: bool = False,
) -> TrainResult:
    """Train RoofMapNet (the seed's ``train()``; every argument of the seed keeps its meaning).

    Args:
        config_path: YAML config; ``None`` (the default) = the built-in defaults, which are the values of the
            repository's ``config/config.yaml`` (nothing is read from the current directory). Ignored when ``cfg``
            is given.
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
        overrides: further dotted config overrides (the named arguments above win over them).
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
    keywords = {
        **(overrides or {}),  # the named arguments below win over these
        "data_root": data_root, "max_epochs": max_epochs, "batch_size": batch_size, "num_workers": num_workers,
        "logdir": logdir, "gpus": gpus, "devices": devices, "num_nodes": num_nodes, "strategy": strategy,
        "precision": precision, "seed": seed, "max_steps": max_steps, "max_minutes": max_minutes,
        "limit_val_batches": limit_val_batches, "progress": progress, "resume_from": resume_from,
        "init_from": init_from, "partial": partial,
    }  # fmt: skip
    config, options = configure(cfg if cfg is not None else config_path, keywords)
    return fit(config, options, callbacks=callbacks, notify=notify)


def resume(target: str | Path, **kwargs: Any) -> TrainResult:
    """Continue a run exactly where ``last.ckpt`` left it (epoch, step, optimiser, scheduler, RNG where kept).

    ``target`` is a run directory (``checkpoints/last.ckpt`` and ``config.yaml`` inside) or a checkpoint in one.
    Keyword arguments go to :func:`train` (e.g. ``max_epochs`` to extend the run, ``gpus``).
    """
    ckpt, config = resolve_resume(target)
    kwargs.setdefault("logdir", config.parent)
    return train(config_path=config, resume_from=ckpt, **kwargs)


def _main(argv: list[str] | None = None) -> None:
    """``python -m roofmapnet.train.main``: runs ``roofmap train`` (the same options and messages).

    The one import of :mod:`roofmapnet.cli` below it (allowed for this seed wrapper alone, and only when run as a
    program): the options are declared once, by the CLI.
    """
    from roofmapnet.cli.train import standalone_train_app

    standalone_train_app(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _main()
