"""Index engine ``exact``: brute-force inner product over every vector; the ground truth.

Options: ``quantization`` ``"none"`` scans the fp32 vectors; ``"int8"`` (a byte per dimension) or
``"binary"`` (a bit per dimension) scans compressed codes held in memory, and then, with
``rescore`` r ≥ 1, re-scores the best k × r candidates with their fp32 vectors (exact scores; only
those rows are read). A loaded index memory-maps its fp32 vectors, so a quantised one keeps only
its codes in memory. The codecs and scan kernels are in ``quantize.py``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors
from embedlake.index import quantize as q
from embedlake.index.rows import Rows

# a filter keeping less than this share of the vectors is answered from a copy of its rows
# (reading those rows beats reading all of them), a broad one by a full scan that skips the rest
_GATHER_SHARE = 1 / 8


class ExactIndex:
    engine = "exact"

    def __init__(
        self,
        dim: int,
        quantization: str = "none",
        rescore: int = q.DEFAULT_RESCORE,
        **_: Any,
    ) -> None:
        self.dim = dim
        self.quantization, self.rescore = q.check_options(quantization, rescore)
        self._codes = q.make(self.quantization, dim)
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._rows = Rows(dim)
        self._live = np.empty(0, dtype=bool)

    def __len__(self) -> int:
        return len(self._pos)

    @property
    def _vectors(self) -> Matrix:
        matrix: Matrix = self._rows.matrix
        return matrix

    @property
    def codes_nbytes(self) -> int:
        """Bytes of compressed codes held in memory (0 without quantization)."""
        return 0 if self._codes is None else self._codes.nbytes

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.remove([i for i in ids if i in self._pos])  # re-adding an id replaces it
        start = len(self._ids)
        self._ids.extend(ids)
        self._pos.update({doc_id: start + n for n, doc_id in enumerate(ids)})
        self._rows.append(vectors)
        self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])
        if self._codes is not None:
            self._codes.extend(self._vectors, start)

    def remove(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            pos = self._pos.pop(doc_id, None)
            if pos is not None:
                self._live[pos] = False

    def search(
        self,
        queries: Matrix,
        k: int,
        allowed: Collection[str] | None = None,
        effort_hits: int | None = None,  # unused: a scan's effort is its k (and rescore)
    ) -> list[list[tuple[str, float]]]:
        queries = check_vectors(queries, self.dim)
        mask = self._selection(allowed)
        count = len(self._ids) if mask is None else int(mask.sum())
        k = min(k, count)
        if k <= 0:
            return [[] for _ in range(len(queries))]
        if self._codes is None:
            scores, rows = self._scan(queries, k, mask, count)
        else:
            wanted = min(k * max(self.rescore, 1), count)
            scores, rows = self._codes.search(queries, wanted, mask)
            if self.rescore:
                scores, rows = q.rescore(queries, self._vectors, rows, k)
        ids = self._ids
        return [
            [(ids[r], s) for r, s in zip(row_r[:k], row_s[:k], strict=True) if r >= 0]
            for row_r, row_s in zip(rows.tolist(), scores.tolist(), strict=True)
        ]

    def _selection(self, allowed: Collection[str] | None) -> q.Mask | None:
        """The rows a search may return: None for all of them."""
        if allowed is None:
            return None if len(self._pos) == len(self._ids) else self._live
        mask = np.zeros(len(self._ids), dtype=bool)
        mask[[self._pos[i] for i in allowed if i in self._pos]] = True
        return mask

    def _scan(
        self, queries: Matrix, k: int, mask: q.Mask | None, count: int
    ) -> tuple[q.Scores, q.Rows]:
        if mask is None or count >= _GATHER_SHARE * len(mask):
            return q.scan(queries, self._vectors, k, mask)
        rows = np.flatnonzero(mask)
        scores, found = q.scan(queries, self._vectors[rows], k)
        return scores, np.where(found >= 0, rows[found], -1)

    def ids(self) -> list[str]:
        return list(self._pos)

    def vector(self, doc_id: str) -> Matrix | None:
        pos = self._pos.get(doc_id)
        return None if pos is None else np.array(self._vectors[pos], dtype=np.float32)

    def save(self, folder: Path) -> None:
        keep = np.flatnonzero(self._live)
        np.save(folder / "vectors.npy", self._vectors[keep])
        (folder / "ids.json").write_text(json.dumps([self._ids[i] for i in keep]), encoding="utf-8")
        if self._codes is not None:
            self._codes.save(folder, keep)  # saved, not recomputed at load
        (folder / "exact.json").write_text(json.dumps(self.params()), encoding="utf-8")

    def params(self) -> dict[str, Any]:
        return {"quantization": self.quantization, "rescore": self.rescore}

    @classmethod
    def load(cls, folder: Path, rescore: int | None = None, **_: Any) -> ExactIndex:
        """``rescore`` overrides the saved one; the quantization is the saved one, whatever the
        settings say now (the codes were made for it)."""
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # paged in as searched
        options = folder / "exact.json"  # absent in an index saved before the options existed
        saved = json.loads(options.read_text(encoding="utf-8")) if options.is_file() else {}
        index = cls(
            int(vectors.shape[1]),
            quantization=saved.get("quantization", "none"),
            rescore=saved.get("rescore", q.DEFAULT_RESCORE) if rescore is None else rescore,
        )
        index._codes = q.load(folder, index.dim)
        index._ids = ids
        index._pos = {doc_id: n for n, doc_id in enumerate(ids)}
        index._rows = Rows(index.dim, base=vectors)
        index._live = np.ones(len(ids), dtype=bool)
        return index
