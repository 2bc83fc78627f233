"""What a pass over vectors read a batch at a time keeps, so that nothing needs them all at once:
a seeded uniform sample of rows (``Reservoir``), and the exact top k of some queries among every
row seen (``RunningTopK``). Index builds, the release's PCA and its recall cost use them."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np

from embedlake.index import Matrix
from embedlake.index import quantize as q
from embedlake.index.rows import Rows

T = TypeVar("T")


class Reservoir:
    """A seeded uniform sample of at most ``size`` rows of a stream (Algorithm R, a batch at a
    time): their ids, vectors and positions in the stream. The vectors are kept in one growing
    matrix (``Rows``), so the sample costs its own size, with no object per row."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self._rng = size, np.random.default_rng(seed)
        self.ids: list[str] = []
        self.positions: list[int] = []
        self._rows: Rows | None = None  # made at the first offer, when the width is known

    def offer(self, ids: Sequence[str], vectors: Matrix, first: int) -> None:
        """Rows ``first``… of the stream: each replaces a random sampled row with the
        probability that keeps the sample uniform."""
        if not self.size or not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        if self._rows is None:
            self._rows = Rows(vectors.shape[1])
        fill = min(max(self.size - len(self.ids), 0), len(ids))
        if fill:
            self._rows.append(vectors[:fill])
            self.ids.extend(ids[:fill])
            self.positions.extend(range(first, first + fill))
        if fill == len(ids):
            return
        positions = np.arange(first + fill, first + len(ids))
        slots = self._rng.integers(0, positions + 1)  # row p is kept with chance size / (p + 1)
        kept = self._rows.matrix
        for r in np.flatnonzero(slots < self.size).tolist():
            slot = int(slots[r])
            kept[slot] = vectors[fill + r]
            self.ids[slot], self.positions[slot] = ids[fill + r], int(positions[r])

    def shrink(self, size: int, seed: int) -> None:
        """Keep a seeded uniform subset of ``size`` rows, in stream order."""
        chosen = list(range(len(self.ids)))
        if size < len(self.ids):
            chosen = np.random.default_rng(seed).choice(len(self.ids), size, replace=False).tolist()
        order = sorted(chosen, key=lambda r: self.positions[r])
        self.ids = [self.ids[r] for r in order]
        self.positions = [self.positions[r] for r in order]
        if self._rows is not None:
            kept = np.asarray(self._rows.matrix)[order]
            self._rows = Rows(self._rows.dim)
            self._rows.append(kept)

    def matrix(self) -> Matrix:
        """The sampled vectors, one row per id (a view, until the next offer)."""
        if self._rows is None:
            return np.empty((0, 0), dtype=np.float32)
        matrix: Matrix = self._rows.matrix
        return matrix


class RunningTopK:
    """The exact top ``k`` by inner product of each of ``queries`` among the rows added so far:
    each batch scanned, then merged with the best so far."""

    def __init__(self, queries: Matrix, k: int) -> None:
        self.queries, self.k = np.ascontiguousarray(queries, dtype=np.float32), k
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        self._ids = np.full((len(queries), k), "", dtype=object)

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        if not len(ids) or not len(self.queries):
            return
        scores, rows = q.scan(self.queries, np.asarray(vectors, np.float32), min(self.k, len(ids)))
        found = np.asarray(ids, dtype=object)[np.maximum(rows, 0)]
        both_s, both_i = np.hstack([self.scores, scores]), np.hstack([self._ids, found])
        order = np.argsort(-both_s, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(both_s, order, axis=1)
        self._ids = np.take_along_axis(both_i, order, axis=1)

    def hits(self) -> list[list[str]]:
        """Each query's top ids, best first (fewer than k where fewer rows were added)."""
        return [
            [d for d, s in zip(row_i, row_s, strict=True) if s > -np.inf]
            for row_i, row_s in zip(self._ids.tolist(), self.scores.tolist(), strict=True)
        ]


def sample_of(items: Iterable[T], size: int, seed: int) -> list[T]:
    """A seeded uniform sample of ``size`` of ``items`` (Algorithm R), in their order; all of
    them, in order, when there are no more than ``size``."""
    rng = random.Random(seed)
    kept: list[tuple[int, T]] = []
    for n, item in enumerate(items):
        if n < size:
            kept.append((n, item))
        else:
            slot = rng.randrange(n + 1)
            if slot < size:
                kept[slot] = (n, item)
    return [item for _, item in sorted(kept, key=lambda pair: pair[0])]
