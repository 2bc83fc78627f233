"""What this machine can run fast: CPU cores and instruction sets, a CUDA device.

Read at load and build time only, never at import; torch is consulted only where it is installed
(the light serving install has none, and then there is no CUDA either).
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path


def cores() -> int:
    """CPUs this process may run on (a container's or taskset's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads() -> int:
    """Threads one computation of this process may use: ``OMP_NUM_THREADS`` where it is set, else
    :func:`cores`. torch and faiss already follow that variable; ONNX Runtime and OpenVINO do not,
    so without this a process told to compute on one thread (a Ray actor of one CPU, a worker
    beside others) ran their sessions on every core, each thread spinning against the others."""
    asked = os.environ.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        return min(int(asked), cores())
    return cores()


@cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16() -> bool:
    """True where bfloat16 matrix products run in hardware (AVX512-BF16 or AMX). Elsewhere torch
    emulates bf16 through fp32 and is slower than fp32 itself, so the bf16 form is not offered."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def vnni() -> bool:
    """True where 8-bit integer dot products run in one instruction (AVX512-VNNI, AVX-VNNI)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cuda() -> bool:
    """A CUDA device usable by torch (False where torch is not installed)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
