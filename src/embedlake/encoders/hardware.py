"""What this machine can run fast: instruction sets, a CUDA device (how many cores:
:mod:`embedlake.machine`).

Read at load and build time only, never at import; torch is consulted only where it is installed
(the light serving install has none, and then there is no CUDA either).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path


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
