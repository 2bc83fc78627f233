"""How many CPUs this process may use: the one answer every pool, worker count and thread count
is sized by (search threads, embedding and runtime worker processes, BM25 tokenisers, index builds,
encoder sessions), and what the libraries that size their own pools are told.

The count is the smallest of this process's affinity (``taskset``, a container's cpuset) and its
cgroup's CPU quota (a container's ``--cpus``, a Kubernetes CPU limit), rounded up. The host's
count (``os.cpu_count()``) is what most libraries use: in a 2-CPU container on a 64-core host, a
process that sized its pools by it started 64 embedding workers, each with a model, and ran
OpenMP's 64 threads in a quota of two. joblib (loky) counts the same way; it is not used here
because importing it costs ~0.15 s and NumPy, and the CLI's start reads this count.

Read when asked, never at import.
"""

from __future__ import annotations

import math
import os
from collections.abc import MutableMapping
from functools import cache
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
# what the libraries that size their thread pools at import read (OpenMP: torch, faiss, OpenBLAS)
POOL_VARIABLES = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")


@cache
def cores() -> int:
    """CPUs this process may use (its affinity, within its cgroup's CPU quota)."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        allowed = os.cpu_count() or 1
    quota = cpu_quota(CGROUP, _own_cgroups())
    return max(1, min(allowed, math.ceil(quota))) if quota is not None else allowed


def threads() -> int:
    """Threads one computation of this process may use: ``OMP_NUM_THREADS`` where it is set, else
    :func:`cores`. torch and faiss already follow that variable; ONNX Runtime, OpenVINO and
    rabitqlib do not, so without this a process told to compute on one thread (a Ray actor of one
    CPU, a worker beside others) ran them on every core, each thread spinning against the others."""
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return min(int(asked), cores())
    return cores()


def cap_thread_pools(environ: MutableMapping[str, str] = os.environ) -> None:
    """Where this process may use fewer CPUs than the machine has, tell the libraries that size
    their thread pools at import (numba, and OpenMP in torch, faiss and OpenBLAS: they count the
    affinity, never a cgroup's quota), unless they were told already. Called at the entry points
    (the CLI, a serving worker, a cloud container) before those libraries are imported; the
    processes they start inherit it."""
    count = cores()
    if count < (os.cpu_count() or 1):
        for name in POOL_VARIABLES:
            environ.setdefault(name, str(count))


def cpu_quota(root: Path, own: dict[str, str]) -> float | None:
    """The CPU quota, in CPUs, of the cgroup ``own`` names under ``root`` (cgroup v2's ``cpu.max``,
    v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) and of each cgroup above it: the
    smallest found, or None where none limits. ``own``: hierarchy ("" for v2, else the v1
    controllers, e.g. "cpu,cpuacct") → this process's path in it, as /proc/self/cgroup says. In a
    container the root is the container's own cgroup, and its path is "/"."""
    found: list[float] = []
    if "" in own:
        for folder in _upwards(root, own[""]):
            found += _ratio(_read(folder / "cpu.max"))
    for hierarchy, path in own.items():
        if "cpu" in hierarchy.split(","):
            for base in {root / "cpu", root / hierarchy}:
                for folder in _upwards(base, path):
                    pair = _read(folder / "cpu.cfs_quota_us")[:1] + _read(
                        folder / "cpu.cfs_period_us"
                    )
                    found += _ratio(pair)
    return min(found) if found else None


def _own_cgroups() -> dict[str, str]:
    own: dict[str, str] = {}
    for line in _read_text(Path("/proc/self/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            own[parts[1]] = parts[2]
    return own


def _upwards(base: Path, path: str) -> list[Path]:
    """``base``/``path`` and each folder above it up to ``base``."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _ratio(values: list[str]) -> list[float]:
    """[quota ÷ period] from ("200000", "100000"); [] for "max", -1 (no limit) or nonsense."""
    try:
        quota, period = (int(v) for v in values[:2])
    except ValueError:  # "max", not two numbers, or a file missing
        return []
    return [quota / period] if quota > 0 and period > 0 else []


def _read(path: Path) -> list[str]:
    return _read_text(path).split()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
