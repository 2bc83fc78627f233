"""The load on a shared machine: load averages, CPU shares, and waiting until it is quiet.

Two ways of telling a benchmark's own work from noise: ``own_ticks`` counts this process, its
reaped children and named server processes; ``tree_ticks`` counts this process and all its
descendants. ``timed_quietly`` redoes a measurement that other work overlapped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
# the scripts whose runs a quiet measurement waits for (a name may carry a suffix: api_search)
SCRIPTS = "api|embed|ann|release|ingest|quality|runtime|finetune|map"
OTHER_MAX = 0.15  # a measurement during which other processes used more of the machine is redone
WAITED = [0.0]  # seconds spent waiting for other benchmarks (or test runs) to finish


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where /proc cannot be read)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def cpu_jiffies() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return fields[3] + fields[4], sum(fields[:8])


def own_ticks(pids: Sequence[int]) -> int:
    """CPU time (clock ticks) of this script, its reaped children and ``pids`` (servers)."""
    hz = os.sysconf("SC_CLK_TCK")
    t = os.times()
    ticks = round((t.user + t.system + t.children_user + t.children_system) * hz)
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def wait_idle(pids: Sequence[int], window: float = 0.5, timeout: float = 120) -> float:
    """Wait until ``pids`` use under 5% of a core over ``window`` (a server still answering the
    requests queued when a load generator stopped would slow whatever runs next); gives the
    seconds waited."""
    started = time.perf_counter()
    hz = os.sysconf("SC_CLK_TCK")
    before = own_ticks(pids) - own_ticks(())
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = own_ticks(pids) - own_ticks(())
        if now - before <= 0.05 * window * hz:
            break
        before = now
    return time.perf_counter() - started


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, utime + stime + those of its reaped children) of every process."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
        except (OSError, ValueError, IndexError):
            continue
    return stats


def tree_ticks() -> int:
    """CPU ticks of this process and all its descendants: the servers, browsers and CLI commands
    it starts are its own work, not noise."""
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0))[1]
        todo += children.get(pid, [])
    return total


def cpu_reading() -> tuple[int, int, int]:
    """(idle, total) jiffies of the machine and the CPU ticks of this process tree."""
    idle, total = cpu_jiffies()
    if not total:
        return 0, 0, 0
    return idle, total, tree_ticks()


def shares(before: tuple[int, int, int], after: tuple[int, int, int]) -> dict[str, float]:
    """Shares of the machine's CPU time between two `cpu_reading()`s: busy (all processes) and
    busy with processes outside this process tree (noise)."""
    spent = after[1] - before[1]
    if spent <= 0:
        return {}
    busy = 1 - (after[0] - before[0]) / spent
    own = (after[2] - before[2]) / spent
    return {"machine_cpu_busy": round(busy, 3), "other_cpu": round(max(0.0, busy - own), 3)}


def ancestry() -> set[int]:
    """This process and its parents (a shell that started it may have its name on its line)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def busy() -> bool:
    """Another benchmark script (another run of this one included) or a test run here?"""
    found = subprocess.run(
        ["pgrep", "-f", f"bench/({SCRIPTS})(_\\w+)?\\.py|pytest"],
        capture_output=True,
        text=True,
        check=False,
    )
    return bool({int(pid) for pid in found.stdout.split()} - ancestry())


def quiet(limit_s: float = 2400) -> list[float]:
    """Wait (up to ``limit_s``) while another benchmark runs here; the load averages after."""
    deadline, said, started = time.monotonic() + limit_s, False, time.monotonic()
    while busy() and time.monotonic() < deadline:
        if not said:
            print("  waiting for another benchmark (or test run) to finish ...", flush=True)
            said = True
        time.sleep(30)
    WAITED[0] += time.monotonic() - started
    return loadavg()


def timed_quietly(fn: Callable[[], T], tries: int = 3) -> tuple[T, float, dict[str, Any]]:
    """``fn()`` and its wall seconds on a quiet machine: measured again (up to ``tries`` times)
    when another benchmark started meanwhile or other processes took over OTHER_MAX of the CPU.
    The third item records the load averages before the run, CPU shares and the retries."""
    retries = 0
    while True:
        load = quiet()
        before, started = cpu_reading(), time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
        used = shares(before, cpu_reading())
        overlapped = busy() or used.get("other_cpu", 0.0) > OTHER_MAX
        if not overlapped or retries + 1 >= tries:
            break
        retries += 1
        print(
            f"  other work meanwhile (other CPU {used.get('other_cpu', 0):.0%} of the machine): "
            "measuring again",
            flush=True,
        )
    return result, seconds, {"loadavg": load, **used, "retries": retries, "overlapped": overlapped}
