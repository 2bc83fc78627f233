"""Hybrid search: dense and BM25 rankings fused into one.

Reciprocal rank fusion (RRF, Cormack et al. 2009) needs no score calibration between the two sides,
which is why it is the default: each ranking adds ``1 / (k + rank)`` for every document it holds.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60  # the constant of the paper; small k favours the top ranks of each side


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Document id → fused score over ``rankings`` (each best first)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank + 1)
    return fused
