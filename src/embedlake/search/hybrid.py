"""Hybrid search: dense and BM25 rankings fused into one, the way the release fitted it.

Two fusions:
- reciprocal rank fusion (RRF, Cormack et al. 2009): each ranking adds ``1 / (k + rank)`` for every
  document it holds; no score calibration between the sides; small ``k`` favours the top ranks;
- a weighted sum of the two sides' scores after min-max normalisation over each side's results
  (``weight`` is the dense side's share; a document one side did not return scores 0 there).

A release fits one of them on judged queries it is not gated on (``evaluate/fusion.py``) and
records it; RRF with k = 60, the paper's constant, serves where nothing was fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from embedlake.errors import InputError

RRF_K = 60  # the constant of the paper


@dataclass(frozen=True)
class Fusion:
    method: Literal["rrf", "weighted"] = "rrf"
    k: int = RRF_K  # rrf
    weight: float = 0.5  # weighted: the dense side's share

    def __post_init__(self) -> None:
        if self.method not in ("rrf", "weighted") or self.k < 1 or not 0 <= self.weight <= 1:
            raise InputError(
                f"hybrid fusion {self.method} k={self.k} weight={self.weight}: method rrf or "
                "weighted, k ≥ 1, weight in [0, 1]"
            )

    @property
    def name(self) -> str:
        return f"rrf k={self.k}" if self.method == "rrf" else f"weighted {self.weight:.2f}"

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_report(cls, fields: Mapping[str, Any] | None) -> Fusion:
        """The fusion a release recorded (``report["hybrid"]["fusion"]``); RRF k=60 if none."""
        if not fields:
            return cls()
        try:
            return cls(str(fields["method"]), int(fields["k"]), float(fields["weight"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"hybrid fusion {dict(fields)!r}: not method, k and weight") from None


# what a release tries when it fits (the grid is small: each point is one pass over the queries)
CANDIDATES = [Fusion("rrf", k) for k in (1, 5, 10, 20, 40, 60, 100)] + [
    Fusion("weighted", weight=w / 10) for w in range(1, 10)
]


def fuse(
    dense: Sequence[tuple[str, float]],
    lexical: Sequence[tuple[str, float]],
    fusion: Fusion = Fusion(),
) -> dict[str, float]:
    """Document id → fused score; each side is (id, score) best first."""
    if fusion.method == "rrf":
        return rrf([[d for d, _ in dense], [d for d, _ in lexical]], fusion.k)
    fused: dict[str, float] = {}
    for side, share in ((dense, fusion.weight), (lexical, 1 - fusion.weight)):
        for doc_id, score in _minmax(side):
            fused[doc_id] = fused.get(doc_id, 0.0) + share * score
    return fused


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Document id → fused score over ``rankings`` (each best first)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank + 1)
    return fused


def _minmax(side: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    if not side:
        return []
    scores = [s for _, s in side]
    low, high = min(scores), max(scores)
    if high == low:  # one result, or all equal: each is the side's best
        return [(d, 1.0) for d, _ in side]
    return [(d, (s - low) / (high - low)) for d, s in side]
