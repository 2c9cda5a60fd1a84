"""Training and resume with Lightning on a tiny config and a tiny synthetic dataset (CPU)."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.train.main import RoofMapNetDataModule, RoofMapNetLightningModule, resume, train

CKPT_NAME = re.compile(r"^roofmapnet-epoch=\d{2}-val_total_loss=\d+\.\d{4}\.ckpt$")
SEED_NAMES = ("train/jmap_loss", "train/joff_loss", "train/lmap_loss", "train/line_cls_loss", "train/total_loss")


def _scalars(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[float]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return values


@pytest.fixture(scope="module")
def trained(tiny_config_path: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    run = tmp_path_factory.mktemp("run")
    result = train(tiny_config_path, data_root=tiny_data, gpus=0, max_epochs=3, logdir=run, progress=False)
    return result


def test_two_epoch_run_writes_seed_checkpoints_logs_and_config(trained: Any) -> None:
    run = trained.run_dir
    ckpts = run / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    best = [p.name for p in ckpts.glob("*.ckpt") if p.name not in ("last.ckpt", "best-sAP10.ckpt")]
    assert 1 <= len(best) <= 3
    assert all(CKPT_NAME.match(name) for name in best), best
    # best-sAP10.ckpt: the checkpoint of the highest validation sAP10, one file, overwritten in place.
    assert trained.best_sap10_checkpoint == ckpts / "best-sAP10.ckpt"
    assert trained.best_sap10_checkpoint.is_file()
    assert not list(ckpts.glob("best-sAP10-v*.ckpt"))
    assert not list(ckpts.glob(".tmp-*"))
    assert (run / "config.yaml").is_file()
    assert trained.epoch == 3
    scalars = _scalars(run)
    for name in (*SEED_NAMES, "val/total_loss", "val/jmap_loss", "val/line_cls_loss", "train/lr", "val/sAP10"):
        assert name in scalars, (name, sorted(scalars))
    for term in ("gauss", "qcc", "lhr", "off", "lv", "sf"):
        assert f"train/loss_{term}" in scalars
    total = scalars["train/total_loss"]
    assert total[-1] < total[0]
    assert trained.best_val_sap10 == pytest.approx(max(scalars["val/sAP10"]), abs=1e-4)
    saved = torch.load(trained.best_sap10_checkpoint, map_location="cpu", weights_only=True)
    epoch_of_best = int(np.argmax(scalars["val/sAP10"]))  # first maximum: a tie does not replace the file
    assert saved["epoch"] == epoch_of_best


def test_checkpoint_loads_with_weights_only_and_via_seed_api(trained: Any) -> None:
    last = trained.last_checkpoint
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["optim"]["max_epoch"] == 3
    module = RoofMapNetLightningModule.load_from_checkpoint(last, map_location="cpu")
    assert module.cfg.model.image_size == 64
    from roofmapnet.models.loading import load_model

    model, cfg = load_model(last)
    assert cfg.model.heatmap_size == 16
    assert torch.equal(model.state_dict()["detection.fc1.weight"], module.model.state_dict()["detection.fc1.weight"])


class _Capture(pl.Callback):
    def __init__(self) -> None:
        self.step: int | None = None
        self.epoch: int | None = None
        self.optimizer: dict[str, Any] | None = None
        self.lr: float | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        opt = trainer.optimizers[0]
        self.optimizer = copy.deepcopy(opt.state_dict())  # the live state is updated in place later
        self.lr = opt.param_groups[0]["lr"]


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


def test_resume_after_sigkill_continues_exactly(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    cmd = [
        sys.executable, "-m", "roofmapnet.train.main", "--config", str(tiny_config_path), "--data-root",
        str(tiny_data), "--logdir", str(run), "--gpus", "0", "--max-epochs", "200",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file():
                first = torch.load(last, map_location="cpu", weights_only=True)
                if first["epoch"] >= 1:
                    break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not list((run / "checkpoints").glob(".tmp-*")) or last.is_file()
    saved = torch.load(last, map_location="cpu", weights_only=True)
    capture = _Capture()
    result = resume(run, gpus=0, max_epochs=saved["epoch"] + 3, progress=False, callbacks=[capture])
    assert capture.step == saved["global_step"]
    assert capture.epoch == saved["epoch"] + 1  # last.ckpt was written at the end of epoch saved["epoch"]
    assert _same_state(capture.optimizer, saved["optimizer_states"][0])
    assert capture.lr == saved["lr_schedulers"][0]["_last_lr"][0]
    steps_per_epoch = 3  # 6 train images, batch 2
    assert result.global_step == saved["global_step"] + 2 * steps_per_epoch
    assert result.epoch == saved["epoch"] + 3


def test_cli_train_overrides_and_resume_command(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "cli"
    args = ["train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--logdir", str(run)]
    result = CliRunner().invoke(app, [*args, "--max-epochs", "1", "--batch-size", "3", "--set", "optim.lr=0.002"])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    cfg = ckpt["hyper_parameters"]["config"]
    assert (cfg["optim"]["max_epoch"], cfg["model"]["batch_size"], cfg["optim"]["lr"]) == (1, 3, 0.002)
    assert ckpt["global_step"] == 2  # 6 images / batch 3
    again = CliRunner().invoke(app, ["resume", str(run), "--max-epochs", "2"])
    assert again.exit_code == 0, again.output
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--data-root", "/nonexistent/data"], 1, "data root not found"),
        (["--set", "model.batch_size=0"], 2, "model.batch_size: Input should be greater than 0"),
        (["--precision", "8"], 2, "--precision"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path, extra: list[str], code: int, message: str
) -> None:
    args = ["train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--logdir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "roofmapnet", *args, *extra], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_empty_split_is_reported(tiny_data: Path, tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "valid").mkdir()
    from roofmapnet.errors import DataError

    with pytest.raises(DataError, match="no samples"):
        RoofMapNetDataModule(tmp_path, RoofMapNetLightningModule().cfg).prepare_data()


def test_nan_loss_stops_with_step_and_term(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from roofmapnet.losses import RoofMapNetLoss
    from roofmapnet.train.module import NonFiniteLossError

    original = RoofMapNetLoss.forward

    def poisoned(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        losses = original(self, *args, **kwargs)
        losses["lv"] = losses["lv"] * float("nan")
        return losses

    monkeypatch.setattr(RoofMapNetLoss, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"global step 0: L_lv=nan"):
        train(tiny_config_path, data_root=tiny_data, gpus=0, max_epochs=1, logdir=tmp_path, progress=False)


def test_ddp_two_cpu_processes(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "roofmapnet", "train", "--config", str(tiny_config_path), "--data-root", str(tiny_data),
        "--logdir", str(run), "--gpus", "0", "--devices", "2", "--strategy", "ddp", "--max-epochs", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 0  # written at the end of the first (and only) epoch
    assert ckpt["global_step"] == 2  # 6 images over 2 ranks, batch 2: ceil(3 / 2) steps


def test_validation_interval_counts_over_the_run_and_the_last_step_is_kept(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    """Validations every 2 steps across 3-step epochs (steps 2, 4) plus one after the last step (5): ``last.ckpt``
    holds the weights of step 5, not those of the last interval's validation (step 4)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "steps"
    args = ["train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--logdir", str(run)]
    extra = ["--max-steps", "5", "--max-epochs", "10", "--set", "io.validation_interval=2"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 5
    acc = EventAccumulator(str(next(run.glob("events.out.tfevents.*"))))
    acc.Reload()
    # Lightning logs a validation at the index of the step it follows (global_step - 1).
    assert [e.step for e in acc.Scalars("val/sAP10")] == [1, 3, 4]
