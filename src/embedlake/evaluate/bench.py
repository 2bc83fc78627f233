"""Benchmark a workspace on a BEIR dataset: BM25 and each dense model in one table.

For a dense model: quality of the ANN index (nDCG@10, recall@100, MRR@10, MAP), ANN recall@10 against
exact search over the same vectors, and search throughput (one query at a time, after encoding).
An index of passages is judged on documents, ranked by their passages as the searcher ranks them
(``[passages] aggregate``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from embedlake.catalog.registry import IndexRecord, ModelRecord
from embedlake.embeddings.vectors import read_vectors
from embedlake.errors import InputError
from embedlake.evaluate import metrics
from embedlake.index.exact import ExactIndex
from embedlake.index.keys import doc_of
from embedlake.ingest.datasets import Dataset
from embedlake.models import artifacts
from embedlake.reduce.pca import PcaReducer
from embedlake.search.bm25 import Bm25
from embedlake.search.load import load_index
from embedlake.search.passages import collapse
from embedlake.workspace import Workspace

DEPTH = 100


@dataclass
class Result:
    dataset: str
    system: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    top10: dict[str, list[str]] = field(default_factory=dict, repr=False)  # query → result ids
    mode: str = "dense"  # or "bm25", "hybrid": how the release searched


def _check_corpus(ws: Workspace, dataset: Dataset, ids: set[str]) -> None:
    judged = {d for rel in dataset.qrels.values() for d, g in rel.items() if g > 0}
    if not judged & ids:
        raise InputError(
            f"dataset {dataset.name}: none of its judged documents is in this "
            f"workspace; ingest its corpus first (with the same --id-prefix)"
        )


def bench_bm25(ws: Workspace, dataset: Dataset, *, stem: bool = False) -> Result:
    docs = list(ws.catalog.documents.iter_live())
    _check_corpus(ws, dataset, {d.id for d in docs})
    bm25 = Bm25([d.id for d in docs], [d.full_text for d in docs], stem=stem)
    qids = list(dataset.queries)
    rows = bm25.search([dataset.queries[q] for q in qids], DEPTH)
    run = {q: dict(r) for q, r in zip(qids, rows, strict=True)}
    per_query = metrics.per_query(run, dataset.qrels)
    means = {m: sum(v.values()) / len(v) for m, v in per_query.items()}
    return Result(dataset.name, "bm25+stem" if stem else "bm25", means, per_query)


def bench_model(ws: Workspace, dataset: Dataset, model_ref: str) -> Result:
    """The model's newest index on ``dataset``."""
    model = ws.catalog.registry.model(model_ref)
    return bench_index(ws, dataset, model, ws.catalog.registry.latest_index(model.id))


def bench_index(
    ws: Workspace,
    dataset: Dataset,
    model: ModelRecord,
    record: IndexRecord,
    system: str | None = None,
    reducer: PcaReducer | None = None,
) -> Result:
    """Quality, ANN recall against exact search, and single-query QPS of one index."""
    index = load_index(ws, record)
    ids, vectors = read_vectors(ws, model, str(record.params.get("chunker", "")))
    docs = {doc_of(i) for i in ids}
    _check_corpus(ws, dataset, docs)
    # passages fetched per query so that DEPTH distinct documents come back
    per_doc = -(-len(ids) // max(len(docs), 1))
    fetch = min(len(ids), DEPTH * min(2 * per_doc, 10)) if per_doc > 1 else DEPTH
    aggregate, top = ws.settings.passages.aggregate, ws.settings.passages.aggregate_top
    encoder = artifacts.load_encoder(ws, model)
    qids = list(dataset.queries)
    queries = encoder.encode(
        [dataset.queries[q] for q in qids], batch_size=ws.settings.embed.batch_size
    )
    # a zero query (LSA on words it never saw) is answered with nothing when served: here too
    answerable = [bool(v.any()) for v in queries]
    if reducer is not None:  # the release's PCA backs its index: search in reduced space
        vectors, queries = reducer.transform(vectors), reducer.transform(queries)
    exact = ExactIndex(vectors.shape[1])
    exact.add(ids, vectors)
    started = time.perf_counter()
    approx = [
        [
            (d, s)
            for d, s, _ in collapse(
                index.search(queries[i : i + 1], fetch)[0], DEPTH, aggregate, top
            )
        ]
        if answerable[i]
        else []
        for i in range(len(qids))
    ]
    seconds = time.perf_counter() - started
    truth = [
        [(d, s) for d, s, _ in collapse(row, 10, aggregate, top)]
        for row in exact.search(queries, 10 if per_doc == 1 else min(len(ids), 10 * 2 * per_doc))
    ]
    run = {q: dict(r) for q, r in zip(qids, approx, strict=True)}
    per_query = metrics.per_query(run, dataset.qrels)
    means = {m: sum(v.values()) / len(v) for m, v in per_query.items()}
    served = [i for i in range(len(qids)) if answerable[i]]
    means["ann_recall@10"] = metrics.ann_recall(  # of the queries served an answer
        [[d for d, _ in approx[i]] for i in served], [[d for d, _ in truth[i]] for i in served]
    )
    means["qps"] = len(qids) / seconds if seconds > 0 else 0.0
    result = Result(
        dataset.name,
        system or model.ref,
        means,
        per_query,
        {q: [d for d, _ in r[:10]] for q, r in zip(qids, approx, strict=True)},
    )
    ws.catalog.benchmarks.add_result(
        dataset=dataset.name,
        system=result.system,
        metrics=means,
        model_id=model.id,
        index_id=record.id,
    )
    return result
