"""Exact resume mid-epoch: N steps straight equal k steps, a kill, and a resume to N, parameter for parameter.

The tiny dataset has 6 training images and batch 2: 3 steps per epoch.  Validation runs every 2 steps of the run, so
``last.ckpt`` is written at step 4 (epoch 1, batch 1 of 3: mid-epoch, after one epoch boundary).  The interrupted
run dies at the start of step 5, right after that checkpoint; the resumed run must then draw the same
batches, augmentations and line samples as the uninterrupted one (the loader position and the generators' state
travel in the checkpoint), and end with bit-identical parameters.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from roofmapnet.train.main import resume, train

pytestmark = pytest.mark.usefixtures("one_thread")

N_STEPS = 7
KILL_AT = 4  # the step whose validation wrote last.ckpt; mid-epoch (steps 4-6 are epoch 1)


class _Killed(Exception):
    """Stands for the process dying (the checkpoint on disk is all that survives)."""


class _KillAfter(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise _Killed


class _Final(pl.Callback):
    """The parameters at the end of training, and the names of every batch trained on."""

    def __init__(self) -> None:
        self.params: dict[str, torch.Tensor] = {}
        self.names: list[list[str]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *args: Any) -> None:
        self.names.append(list(batch["name"]))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.params = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _run(tiny_config_path: Path, tiny_data: Path, logdir: Path, callbacks: list[pl.Callback]) -> Any:
    return train(
        tiny_config_path,
        data_root=tiny_data,
        gpus=0,
        max_epochs=10,
        max_steps=N_STEPS,
        logdir=logdir,
        progress=False,
        overrides={"io.validation_interval": 2, "data.augment.vflip": True, "data.augment.rot90": True},
        callbacks=callbacks,
    )


def test_resume_mid_epoch_is_exact(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    straight = _Final()
    _run(tiny_config_path, tiny_data, tmp_path / "straight", [straight])
    assert len(straight.names) == N_STEPS

    run = tmp_path / "interrupted"
    before = _Final()
    with pytest.raises(_Killed):
        _run(tiny_config_path, tiny_data, run, [before, _KillAfter(KILL_AT)])
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (KILL_AT, 1)

    after = _Final()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resume(run, gpus=0, max_steps=N_STEPS, progress=False, callbacks=[after])
    assert before.names[:KILL_AT] + after.names == straight.names
    assert straight.params.keys() == after.params.keys()
    different = [k for k in straight.params if not torch.equal(straight.params[k], after.params[k])]
    assert not different, f"{len(different)} of {len(straight.params)} tensors differ, e.g. {different[0]}"
    # Lightning's "your dataloader is not resumable … unreliable results" warning (issue 16) is gone.
    assert not [w for w in caught if "not resumable" in str(w.message)]
