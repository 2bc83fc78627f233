"""What a pass over vectors read a batch at a time keeps, so that nothing needs them all at once:
a seeded uniform sample of rows (``Reservoir``), and the exact top k of some queries among every
row seen (``RunningTopK``). Index builds, the release's PCA and its recall cost use them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlake.index import Matrix
from embedlake.index import quantize as q


class Reservoir:
    """A seeded uniform sample of at most ``size`` rows of a stream (Algorithm R, a batch at a
    time): their ids, vectors and positions in the stream."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self._rng = size, np.random.default_rng(seed)
        self.ids: list[str] = []
        self.positions: list[int] = []
        self._vectors: list[Any] = []

    def offer(self, ids: Sequence[str], vectors: Matrix, first: int) -> None:
        """Rows ``first``… of the stream: each replaces a random sampled row with the
        probability that keeps the sample uniform."""
        if not self.size:
            return
        fill = min(max(self.size - len(self.ids), 0), len(ids))
        for r in range(fill):
            self._keep(None, ids[r], vectors[r], first + r)
        if fill == len(ids):
            return
        positions = np.arange(first + fill, first + len(ids))
        slots = self._rng.integers(0, positions + 1)  # row p is kept with chance size / (p + 1)
        for r in np.flatnonzero(slots < self.size).tolist():
            self._keep(int(slots[r]), ids[fill + r], vectors[fill + r], int(positions[r]))

    def _keep(self, slot: int | None, doc_id: str, vector: Any, position: int) -> None:
        row = np.array(vector, dtype=np.float32)
        if slot is None:
            self.ids.append(doc_id)
            self._vectors.append(row)
            self.positions.append(position)
        else:
            self.ids[slot], self._vectors[slot], self.positions[slot] = doc_id, row, position

    def shrink(self, size: int, seed: int) -> None:
        """Keep a seeded uniform subset of ``size`` rows, in stream order."""
        chosen = list(range(len(self.ids)))
        if size < len(self.ids):
            chosen = np.random.default_rng(seed).choice(len(self.ids), size, replace=False).tolist()
        order = sorted(chosen, key=lambda r: self.positions[r])
        self.ids = [self.ids[r] for r in order]
        self._vectors = [self._vectors[r] for r in order]
        self.positions = [self.positions[r] for r in order]

    def matrix(self) -> Matrix:
        if not self._vectors:
            return np.empty((0, 0), dtype=np.float32)
        return np.ascontiguousarray(np.vstack(self._vectors), dtype=np.float32)


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
