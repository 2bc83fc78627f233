"""Search effort tuned to a recall target, measured when an index is built.

Each approximate engine has one knob that trades recall for speed: the candidate list of an HNSW
walk (``ef_search``, faiss and pgvector alike), the lists an IVF search visits (``nprobe``,
``rabitq``, whose ``rescore`` is settled first) or, for a quantised ``exact`` index, how many
candidates per hit are re-scored with their fp32 vectors (``rescore``). A fixed default is a cost
nobody chose (HNSW's 128 reaches recall 1.000 on collections where 16–32 reach 0.95), so the build
holds a seeded sample of the vectors back, adds the rest, measures recall@10 against exact search
with the held-back vectors as queries, and keeps the smallest effort of the engine's ladder that
reaches the target; then it adds the sample. Held out, not searched with themselves left out: a
vector already in an HNSW graph is found with its neighbours by the edges that join them, which
overstates recall (0.98 measured that way where new queries got 0.69, at the same ef).

A document's vector is still an easy query: it lies where the documents lie, often beside a near
copy of itself. Real queries are shorter and lie between documents, and an effort tuned on document
vectors alone fell short for them where documents have near copies (``ef_search`` 10 tuned to
0.95 gave real queries 0.857 on 130k LSA vectors; docs/benchmarks.md, section 17). So the caller
may give query-like vectors too (``queries_for``: the build embeds a span of 8–32 words of each
held-back passage, as a query is embedded), and the effort chosen reaches the target on both.

Ties count: an approximate hit scoring at least the exact k-th score is a hit, so duplicate vectors
do not turn a right answer into a miss. An exact fp32 index has no knob (its recall is 1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedlake.index import TUNED_K as K
from embedlake.index import Matrix, VectorIndex
from embedlake.index.stream import Reservoir, RunningTopK

log = logging.getLogger(__name__)

_MIN_SAMPLE = 20  # fewer vectors to hold back (a corpus under 100): nothing is tuned
_TIE = 1e-5  # scores within this of the exact k-th count as ties (fp32 sums in another order)
# the ladder of each engine's knob, smallest (cheapest) first
# steps of about an eighth up to 48, then a sixth to a quarter: a sample just under the target
# at 32 (0.946 on 100k sentences) went on to 48 with steps of half (1.5× the cost; unseen
# queries got 0.970), to 40 with steps of a quarter (0.965) (decision 0032); a step costs a
# pass of the sample's searches at build, a rung too many costs every search served
_EF = (
    *(10, 12, 14, 16, 18, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 72, 80, 96, 112, 128),
    *(160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 1000),
)
LADDERS: dict[str, tuple[str, tuple[int, ...]]] = {
    "hnsw": ("ef_search", _EF),
    "rabitq-hnsw": ("ef_search", _EF),
    "pgvector": ("ef_search", _EF),  # pgvector's hnsw.ef_search stops at 1000
    "exact": ("rescore", (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100)),
    # up to every list the index has (``knob``): structureless vectors need most of them
    "rabitq": ("nprobe", (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)),
}
# a second knob settled first, with the main one at its largest: how many candidates a compressed
# code needs re-scored depends on the data (RaBitQ's estimate is rougher in fewer dimensions)
SETTLED_FIRST: dict[str, tuple[str, tuple[int, ...]]] = {
    "rabitq": ("rescore", (2, 3, 5, 10, 20, 50, 100)),
}


@dataclass(frozen=True)
class Tuning:
    knob: str
    value: int  # the effort chosen (and set on the index)
    recall: float  # recall@10 the sample measured at ``value``
    target: float
    reached: bool  # False: no effort of the ladder reached the target; its largest is kept
    sample: int  # held-back vectors measured as queries
    # every effort tried → its recall (the least of the sets'), cheapest first
    curve: dict[int, float]
    seconds: float
    settled: dict[str, int]  # a knob settled first (SETTLED_FIRST), and its value
    # each set of queries measured ("documents": the held-back vectors; "spans": query-like
    # vectors of them) → its size and its curve
    sets: dict[str, int] = field(default_factory=dict)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        def rounded(curve: dict[int, float]) -> dict[str, float]:
            return {str(v): round(r, 4) for v, r in curve.items()}

        return {
            **asdict(self),
            "curve": rounded(self.curve),
            "curves": {name: rounded(c) for name, c in self.curves.items()},
        }


def knob(index: VectorIndex) -> tuple[str, tuple[int, ...]] | None:
    """The index's effort knob and its ladder; None where there is nothing to tune."""
    if index.engine == "exact" and getattr(index, "quantization", "none") == "none":
        return None
    found = LADDERS.get(index.engine)
    lists = int(getattr(index, "nlist", 0))
    if found is None or found[0] != "nprobe" or not lists:
        return found
    name, ladder = found
    while ladder[-1] * 1.5 < lists:  # on by half again: 768, 1152, …
        ladder = (*ladder, int(ladder[-1] * 1.5))
    return name, (*(e for e in ladder if e < lists), lists)


Batches = Iterable[tuple[Sequence[str], Matrix]]
# the held-back ids → one query-like vector each, in the index's space (a zero row: none)
QueriesFor = Callable[[Sequence[str]], Matrix]


def add_tuned(
    index: VectorIndex,
    ids: Sequence[str],
    vectors: Matrix,
    target: float,
    sample: int = 500,
    seed: int = 0,
    settle: bool = True,
    queries_for: QueriesFor | None = None,
) -> Tuning | None:
    """``add_streamed`` of vectors already in memory."""
    return add_streamed(
        index, [(ids, vectors)], target, sample, seed, settle, queries_for=queries_for
    )


def add_streamed(
    index: VectorIndex,
    batches: Batches,
    target: float,
    sample: int = 500,
    seed: int = 0,
    settle: bool = True,
    train: int = 0,
    queries_for: QueriesFor | None = None,
) -> Tuning | None:
    """Add every batch of ``batches`` (ids, vectors; iterable twice) to ``index``, tuning its
    knob on the way, with memory bounded by a batch and the samples, never all the vectors.

    The first pass draws seeded uniform samples: ``sample`` rows to hold back (at most a fifth)
    and, for an index that trains (``rabitq``'s lists), ``train`` rows to train it on. The second
    adds every row but the held-back ones and keeps the exact top-10 scores among them of each
    held-back row and of each query-like vector ``queries_for`` gives for the held-back ids.
    Then the smallest effort whose recall@10 reaches ``target`` on both sets of queries is set,
    and the held-back rows added. A knob of ``SETTLED_FIRST`` is settled before, unless
    ``settle`` is False (the caller set it). None (everything added, the effort left as it was)
    for an index without a knob or with too few vectors to measure."""
    found = knob(index)
    tunes = found is not None and target > 0
    trains = train > 0 and callable(getattr(index, "train", None))
    if not (tunes or trains):
        for ids, vectors in batches:
            index.add(ids, vectors)
        return None
    started = time.perf_counter()
    held, trainer = Reservoir(sample if tunes else 0, seed), Reservoir(train, seed + 1)
    n = 0
    for ids, vectors in batches:
        held.offer(ids, vectors, n)
        if trains:
            trainer.offer(ids, vectors, n)
        n += len(ids)
    if trains and n:
        index.train(trainer.matrix(), n)  # type: ignore[attr-defined]  # checked above
    size = min(sample, n // 5)
    if not tunes or size < _MIN_SAMPLE:
        held = Reservoir(0, seed)
    held.shrink(size, seed)
    queries, kept = held.matrix(), set(held.ids)
    sets = {"documents": queries}
    if len(queries) and queries_for is not None:
        sets["spans"] = _unit_rows(queries_for(held.ids))
    truths = {name: RunningTopK(q, K) for name, q in sets.items() if len(q)}
    for ids, vectors in batches:
        rows = [r for r, i in enumerate(ids) if i not in kept] if kept else None
        if rows is not None and len(rows) < len(ids):
            ids, vectors = [ids[r] for r in rows], np.asarray(vectors)[rows]
        index.add(ids, vectors)
        for truth in truths.values():
            truth.add(ids, vectors)
    if not len(queries):
        return None
    found = knob(index)  # again: an IVF index's ladder ends at its lists, known once trained
    assert found is not None  # a sample is only held back to tune
    measured = [(name, sets[name], t.scores[:, K - 1]) for name, t in truths.items()]
    tuning = _tune(index, found, measured, target, settle, started)
    index.add(held.ids, queries)
    return tuning


def _unit_rows(vectors: Matrix) -> Matrix:
    """The non-zero rows of ``vectors`` at unit length (a query the model has nothing to say
    about, such as LSA's on unseen words, is no query)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or not len(array):
        return np.zeros((0, 0), dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    keep = norms[:, 0] > 0
    return np.ascontiguousarray(array[keep] / norms[keep])


Measured = list[tuple[str, Matrix, Any]]  # (name, queries, exact k-th score of each)


def _tune(
    index: VectorIndex,
    found: tuple[str, tuple[int, ...]],
    measured: Measured,
    target: float,
    settle: bool,
    started: float,
) -> Tuning:
    """Set the smallest effort of the knob ``found`` whose recall@10 reaches ``target`` on each
    set of ``measured`` queries (a hit scores at least the exact k-th score of its query)."""
    name, ladder = found
    settled: dict[str, int] = {}
    first = SETTLED_FIRST.get(index.engine) if settle else None
    if first is not None:  # with every list visited (or the ladder's most), codes alone decide
        setattr(index, name, max(ladder[-1], getattr(index, "nlist", 0)))
        rough, _ = _climb(index, *first, measured, target)
        settled[first[0]] = next((e for e, r in rough.items() if r >= target), first[1][-1])
        setattr(index, first[0], settled[first[0]])
    curve, curves = _climb(index, name, ladder, measured, target)
    value = next((e for e, r in curve.items() if r >= target), ladder[-1])
    setattr(index, name, value)
    tuning = Tuning(
        name,
        value,
        curve[value],
        target,
        curve[value] >= target,
        len(measured[0][1]),
        curve,
        time.perf_counter() - started,
        settled,
        {set_name: len(queries) for set_name, queries, _ in measured},
        curves,
    )
    if not tuning.reached:
        log.warning(
            "%s index: recall@10 %.3f at %s %d, the ladder's largest, is under the target %.2f",
            index.engine,
            tuning.recall,
            name,
            value,
            target,
        )
    return tuning


def _climb(
    index: VectorIndex,
    name: str,
    ladder: tuple[int, ...],
    measured: Measured,
    target: float,
) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Recall@10 of each effort of ``ladder`` in turn, up to the first that reaches ``target``
    on every set of queries: the least of the sets' recalls, and each set's."""
    curve: dict[int, float] = {}
    curves: dict[str, dict[int, float]] = {set_name: {} for set_name, _, _ in measured}
    for effort in ladder:
        setattr(index, name, effort)
        for set_name, queries, kth in measured:
            answers = index.search(queries, K)
            hits = sum(
                s >= t - _TIE for answer, t in zip(answers, kth, strict=True) for _, s in answer
            )
            curves[set_name][effort] = float(hits) / (K * len(queries))
        curve[effort] = min(c[effort] for c in curves.values())
        if curve[effort] >= target:
            break
    return curve, curves
