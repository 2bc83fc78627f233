"""Hard negatives for fine-tuning: documents that BM25 or the live model ranks high for a training
query but that are not its answer, with a guard against the unjudged answers among them.

Both sources rank one bounded corpus (every document a pair points to, plus a seeded sample of the
rest, at most ``corpus_limit``), and one guard applies to both: a candidate is dropped when it is
judged relevant to the query, or when the live model scores it within ``margin`` (relative) of the
pair's own positive, which is where unjudged relevant documents sit (the "relative margin" of
sentence-transformers' ``mine_hard_negatives``, and ranks ``[first, last)`` are its
``range_min``/``range_max``). That miner ranks with one embedding model only; BM25's candidates need
the same guard, so both are ranked here with one encoding of the corpus (docs/decisions/0023).
A pair for which fewer candidates survive is topped up with random corpus documents under the same
guard (without it only if the guard cannot be met: counted as ``unguarded``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlake.encoders import Encoder
from embedlake.errors import InputError
from embedlake.search.bm25 import Bm25
from embedlake.training.pairs import Pairs

log = logging.getLogger(__name__)

SOURCES = ("bm25", "live")


@dataclass(frozen=True)
class Mining:
    count: int = 1  # negatives per pair
    first: int = 3  # rank window [first, last) in each source's ranking (0 = the top)
    last: int = 50
    margin: float = 0.05
    sources: tuple[str, ...] = SOURCES
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.last:
            raise InputError(f"negative ranks {self.first}..{self.last}: need 0 ≤ first < last")
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise InputError(f"negative sources {sorted(unknown)}: use bm25 and/or live")


def mine(
    pairs: Pairs,
    corpus: dict[str, str],
    encoder: Encoder,
    mining: Mining,
    *,
    batch_size: int = 32,
) -> tuple[list[list[str]], dict[str, Any]]:
    """``count`` negative texts for every pair, and what the mining did (for the manifest)."""
    ids = sorted(corpus)
    if len(ids) < 2:
        raise InputError("mining hard negatives needs a corpus of at least 2 documents")
    texts = [corpus[i] for i in ids]
    row = {doc_id: n for n, doc_id in enumerate(ids)}
    anchors = sorted(set(pairs.anchors))
    at = {a: n for n, a in enumerate(anchors)}
    docs = encoder.encode(texts, batch_size=batch_size)
    queries = encoder.encode(anchors, batch_size=batch_size)
    positives = encoder.encode(pairs.positives, batch_size=batch_size)
    depth = min(mining.last, len(ids))
    ranked: dict[str, list[list[int]]] = {}
    if "live" in mining.sources:
        ranked["live"] = _top(queries, docs, depth)
    if "bm25" in mining.sources:
        bm25 = Bm25(ids, texts, stem=True)
        ranked["bm25"] = [[row[d] for d, _ in hits] for hits in bm25.search(anchors, depth)]
    rng = random.Random(mining.seed)
    used: dict[str, int] = {}  # anchor → candidates taken so far (its pairs get different ones)
    out: list[list[str]] = []
    # mined, random top-ups (guarded or not), and candidates the guard dropped (summed over pairs)
    counts = {"mined": 0, "random": 0, "unguarded": 0, "guarded": 0}
    for i, (anchor, positive_id) in enumerate(zip(pairs.anchors, _ids(pairs), strict=True)):
        q = at[anchor]
        ceiling = (1 - mining.margin) * float(queries[q] @ positives[i])
        judged = pairs.judged.get(anchor, set()) | {positive_id}
        candidates = _interleave([ranked[s][q][mining.first :] for s in mining.sources])
        kept = [
            c for c in candidates if ids[c] not in judged and float(queries[q] @ docs[c]) < ceiling
        ]
        counts["guarded"] += len(candidates) - len(kept)
        start = used.get(anchor, 0)
        chosen = kept[start : start + mining.count]
        used[anchor] = start + len(chosen)
        counts["mined"] += len(chosen)
        # too few survived: random documents, under the same guard while it can be met
        for attempt in range(200 * mining.count):
            if len(chosen) == mining.count:
                break
            c = rng.randrange(len(ids))
            guarded = attempt < 100 * mining.count
            if ids[c] in judged or c in chosen:
                continue
            if guarded and float(queries[q] @ docs[c]) >= ceiling:
                continue
            chosen.append(c)
            counts["random" if guarded else "unguarded"] += 1
        if len(chosen) < mining.count:
            raise InputError(
                f"{mining.count} negatives per pair: the corpus has too few documents that "
                f"are not judged relevant to {anchor[:60]!r}"
            )
        out.append([texts[c] for c in chosen])
    info = {
        "count": mining.count,
        "sources": list(mining.sources),
        "ranks": [mining.first, mining.last],
        "margin": mining.margin,
        "corpus": len(ids),
        **counts,
    }
    log.info("hard negatives: %s", info)
    return out, info


def corpus_for(
    wanted: dict[str, str], live: Iterable[tuple[str, str]], limit: int, seed: int
) -> dict[str, str]:
    """``wanted`` (the documents pairs and dev queries point to), then a seeded uniform sample of
    the other ``live`` (id, text) documents up to ``limit`` in all: one pass, memory bounded by
    ``limit`` whatever the corpus size (reservoir sampling)."""
    rng = random.Random(seed)
    room = max(0, limit - len(wanted))
    sample: list[tuple[str, str]] = []
    seen = 0
    for doc_id, text in live:
        if doc_id in wanted:
            continue
        seen += 1
        if len(sample) < room:
            sample.append((doc_id, text))
        elif (j := rng.randrange(seen)) < room:
            sample[j] = (doc_id, text)
    return {**wanted, **dict(sample)}


def _ids(pairs: Pairs) -> list[str]:
    if len(pairs.positive_ids) != len(pairs):
        raise InputError("hard negatives need the document of every positive")
    return pairs.positive_ids


def _top(queries: np.ndarray, docs: np.ndarray, depth: int, block: int = 256) -> list[list[int]]:
    """Each query's ``depth`` best documents by inner product, best first (blocks of queries
    bound the score matrix)."""
    out: list[list[int]] = []
    for s in range(0, len(queries), block):
        scores = queries[s : s + block] @ docs.T
        part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        out += np.take_along_axis(part, order, axis=1).tolist()
    return out


def _interleave(lists: list[list[int]]) -> list[int]:
    """Rank by rank, one from each source in turn, each document once."""
    seen: set[int] = set()
    out: list[int] = []
    for rank in range(max(map(len, lists), default=0)):
        for ranking in lists:
            if rank < len(ranking) and ranking[rank] not in seen:
                seen.add(ranking[rank])
                out.append(ranking[rank])
    return out
