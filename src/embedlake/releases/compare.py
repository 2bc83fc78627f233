"""Two releases side by side on the gate's datasets: metrics, the paired change of nDCG@10 with its
confidence interval and p-value (the gate's own statistics), overlap@10 of their results, latency,
and what the gate's policy would decide for ``b`` against ``a``."""

from __future__ import annotations

from typing import Any

from embedlake.errors import InputError
from embedlake.releases import gate
from embedlake.workspace import Workspace


def compare(ws: Workspace, a: str, b: str) -> dict[str, Any]:
    """``{"datasets": [per dataset], "gate": the policy's decision for b replacing a}``."""
    releases = ws.catalog.releases
    ra, rb = releases.get(a), releases.get(b)
    for r in (ra, rb):  # as publish says it: what is not built cannot be benchmarked
        if r.status in ("building", "failed", "removed") or r.index_id is None:
            raise InputError(f"release {r.id} is {r.status}: only built releases can be compared")
    datasets = gate.gate_datasets(ws, gate.held_out(ws, ra.model_id, rb.model_id))
    left_results, right_results = gate.benchmark(ws, ra, datasets), gate.benchmark(ws, rb, datasets)
    decision = gate.decide(ws.settings.gate, right_results, left_results)
    changes = {
        (r["dataset"], r["mode"]): r["change"]
        for r in decision["rules"]
        if r.get("change") is not None and r["rule"] == gate.NO_REGRESSION
    }
    rows, modes = [], []
    for left, right in zip(left_results, right_results, strict=True):
        if left.mode != "dense":  # BM25 and hybrid: nDCG@10 and its change only
            modes.append(
                {
                    "dataset": left.dataset,
                    "mode": left.mode,
                    a: left.metrics["ndcg@10"],
                    b: right.metrics["ndcg@10"],
                    "ndcg@10_change": changes[left.dataset, left.mode],
                }
            )
            continue
        overlap = [len(set(left.top10[q]) & set(right.top10[q])) / 10 for q in left.top10]
        rows.append(
            {
                "dataset": left.dataset,
                "queries": len(left.per_query["ndcg@10"]),
                a: left.metrics,
                b: right.metrics,
                "ndcg@10_change": changes[left.dataset, "dense"],
                "overlap@10": sum(overlap) / len(overlap) if overlap else 0.0,
            }
        )
    return {
        "datasets": rows,
        "modes": modes,
        "all": changes.get((gate.ALL, "dense")),
        "gate": decision,
    }
