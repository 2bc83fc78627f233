"""HTTP load with wrk on loopback: a Lua script that rotates through prepared POST bodies, wrk's
output read into numbers, and the machine's CPU shares while it ran."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common.load import cpu_jiffies, loadavg, own_ticks, wait_idle
from _common.timing import median

WRK = shutil.which("wrk") or "/usr/bin/wrk"

LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local requests, n = {}, 0
init = function(args)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", "%(path)s", headers, body)
  end
  n = math.random(#requests) - 1  -- threads start at different bodies
end
request = function()
  n = n %% #requests + 1
  return requests[n]
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass
class Target:
    """What wrk loads: ``path`` of the server at ``url``, with these bodies and bearer key;
    ``pids``: the server's processes (their CPU is not counted as other work)."""

    url: str
    path: str
    bodies: Sequence[str]
    key: str = ""
    pids: Sequence[int] = ()


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, request count, latency percentiles (ms), non-2xx and socket errors."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if rps is None or done is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    out: dict[str, Any] = {
        "rps": float(rps.group(1)),
        "requests": int(done.group(1)),
        "non_2xx": 0,
        "socket_errors": None,
    }
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)\s*$", output, re.M):
        out[f"p{pct}_ms"] = _ms(value)
    avg = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", output)
    if avg:
        out["mean_ms"], out["stdev_ms"], out["max_ms"] = (_ms(avg.group(i)) for i in (1, 2, 3))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad:
        out["non_2xx"] = int(bad.group(1))
    errors = re.search(r"Socket errors: (.*)", output)
    if errors:
        out["socket_errors"] = errors.group(1).strip()
    return out


def _script(target: Target, folder: Path, label: str) -> Path:
    body_file = folder / f"{label}.jsonl"
    body_file.write_text("".join(b + "\n" for b in target.bodies), encoding="utf-8")
    script = folder / f"{label}.lua"
    script.write_text(LUA % {"bodies": body_file, "key": target.key, "path": target.path})
    return script


def _wrk(target: Target, script: Path, threads: int, connections: int, duration: float) -> str:
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    cmd += ["--timeout", "60s", "-s", str(script), f"{target.url}{target.path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 120)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    return done.stdout


def run_wrk(
    target: Target, threads: int, connections: int, duration: float, folder: Path, label: str
) -> dict[str, Any]:
    """One wrk run, after the servers went idle; with the load before it and the CPU shares."""
    script = _script(target, folder, label)
    waited = wait_idle(target.pids)
    load, (idle0, total0), own0 = loadavg(), cpu_jiffies(), own_ticks(target.pids)
    output = _wrk(target, script, threads, connections, duration)
    (idle1, total1), own1 = cpu_jiffies(), own_ticks(target.pids)
    result = parse_wrk(output)
    spent, idle = total1 - total0, idle1 - idle0
    result.update(
        {
            "threads": threads,
            "connections": connections,
            "duration_s": duration,
            "loadavg": load,  # before the run: the 1, 5 and 15 minute load averages
            "waited_idle_s": waited,  # for the servers to finish what earlier runs left queued
            # shares of the machine's CPU time during the run: busy (every process), and busy
            # with processes other than this script, wrk and the servers (other work: noise)
            "machine_cpu_busy": 1 - idle / spent if spent > 0 else None,
            "other_cpu": max(0.0, (spent - idle - (own1 - own0)) / spent) if spent > 0 else None,
        }
    )
    if result["non_2xx"]:
        print(f"    WARNING: {result['non_2xx']} non-2xx responses", flush=True)
    return result


def show(label: str, r: dict[str, Any], per_request: int = 1) -> None:
    """One line for one wrk run."""
    docs = (
        f" ({r['docs_per_s']:6.1f} docs/s steady; wrk's count {r['docs_per_s_wrk']:6.1f}; "
        f"{r['requests']} requests)"
        if per_request > 1
        else ""
    )
    print(
        f"  {label:<26} c{r['connections']:<3} {r['rps']:9.1f} req/s{docs}  p50 "
        f"{r.get('p50_ms', float('nan')):8.2f} ms  p99 {r.get('p99_ms', float('nan')):8.2f} ms  "
        f"load {' '.join(f'{x:.2f}' for x in r['loadavg'])}, busy "
        f"{r['machine_cpu_busy'] or 0:.0%}, others {r['other_cpu'] or 0:.0%}",
        flush=True,
    )


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of one target's runs; request and error counts summed."""
    keys = ["rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms"]
    out: dict[str, Any] = {k: median([r[k] for r in runs if k in r]) for k in keys}
    out["requests"] = sum(r["requests"] for r in runs)
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    out["connections"] = runs[0]["connections"]
    return out
