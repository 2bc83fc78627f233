"""A release's BM25 at scale: the streamed build (search/bm25_build.py) against bm25s's own build
over every passage at once (``passage_bm25``, what a release ran before), same corpus, same run.

Documents are bench/scale.py's synthetic ones (real sentences of the shared collections, ~1 KB),
ingested once into a workspace kept in ``--keep``. Each build then runs in its own process and
reports its wall seconds and its peak RSS (``getrusage``) over the process's base after opening
the workspace; then both indexes answer the same 200 queries (sentences of other synthetic
documents), whose results must agree. A third side, ``one-process``, is the streamed build
tokenised in its own process alone: the anchor of the pool of a process per core (its files
must be the streamed side's, byte for byte).

    .venv/bin/python bench/bm25_build.py --docs 1000000 --keep /tmp/bm25-1m
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import median, table, write_result
from _common.children import child_result
from _common.timing import alternated


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(ws_path: Path, how: str, out: Path) -> dict[str, Any]:
    from embedlake import Workspace
    from embedlake.search import bm25_build
    from embedlake.search.bm25 import IDS
    from embedlake.search.searcher import passage_bm25, passage_units

    with Workspace.open(ws_path) as ws:
        base = _peak_mib()
        started = time.perf_counter()
        if how == "whole":  # and saved as the release saved it (bm25s's files, the ids)
            bm25 = passage_bm25(ws, {})
            bm25._retriever.save(str(out), show_progress=False)
            (out / IDS).write_text(json.dumps({"ids": bm25.ids, "stem": bm25.stem}))
        else:  # tokenised by a process per core, or (the anchor for that) by this one
            processes = 1 if how == "one-process" else None
            bm25_build.build(passage_units(ws, {}), out, stem=True, processes=processes)
        return {
            "how": how,
            "seconds": round(time.perf_counter() - started, 1),
            "peak_over_base_mib": round(_peak_mib() - base),
            "base_mib": round(base),
            # the largest tokenising worker's peak (0: none ran)
            "worker_peak_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        }


def _agree(folders: dict[str, Path], queries: list[str]) -> dict[str, Any]:
    from embedlake.search.bm25 import Bm25

    results = {how: Bm25.load(folder).search(queries, 10) for how, folder in folders.items()}
    a, b = results["whole"], results["streamed"]
    same = sum([d for d, _ in x] == [d for d, _ in y] for x, y in zip(a, b, strict=True))
    gap = max(
        (
            abs(s - t) / max(abs(s), 1e-9)
            for x, y in zip(a, b, strict=True)
            for (_, s), (_, t) in zip(
                x, y, strict=False
            )  # lists of different lengths: up to the shorter
        ),
        default=0.0,
    )
    return {"queries": len(queries), "same_top10": same, "max_relative_score_gap": gap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="workspace folder, reused when it exists")
    parser.add_argument("--child", nargs=3, metavar=("WS", "HOW", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(Path(args.child[0]), args.child[1], Path(args.child[2]))))
        return

    from scale import generate

    root = args.keep or Path(tempfile.mkdtemp(prefix="embedlake-bm25-"))
    root.mkdir(parents=True, exist_ok=True)
    ws_path = root / "ws"
    if not ws_path.exists():
        corpus = root / "docs.jsonl"
        generate(corpus, args.docs)
        embedlake = [sys.executable, "-m", "embedlake"]
        subprocess.run([*embedlake, "init", str(ws_path)], check=True)
        subprocess.run([*embedlake, "ingest", str(ws_path), str(corpus)], check=True)
        queries_file = root / "queries.jsonl"
        generate(queries_file, 200, seed=1)
    queries = [json.loads(line)["text"][:200] for line in (root / "queries.jsonl").open()]
    runs: dict[str, list[dict[str, Any]]] = {"whole": [], "streamed": [], "one-process": []}
    folders = {how: root / f"bm25-{how}" for how in runs}
    for r in range(args.rounds):
        for how in alternated(list(runs), r):
            runs[how].append(
                child_result(__file__, "--child", str(ws_path), how, str(folders[how]))
            )
            print(f"round {r} {how}: {runs[how][-1]}", flush=True)
    agree = _agree(folders, queries)
    rows = [
        [
            how,
            f"{median([x['seconds'] for x in got]):.1f}",
            f"{max(x['peak_over_base_mib'] for x in got):,}",
            f"{max(x['worker_peak_mib'] for x in got):,}",
        ]
        for how, got in runs.items()
    ]
    headers = ["build", "seconds (median)", "peak over base MiB (max)", "worker peak MiB"]
    print(table(headers, rows))
    pairs = zip(runs["one-process"], runs["streamed"], strict=True)
    speedup = median([a["seconds"] / b["seconds"] for a, b in pairs])
    agree["same_files_as_one_process"] = all(
        (folders["streamed"] / f.name).read_bytes() == f.read_bytes()
        for f in folders["one-process"].iterdir()
    )
    print(f"agreement: {agree}\nstreamed on every core ÷ one process: {speedup:.2f}× faster")
    payload = {"docs": args.docs, "runs": runs, "agreement": agree, "cores_speedup": speedup}
    write_result(f"bm25_build_{args.docs}", payload)


if __name__ == "__main__":
    main()
