"""``train(init_from=...)`` / ``roofmap train --init-from W [--partial]``: weights loaded, optimiser and step fresh."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.errors import CheckpointError, ConfigError
from roofmapnet.train.main import INIT_REPORT_NAME, train

pytestmark = pytest.mark.usefixtures("one_thread")


class _AtStart(pl.Callback):
    """What the run looks like when its first step is about to run."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.step = trainer.global_step
        self.epoch = trainer.current_epoch
        opt = trainer.optimizers[0]
        self.optimizer = copy.deepcopy(opt.state_dict())
        self.lr = opt.param_groups[0]["lr"]
        self.scheduler_epoch = trainer.lr_scheduler_configs[0].scheduler.last_epoch
        self.weights = {k: v.clone() for k, v in pl_module.model.state_dict().items()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def source_run(tiny_config_path: Path, tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run (2 epochs at lr 2e-3) whose last.ckpt carries an optimiser state and a schedule."""
    run = tmp_path_factory.mktemp("source")
    train(
        tiny_config_path, data_root=tiny_data, gpus=0, max_epochs=2, logdir=run, progress=False,
        overrides={"optim.lr": 0.002, "optim.lr_decay_epoch": 1},
    )  # fmt: skip
    return run / "checkpoints" / "last.ckpt"


def test_init_from_ckpt_starts_a_fresh_run_from_its_weights(
    source_run: Path, tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    saved = torch.load(source_run, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 6
    assert saved["optimizer_states"][0]["state"]
    start = _AtStart()
    result = train(
        tiny_config_path, data_root=tiny_data, gpus=0, logdir=tmp_path / "ft", progress=False, max_steps=1,
        overrides={"optim.lr": 0.0005}, init_from=source_run, callbacks=[start],
    )  # fmt: skip
    want = {k.removeprefix("model."): v for k, v in saved["state_dict"].items() if k.startswith("model.")}
    assert start.weights.keys() == want.keys()
    assert all(torch.equal(start.weights[k], v) for k, v in want.items())
    # Optimiser, schedule and counters are those of a new run with the new config.
    assert start.step == 0
    assert start.epoch == 0
    assert start.optimizer["state"] == {}
    assert start.lr == 0.0005
    assert start.scheduler_epoch == 0
    assert result.global_step == 1
    assert result.init_report is not None
    assert result.init_report.skipped == 0
    report = json.loads((tmp_path / "ft" / INIT_REPORT_NAME).read_text())
    assert report == {"source": str(source_run), "loaded": len(want), "missing": [], "unexpected": [], "mismatched": []}


def test_init_from_and_resume_from_exclude_each_other(
    source_run: Path, tiny_config_path: Path, tiny_data: Path
) -> None:
    with pytest.raises(ConfigError, match="give only one of them"):
        train(tiny_config_path, data_root=tiny_data, gpus=0, init_from=source_run, resume_from=source_run)
    # The library names its fields; the CLI writes them as its flags.
    with pytest.raises(ConfigError, match="partial only applies to init_from") as info:
        train(tiny_config_path, data_root=tiny_data, gpus=0, partial=True)
    assert "--" not in str(info.value)
    cli = CliRunner().invoke(
        app, ["train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--partial"]
    )
    assert cli.exit_code == 2, cli.output
    assert "--partial only applies to --init-from" in cli.output


def test_cli_strict_refuses_another_architecture_and_partial_lists_the_skipped_keys(
    source_run: Path, tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    args = [
        "train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--gpus", "0",
        "--max-steps", "1", "--init-from", str(source_run), "--set", "model.dim_fc=32",
    ]  # fmt: skip
    strict = CliRunner().invoke(app, [*args, "--logdir", str(tmp_path / "strict")])
    assert strict.exit_code == 1, strict.output
    assert "5 shape-mismatched (detection.fc2.0.weight [16, 40] vs [32, 40]" in strict.output
    assert "use --partial" in strict.output
    assert "Traceback" not in strict.output
    assert not (tmp_path / "strict" / "checkpoints").exists()  # refused before anything was written

    run = tmp_path / "partial"
    partial = CliRunner().invoke(app, [*args, "--logdir", str(run), "--partial"])
    assert partial.exit_code == 0, partial.output
    report = json.loads((run / INIT_REPORT_NAME).read_text())
    skipped = [m["key"] for m in report["mismatched"]]
    assert len(skipped) == 5
    assert report["missing"] == report["unexpected"] == []
    text = " ".join(partial.output.split())  # rich wraps long lines
    assert "skipped 5 shape-mismatched" in text
    for key in skipped:
        assert f"skipped {key} (shape:" in text
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_init_from_a_missing_file_is_a_checkpoint_error(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="file not found"):
        train(tiny_config_path, data_root=tiny_data, gpus=0, logdir=tmp_path, init_from=tmp_path / "nope.pth")
