"""An index's build (``rabitq``, or ``--engine rabitq-hnsw``): this tree against another
commit, same run.

The vectors are bench/ann.py's static-form ones (``static_vectors``: all-MiniLM-L6-v2's static
serving form over bench/scale.py's synthetic documents, cached): the first ``--vectors`` are
indexed, the last 500 are held-out queries. Each build runs in its own process, as a release's
index stage builds it (``tune.add_streamed`` over batches of 20,000: a sample drawn, the lists
trained, every batch coded, the effort tuned to recall@10 0.95 on held-back vectors), from this
tree or, with ``--against REV``, from a checkout of ``REV`` (a git worktree first on
``PYTHONPATH``), the two alternated round by round. Each reports its wall seconds, the effort it
tuned, the recall@10 of the held-out queries at that effort (against exact search) and their
latency one at a time, and the recall curve at fixed efforts, so that a faster build that costs
quality or search time shows.

    .venv/bin/python bench/ann_build.py --vectors 1000000 --against HEAD~1 --rounds 2
    .venv/bin/python bench/ann_build.py --vectors 1000000 --nlist 4096 --against REV  # many lists
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import median, table, write_result
from _common.children import child_result
from _common.timing import alternated, percentile
from _common.trees import env_for, worktree
from _common.vectors import CACHE, exact_top, recall_at_k, static_vectors

HELD_OUT, BATCH, TARGET = 500, 20_000, 0.95
POOL = 1_001_000  # static-form vectors made (and cached) once: indexed ones first
# the efforts whose recall every side reports, by the engine's knob
FIXED = {"nprobe": (8, 12, 16, 24, 32), "ef_search": (12, 16, 24, 32, 48)}


def child(path: Path, n: int, engine: str, nlist: int = 0) -> dict[str, Any]:
    import embedlake
    from embedlake.index import create
    from embedlake.index.tune import add_streamed

    vectors = np.load(path, mmap_mode="r")
    docs, queries = vectors[:n], np.ascontiguousarray(vectors[-HELD_OUT:])
    ids = [str(i) for i in range(n)]
    batches = [(ids[s : s + BATCH], docs[s : s + BATCH]) for s in range(0, n, BATCH)]
    index: Any = create(engine, docs.shape[1], **({"nlist": nlist} if nlist else {}))
    started = time.perf_counter()
    tuning = add_streamed(index, batches, TARGET, train=index.sample_for(n))
    seconds = time.perf_counter() - started
    build_peak = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )  # before the exact search
    assert tuning is not None
    truth = exact_top(docs, queries).tolist()
    found = [[int(i) for i, _ in hits] for hits in index.search(queries, 10)]
    latencies = []
    for query in queries:
        began = time.perf_counter()
        index.search(query[None, :], 10)
        latencies.append((time.perf_counter() - began) * 1000)
    curve = {}
    for effort in FIXED[tuning.knob]:
        setattr(index, tuning.knob, effort)
        curve[str(effort)] = recall_at_k(
            [[int(i) for i, _ in h] for h in index.search(queries, 10)], truth, 10
        )
    return {
        "embedlake": str(Path(embedlake.__file__).parent),
        "seconds": round(seconds, 1),
        "build_peak_mib": round(build_peak),
        # the whole child: the build and the exact search after it (~1 GB of scores at a time)
        "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tuned": tuning.describe(),
        "recall_at_tuned": recall_at_k(found, truth, 10),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "recall_by_effort": curve,
    }


def measure(
    side: str, path: Path, n: int, engine: str, nlist: int, tree: Path | None
) -> dict[str, Any]:
    args = ["--child", str(path), str(n), engine, str(nlist)]
    result = child_result(__file__, *args, env=env_for(tree))
    print(
        f"  {side:<7} {result['seconds']:>7.1f} s  {result['tuned']['knob']} "
        f"{result['tuned']['value']:>3}  "
        f"recall {result['recall_at_tuned']:.4f}  p50 {result['p50_ms']:.3f} ms  "
        f"build peak {result['build_peak_mib']:,} MiB  ({result['embedlake']})",
        flush=True,
    )
    return result | {"side": side}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--engine", default="rabitq", choices=["rabitq", "rabitq-hnsw"])
    parser.add_argument("--against", metavar="REV", help="also build with this commit's code")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--nlist", type=int, default=0, help="rabitq's lists (0: as the engine sizes them)"
    )
    parser.add_argument("--child", nargs=4, metavar=("NPY", "N", "E", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, n, engine, nlist = args.child
        print(json.dumps(child(Path(path), int(n), engine, int(nlist))))
        return
    if not 0 < args.vectors <= POOL - HELD_OUT:
        parser.error(f"--vectors: 1 to {POOL - HELD_OUT:,}")
    path = CACHE / f"static-{POOL}-0.npy"
    if not path.is_file():
        static_vectors(POOL)  # made and cached once: the children memory-map it
    runs: dict[str, list[dict[str, Any]]] = {"this": []}
    with contextlib.ExitStack() as stack:
        trees: dict[str, Path | None] = {"this": None}
        if args.against:
            trees["before"] = stack.enter_context(worktree(args.against))
            runs["before"] = []
        for r in range(args.rounds):
            for side in alternated(list(trees), r):
                runs[side].append(
                    measure(side, path, args.vectors, args.engine, args.nlist, trees[side])
                )
    rows = []
    for side, results in runs.items():
        rows.append(
            [
                side,
                median([x["seconds"] for x in results]),
                "/".join(str(x["tuned"]["value"]) for x in results),
                median([x["recall_at_tuned"] for x in results]),
                median([x["p50_ms"] for x in results]),
                max(x["build_peak_mib"] for x in results),
                " ".join(f"{k}:{v:.3f}" for k, v in results[0]["recall_by_effort"].items()),
            ]
        )
    print()
    headers = [
        "side",
        "build s",
        "effort",
        "recall@10",
        "p50 ms",
        "build peak MiB",
        "recall by effort",
    ]
    print(table(headers, rows))
    payload: dict[str, Any] = {"vectors": args.vectors, "engine": args.engine, "runs": runs}
    payload["nlist"] = args.nlist
    payload["against"] = args.against
    if args.against:
        pairs = zip(runs["this"], runs["before"], strict=True)
        payload["build_speedup"] = median([b["seconds"] / a["seconds"] for a, b in pairs])
        print(f"\nbuild: before ÷ this = {payload['build_speedup']:.2f}× (median of rounds)")
    suffix = ("" if args.engine == "rabitq" else f"_{args.engine}") + (
        f"_nlist{args.nlist}" if args.nlist else ""
    )
    write_result(f"ann_build_{args.vectors}{suffix}", payload)


if __name__ == "__main__":
    main()
