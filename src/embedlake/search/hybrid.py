"""Hybrid search: dense and BM25 rankings fused into one, the way the release fitted it.

Three fusions:
- reciprocal rank fusion (RRF, Cormack et al. 2009): each ranking adds ``1 / (k + rank)`` for every
  document it holds; no score calibration between the sides; small ``k`` favours the top ranks;
- ``weighted``: a weighted sum of the two sides' scores after min-max normalisation over each side's
  results (``weight`` is the dense side's share; a document one side did not return scores 0 there);
- ``tmm``: the same sum after theoretical min-max normalisation (Bruch, Gai and Ingber 2023, "An
  analysis of fusion functions for hybrid retrieval"): each side's floor is the lowest score its
  function can give (cosine −1, BM25 0) instead of the lowest it returned, so a query whose
  results all score alike on one side keeps them close there instead of spread over 0–1 (with
  ``passages.aggregate = "sum"`` dense scores can fall below −1: they are normalised the same
  way, only not bounded by 0). Measured on the six judged collections: docs/benchmarks.md,
  section 7.

A release fits one of them on judged queries it is not gated on (``evaluate/fusion.py``) and
records it; RRF with k = 60, the paper's constant, serves where nothing was fitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from embedlake.errors import InputError

RRF_K = 60  # the constant of the paper
METHODS = ("rrf", "weighted", "tmm")
_FLOORS = (-1.0, 0.0)  # tmm: the lowest score of each side (cosine of unit vectors, BM25)


@dataclass(frozen=True)
class Fusion:
    method: Literal["rrf", "weighted", "tmm"] = "rrf"
    k: int = RRF_K  # rrf
    weight: float = 0.5  # weighted and tmm: the dense side's share

    def __post_init__(self) -> None:
        if self.method not in METHODS or self.k < 1 or not 0 <= self.weight <= 1:
            raise InputError(
                f"hybrid fusion {self.method} k={self.k} weight={self.weight}: method one of "
                f"{', '.join(METHODS)}, k ≥ 1, weight in [0, 1]"
            )

    @property
    def name(self) -> str:
        return f"rrf k={self.k}" if self.method == "rrf" else f"{self.method} {self.weight:.2f}"

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
CANDIDATES = (
    [Fusion("rrf", k) for k in (1, 5, 10, 20, 40, 60, 100)]
    + [Fusion("weighted", weight=w / 10) for w in range(1, 10)]
    + [Fusion("tmm", weight=w / 20) for w in range(1, 20)]
)


def fuse(
    dense: Sequence[tuple[str, float]],
    lexical: Sequence[tuple[str, float]],
    fusion: Fusion = Fusion(),
) -> dict[str, float]:
    """Document id → fused score; each side is (id, score) best first."""
    if fusion.method == "rrf":
        return rrf([[d for d, _ in dense], [d for d, _ in lexical]], fusion.k)
    fused: dict[str, float] = {}
    sides = ((dense, fusion.weight), (lexical, 1 - fusion.weight))
    for (side, share), floor in zip(sides, _FLOORS, strict=True):
        normalised = _minmax(side) if fusion.method == "weighted" else _theoretical(side, floor)
        for doc_id, score in normalised:
            fused[doc_id] = fused.get(doc_id, 0.0) + share * score
    return fused


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Document id → fused score over ``rankings`` (each best first)."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking):
            fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (k + rank + 1)
    return fused


def _theoretical(side: Sequence[tuple[str, float]], floor: float) -> list[tuple[str, float]]:
    if not side:
        return []
    span = max(s for _, s in side) - floor
    if span <= 0:  # every result at the floor: none is better than a document not returned
        return [(d, 0.0) for d, _ in side]
    return [(d, (s - floor) / span) for d, s in side]


def _minmax(side: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    if not side:
        return []
    scores = [s for _, s in side]
    low, high = min(scores), max(scores)
    if high == low:  # one result, or all equal: each is the side's best
        return [(d, 1.0) for d, _ in side]
    return [(d, (s - low) / (high - low)) for d, s in side]
