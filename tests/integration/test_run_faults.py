"""Faults while training: a checkpoint that cannot be written, SIGTERM, and a second run into a directory.

The write failure is injected (``OSError(ENOSPC)`` from the writer): tests may run as root, where a read-only
directory does not stop writes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO
from typer.testing import CliRunner

from roofmapnet.cli.app import app
from roofmapnet.errors import CheckpointError
from roofmapnet.train.main import resume, train
from roofmapnet.train.rundir import LOCK_NAME

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS_PER_EPOCH = 3  # 6 train images, batch 2


def test_checkpoint_write_failure_names_the_path_and_keeps_the_previous_one(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = TorchCheckpointIO.save_checkpoint

    def disk_full(self: Any, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if checkpoint["global_step"] >= 2 * STEPS_PER_EPOCH:  # the second epoch's checkpoints: the disk is full
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", disk_full)
    run = tmp_path / "full"
    with pytest.raises(CheckpointError) as exc:
        train(tiny_config_path, data_root=tiny_data, gpus=0, max_epochs=3, logdir=run, progress=False)
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(str(run / "checkpoints") + os.sep)
    assert ": cannot write the checkpoint: No space left on device" in text
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == STEPS_PER_EPOCH  # the first epoch's checkpoint, intact
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert not (run / LOCK_NAME).exists()


def test_sigterm_saves_a_resumable_checkpoint(tiny_config_path: Path, tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "term"
    cmd = [
        sys.executable, "-m", "roofmapnet.train.main", "--config", str(tiny_config_path), "--data-root",
        str(tiny_data), "--logdir", str(run), "--gpus", "0", "--max-epochs", "200",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not last.is_file():
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == proc.pid
        time.sleep(0.5)  # somewhere in the second epoch
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "error: stopped by SIGTERM at epoch " in err
    assert f"continue with `roofmap resume {run}`" in " ".join(err.split())
    assert not (run / LOCK_NAME).exists()
    saved = torch.load(last, map_location="cpu", weights_only=True)
    step = saved["global_step"]
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert step == STEPS_PER_EPOCH * loader["epoch"] + loader["batches"]  # the data position of that very step
    result = resume(run, gpus=0, max_epochs=saved["epoch"] + 2, progress=False)
    assert result.global_step == STEPS_PER_EPOCH * (saved["epoch"] + 2)


def test_a_new_run_never_overwrites_and_resume_refuses_a_directory_in_use(
    tiny_config_path: Path, tiny_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "exp"
    args = ["train", "--config", str(tiny_config_path), "--data-root", str(tiny_data), "--gpus", "0"]
    first = CliRunner().invoke(app, [*args, "--logdir", str(run), "--max-steps", "1"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, [*args, "--logdir", str(run), "--max-steps", "1"])
    assert second.exit_code == 0, second.output
    out = " ".join(second.output.split())
    assert f"{run} already holds a run: this one writes to {tmp_path / 'exp-2'}" in out
    assert (tmp_path / "exp-2" / "checkpoints").is_dir()
    # A live process holds the first run: resume refuses, in one line.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
        owner = {"pid": holder.pid, "host": socket.gethostname(), "started": "now", "proc_start": start, "command": "x"}
        (run / LOCK_NAME).write_text(json.dumps(owner), encoding="utf-8")
        busy = CliRunner().invoke(app, ["resume", str(run), "--gpus", "0", "--max-steps", "2"])
    finally:
        holder.kill()
        holder.wait()
    assert busy.exit_code == 1
    assert f"error: {run} is in use by another run (pid {holder.pid} on " in " ".join(busy.output.split())
    # The holder is gone: its lock is stale and resume takes it over.
    again = CliRunner().invoke(app, ["resume", str(run), "--gpus", "0", "--max-steps", "2"])
    assert again.exit_code == 0, again.output
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 2
