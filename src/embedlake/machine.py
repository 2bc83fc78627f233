"""How many CPUs this process may use: the one answer every pool, worker count and thread count
is sized by (search threads, embedding and runtime worker processes, BM25 tokenisers, index builds,
encoder sessions).

Read when asked, never at import. The count is joblib's (loky's), which takes the smallest of the
host's CPUs, this process's affinity (``taskset``, a container's cpuset) and a cgroup's CPU quota
(a container's ``--cpus``, a Kubernetes CPU limit): a process in a 2-CPU container on a 64-core
host that sized its pools by ``os.cpu_count()`` started 64 embedding workers, each with a model.
"""

from __future__ import annotations

import os
from functools import cache


@cache
def cores() -> int:
    """CPUs this process may use (``LOKY_MAX_CPU_COUNT`` caps it, as it does for joblib)."""
    from joblib import cpu_count  # ~0.15 s to import: only where a count is needed

    return max(1, int(cpu_count()))


def threads() -> int:
    """Threads one computation of this process may use: ``OMP_NUM_THREADS`` where it is set, else
    :func:`cores`. torch and faiss already follow that variable; ONNX Runtime, OpenVINO and
    rabitqlib do not, so without this a process told to compute on one thread (a Ray actor of one
    CPU, a worker beside others) ran them on every core, each thread spinning against the others."""
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return min(int(asked), cores())
    return cores()
