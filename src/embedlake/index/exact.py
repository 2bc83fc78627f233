"""Index engine ``exact``: brute-force inner product with NumPy (BLAS); the ground truth."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors, top_k


class ExactIndex:
    engine = "exact"

    def __init__(self, dim: int, **_: Any) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._vectors: Matrix = np.empty((0, dim), dtype=np.float32)
        self._live = np.empty(0, dtype=bool)

    def __len__(self) -> int:
        return int(self._live.sum())

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.remove([i for i in ids if i in self._pos])  # re-adding an id replaces it
        start = len(self._ids)
        self._ids.extend(ids)
        self._pos.update({doc_id: start + n for n, doc_id in enumerate(ids)})
        self._vectors = np.vstack([self._vectors, vectors]) if start else vectors.copy()
        self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])

    def remove(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            pos = self._pos.pop(doc_id, None)
            if pos is not None:
                self._live[pos] = False

    def search(
        self, queries: Matrix, k: int, allowed: Collection[str] | None = None
    ) -> list[list[tuple[str, float]]]:
        queries = check_vectors(queries, self.dim)
        if allowed is None:
            if self._live.all():
                return top_k(queries, self._vectors, self._ids, k)
            rows = np.flatnonzero(self._live)
        else:
            rows = np.array(sorted(self._pos[i] for i in allowed if i in self._pos), dtype=np.int64)
        return top_k(queries, self._vectors[rows], [self._ids[i] for i in rows], k)

    def ids(self) -> list[str]:
        return list(self._pos)

    def vector(self, doc_id: str) -> Matrix | None:
        pos = self._pos.get(doc_id)
        return None if pos is None else np.array(self._vectors[pos], dtype=np.float32)

    def save(self, folder: Path) -> None:
        keep = np.flatnonzero(self._live)
        np.save(folder / "vectors.npy", self._vectors[keep])
        (folder / "ids.json").write_text(json.dumps([self._ids[i] for i in keep]), encoding="utf-8")

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def load(cls, folder: Path, **_: Any) -> ExactIndex:
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # paged in as searched
        index = cls(int(vectors.shape[1]))
        index._ids = ids
        index._pos = {doc_id: n for n, doc_id in enumerate(ids)}
        index._vectors = vectors
        index._live = np.ones(len(ids), dtype=bool)
        return index
