"""Claim: the CLI starts at once. `embedlake --help` and `embedlake status` on a small workspace
(3 documents, SQLite catalog) take ≤ 0.5 s of wall time; before issue 20 they imported
scikit-learn, SciPy, pandas, numba, bm25s and much else (3-4 s here).

Before and after in the same run: "before" is the `src/` of a git revision (default: the commit
before issue 20's CLI work) exported to a temporary folder, "after" is this checkout's. The anchor
is `python -c pass` (the interpreter's own start-up). The commands take turns in each round; the
medians of wall and CPU seconds (user + system of the child) are reported, with each command's
wall time over the anchor's of the same round.

    .venv/bin/python bench/cli_startup.py [--rounds 7] [--before REV]

`--imports`: instead of the two commands, what every process that serves a release pays first:
importing the API app, the searcher and the runtime's built-in functions (`python -c "import M"`),
each side's tree, CPU seconds beside wall (no target: a server or worker starts once).

    .venv/bin/python bench/cli_startup.py --imports --before 73524a9
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, met, table, write_result
from _common.load import loadavg
from _common.timing import paired, rotated

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "beccb97"  # main before issue 20
TARGET_S = 0.5
SERVING = ("embedlake.api.app", "embedlake.search.searcher", "embedlake.functions.builtin")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``argv`` (its output discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def export_src(rev: str, into: Path) -> Path:
    """``src/`` of ``rev``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def small_workspace(into: Path, env: dict[str, str]) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    ws, docs = into / "ws", into / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"_id": str(n), "text": f"document {n}"}) + "\n" for n in range(3))
    )
    for args in (("init", str(ws)), ("ingest", str(ws), str(docs))):
        cli = [sys.executable, "-m", "embedlake.cli.app", *args]
        subprocess.run(cli, env=env, check=True, capture_output=True)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", default=BEFORE, help="git revision measured as 'before'")
    parser.add_argument("--imports", action="store_true", help="the serving modules' imports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = {
            "before": export_src(args.before, Path(tmp)),
            "after": ROOT / "src",
        }
        envs = {k: {**os.environ, "PYTHONPATH": str(src)} for k, src in sides.items()}
        runs: dict[str, tuple[list[str], dict[str, str]]] = {"python -c pass": (
            [sys.executable, "-c", "pass"], dict(os.environ))}  # fmt: skip
        if args.imports:
            for module in SERVING:
                for side, env in envs.items():
                    runs[f"import {module} ({side})"] = (
                        [sys.executable, "-c", f"import {module}"],
                        env,
                    )
        else:
            # a workspace per side, made by that side: the settings file one side writes names
            # settings the other may not know
            spaces = {side: small_workspace(Path(tmp) / side, env) for side, env in envs.items()}
            # `-m embedlake.cli.app`: the module both sides have (`-m embedlake` is new)
            for side, env in envs.items():
                for name, rest in (
                    ("--help", ["--help"]),
                    ("status", ["status", str(spaces[side])]),
                ):
                    argv = [sys.executable, "-m", "embedlake.cli.app", *rest]
                    runs[f"{name} ({side})"] = (argv, env)
        for argv, env in runs.values():  # warm the file cache and the bytecode
            timed(argv, env)
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        load = loadavg()
        for round_ in range(args.rounds):
            for name in rotated(list(runs), round_):
                wall, cpu = timed(*runs[name])
                walls[name].append(wall)
                cpus[name].append(cpu)
    anchor = walls["python -c pass"]
    rows = []
    for name in runs:
        over = median(paired(walls[name], anchor))
        target = "" if "after" not in name or args.imports else met(median(walls[name]) <= TARGET_S)
        rows.append((name, median(walls[name]), median(cpus[name]), f"{over:.1f}", target))
    print(f"load average at start: {load}")
    print(table(["command", "wall s", "CPU s", "wall / anchor", "≤ 0.5 s"], rows))
    write_result(
        "cli_startup-imports" if args.imports else "cli_startup",
        {
            "before": args.before,
            "rounds": args.rounds,
            "load_average": load,
            "wall_s": walls,
            "cpu_s": cpus,
        },
    )


if __name__ == "__main__":
    main()
