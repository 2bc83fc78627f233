"""One count of the CPUs a process may use, for every pool sized by it, and what the libraries
that size their own pools are told (embedlake/machine.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedlake import machine
from embedlake.machine import cap_thread_pools, cpu_quota

COUNTS = (
    "from embedlake.machine import cores, threads;"
    "from embedlake.index.rabitq import build_threads;"
    "print(cores(), threads(), build_threads())"
)
# a process in a cgroup of one CPU's quota (its tree in FAKE_CGROUP, as a container sees its own)
POOLS = (
    "import sys; from pathlib import Path; import embedlake.machine as m;"
    "m.CGROUP = Path(sys.argv[1]); m._own_cgroups = lambda: {'': '/'};"
    "sys.argv[2:] == ['cap'] and m.cap_thread_pools();"
    "import numba, torch; print(m.cores(), numba.get_num_threads(), torch.get_num_threads())"
)


def _whole_machine() -> int:
    """This machine's CPUs, all this process's (the tests below compare counts against that)."""
    both = len(os.sched_getaffinity(0))
    if both < 2 or cpu_quota(machine.CGROUP, machine._own_cgroups()) is not None:
        pytest.skip("needs two CPUs or more and no CPU quota of its own to tell the counts apart")
    return both


def _run(script: str, *prefix: str, args: tuple[str, ...] = (), **env: str) -> list[int]:
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    environ.pop("NUMBA_NUM_THREADS", None)
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=120,
        check=True,
    )
    return [int(n) for n in proc.stdout.split()]


def test_a_process_pinned_to_one_cpu_counts_one() -> None:
    """``taskset`` (as a container's cpuset does) leaves one CPU: every pool sized by the count
    gets one."""
    both = _whole_machine()
    assert _run(COUNTS) == [both] * 3
    assert _run(COUNTS, "taskset", "-c", "0") == [1, 1, 1]


def test_a_cpu_quota_is_told_to_the_libraries_that_size_their_own_pools(tmp_path: Path) -> None:
    """numba and torch (OpenMP) read the affinity, not a quota: in a container of one CPU's
    quota on this 2-CPU machine they start two threads each, unless the entry point caps them."""
    both = _whole_machine()
    fake = str(_files(tmp_path, {"cpu.max": "100000 100000"}))
    assert _run(POOLS, args=(fake,)) == [1, both, both]
    assert _run(POOLS, args=(fake, "cap")) == [1, 1, 1]


def test_omp_num_threads_caps_threads_and_rabitqs_builds() -> None:
    both = _whole_machine()
    assert _run(COUNTS, OMP_NUM_THREADS="1") == [both, 1, 1]


def test_nothing_is_capped_where_every_cpu_may_be_used() -> None:
    _whole_machine()
    environ: dict[str, str] = {}
    cap_thread_pools(environ)
    assert environ == {}  # this machine: no quota, every CPU in the affinity


def _files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    "files, own, expected",
    [
        ({"cpu.max": "max 100000"}, {"": "/"}, None),  # cgroup v2, no limit
        ({"cpu.max": "150000 100000"}, {"": "/"}, 1.5),  # a container's --cpus 1.5
        # a pod's limit above the process's own cgroup (v2): the smallest on the way up counts
        ({"kubepods/cpu.max": "200000 100000", "kubepods/pod1/cpu.max": "max 100000"},
         {"": "/kubepods/pod1"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, {"cpu": "/"}, None),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
         {"cpu,cpuacct": "/"}, 0.5),  # cgroup v1 with its controllers mounted together
        ({"cpu.max": "garbage"}, {"": "/"}, None),  # nonsense
        # a path that climbs out of the root: the limit beside the root is not this process's
        ({"cpu.max": "100000 100000", "inner/x": ""}, {"": "/../.."}, None),
        ({}, {}, None),  # not Linux, or no cgroup file system
    ],
)  # fmt: skip
def test_the_cpu_quota_of_a_cgroup(
    tmp_path: Path, files: dict[str, str], own: dict[str, str], expected: float | None
) -> None:
    root = _files(tmp_path, files)
    assert cpu_quota(root / "inner" if "inner/x" in files else root, own) == expected
