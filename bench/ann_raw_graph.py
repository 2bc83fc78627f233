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
    .venv/bin/python bench/ann_raw_graph.py layout --set static --n 1000000 [--keep DIR]

``centres``: the engine built twice, its codes on unit centres (spherical k-means, as before) and
on the clusters' means (now), each at ef 24, 32 and 40: the bare walk and the engine's search
(the wrapper's cost is the difference), in interleaved rounds.

``codes``: the engine built with each number of centres in ``--clusters`` (at 7 bits) and each
code width in ``--bits`` (at 16 centres), then at ef 12 to 24: the recall of its search and the
bare walk's QPS (median of five interleaved passes): whether finer codes let a shorter walk reach
the same recall.

``layout``: is the walk bound by memory latency? The engine's graph is built once (``--keep DIR``
saves it there, or loads it if already there), then its saved codes file is rewritten with the
same graph laid out in three other orders of its nodes (breadth first from the entry point; by
the nearest of 4,096 k-means centres; at random), each loaded and walked at the tuned ef in
interleaved passes (median of seven). The same graph in another order finds the same rows, so
only where a node's neighbours lie in memory differs. Then the engine's search against the bare
walk and the walk at other ef, for where a query's time goes. The rewrite reads rabitqlib 0.7.1's
file layout (a node: links, centre, label, codes), checked against the file's size.
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import hnswlib
import numpy as np
import rabitqlib
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order

from embedlake.index import tune
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


# rabitqlib 0.7.1's saved HnswIndex header: (name, struct code) in file order
HEADER = [
    *[(n, "Q") for n in ("max", "count", "dim", "padded", "centres", "ex_bits")],
    ("flag", "B"),
    *[(n, "Q") for n in ("bin_bytes", "ex_bytes", "links0_bytes", "bin_at", "ex_at")],
    ("label_at", "I"),
    ("node_bytes", "Q"),
    ("links_bytes", "Q"),
    ("max_level", "i"),
    ("entry", "I"),
    *[(n, "Q") for n in ("m", "max_m", "max_m0")],
    ("mult", "d"),
    ("ef_construction", "Q"),
]


def _saved(data: bytes) -> tuple[dict[str, Any], int, np.ndarray]:
    """A saved graph's header, where its centres end, and its nodes (count × node_bytes)."""
    head, at = {}, 0
    for name, code in HEADER:
        (head[name],), at = struct.unpack_from("<" + code, data, at), at + struct.calcsize(code)
    nodes_at = at + head["centres"] * head["padded"] * 4
    n, size = head["count"], head["node_bytes"]
    if head["links0_bytes"] != 4 * (head["max_m0"] + 1) or nodes_at + n * size > len(data):
        raise SystemExit("not rabitqlib 0.7.1's HnswIndex layout")
    return head, at, np.frombuffer(data, np.uint8, n * size, nodes_at).reshape(n, size)


def _level0(nodes: np.ndarray, head: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each node's level-0 links (a view into ``nodes``) and which of them are in use."""
    count = nodes[:, :2].copy().view(np.uint16).ravel().astype(np.int64)
    links = nodes[:, 4 : head["links0_bytes"]].view(np.uint32)
    return links, np.arange(links.shape[1])[None, :] < count[:, None]


def breadth_first(data: bytes) -> np.ndarray:
    """The nodes in breadth-first order of level 0 from the entry point (then any not reached)."""
    head, _, nodes = _saved(data)
    links, used = _level0(nodes, head)
    n = len(nodes)
    rows = np.repeat(np.arange(n), used.sum(axis=1))
    graph = sp.csr_matrix((np.ones(len(rows), np.int8), (rows, links[used])), shape=(n, n))
    order = breadth_first_order(graph, head["entry"], return_predecessors=False)
    reached = np.zeros(n, bool)
    reached[order] = True
    return np.concatenate([order, np.flatnonzero(~reached)])


def relaid(data: bytes, order: np.ndarray, out: Path) -> None:
    """The saved graph ``data`` written to ``out`` with its node ``order[i]`` at place i."""
    head, at, nodes = _saved(data)
    n = len(nodes)
    upper, pos = [], at + head["centres"] * head["padded"] * 4 + nodes.nbytes
    nodes_at = pos - nodes.nbytes
    for _ in range(n):  # each node's upper levels' links: (length, offset)
        (length,) = struct.unpack_from("<I", data, pos)
        upper.append((length, pos + 4))
        pos += 4 + length
    place = np.empty(n, dtype=np.uint32)
    place[order] = np.arange(n, dtype=np.uint32)
    moved = nodes[order].copy()
    links, used = _level0(moved, head)
    links[used] = place[links[used]]
    parts, width = [], head["links_bytes"]
    for old in order.tolist():
        length, start = upper[old]
        lists = np.frombuffer(data, np.uint8, length, start).copy()
        for level in range(length // width):
            block = lists[level * width : (level + 1) * width]
            ids = block[4:].view(np.uint32)[: int(block[:2].view(np.uint16)[0])]
            ids[:] = place[ids]
        parts.append(struct.pack("<I", length) + lists.tobytes())
    header = bytearray(data[:at])
    names = [name for name, _ in HEADER]
    entry_at = sum(struct.calcsize(code) for _, code in HEADER[: names.index("entry")])
    struct.pack_into("<I", header, entry_at, int(place[head["entry"]]))
    with out.open("wb") as f:
        f.write(header + data[at:nodes_at] + moved.tobytes() + b"".join(parts) + data[pos:])


def layout(docs: np.ndarray, queries: np.ndarray, truth: Any, keep: Path) -> list:
    if not (keep / "rabitq.json").exists():
        faiss.omp_set_num_threads(2)
        index = RabitqHnswIndex(docs.shape[1])
        tune.add_tuned(index, [str(i) for i in range(len(docs))], docs, 0.95)
        keep.mkdir(parents=True, exist_ok=True)
        index.save(keep)
    engine = RabitqHnswIndex.load(keep)
    ef, one = engine.ef_search, [queries[i : i + 1] for i in range(len(queries))]
    saved = next(p for p in keep.iterdir() if p.suffix == ".rabitq")
    data = saved.read_bytes()
    head, _, nodes = _saved(data)
    labels = nodes[:, head["label_at"] : head["label_at"] + 4].copy().view(np.uint32).ravel()
    rng = np.random.default_rng(0)
    faiss.omp_set_num_threads(2)
    km = faiss.Kmeans(docs.shape[1], 4096, niter=10, seed=1, max_points_per_centroid=64)
    km.train(docs[rng.choice(len(docs), 64 * 4096, replace=False)])
    nearest = km.index.search(docs, 1)[1].ravel()
    faiss.omp_set_num_threads(1)
    orders = {
        "as built": None,
        "breadth first": breadth_first(data),
        "by k-means centre": np.argsort(nearest[labels], kind="stable"),
        "random": rng.permutation(len(nodes)),
    }
    walks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, order) in enumerate(orders.items()):
            path = saved if order is None else Path(tmp) / f"{i}.rabitq"
            if order is not None:
                relaid(data, order, path)
            walks[name] = rabitqlib.HnswIndex.load(str(path))
    del data, nodes
    passes: dict[str, list[float]] = {name: [] for name in walks}
    names = list(walks)
    for round_ in range(7):  # each pass in another order
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            started = time.perf_counter()
            for q in one:
                walks[name].search(q, K, ef, 1)
            passes[name].append(len(one) / (time.perf_counter() - started))
    rows = []

    def ids(found: Any) -> list[int]:  # a walk finds rows; the tuned build keeps its own order
        return [int(engine._ids[row]) for row in found]

    for name, walk in walks.items():
        found = [ids(walk.search(q, K, ef, 1)[0][0]) for q in one]
        rows.append(
            ("layout", name, ef, recall_at_k(found, truth, K), float(np.median(passes[name])))
        )
    for walk_ef in (1, 10, ef, 2 * ef, 4 * ef):
        qps, walked = best_qps(lambda q, e=walk_ef: engine._index.search(q, K, e, 1)[0][0], one)
        rows.append(("walk", "bare", walk_ef, recall_at_k([ids(w) for w in walked], truth, K), qps))
    qps, hits = best_qps(lambda q: engine.search(q, K)[0], one)
    found = [[int(d) for d, _ in row] for row in hits]
    rows.append(("engine", "search", ef, recall_at_k(found, truth, K), qps))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["raw", "wrapped", "centres", "codes", "layout"])
    parser.add_argument("--set", choices=["sentences", "static"], default="sentences")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--m", default="32", help="rabitqlib's graph degrees (raw)")
    parser.add_argument("--bits", default="7", help="rabitqlib's code widths (raw, codes)")
    parser.add_argument("--clusters", default="16", help="the codes' centres (codes)")
    parser.add_argument("--keep", type=Path, help="the engine's saved graph (layout)")
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
    elif args.mode == "layout":
        rows = layout(docs, queries, truth, args.keep or Path(tempfile.mkdtemp()))
        names = ("side", "what", "ef", "recall", "qps")
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
