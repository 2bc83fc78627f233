"""What every result file holds (machine facts, date, command line) and how tables are printed."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

# EMBEDLAKE_BENCH_RESULTS: another folder (a smoke run must not overwrite the recorded results)
RESULTS = Path(
    os.environ.get("EMBEDLAKE_BENCH_RESULTS", Path(__file__).resolve().parent.parent / "results")
)
PACKAGES = ("embedlake", "faiss-cpu", "hnswlib", "torch", "sentence-transformers", "bm25s")


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo ("" where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions(),
        "argv": sys.argv,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def met(ok: bool) -> str:
    """How a target is reported: no script asserts on timings; a missed one is printed as missed."""
    return "met" if ok else "MISSED"


def number(x: float | None, digits: int = 1) -> str:
    """``x`` with thousands separators and ``digits`` decimals ("" for None)."""
    return "" if x is None else f"{x:,.{digits}f}"


def ratio_text(a: float, b: float) -> str:
    """``a / b`` with one decimal ("" where ``b`` is 0)."""
    return f"{a / b:.1f}" if b else ""


def verdict(ratio: float, target: float, at_most: bool = False) -> str:
    """A ratio beside its target, e.g. ``0.812 (≥ 0.7: met)``."""
    ok = ratio <= target if at_most else ratio >= target
    return f"{ratio:.3f} ({'≤' if at_most else '≥'} {target}: {met(ok)})"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/NAME.json: the machine first, then the payload."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"\nwrote {path}")
    return path
