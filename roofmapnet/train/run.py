"""One training run: :func:`fit` takes a validated config and :class:`~roofmapnet.train.options.TrainOptions`.

``fit`` checks the data, claims the run directory (:mod:`roofmapnet.train.rundir`: a new run into a logdir that
holds one takes the next free name, ``exp`` → ``exp-2``), builds the module, data and trainer, optionally loads
starting weights (``init_from``), trains, and returns a :class:`TrainResult`.  Everything above it (the seed's
``train()``, :func:`roofmapnet.train`, ``roofmap train``) only turns its arguments into these two objects.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from roofmapnet.config import RootConfig, dump_config, load_config, override_config
from roofmapnet.data.preprocess import dataset_gsd
from roofmapnet.errors import CheckpointError, ConfigError, RoofMapError
from roofmapnet.models.loading import InitReport, init_weights
from roofmapnet.train.callbacks import BEST_SAP_MONITOR, SaveOnSigterm
from roofmapnet.train.module import RoofMapNetDataModule, RoofMapNetLightningModule, check_data_root
from roofmapnet.train.options import TrainOptions
from roofmapnet.train.rundir import RUN_DIR_ENV, claim_run_dir
from roofmapnet.train.trainer import Hardware, build_trainer, quiet_lightning, resolve_hardware
from roofmapnet.utils.io import atomic_write_text

#: What ``init_from`` loaded and skipped, in the run directory.
INIT_REPORT_NAME = "init_from.json"
#: Keywords of the Python entry points that set a config field (the rest are :class:`TrainOptions` fields).
CONFIG_KEYWORDS: dict[str, str] = {
    "max_epochs": "optim.max_epoch",
    "batch_size": "model.batch_size",
    "num_workers": "io.num_workers",
    "logdir": "io.logdir",
    "data_root": "io.datadir",
}

Notify = Callable[[str], None]


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


class TrainingStoppedError(RoofMapError):
    """Training was stopped by a signal after saving a resumable checkpoint."""


def _stderr_notice(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keywords of a Python caller → (dotted config overrides, :class:`TrainOptions` fields).

    A key with a dot is a config field (``optim.lr``); :data:`CONFIG_KEYWORDS` name a few fields directly
    (``max_epochs``, ``logdir``, ``data_root``, ...); the other keys must be :class:`TrainOptions` fields.  ``None``
    values are dropped (an option that was not given).  Paths given here are relative to the current directory.

    Raises:
        ConfigError: an unknown keyword (one line each, with the accepted names).
    """
    dotted: dict[str, Any] = {}
    options: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in overrides.items():
        if value is None:
            continue
        if "." in key:
            dotted[key] = value
        elif key in CONFIG_KEYWORDS:
            dotted[CONFIG_KEYWORDS[key]] = Path(value) if key in ("logdir", "data_root") else value
        elif key in TrainOptions.model_fields:
            options[key] = value
        else:
            unknown.append(key)
    if unknown:
        names = ", ".join(sorted([*CONFIG_KEYWORDS, *TrainOptions.model_fields]))
        lines = [
            f"{key}: unknown option (expected a dotted config key such as optim.lr, or {names})" for key in unknown
        ]
        raise ConfigError(lines, fields=tuple(unknown))
    return dotted, options


def configure(config: RootConfig | str | Path | None, overrides: Mapping[str, Any]) -> tuple[RootConfig, TrainOptions]:
    """The config and options of a run from a config (object, YAML path, or ``None`` for the built-in defaults) and
    keywords (:func:`split_overrides`), each validated once: the options first, then the config with its overrides.

    Raises:
        ConfigError: one line per problem, naming the fields.
    """
    dotted, values = split_overrides(overrides)
    options = TrainOptions.from_options(**values)
    cfg = override_config(config, dotted) if isinstance(config, RootConfig) else load_config(config, dotted)
    return cfg, options


def configure_resume(target: str | Path, overrides: Mapping[str, Any]) -> tuple[RootConfig, TrainOptions]:
    """:func:`configure` for continuing the run ``target`` (a run directory or a checkpoint in one): its saved
    ``config.yaml``, ``resume_from`` its ``last.ckpt`` (or the given checkpoint), ``io.logdir`` the run directory.

    Raises:
        CheckpointError: no checkpoint or no saved config.
        ConfigError: bad overrides.
    """
    ckpt, config = resolve_resume(target)
    given = {key: value for key, value in overrides.items() if value is not None}
    return configure(config, {"logdir": config.parent, **given, "resume_from": ckpt})


def fit(
    cfg: RootConfig,
    options: TrainOptions | None = None,
    *,
    callbacks: list[Callback] | None = None,
    notify: Notify | None = None,
) -> TrainResult:
    """Train ``cfg`` (data from ``io.datadir``, the run into ``io.logdir`` or its next free name).

    Args:
        cfg: the validated configuration; it is saved as the run's ``config.yaml``.
        options: hardware and run options (default: the CLI's defaults).
        callbacks: extra Lightning callbacks.
        notify: receives one-line notices (default: ``note: …`` on stderr).

    Raises:
        RoofMapError: bad data root, options or checkpoint (one line each), or a stop by SIGTERM
            (:class:`TrainingStoppedError`, after writing a resumable ``last.ckpt``).
    """
    options = options or TrainOptions()
    options.check()
    say = notify or _stderr_notice
    quiet_lightning()
    data = Path(cfg.io.datadir)
    check_data_root(data)
    if cfg.data.gsd_m is None and (gsd := dataset_gsd(data)) is not None:  # recorded by `roofmap preprocess`
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"gsd_m": gsd})})
    hardware = resolve_hardware(options)
    for text in hardware.notices:
        say(text)
    ckpt = options.resume_from
    if ckpt is not None and not ckpt.is_file():
        msg = f"{ckpt}: checkpoint not found"
        raise CheckpointError(msg)
    logdir = Path(cfg.io.logdir)
    continuing = ckpt is not None and ckpt.resolve().is_relative_to(logdir.resolve())
    run_dir, lock = claim_run_dir(logdir, continuing=continuing)
    try:
        if run_dir != logdir:
            say(f"{logdir} already holds a run: this one writes to {run_dir} (continue that run with `roofmap resume`)")
            cfg = cfg.model_copy(update={"io": cfg.io.model_copy(update={"logdir": run_dir})})
        return _fit_in(cfg, run_dir, hardware, options, callbacks, say)
    finally:
        if lock is not None:
            lock.release()
            os.environ.pop(RUN_DIR_ENV, None)


def _fit_in(
    cfg: RootConfig,
    run_dir: Path,
    hardware: Hardware,
    options: TrainOptions,
    callbacks: list[Callback] | None,
    say: Notify,
) -> TrainResult:
    """Build the module, data and trainer for a claimed ``run_dir`` and fit (the second half of :func:`fit`)."""
    pl.seed_everything(options.seed, workers=True, verbose=False)
    module = RoofMapNetLightningModule(cfg)
    init_report = None
    if options.init_from is not None:
        init_report = _init_from(module, options.init_from, options.partial, say)
    datamodule = RoofMapNetDataModule(Path(cfg.io.datadir), cfg, seed=options.seed)
    last = run_dir / "checkpoints" / "last.ckpt"
    trainer = build_trainer(
        cfg,
        run_dir,
        hardware,
        options,
        steps_per_epoch=datamodule.steps_per_epoch(),
        extra_callbacks=[SaveOnSigterm(last), *(callbacks or [])],
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        if init_report is not None:
            atomic_write_text(run_dir / INIT_REPORT_NAME, json.dumps(init_report.to_dict(), indent=2) + "\n")
    ckpt = options.resume_from
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    except SIGTERMException:
        msg = (
            f"stopped by SIGTERM at epoch {trainer.current_epoch}, global step {trainer.global_step}: the resumable "
            f"checkpoint is {last} (continue with `roofmap resume {run_dir}`)"
        )
        raise TrainingStoppedError(msg, exit_code=128 + signal.SIGTERM) from None
    if trainer.interrupted:
        raise KeyboardInterrupt
    cb = trainer.checkpoint_callback
    assert isinstance(cb, ModelCheckpoint)
    sap = next(
        c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor == BEST_SAP_MONITOR
    )
    return TrainResult(
        run_dir=run_dir,
        last_checkpoint=last if last.is_file() else None,
        best_checkpoint=Path(cb.best_model_path) if cb.best_model_path else None,
        best_val_total_loss=float(cb.best_model_score) if cb.best_model_score is not None else None,
        global_step=trainer.global_step,
        epoch=trainer.current_epoch,
        best_sap10_checkpoint=Path(sap.best_model_path) if sap.best_model_path else None,
        best_val_sap10=float(sap.best_model_score) if sap.best_model_score is not None else None,
        init_report=init_report,
    )


def _init_from(module: RoofMapNetLightningModule, path: Path, partial: bool, say: Notify) -> InitReport:
    """Load ``path``'s weights into the fresh network and tell the user what was loaded and what was skipped."""
    report = init_weights(module.model, path, partial=partial)
    say(report.summary())
    for key, reason, detail in report.rows():
        say(f"skipped {key} ({reason}: {detail})")
    return report


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
