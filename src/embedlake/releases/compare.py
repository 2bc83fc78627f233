"""Two releases side by side on the gate's datasets: metrics, per-query wins and losses with a
bootstrap confidence interval of the nDCG@10 difference, overlap@10 of their results, latency."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlake.releases import gate
from embedlake.workspace import Workspace


def compare(ws: Workspace, a: str, b: str, *, resamples: int = 2000) -> list[dict[str, Any]]:
    releases = ws.catalog.releases
    ra, rb = releases.get(a), releases.get(b)
    datasets = gate.gate_datasets(ws, gate.held_out(ws, ra.model_id, rb.model_id))
    rows = []
    for left, right in zip(
        gate.benchmark(ws, ra, datasets), gate.benchmark(ws, rb, datasets), strict=True
    ):
        qa, qb = left.per_query["ndcg@10"], right.per_query["ndcg@10"]
        diffs = np.array([qb[q] - qa[q] for q in qa])
        rng = np.random.default_rng(0)
        means = rng.choice(diffs, size=(resamples, len(diffs)), replace=True).mean(axis=1)
        overlap = [len(set(left.top10[q]) & set(right.top10[q])) / 10 for q in left.top10]
        rows.append(
            {
                "dataset": left.dataset,
                "queries": len(diffs),
                a: left.metrics,
                b: right.metrics,
                "ndcg@10_diff": float(diffs.mean()),
                "ndcg@10_diff_ci95": [
                    float(np.percentile(means, 2.5)),
                    float(np.percentile(means, 97.5)),
                ],
                "wins": int((diffs > 1e-9).sum()),
                "losses": int((diffs < -1e-9).sum()),
                "ties": int((np.abs(diffs) <= 1e-9).sum()),
                "overlap@10": float(np.mean(overlap)) if overlap else 0.0,
            }
        )
    return rows
