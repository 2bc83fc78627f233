"""Claim: an index's search effort, tuned at build to ``index.recall_target``, meets that target on
real queries, not only on the held-back document vectors it was measured with.

The anchor is the tuning before this claim: recall@10 measured with 500 held-back document vectors
as the queries. The change adds query-like vectors (``search/tuning_queries.py``: 8–32 words of
each held-back passage, embedded as a query is; ``--spans`` tries other lengths, one build each)
and keeps the smallest effort that reaches the target on both. Each is built the way
``build_index`` builds (``tune.add_tuned``, HNSW M 32, efConstruction 200, target 0.95), on the
same vectors in the same run; then the real queries of the judged collections (``queries.jsonl``)
are searched at the effort each chose: their recall@10 against exact search (ties count, as in
the tuning) and their speed, one query at a time. "needed" is the smallest ``ef_search`` of the
ladder at which the real queries reach the target: the effort a tuning should find.

Sets (workspaces cached under /tmp/embedlake-bench-ann-tuning/):

- ``lsa``: LSA-384 over the six judged collections, 20 Newsgroups and Reuters (64,946 passages);
- ``lsa-copies``: the same collections ingested twice (under ``copy-`` ids), as near-duplicates
  are in patents and in bench/api_search.py's 100k workspace: a held-back document then has its
  copy in the index and is the easiest query there is;
- ``minilm``: all-MiniLM-L6-v2 over the six judged collections (about 7 minutes to embed once).

    .venv/bin/python bench/ann_tuning.py [--sets lsa,lsa-copies,minilm] [--target 0.95]
                                         [--spans 8-32,4-16]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlake import Workspace
from embedlake.embeddings.vectors import read_vectors
from embedlake.index import create
from embedlake.index.tune import LADDERS, add_tuned
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.tuning_queries import span_queries

from _common import DATA, table, write_result
from _common.corpora import real_queries
from _common.workspaces import cached, embedded

CACHE = Path(tempfile.gettempdir()) / "embedlake-bench-ann-tuning"
JUDGED = ["cranfield", "cisi", "med", "cacm", "npl", "lisa"]
SETS = {
    "lsa": ("lsa", [*JUDGED, "20newsgroups", "reuters21578"], False),
    "lsa-copies": ("lsa", [*JUDGED, "20newsgroups", "reuters21578"], True),
    "minilm": ("minilm", JUDGED, False),
}
K, TIE = 10, 1e-5
ENV = {**os.environ, "EMBEDLAKE_EMBED__LSA_COMPONENTS": "384"}


def build_workspace(root: Path, model: str, collections: list[str], copies: bool) -> dict:
    started = time.perf_counter()
    with Workspace.init(root, environ=ENV) as ws:
        for name in collections:
            ingest_path(ws, DATA / name, source=name, id_prefix=f"{name}-")
            if copies:
                ingest_path(ws, DATA / name, source=f"copy-{name}", id_prefix=f"copy-{name}-")
        record, _, _ = embedded(ws, model)
        return {"model": record.ref, "seconds": time.perf_counter() - started}


def recall(index: Any, queries: np.ndarray, kth: np.ndarray) -> float:
    answers = index.search(queries, K)
    hits = sum(s >= t - TIE for answer, t in zip(answers, kth, strict=True) for _, s in answer)
    return float(hits) / (K * len(queries))


def qps(index: Any, queries: np.ndarray, min_seconds: float = 1.0) -> float:
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        for row in queries:
            index.search(row[None, :], K)
        done += len(queries)
    return done / (time.perf_counter() - started)


def measure(name: str, target: float, spans: list[tuple[int, int]]) -> dict[str, Any]:
    model_name, collections, copies = SETS[name]
    root = CACHE / name
    cached(root, "bench-built.json", lambda r: build_workspace(r, model_name, collections, copies))
    with Workspace.open(root, environ=ENV) as ws:
        model = resolve_model(ws, model_name)
        ids, vectors = read_vectors(ws, model)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        encoder = artifacts.load_encoder(ws, model)
        queries = np.asarray(encoder.encode(real_queries(JUDGED, 10_000)), dtype=np.float32)
        queries = queries[np.linalg.norm(queries, axis=1) > 0]
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        kth = -np.partition(-(queries @ vectors.T), K - 1, axis=1)[:, K - 1]
        s = ws.settings.index
        rows: dict[str, Any] = {"vectors": len(ids), "queries": len(queries), "methods": {}}
        methods: list[tuple[str, Any]] = [("documents", None)]
        methods += [
            (f"documents+spans {lo}-{hi}", span_queries(ws, model, words=(lo, hi)))
            for lo, hi in spans
        ]
        for method, maker in methods:
            index: Any = create("hnsw", vectors.shape[1], m=s.m, ef_construction=s.ef_construction)
            started = time.perf_counter()
            tuning = add_tuned(index, ids, vectors, target, sample=500, queries_for=maker)
            assert tuning is not None
            seconds = time.perf_counter() - started
            rows["methods"][method] = {
                "ef_search": tuning.value,
                "tuning_recall": tuning.curves,
                "real_recall": recall(index, queries, kth),
                "real_qps": qps(index, queries),
                "build_seconds": seconds,
            }
        needed = None
        for ef in LADDERS["hnsw"][1]:
            index.ef_search = ef
            if recall(index, queries, kth) >= target:
                needed = ef
                break
        rows["needed_ef"] = needed
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument(
        "--spans", default="8-32", help="span lengths in words to tune with, each its own build"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spans = [(int(a), int(b)) for a, b in (r.split("-") for r in args.spans.split(","))]
    results = {name: measure(name, args.target, spans) for name in args.sets.split(",")}
    headers = ["set", "vectors", "real queries", "tuned on", "ef_search", "real recall@10"]
    headers += ["target met", "q/s", "q/s ÷ anchor", "needed ef"]
    out = []
    for name, r in results.items():
        anchor = r["methods"]["documents"]["real_qps"]
        for method, m in r["methods"].items():
            out.append(
                [
                    name,
                    f"{r['vectors']:,}",
                    r["queries"],
                    method,
                    m["ef_search"],
                    f"{m['real_recall']:.3f}",
                    "yes" if m["real_recall"] >= args.target else "NO",
                    f"{m['real_qps']:,.0f}",
                    f"{m['real_qps'] / anchor:.2f}",
                    r["needed_ef"],
                ]
            )
    print(table(headers, out))
    write_result("ann_tuning", {"target": args.target, "sets": results})


if __name__ == "__main__":
    main()
