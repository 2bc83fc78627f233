"""Compressed ANN candidates, before choosing one (decision 0024): QPS at recall@10 ≥ 0.95 against
raw hnswlib, memory per vector in RAM, build time. Every library at its smallest search effort
that reaches the recall on these queries (the same oracle for each), one thread, one query at a
time, timed in interleaved rounds.

The candidates are not embedlake's dependencies: run this in a virtual environment of its own,

    python3.11 -m venv /tmp/annvenv && /tmp/annvenv/bin/pip install numpy faiss-cpu==1.15.1 \\
        hnswlib==0.8.0 usearch==2.26.6 pyglass-portable==2.1.0 rabitqlib==0.7.1 scann==1.4.2
    cd bench && /tmp/annvenv/bin/python ann_candidates.py --sets npl,synthetic

(``npl`` needs the vectors bench/ann.py caches: run that once with the project's venv first.)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET, K = 0.95, 10
CACHE = Path("/tmp/embedlake-bench-cache/npl-minilm.npz")
EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
PROBES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)

Search = Callable[[np.ndarray, int], list[int]]  # (query, effort) → ids


def candidates(docs: np.ndarray) -> dict[str, Callable[[], tuple[Search, tuple[int, ...], float]]]:
    """name → a builder returning (search, efforts to try, bytes per vector in RAM)."""
    n, d = docs.shape
    nlist = max(1, min(round(4 * np.sqrt(n)), n // 64))

    def hnswlib_m(m: int) -> Any:
        def make() -> Any:
            import hnswlib

            lib = hnswlib.Index(space="ip", dim=d)
            lib.init_index(max_elements=n, M=m, ef_construction=200, random_seed=0)
            lib.set_num_threads(1)
            lib.add_items(docs, np.arange(n), num_threads=1)

            def search(q: np.ndarray, ef: int) -> list[int]:
                lib.set_ef(ef)
                return list(lib.knn_query(q[None], k=K, num_threads=1)[0][0])

            return search, EFS, 4 * d + 2 * m * 4 + 12  # level 0: vector, links, count, label

        return make

    def faiss_ivf_rabitq(bits: int, rescore: int) -> Any:
        def make() -> Any:
            import faiss

            kind = f"IVF{nlist},RaBitQ{bits if bits > 1 else ''}"
            index = faiss.index_factory(d, kind, faiss.METRIC_INNER_PRODUCT)
            index.train(docs)
            index.add(docs)

            def search(q: np.ndarray, nprobe: int) -> list[int]:
                params = faiss.SearchParametersIVF()
                params.nprobe = nprobe
                _, rows = index.search(q[None], K * rescore, params=params)
                rows = rows[0][rows[0] >= 0]
                exact = docs[rows] @ q  # fp32 re-scoring (memory-mapped vectors in embedlake)
                return list(rows[np.argsort(-exact)[:K]])

            return search, PROBES, index.code_size + 8

        return make

    def faiss_hnsw_sq8() -> Any:
        import faiss

        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.train(docs)
        index.add(docs)

        def search(q: np.ndarray, ef: int) -> list[int]:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            _, rows = index.search(q[None], K * 3, params=params)
            rows = rows[0][rows[0] >= 0]
            return list(rows[np.argsort(-(docs[rows] @ q))[:K]])

        return search, EFS, d + 2 * 32 * 4 + 16

    def usearch_i8(m: int) -> Any:
        def make() -> Any:
            from usearch.index import Index

            index = Index(ndim=d, metric="ip", dtype="i8", connectivity=m, expansion_add=200)
            index.add(np.arange(n), docs, threads=1)

            def search(q: np.ndarray, ef: int) -> list[int]:
                index.expansion_search = ef
                return list(index.search(q, K, threads=1).keys)

            return search, EFS, index.memory_usage / n

        return make

    def glass_sq8() -> Any:
        import glass

        glass.set_num_threads(1)
        graph = glass.Index("HNSW", "IP", "SQ8U", 32, 200).build(docs)
        searcher = glass.Searcher(graph, docs, "IP", "SQ8U", "FP32")
        searcher.optimize(1)

        def search(q: np.ndarray, ef: int) -> list[int]:
            searcher.set_ef(ef)
            return list(searcher.search(q, K)[0])

        return search, EFS, d + 32 * 4 + 4 * d  # SQ8 codes + graph + its fp32 refiner

    def scann_ah() -> Any:
        import scann

        leaves = nlist
        searcher = (
            scann.scann_ops_pybind.builder(docs, K, "dot_product")
            .tree(num_leaves=leaves, num_leaves_to_search=8, training_sample_size=min(n, 100_000))
            .score_ah(2, anisotropic_quantization_threshold=0.2)
            .reorder(100)
            .build()
        )

        def search(q: np.ndarray, probes: int) -> list[int]:
            ids, _ = searcher.search(
                q, final_num_neighbors=K, leaves_to_search=probes, pre_reorder_num_neighbors=100
            )
            return list(ids)

        return search, PROBES, d / 2 + 4 * d  # AH codes (2 dims a 4-bit code) + reorder fp32

    def rabitqlib_symqg() -> Any:
        import rabitqlib

        index = rabitqlib.SymqgIndex(d, 32, "ip")
        index.build(docs, 200, 1)

        def search(q: np.ndarray, ef: int) -> list[int]:
            return list(index.search(q[None], K, ef, 1)[0][0])

        return search, EFS, 4 * d + 32 * (4 + d / 8)  # fp32 + neighbours' ids and codes

    def rabitqlib_ivf(bits: int) -> Any:
        def make() -> Any:
            import faiss
            import rabitqlib

            kmeans = faiss.Kmeans(d, nlist, niter=10, seed=0, spherical=True)
            kmeans.train(docs)
            _, assign = kmeans.index.search(docs, 1)
            index = rabitqlib.IvfIndex(d, n, nlist, bits, "ip")
            index.build(docs, kmeans.centroids, assign[:, 0].astype(np.uint32), 1)

            def search(q: np.ndarray, nprobe: int) -> list[int]:
                return list(index.search(q[None], K, nprobe, None, 1)[0][0])

            return search, PROBES, d * bits / 8 + 16

        return make

    return {
        "hnswlib M16": hnswlib_m(16),
        "hnswlib M32": hnswlib_m(32),
        "faiss IVF-RaBitQ 1-bit, rescore 10": faiss_ivf_rabitq(1, 10),
        "faiss IVF-RaBitQ 1-bit, rescore 50": faiss_ivf_rabitq(1, 50),
        "faiss IVF-RaBitQ 4-bit, rescore 3": faiss_ivf_rabitq(4, 3),
        "faiss IVF-RaBitQ 7-bit, rescore 2": faiss_ivf_rabitq(7, 2),
        "faiss HNSW-SQ8 + fp32 rescore": faiss_hnsw_sq8,
        "usearch i8 M16": usearch_i8(16),
        "usearch i8 M32": usearch_i8(32),
        "glass HNSW SQ8U + fp32 refine": glass_sq8,
        "scann tree + AH + reorder": scann_ah,
        "rabitqlib SymQG": rabitqlib_symqg,
        "rabitqlib IVF 4-bit": rabitqlib_ivf(4),
        "rabitqlib IVF 7-bit": rabitqlib_ivf(7),
    }


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def run_set(docs: np.ndarray, queries: np.ndarray, rounds: int) -> dict[str, Any]:
    scores = queries @ docs.T
    truth = np.argpartition(-scores, K - 1, axis=1)[:, :K]
    chosen: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for name, make in candidates(docs).items():
        started = time.perf_counter()
        try:
            search, efforts, per_vector = make()
        except Exception as e:  # a library that cannot run here is reported, not hidden
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"  {name}: {out[name]['error']}", flush=True)
            continue
        build = time.perf_counter() - started
        curve = {}
        for effort in efforts:
            curve[effort] = recall([search(q, effort) for q in queries], truth)
            if curve[effort] >= TARGET:
                break
        effort = next((e for e, r in curve.items() if r >= TARGET), efforts[-1])
        out[name] = {"effort": effort, "recall": curve[effort], "build_s": build}
        out[name]["bytes_per_vector"] = float(per_vector)
        chosen[name] = (search, effort)
        print(f"  {name}: effort {effort} recall {curve[effort]:.3f} build {build:.1f} s")
    qps: dict[str, list[float]] = {name: [] for name in chosen}
    for r in range(rounds):
        names = list(chosen)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            search, effort = chosen[name]
            started, done = time.perf_counter(), 0
            while time.perf_counter() - started < 0.5:
                for q in queries:
                    search(q, effort)
                done += len(queries)
            qps[name].append(done / (time.perf_counter() - started))
    anchor = max(statistics.median(qps["hnswlib M16"]), statistics.median(qps["hnswlib M32"]))
    for name, values in qps.items():
        out[name].update(
            qps=statistics.median(values), vs_hnswlib=statistics.median(values) / anchor
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="npl,synthetic")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name in args.sets.split(","):
        rng = np.random.default_rng(0)
        if name == "npl":
            docs = np.load(CACHE)["docs"].astype(np.float32)
        else:  # as bench/_common/vectors.synthetic: unit vectors around 1,000 centres
            centres = rng.standard_normal((1000, 384), dtype=np.float32)
            docs = centres[rng.integers(0, 1000, args.n + 1000)]
            docs = docs + rng.standard_normal(docs.shape, dtype=np.float32)
            docs /= np.linalg.norm(docs, axis=1, keepdims=True)
        out = np.zeros(len(docs), dtype=bool)
        out[np.random.default_rng(0).choice(len(docs), 1000, replace=False)] = True
        base, queries = np.ascontiguousarray(docs[~out]), np.ascontiguousarray(docs[out])
        print(f"\n{name}: {len(base):,} vectors, {len(queries)} held-out queries", flush=True)
        results[name] = run_set(base, queries, args.rounds)
        for cand, r in results[name].items():
            if "qps" in r:
                print(
                    f"  {cand:34s} R@10 {r['recall']:.3f} QPS {r['qps']:8,.0f} "
                    f"{r['vs_hnswlib']:.2f}× hnswlib  {r['bytes_per_vector']:6,.0f} B/vector  "
                    f"build {r['build_s']:.0f} s"
                )
    target = Path(__file__).parent / "results" / "ann_candidates.json"
    machine = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform": platform.platform()}
    target.write_text(json.dumps({"machine": machine, "sets": results}, indent=1))
    print(f"\nwrote {target}")


if __name__ == "__main__":
    main()
