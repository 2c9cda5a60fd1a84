"""Peak memory of the running process (benchmarks report it beside every speed figure)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of the process's own address space,
    which starts afresh at ``exec``.  ``getrusage``'s ``ru_maxrss`` does not: a process started by fork + exec
    inherits its parent's peak, so a small benchmark child of a large driver would report the driver's memory.
    Elsewhere (no ``/proc``) ``ru_maxrss`` is used (bytes on macOS, KiB on other systems).
    """
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
