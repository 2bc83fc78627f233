"""One count of the CPUs a process may use, for every pool sized by it (embedlake/machine.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = (
    "from embedlake.machine import cores, threads;"
    "from embedlake.index.rabitq import build_threads;"
    "print(cores(), threads(), build_threads())"
)


def _counts(*prefix: str, **env: str) -> list[int]:
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=120,
        check=True,
    )
    return [int(n) for n in proc.stdout.split()]


def test_a_process_pinned_to_one_cpu_counts_one() -> None:
    """``taskset`` (as a container's cpuset does) leaves one CPU: every pool sized by the count
    gets one, not the host's count (os.cpu_count() still says the host's)."""
    assert (os.cpu_count() or 1) >= 2  # else the test could not tell the counts apart
    assert _counts() == [len(os.sched_getaffinity(0))] * 3
    assert _counts("taskset", "-c", "0") == [1, 1, 1]


def test_the_count_follows_joblibs_cap_and_omp_num_threads_caps_threads() -> None:
    assert _counts(LOKY_MAX_CPU_COUNT="1") == [1, 1, 1]
    both = len(os.sched_getaffinity(0))
    assert _counts(OMP_NUM_THREADS="1") == [both, 1, 1]  # rabitqlib's builds follow it too
