"""Documents ranked by their passages.

An index holds passages (``embeddings.passages``: a key is a document id, or a document id and a
span); a search asks it for passages and returns documents, each once, scored from its passages:

- ``max`` (MaxP, Dai & Callan 2019): a document scores as its best passage, the default;
- ``sum``: the sum of its best ``top`` passages' scores among those fetched (a document that
  matches in several places rises).

``collapse`` keeps, for each document, the key of its best passage: the passage that matched.
"""

from __future__ import annotations

from collections.abc import Sequence

from embedlake.index.keys import doc_of


def collapse(
    row: Sequence[tuple[str, float]], k: int, aggregate: str = "max", top: int = 3
) -> list[tuple[str, float, str]]:
    """Passages ``(key, score)``, best first → at most ``k`` ``(doc id, score, best passage's
    key)``, best first."""
    if aggregate == "max":
        seen: set[str] = set()
        out = []
        for key, score in row:
            doc = doc_of(key)
            if doc not in seen:
                seen.add(doc)
                out.append((doc, score, key))
                if len(out) == k:
                    break
        return out
    scores: dict[str, float] = {}
    counted: dict[str, int] = {}
    best: dict[str, str] = {}
    for key, score in row:
        doc = doc_of(key)
        if counted.get(doc, 0) < top:
            scores[doc] = scores.get(doc, 0.0) + score
            counted[doc] = counted.get(doc, 0) + 1
            best.setdefault(doc, key)
    order = sorted(scores, key=lambda d: -scores[d])[:k]
    return [(d, scores[d], best[d]) for d in order]


def keys_by_document(keys: Sequence[str]) -> dict[str, list[str]]:
    """The passage keys of each document split into several (whole documents left out: their
    key is their id)."""
    out: dict[str, list[str]] = {}
    for key in keys:
        doc = doc_of(key)
        if doc != key:
            out.setdefault(doc, []).append(key)
    return out
