"""``roofmap train`` and ``roofmap resume``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from roofmapnet.cli._common import ConfigOption, console, notice, report_errors
from roofmapnet.errors import ConfigError

_HW = "Hardware"
_RUN = "Run"
_INIT = "Fine-tuning"

GpusOption = Annotated[
    int | None,
    typer.Option(help="GPUs to use (0 = CPU). Default: 1 if a GPU is present, else the CPU.", rich_help_panel=_HW),
]
PrecisionOption = Annotated[
    str, typer.Option(help="32, 16, bf16, or Lightning's names (16-mixed, bf16-mixed, 32-true).", rich_help_panel=_HW)
]
DevicesOption = Annotated[
    int | None, typer.Option(help="Devices per node (overrides --gpus' count), e.g. 2 for DDP.", rich_help_panel=_HW)
]
NodesOption = Annotated[int, typer.Option(help="Number of nodes (multi-node DDP).", rich_help_panel=_HW)]
StrategyOption = Annotated[
    str,
    typer.Option(
        help="Lightning strategy: auto, ddp, ddp_find_unused_parameters_true, ddp_spawn.", rich_help_panel=_HW
    ),
]
MaxEpochsOption = Annotated[int | None, typer.Option(help="Overrides optim.max_epoch.", rich_help_panel=_RUN)]
MaxStepsOption = Annotated[
    int, typer.Option(help="Stop after this many optimiser steps (-1 = none).", rich_help_panel=_RUN)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Dotted config override KEY=VALUE (repeatable), e.g. --set optim.lr=5e-4.",
        rich_help_panel="Configuration",
    ),
]


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}``; values are JSON when they parse, else strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or "." not in key:
            shown = item if item.isprintable() else repr(item)  # one line, whatever was passed
            msg = f"--set {shown}: expected SECTION.KEY=VALUE, e.g. optim.lr=5e-4"
            raise ConfigError([msg])
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        except RecursionError:
            raise ConfigError([f"--set {key.strip()}: the value is nested too deeply"]) from None
        out[key.strip()] = value
    return out


def _print_result(result: Any) -> None:
    console.print(f"[bold green]done[/] — epoch {result.epoch}, global step {result.global_step}")
    console.print(f"run directory:   {result.run_dir}")
    if result.last_checkpoint:
        console.print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint:
        console.print(f"best checkpoint: {result.best_checkpoint} (val_total_loss {result.best_val_total_loss:.4f})")
    if result.best_sap10_checkpoint:
        console.print(f"best sAP10:      {result.best_sap10_checkpoint} (val/sAP10 {result.best_val_sap10:.2f})")
    console.print(f"TensorBoard:     tensorboard --logdir {result.run_dir}")


@report_errors
def train_command(
    config: ConfigOption = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help="Preprocessed data (train/, valid/). Default: io.datadir.", rich_help_panel="Data"),
    ] = None,
    gpus: GpusOption = None,
    precision: PrecisionOption = "32",
    max_epochs: MaxEpochsOption = None,
    resume_from: Annotated[
        Path | None, typer.Option(help="Checkpoint (.ckpt) to continue from.", rich_help_panel=_RUN)
    ] = None,
    devices: DevicesOption = None,
    num_nodes: NodesOption = 1,
    strategy: StrategyOption = "auto",
    seed: Annotated[int, typer.Option(help="Random seed (Python, numpy, torch, workers).", rich_help_panel=_RUN)] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Overrides model.batch_size.", rich_help_panel=_RUN)] = None,
    num_workers: Annotated[int | None, typer.Option(help="Overrides io.num_workers.", rich_help_panel="Data")] = None,
    logdir: Annotated[
        Path | None, typer.Option(help="Run directory (overrides io.logdir).", rich_help_panel=_RUN)
    ] = None,
    max_steps: MaxStepsOption = -1,
    max_minutes: Annotated[
        float | None, typer.Option(help="Stop after this many minutes of training.", rich_help_panel=_RUN)
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Start from these weights (official .pth, a .ckpt or an exported state-dict); the architecture is "
            "the config's, optimiser and schedule start fresh.",
            rich_help_panel=_INIT,
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="With --init-from: load the keys that match and list the skipped ones.",
            rich_help_panel=_INIT,
        ),
    ] = False,
    set_: SetOption = None,
) -> None:
    """Train RoofMapNet on a preprocessed dataset.

    Checkpoints go to LOGDIR/checkpoints/ (last.ckpt, the 3 best by validation total loss, and best-sAP10.ckpt,
    the highest validation sAP10: the one to evaluate and deploy), TensorBoard events and the resolved config.yaml
    to LOGDIR.

    Fine-tuning: --init-from W loads the weights strictly (any missing, unexpected or differently shaped key is an
    error); --init-from W --partial loads what matches and lists every skipped key (also in LOGDIR/init_from.json).

    Example: [bold]roofmap train --data-root data/roofs --logdir runs/exp1 --gpus 1 --precision 16[/]
    """
    from roofmapnet.train.run import configure, fit

    cfg, options = configure(
        config,
        {
            **parse_set_options(set_),  # the named flags below win over --set
            "data_root": data_root, "max_epochs": max_epochs, "batch_size": batch_size, "num_workers": num_workers,
            "logdir": logdir, "gpus": gpus, "devices": devices, "num_nodes": num_nodes, "strategy": strategy,
            "precision": precision, "seed": seed, "max_steps": max_steps, "max_minutes": max_minutes,
            "resume_from": resume_from, "init_from": init_from, "partial": partial,
        },
    )  # fmt: skip
    result = fit(cfg, options, notify=notice)
    _print_result(result)


@report_errors
def resume_command(
    target: Annotated[
        Path, typer.Argument(help="A run directory (with checkpoints/last.ckpt and config.yaml) or a .ckpt in one.")
    ],
    data_root: Annotated[
        Path | None,
        typer.Option(help="Data root, if it moved (default: the run's io.datadir).", rich_help_panel="Data"),
    ] = None,
    gpus: GpusOption = None,
    precision: PrecisionOption = "32",
    max_epochs: MaxEpochsOption = None,
    devices: DevicesOption = None,
    num_nodes: NodesOption = 1,
    strategy: StrategyOption = "auto",
    max_steps: MaxStepsOption = -1,
) -> None:
    """Continue an interrupted run exactly: epoch, global step, optimiser and scheduler state.

    Example: [bold]roofmap resume runs/exp1[/]   (or  roofmap resume runs/exp1/checkpoints/last.ckpt)
    """
    from roofmapnet.train.run import configure_resume, fit

    cfg, options = configure_resume(
        target,
        {
            "data_root": data_root, "gpus": gpus, "precision": precision, "max_epochs": max_epochs,
            "devices": devices, "num_nodes": num_nodes, "strategy": strategy, "max_steps": max_steps,
        },
    )  # fmt: skip
    result = fit(cfg, options, notify=notice)
    _print_result(result)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``resume`` to the root app."""
    app.command("train", rich_help_panel="Training")(train_command)
    app.command("resume", rich_help_panel="Training")(resume_command)


def standalone_train_app(argv: list[str] | None = None) -> None:
    """Run ``train_command`` as a program (``python -m roofmapnet.train.main``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
    app.command()(train_command)
    typer.main.get_command(app)(args=argv, prog_name="python -m roofmapnet.train.main")
