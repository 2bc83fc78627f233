"""Retrieval metrics through pytrec_eval (trec_eval semantics), never computed by hand."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytrec_eval

Run = Mapping[str, Mapping[str, float]]  # query id → doc id → score
Qrels = Mapping[str, Mapping[str, int]]

# Our name → (pytrec_eval measure, key in its output, depth to cut the run at)
MEASURES: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    "recall@100": ("recall.100", "recall_100", None),
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "map": ("map", "map", None),
}


def _top(run: Run, depth: int) -> dict[str, dict[str, float]]:
    out = {}
    for qid, scores in run.items():
        ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
        out[qid] = dict(ranked)
    return out


def per_query(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """metric → query id → value, over the judged queries (a query with no results scores 0)."""
    qrels_d = {q: dict(v) for q, v in qrels.items()}
    full_run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in qrels_d}
    out: dict[str, dict[str, float]] = {}
    for name, (measure, key, depth) in MEASURES.items():
        scored = _top(full_run, depth) if depth else full_run
        evaluator = pytrec_eval.RelevanceEvaluator(qrels_d, {measure})
        # pytrec_eval drops queries with an empty run; they count as zero here.
        results = evaluator.evaluate({q: r for q, r in scored.items() if r})
        out[name] = {q: float(results.get(q, {}).get(key, 0.0)) for q in qrels_d}
    return out


def mean(run: Run, qrels: Qrels) -> dict[str, float]:
    return {
        name: float(np.mean(list(values.values())))
        for name, values in per_query(run, qrels).items()
    }


def ann_recall(approx: list[list[str]], exact: list[list[str]], k: int = 10) -> float:
    """Share of the exact top-k that the approximate search also returned, averaged."""
    if not exact:
        return 0.0
    hits = [
        len(set(a[:k]) & set(e[:k])) / max(1, min(k, len(e)))
        for a, e in zip(approx, exact, strict=True)
    ]
    return float(np.mean(hits))
