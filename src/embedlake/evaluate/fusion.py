"""Hybrid search measured and fitted: a release's dense and BM25 rankings of judged queries, fused
by each candidate of ``search.hybrid.CANDIDATES``; the one with the best mean nDCG@10 is kept.

Fitted on queries the gate never sees (a collection's dev or train judgments, or the queries a
model in play trained on), so the gate measures the fitted fusion on queries it was not fitted to.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedlake.evaluate import metrics
from embedlake.evaluate.bench import Result
from embedlake.ingest.datasets import Dataset
from embedlake.search.hybrid import CANDIDATES, Fusion, fuse
from embedlake.search.searcher import Searcher

DEPTH = 100

Run = dict[str, list[tuple[str, float]]]  # query id → (document id, score), best first


@dataclass(frozen=True)
class Sides:
    dense: Run
    lexical: Run


def sides(searcher: Searcher, dataset: Dataset) -> Sides:
    qids = list(dataset.queries)
    both = searcher.sides([dataset.queries[q] for q in qids], DEPTH)
    return Sides(
        {q: [(h.id, h.score) for h in dense] for q, (dense, _) in zip(qids, both, strict=True)},
        {q: [(d, s) for d, s, _ in lexical] for q, (_, lexical) in zip(qids, both, strict=True)},
    )


def per_query(both: Sides, dataset: Dataset, fusion: Fusion | None) -> dict[str, float]:
    """Per-query nDCG@10 of the fused ranking (``fusion`` None: BM25 alone)."""
    run = {
        q: dict(both.lexical[q]) if fusion is None else fuse(both.dense[q], both.lexical[q], fusion)
        for q in dataset.queries
    }
    return metrics.per_query(run, dataset.qrels)["ndcg@10"]


def fit(judged: list[tuple[Sides, Dataset]]) -> tuple[Fusion, dict[str, float]]:
    """The candidate with the best nDCG@10 over ``judged`` (the mean of each dataset's mean, so
    that each dataset counts once; the first listed wins a tie), and every candidate's value."""
    means = {}
    for candidate in CANDIDATES:
        values = []
        for both, dataset in judged:
            scores = per_query(both, dataset, candidate)
            values.append(sum(scores.values()) / len(scores))
        means[candidate.name] = sum(values) / len(values)
    best = max(CANDIDATES, key=lambda c: (means[c.name], -CANDIDATES.index(c)))
    return best, means


def results(both: Sides, dataset: Dataset, fusion: Fusion, system: str) -> tuple[Result, Result]:
    """BM25 alone and the hybrid, as benchmark results of ``dataset`` in those modes."""
    out = []
    for mode, mode_fusion in (("bm25", None), ("hybrid", fusion)):
        scores = per_query(both, dataset, mode_fusion)
        out.append(
            Result(
                dataset.name,
                system,
                {"ndcg@10": sum(scores.values()) / len(scores)},
                {"ndcg@10": scores},
                mode=mode,
            )
        )
    return out[0], out[1]
