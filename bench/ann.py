"""ANN: embedlake's HnswIndex vs the raw faiss IndexHNSWFlat it wraps vs raw hnswlib.

Same vectors, same M / efConstruction, one thread everywhere (faiss.omp_set_num_threads(1),
hnswlib num_threads=1), for build and search. Search = one query at a time, k = 10; recall@10 is
against exact (brute-force inner product) search. Two vector sets:

- ``npl``: MiniLM vectors of the npl collection (11,429 documents, embedded by the embedlake pipeline,
  cached outside the repo) with its 93 real queries;
- ``synthetic``: N clustered unit vectors of dim 384 (seeded) with 1,000 held-out queries.

embedlake is measured as built in memory and as saved + loaded back (the serving path, which
memory-maps the faiss file). Claims: embedlake QPS ≥ 0.9× raw faiss QPS; recall@10 ≥ 0.95 at
ef_search 128 (the fixed default before builds tuned it: ``bench/ann_engines.py`` measures the
engines at their tuned effort against hnswlib).

    .venv/bin/python bench/ann.py [--sets npl,synthetic] [--n 100000] [--ef 16,32,64,128,256]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import hnswlib
import numpy as np

from embedlake.index.hnsw import HnswIndex

from _common import median, table, write_result
from _common.timing import passes_per_second, rotated
from _common.vectors import exact_top, npl_vectors, recall_at_k, synthetic

M, EF_CONSTRUCTION, DEFAULT_EF, K = 32, 200, 128, 10
QPS_TARGET, RECALL_TARGET = 0.9, 0.95

Search = Callable[[np.ndarray], Any]
_KEEP: list[tempfile.TemporaryDirectory[str]] = []  # saved indexes, removed at exit


def build_all(docs: np.ndarray) -> dict[str, tuple[Any, float]]:
    dim = docs.shape[1]
    ids = [str(i) for i in range(len(docs))]
    built: dict[str, tuple[Any, float]] = {}

    started = time.perf_counter()
    ours = HnswIndex(dim, m=M, ef_construction=EF_CONSTRUCTION, ef_search=DEFAULT_EF)
    ours.add(ids, docs)
    built["embedlake"] = (ours, time.perf_counter() - started)

    # The serving path: save to a folder, load back (memory-mapped where faiss supports it).
    folder = tempfile.TemporaryDirectory(prefix="embedlake-ann-index-")
    _KEEP.append(folder)
    started = time.perf_counter()
    ours.save(Path(folder.name))
    loaded = HnswIndex.load(Path(folder.name))
    built["embedlake-loaded"] = (loaded, time.perf_counter() - started)

    started = time.perf_counter()
    raw = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = EF_CONSTRUCTION
    raw.add(docs)
    built["faiss"] = (raw, time.perf_counter() - started)

    started = time.perf_counter()
    lib = hnswlib.Index(space="ip", dim=dim)
    lib.init_index(max_elements=len(docs), M=M, ef_construction=EF_CONSTRUCTION, random_seed=0)
    lib.set_num_threads(1)
    lib.add_items(docs, np.arange(len(docs)), num_threads=1)
    built["hnswlib"] = (lib, time.perf_counter() - started)
    return built


def searchers(built: dict[str, tuple[Any, float]], ef: int) -> dict[str, Search]:
    ours, loaded, raw, lib = (
        built[name][0] for name in ("embedlake", "embedlake-loaded", "faiss", "hnswlib")
    )
    ours.ef_search = loaded.ef_search = ef
    raw.hnsw.efSearch = ef
    lib.set_ef(ef)
    return {
        "embedlake": lambda q: ours.search(q, K),
        "embedlake-loaded": lambda q: loaded.search(q, K),
        "faiss": lambda q: raw.search(q, K),
        "hnswlib": lambda q: lib.knn_query(q, k=K, num_threads=1),
    }


def labels(name: str, out: Any) -> list[int]:
    if name.startswith("embedlake"):
        return [int(d) for d, _ in out[0]]
    if name == "faiss":
        return [int(j) for j in out[1][0]]
    return [int(j) for j in out[0][0]]


def run_set(
    name: str, docs: np.ndarray, queries: np.ndarray, efs: list[int], reps: int, min_s: float
) -> dict[str, Any]:
    print(f"\n{name}: {len(docs):,} vectors × {docs.shape[1]}, {len(queries)} queries", flush=True)
    truth = exact_top(docs, queries, K)
    rows_of_one = [queries[i : i + 1] for i in range(len(queries))]
    built = build_all(docs)
    for engine, (_, seconds) in built.items():
        print(f"  build {engine:<10} {seconds:7.1f} s", flush=True)
    rows: list[dict[str, Any]] = []
    for ef in efs:
        funcs = searchers(built, ef)
        row: dict[str, Any] = {"ef_search": ef}
        for engine, fn in funcs.items():
            found = [labels(engine, fn(queries[i : i + 1])) for i in range(len(queries))]
            row[f"{engine}_recall"] = recall_at_k(found, truth, K)
        qps: dict[str, list[float]] = {e: [] for e in funcs}
        order = list(funcs)
        for r in range(reps):  # interleaved, rotating order: noise hits every engine alike
            for engine in rotated(order, r):
                qps[engine].append(passes_per_second(funcs[engine], rows_of_one, min_s))
        for engine, values in qps.items():
            row[f"{engine}_qps"] = median(values)
            row[f"{engine}_qps_runs"] = values
        row["embedlake_vs_faiss"] = row["embedlake_qps"] / row["faiss_qps"]
        row["loaded_vs_faiss"] = row["embedlake-loaded_qps"] / row["faiss_qps"]
        row["hnswlib_vs_faiss"] = row["hnswlib_qps"] / row["faiss_qps"]
        rows.append(row)
        print(
            f"  ef {ef:>4}  QPS embedlake {row['embedlake_qps']:8.0f}  faiss "
            f"{row['faiss_qps']:8.0f}  hnswlib {row['hnswlib_qps']:8.0f}  loaded "
            f"{row['embedlake-loaded_qps']:8.0f}  ratio {row['embedlake_vs_faiss']:.3f}  "
            f"recall {row['embedlake_recall']:.3f}",
            flush=True,
        )
    return {
        "vectors": len(docs),
        "dim": int(docs.shape[1]),
        "queries": len(queries),
        "build_seconds": {e: s for e, (_, s) in built.items()},
        "by_ef": rows,
    }


def table_rows(name: str, res: dict[str, Any]) -> list[list[str]]:
    return [
        [
            name,
            row["ef_search"],
            f"{row['embedlake_qps']:,.0f}",
            f"{row['faiss_qps']:,.0f}",
            f"{row['hnswlib_qps']:,.0f}",
            f"{row['embedlake_vs_faiss']:.3f}",
            f"{row['embedlake-loaded_qps']:,.0f}",
            f"{row['loaded_vs_faiss']:.3f}",
            f"{row['embedlake_recall']:.3f}",
            f"{row['faiss_recall']:.3f}",
            f"{row['hnswlib_recall']:.3f}",
        ]
        for row in res["by_ef"]
    ]


def report(results: dict[str, Any]) -> None:
    """Build seconds of each set, then one table of every set and ef_search."""
    rows = []
    for name, res in results.items():
        b = res["build_seconds"]
        rows += table_rows(name, res)
        print(
            f"\n{name} build seconds: embedlake {b['embedlake']:.1f}, faiss {b['faiss']:.1f}, "
            f"hnswlib {b['hnswlib']:.1f} (embedlake/faiss {b['embedlake'] / b['faiss']:.3f}); "
            f"save + load {b['embedlake-loaded']:.2f}"
        )
    print()
    headers = ["set", "ef", "QPS embedlake", "QPS faiss", "QPS hnswlib", "embedlake/faiss"]
    headers += ["QPS loaded", "loaded/faiss", "R@10 embedlake", "R@10 faiss", "R@10 hnswlib"]
    print(table(headers, rows))


def verdict(res: dict[str, Any]) -> dict[str, Any]:
    """The worst QPS ratio over the sweep, and recall@10 at the default ef_search."""
    at_default = [r for r in res["by_ef"] if r["ef_search"] == DEFAULT_EF]
    worst = min(r["embedlake_vs_faiss"] for r in res["by_ef"])
    worst_loaded = min(r["loaded_vs_faiss"] for r in res["by_ef"])
    return {
        "min_qps_ratio": worst,
        "qps_met": worst >= QPS_TARGET,
        "min_qps_ratio_loaded": worst_loaded,
        "qps_met_loaded": worst_loaded >= QPS_TARGET,
        "recall_at_default": at_default[0]["embedlake_recall"] if at_default else None,
        "recall_met": bool(at_default) and at_default[0]["embedlake_recall"] >= RECALL_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="npl,synthetic")
    parser.add_argument("--n", type=int, default=100_000, help="synthetic vectors")
    parser.add_argument("--ef", default="16,32,64,128,256")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per engine and ef")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="per timed run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    faiss.omp_set_num_threads(1)
    efs = [int(e) for e in args.ef.split(",")]

    results: dict[str, Any] = {}
    for name in args.sets.split(","):
        docs, queries = npl_vectors() if name == "npl" else synthetic(args.n)
        results[name] = run_set(name, docs, queries, efs, args.reps, args.min_seconds)
    report(results)
    verdicts = {name: verdict(res) for name, res in results.items()}
    for name, v in verdicts.items():
        print(f"{name}: {v}")
    payload = {"m": M, "ef_construction": EF_CONSTRUCTION, "k": K, "threads": 1}
    write_result("ann", {**payload, "sets": results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
