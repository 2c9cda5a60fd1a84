"""One run per directory: the lock (live, stale, foreign host) and the next-free-name rule."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from roofmapnet.train import rundir
from roofmapnet.train.rundir import LOCK_NAME, RunDirInUseError, RunLock, claim_run_dir, holds_run


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(autouse=True)
def rank_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "RANK",
        "SLURM_PROCID",
        "JSM_NAMESPACE_RANK",
        "LOCAL_RANK",
        "NODE_RANK",
        "GROUP_RANK",
        rundir.RUN_DIR_ENV,
    ):
        monkeypatch.delenv(var, raising=False)


def _write_lock(run: Path, pid: int, host: str | None = None, proc_start: str | None = None) -> None:
    run.mkdir(parents=True, exist_ok=True)
    owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01 00:00:00 UTC",
             "proc_start": proc_start, "command": "roofmap train --logdir run"}  # fmt: skip
    (run / LOCK_NAME).write_text(json.dumps(owner), encoding="utf-8")


def test_a_live_lock_refuses_naming_the_owner(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    run = tmp_path / "run"
    _write_lock(run, sleeper.pid, proc_start=rundir._proc_start(sleeper.pid))
    with pytest.raises(RunDirInUseError) as exc:
        RunLock(run).acquire()
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{run} is in use by another run (pid {sleeper.pid} on {socket.gethostname()} since ")
    assert f"lock file {run / LOCK_NAME}" in text
    with pytest.raises(RunDirInUseError):
        claim_run_dir(run, continuing=True)


def test_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    _write_lock(run, dead.pid)
    lock = RunLock(run).acquire()
    assert json.loads((run / LOCK_NAME).read_text())["pid"] != dead.pid
    lock.release()
    assert not (run / LOCK_NAME).exists()


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    run = tmp_path / "run"
    _write_lock(run, sleeper.pid, proc_start="1")  # the pid is alive, but it is not the process that locked
    with RunLock(run):
        assert (run / LOCK_NAME).is_file()


def test_a_lock_from_another_host_is_respected(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_lock(run, 1, host="some-other-host")
    with pytest.raises(RunDirInUseError, match="pid 1 on some-other-host"):
        RunLock(run).acquire()


def test_a_half_written_lock_is_stale(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text('{"pid": 12', encoding="utf-8")
    with RunLock(run):
        pass


def test_new_runs_take_the_next_free_name(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    first, lock1 = claim_run_dir(exp, continuing=False)
    assert first == exp
    assert holds_run(exp)  # the lock alone marks it
    second, lock2 = claim_run_dir(exp, continuing=False)
    assert second == tmp_path / "exp-2"
    assert lock1 is not None
    assert lock2 is not None
    lock1.release()
    lock2.release()
    (exp / "config.yaml").write_text("{}", encoding="utf-8")  # a finished run
    (tmp_path / "exp-2").mkdir(exist_ok=True)  # an empty folder is free
    third, lock3 = claim_run_dir(exp, continuing=False)
    assert third == tmp_path / "exp-2"
    assert lock3 is not None
    lock3.release()
    again, lock4 = claim_run_dir(exp, continuing=True)  # resume continues in place
    assert again == exp
    assert lock4 is not None
    lock4.release()


def test_other_ranks_neither_lock_nor_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = tmp_path / "exp"
    _write_lock(exp, 1, host="rank-zero-host")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv(rundir.RUN_DIR_ENV, str(tmp_path / "exp-2"))
    assert claim_run_dir(exp, continuing=False) == (tmp_path / "exp-2", None)
