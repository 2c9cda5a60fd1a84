"""Peak-RSS measurement used by the benchmarks (each case in a fresh interpreter, so that earlier tests'
allocations do not hide what is measured)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

MEASURE = """
import json
import numpy as np
from roofmapnet.utils.memory import peak_rss_mib
before = peak_rss_mib()
block = np.ones(160 * 2**20 // 8)  # 160 MiB, touched
during = peak_rss_mib()
del block
print(json.dumps([before, during, peak_rss_mib()]))
"""


def _run(code: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_rss_counts_an_allocation_and_is_a_high_water_mark() -> None:
    before, during, after = _run(MEASURE)
    assert 150 <= during - before <= 200
    assert after >= during - 1  # freeing does not lower the peak (the kernel counts RSS in per-CPU batches)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_process_does_not_inherit_its_parents_peak() -> None:
    # ru_maxrss survives exec: a child of a 300 MiB parent would report 300+ MiB from its first instruction.
    parent = textwrap.dedent(
        """
        import json, subprocess, sys
        import numpy as np
        from roofmapnet.utils.memory import peak_rss_mib
        block = np.ones(300 * 2**20 // 8)
        code = "from roofmapnet.utils.memory import peak_rss_mib; print(peak_rss_mib())"
        child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        print(json.dumps([peak_rss_mib(), child]))
        """
    )
    parent_peak, child_peak = _run(parent)
    assert parent_peak > 300
    assert child_peak < 200
