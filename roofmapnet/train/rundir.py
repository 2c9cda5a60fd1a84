"""One run per directory: the run-directory rule and the lock that enforces it.

* A **new** run (``roofmap train`` without ``--resume-from`` into its own directory) never writes into a directory
  that already holds a run (``config.yaml``, ``checkpoints/``, TensorBoard events or a lock): it takes the next
  free name, ``exp`` → ``exp-2`` → ``exp-3`` …, and says so.  Nothing of the earlier run is overwritten or mixed
  with the new one; ``resume`` is how a run is continued.
* A run **continued** in place (``roofmap resume RUN_DIR``, or ``--resume-from`` a checkpoint inside the logdir)
  uses its directory.
* Either way the process holds ``RUN_DIR/.roofmap.lock`` (pid, host, process start time, command) while it
  trains.  A second process that finds a live lock refuses with a message naming the owner; a lock whose process
  is gone (a killed run: same host, no such pid, or the pid now belongs to a process started later) is stale and
  is taken over.  A lock from another host cannot be checked and is respected.

Only global rank 0 claims directories and locks; the other ranks of a distributed run use the directory rank 0
chose (``ROOFMAP_RUN_DIR``, set for the processes Lightning launches).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roofmapnet.errors import RoofMapError

LOCK_NAME = ".roofmap.lock"
#: The directory rank 0 chose, for the ranks Lightning launches as new processes.
RUN_DIR_ENV = "ROOFMAP_RUN_DIR"


class RunDirInUseError(RoofMapError):
    """Another live process trains in this run directory."""


def env_global_rank() -> int:
    """This process's global rank as launchers announce it (0 when not launched as a distributed worker)."""
    for var in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return 0 if node == 0 and local == 0 else max(1, node + local)


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` already holds a training run."""
    if not folder.is_dir():
        return False
    marks = ("config.yaml", "checkpoints", LOCK_NAME)
    return any((folder / m).exists() for m in marks) or any(folder.glob("events.out.tfevents.*"))


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or ``None``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 counts from 1 and includes pid and (comm)


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock, as written in the lock file."""

    pid: int
    host: str
    started: str
    proc_start: str | None
    command: str

    @classmethod
    def me(cls) -> LockOwner:
        """This process."""
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else ""
        return cls(os.getpid(), socket.gethostname(), started, _proc_start(os.getpid()), command)

    def alive(self) -> bool:
        """Whether the owner may still run (always ``True`` for another host: it cannot be checked)."""
        if self.host != socket.gethostname():
            return True
        if self.pid <= 0:  # an unreadable lock file
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # another user's live process
            return True
        start = _proc_start(self.pid)
        return self.proc_start is None or start is None or start == self.proc_start

    def describe(self) -> str:
        """``pid N on HOST since T (COMMAND)``."""
        return f"pid {self.pid} on {self.host} since {self.started}" + (f" ({self.command})" if self.command else "")


def _read_owner(path: Path) -> LockOwner | None:
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
        return LockOwner(
            int(data["pid"]), str(data["host"]), str(data["started"]), data.get("proc_start"), str(data["command"])
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # half-written or foreign: treated as held by nobody alive
        return LockOwner(-1, socket.gethostname(), "?", None, "unreadable lock file")


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


class RunLock:
    """``RUN_DIR/.roofmap.lock`` held by this process; :meth:`release` (or the context manager) removes it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self.owner = LockOwner.me()
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock, taking over a stale one.

        Raises:
            RunDirInUseError: a live process holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.owner.__dict__)
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _read_owner(self.path)
                if other is None:
                    continue  # released meanwhile
                if other.pid <= 0 and _age(self.path) < 2.0:  # being written by its owner this very moment
                    time.sleep(0.2)
                    continue
                if other.pid == self.owner.pid and other.host == self.owner.host:
                    other = None  # left by this very process (an earlier run in it that died): ours to take
                elif other.alive():
                    msg = (
                        f"{self.path.parent} is in use by another run ({other.describe()}; lock file {self.path}): "
                        "wait for it to finish or stop it"
                    )
                    raise RunDirInUseError(msg) from None
                # Stale: move it aside atomically (one taker wins), then create ours.
                aside = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
                try:
                    self.path.replace(aside)
                except FileNotFoundError:
                    continue
                aside.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.held = True
            return self
        msg = f"{self.path}: could not take the run lock (another process keeps taking it)"
        raise RunDirInUseError(msg)

    def release(self) -> None:
        """Remove the lock if this process still holds it."""
        if not self.held:
            return
        self.held = False
        owner = _read_owner(self.path)
        if owner is not None and owner.pid == self.owner.pid and owner.host == self.owner.host:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(logdir: Path, *, continuing: bool) -> tuple[Path, RunLock | None]:
    """The directory a run writes to, locked (see the module docstring).

    Args:
        logdir: the configured ``io.logdir``.
        continuing: the run continues the one in ``logdir`` (resume): use it even though it holds a run.

    Returns:
        ``(run_dir, lock)``; ``lock`` is ``None`` on ranks other than 0.

    Raises:
        RunDirInUseError: ``continuing`` and a live process trains in ``logdir``.
    """
    chosen = os.environ.get(RUN_DIR_ENV)
    if env_global_rank() != 0:
        return (Path(chosen) if chosen else logdir), None
    if continuing:
        lock = RunLock(logdir).acquire()
        os.environ[RUN_DIR_ENV] = str(logdir)
        return logdir, lock
    candidates = [logdir, *(logdir.with_name(f"{logdir.name}-{i}") for i in range(2, 10_000))]
    for candidate in candidates:
        if holds_run(candidate):
            continue
        try:
            lock = RunLock(candidate).acquire()
        except RunDirInUseError:  # another new run claimed it a moment ago
            continue
        if (candidate / "config.yaml").exists() or (candidate / "checkpoints").exists():
            lock.release()  # a run appeared between the check and the lock
            continue
        os.environ[RUN_DIR_ENV] = str(candidate)
        return candidate, lock
    msg = f"{logdir}: no free run directory name ({logdir.name}-2 … {logdir.name}-9999 all hold runs)"
    raise RoofMapError(msg)
