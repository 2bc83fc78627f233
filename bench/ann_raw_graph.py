"""rabitqlib's HnswIndex alone against hnswlib, and the engine around it at two re-scoring depths:
the probes behind decision 0032.

One thread, one query at a time, k = 10; the first 1,000 vectors of a set are the queries, the
next N the index (exact top 10 by faiss). ``raw``: hnswlib (M 16 and 32) and rabitqlib's
``HnswIndex`` (M from ``--m``, bits from ``--bits``, 16 k-means centres), each over an ef sweep,
QPS the best of three passes. ``wrapped``: embedlake's ``rabitq-hnsw`` (built once, saved and
loaded as serving loads it) at ``rescore`` 1 and 2 over an ef sweep, beside the bare rabitqlib
search of the same index.

    .venv/bin/python bench/ann_raw_graph.py raw --set sentences --n 100000 [--m 16,32] [--bits 4,7]
    .venv/bin/python bench/ann_raw_graph.py wrapped --set sentences --n 100000
    .venv/bin/python bench/ann_raw_graph.py centres --set sentences --n 100000
    .venv/bin/python bench/ann_raw_graph.py codes --set static --n 100000 --clusters 16,64,256 \
        --bits 6,7,8,9

``centres``: the engine built twice, its codes on unit centres (spherical k-means, as before) and
on the clusters' means (now), each at ef 24, 32 and 40: the bare walk and the engine's search
(the wrapper's cost is the difference), in interleaved rounds.

``codes``: the engine built with each number of centres in ``--clusters`` (at 7 bits) and each
code width in ``--bits`` (at 16 centres), then at ef 12 to 24: the recall of its search and the
bare walk's QPS (median of five interleaved passes): whether finer codes let a shorter walk reach
the same recall.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import hnswlib
import numpy as np
import rabitqlib

from embedlake.index.rabitq_hnsw import RabitqHnswIndex

from _common import write_result
from _common.vectors import exact_top, recall_at_k, sentence_vectors, static_vectors

K, EFS = 10, (12, 16, 24, 32, 48, 64, 96)


def best_qps(search: Callable[[Any], Any], queries: np.ndarray) -> tuple[float, list[Any]]:
    best, found = 0.0, []
    for _ in range(3):
        started = time.perf_counter()
        found = [search(q) for q in queries]
        best = max(best, len(queries) / (time.perf_counter() - started))
    return best, found


def raw(docs: np.ndarray, queries: np.ndarray, truth: Any, ms: list[int], bits: list[int]) -> list:
    rows = []
    for m in (16, 32):
        lib = hnswlib.Index(space="ip", dim=docs.shape[1])
        lib.init_index(max_elements=len(docs), M=m, ef_construction=200, random_seed=0)
        started = time.perf_counter()
        lib.add_items(docs, num_threads=2)
        build = time.perf_counter() - started
        for ef in EFS:
            lib.set_ef(ef)
            qps, found = best_qps(
                lambda q, lib=lib: lib.knn_query(q, k=K, num_threads=1)[0][0], queries
            )
            rows.append(("hnswlib", m, 32, ef, recall_at_k(found, truth, K), qps, build))
    kmeans = faiss.Kmeans(docs.shape[1], 16, niter=10, seed=1)
    kmeans.train(docs[:50_000])
    _, nearest = kmeans.index.search(docs, 1)
    for m in ms:
        for b in bits:
            index = rabitqlib.HnswIndex(docs.shape[1], len(docs), M=m, nbits=b, metric="ip")
            started = time.perf_counter()
            index.build(docs, kmeans.centroids, nearest.ravel().astype(np.uint32), 2)
            build = time.perf_counter() - started
            for ef in EFS:
                qps, found = best_qps(
                    lambda q, x=index, ef=ef: x.search(q[None], K, ef)[0][0], queries
                )
                rows.append(("rabitqlib", m, b, ef, recall_at_k(found, truth, K), qps, build))
    return rows


def wrapped(docs: np.ndarray, queries: np.ndarray, truth: Any) -> list:
    index = RabitqHnswIndex(docs.shape[1])
    started = time.perf_counter()
    index.add([str(i) for i in range(len(docs))], docs)
    build = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        loaded = RabitqHnswIndex.load(Path(tmp))
        one = [queries[i : i + 1] for i in range(len(queries))]
        rows = []
        for rescore in (1, 2):
            loaded.rescore = rescore
            for ef in EFS[1:5]:
                loaded.ef_search = ef
                qps, hits = best_qps(lambda q: loaded.search(q, K)[0], one)
                found = [[int(d) for d, _ in row] for row in hits]
                bare, _ = best_qps(  # the walk alone, for the same candidates
                    lambda q, w=K * rescore, ef=ef: loaded._index.search(q, w, max(ef, w), 1), one
                )
                row = ("rabitq-hnsw", rescore, ef, recall_at_k(found, truth, K), qps, bare, build)
                rows.append(row)
    return rows


def centres(docs: np.ndarray, queries: np.ndarray, truth: Any) -> list:
    one = [queries[i : i + 1] for i in range(len(queries))]
    built = {}
    for spherical in (True, False):
        RabitqHnswIndex._SPHERICAL = spherical
        index = RabitqHnswIndex(docs.shape[1])
        index.add([str(i) for i in range(len(docs))], docs)
        built["unit" if spherical else "means"] = index
    rows = []
    for ef in (24, 32, 40):
        for kind, index in built.items():
            index.ef_search = ef
            bare, found = best_qps(
                lambda q, x=index._index, ef=ef: x.search(q, K, ef, 1)[0][0], one
            )
            qps, _ = best_qps(lambda q, x=index: x.search(q, K), one)
            rows.append((kind, ef, recall_at_k(found, truth, K), bare, qps))
    return rows


def codes(
    docs: np.ndarray, queries: np.ndarray, truth: Any, clusters: list[int], bits: list[int]
) -> list:
    one = [queries[i : i + 1] for i in range(len(queries))]
    ids = [str(i) for i in range(len(docs))]
    built = {}
    faiss.omp_set_num_threads(2)
    for nlist, width in [(c, 7) for c in clusters] + [(16, b) for b in bits if b != 7]:
        index = RabitqHnswIndex(docs.shape[1], nlist=nlist, bits=width)
        index.add(ids, docs)
        built[(nlist, width)] = index
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in (12, 14, 16, 18, 20, 24):
        passes: dict[tuple[int, int], list[float]] = {key: [] for key in built}
        for _ in range(5):
            for key, index in built.items():
                started = time.perf_counter()
                for q in one:
                    index._index.search(q, K, ef, 1)
                passes[key].append(len(one) / (time.perf_counter() - started))
        for (nlist, width), index in built.items():
            index.ef_search = ef
            found = [[int(d) for d, _ in index.search(q, K)[0]] for q in one]
            qps = sorted(passes[(nlist, width)])[2]
            rows.append((nlist, width, ef, recall_at_k(found, truth, K), qps))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["raw", "wrapped", "centres", "codes"])
    parser.add_argument("--set", choices=["sentences", "static"], default="sentences")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", default="32", help="rabitqlib's graph degrees (raw)")
    parser.add_argument("--bits", default="7", help="rabitqlib's code widths (raw, codes)")
    parser.add_argument("--clusters", default="16", help="the codes' centres (codes)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    vectors = (sentence_vectors if args.set == "sentences" else static_vectors)(args.n + 1000)
    queries, docs = np.ascontiguousarray(vectors[:1000]), np.ascontiguousarray(vectors[1000:])
    truth = exact_top(docs, queries, K)
    faiss.omp_set_num_threads(1)
    if args.mode == "raw":
        ms, bits = [int(v) for v in args.m.split(",")], [int(v) for v in args.bits.split(",")]
        rows = raw(docs, queries, truth, ms, bits)
        names = ("library", "m", "bits", "ef", "recall", "qps", "build_s")
    elif args.mode == "codes":
        clusters, bits = (
            [int(v) for v in args.clusters.split(",")],
            [int(v) for v in args.bits.split(",")],
        )
        rows = codes(docs, queries, truth, clusters, bits)
        names = ("centres", "bits", "ef", "recall", "bare_walk_qps")
    elif args.mode == "wrapped":
        rows = wrapped(docs, queries, truth)
        names = ("engine", "rescore", "ef", "recall", "qps", "bare_walk_qps", "build_s")
    else:
        rows = centres(docs, queries, truth)
        names = ("centres", "ef", "walk_recall", "bare_walk_qps", "engine_qps")
    for row in rows:
        print(
            "  ".join(
                f"{n} {v:.3f}" if isinstance(v, float) else f"{n} {v}"
                for n, v in zip(names, row, strict=True)
            ),
            flush=True,
        )
    write_result(
        f"ann_raw_graph-{args.mode}-{args.set}-{args.n}",
        {"rows": [dict(zip(names, row, strict=True)) for row in rows]},
    )


if __name__ == "__main__":
    main()
