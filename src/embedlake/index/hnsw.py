"""Index engine ``hnsw``: faiss ``IndexHNSWFlat`` with inner product.

faiss HNSW cannot delete; removed ids are kept out of results with an ``IDSelector`` at search time.
A saved index keeps them as tombstones (``removed.json``) until they are more than
``COMPACT_SHARE`` of its vectors, when saving builds the graph again without them: an update of a
few documents does not rebuild a graph of millions.

A filter (``allowed``) that keeps few vectors is answered by brute force over those vectors (exact,
and cheaper than a graph walk that skips most nodes); a broad one by the graph with a selector, with
brute force as the fallback when the walk finds fewer than ``k``. pgvector and Qdrant do the same.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors, effort_for, top_k

# a filter keeping at most this share of the index (or this many vectors) is scanned exactly
_SCAN_SHARE = 0.05
_SCAN_MIN = 20_000
COMPACT_SHARE = 0.2  # removed vectors over this share of the graph: saving rebuilds it
REMOVED = "removed.json"  # the tombstones' positions, beside ids.json


class HnswIndex:
    engine = "hnsw"

    def __init__(
        self, dim: int, m: int = 32, ef_construction: int = 200, ef_search: int = 128, **_: Any
    ) -> None:
        self.dim = dim
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self._index = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._removed: set[int] = set()
        self._params: Any = None
        self._selector: Any = None

    def __len__(self) -> int:
        return len(self._ids) - len(self._removed)

    def add(self, ids: Sequence[str], vectors: Matrix) -> None:
        vectors = check_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        self.remove([i for i in ids if i in self._pos])
        start = len(self._ids)
        self._index.add(vectors)
        self._ids.extend(ids)
        self._pos.update({doc_id: start + n for n, doc_id in enumerate(ids)})

    def remove(self, ids: Sequence[str]) -> None:
        for doc_id in ids:
            pos = self._pos.pop(doc_id, None)
            if pos is not None:
                self._removed.add(pos)
        self._params = self._selector = None

    def _search_params(self, ef: int) -> Any:
        """Parameters for a walk of ``ef`` that skips removed labels, kept per ``ef`` (threads
        searching with different k each find their own; a removal clears them)."""
        params = self._params.get(ef) if self._params is not None else None
        if params is None:
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing in stubs
            params.efSearch = ef
            if self._removed:
                params.sel = self._removed_selector()
            self._params = {**(self._params or {}), ef: params}
        return params

    def _removed_selector(self) -> Any:
        """Every label but the removed ones (kept until the next removal: built in O(removed))."""
        if self._selector is None:
            # Keep references: faiss owns neither the selector nor its ids.
            self._selector_ids = np.fromiter(self._removed, dtype=np.int64)
            self._batch = faiss.IDSelectorBatch(self._selector_ids)
            self._selector = faiss.IDSelectorNot(self._batch)
        return self._selector

    def search(
        self,
        queries: Matrix,
        k: int,
        allowed: Collection[str] | None = None,
        effort_hits: int | None = None,
    ) -> list[list[tuple[str, float]]]:
        queries = check_vectors(queries, self.dim)
        if not self._ids:
            return [[] for _ in range(len(queries))]
        if allowed is not None:
            return self._search_filtered(queries, k, allowed, effort_hits)
        k = min(k, len(self._ids))
        ef = effort_for(self.ef_search, k, effort_hits)
        if self._removed or ef != self.ef_search:
            scores, labels = self._index.search(queries, k, params=self._search_params(ef))
        else:
            # the plain call: SearchParameters cost a few microseconds per query in the wrapper
            # (the index's own efSearch is only ever the tuned one: threads may share it)
            self._index.hnsw.efSearch = self.ef_search
            scores, labels = self._index.search(queries, k)
        return self._hits(labels, scores)

    def _hits(self, labels: Any, scores: Any) -> list[list[tuple[str, float]]]:
        ids = self._ids
        # .tolist() first: Python ints and floats are much cheaper to iterate than NumPy scalars
        return [
            [(ids[j], s) for j, s in zip(row_l, row_s, strict=True) if j >= 0]
            for row_l, row_s in zip(labels.tolist(), scores.tolist(), strict=True)
        ]

    def _search_filtered(
        self, queries: Matrix, k: int, allowed: Collection[str], effort_hits: int | None
    ) -> list[list[tuple[str, float]]]:
        rows = np.array(sorted(self._pos[i] for i in allowed if i in self._pos), dtype=np.int64)
        if len(rows) <= max(_SCAN_MIN, _SCAN_SHARE * len(self._ids)):
            return self._scan(queries, rows, k)
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing in stubs
        params.efSearch = effort_for(self.ef_search, k, effort_hits)
        selector = faiss.IDSelectorBatch(rows)
        params.sel = selector
        scores, labels = self._index.search(queries, min(k, len(rows)), params=params)
        hits = self._hits(labels, scores)
        short = [n for n, row in enumerate(hits) if len(row) < min(k, len(rows))]
        if short:  # the graph walk ran out of allowed nodes: answer those queries exactly
            for n, row in zip(short, self._scan(queries[short], rows, k), strict=True):
                hits[n] = row
        return hits

    def _scan(self, queries: Matrix, rows: Any, k: int) -> list[list[tuple[str, float]]]:
        vectors = self._index.reconstruct_batch(rows) if len(rows) else np.empty((0, self.dim))
        return top_k(queries, vectors.astype(np.float32), [self._ids[i] for i in rows], k)

    def ids(self) -> list[str]:
        return list(self._pos)

    def vector(self, doc_id: str) -> Matrix | None:
        pos = self._pos.get(doc_id)
        return None if pos is None else np.asarray(self._index.reconstruct(pos), dtype=np.float32)

    def save(self, folder: Path) -> None:
        if len(self._removed) > COMPACT_SHARE * len(self._ids):
            self._compact()
        self._index.hnsw.efSearch = self.ef_search
        faiss.write_index(self._index, str(folder / "index.faiss"))
        (folder / "ids.json").write_text(json.dumps(self._ids), encoding="utf-8")
        if self._removed:
            (folder / REMOVED).write_text(json.dumps(sorted(self._removed)), encoding="utf-8")

    def _compact(self) -> None:
        keep = [n for n in range(len(self._ids)) if n not in self._removed]
        vectors = (
            np.vstack([self._index.reconstruct(n) for n in keep])
            if keep
            else np.empty((0, self.dim), dtype=np.float32)
        )
        ids = [self._ids[n] for n in keep]
        fresh = HnswIndex(self.dim, self.m, self.ef_construction, self.ef_search)
        if ids:
            fresh.add(ids, vectors)
        self.__dict__.update(fresh.__dict__)

    def params(self) -> dict[str, Any]:
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    @classmethod
    def load(
        cls, folder: Path, ef_search: int | None = None, mutable: bool = False, **_: Any
    ) -> HnswIndex:
        """``mutable``: read into memory, to be added to (else memory-mapped where faiss can)."""
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        tombstones = folder / REMOVED
        removed = set(json.loads(tombstones.read_text())) if tombstones.is_file() else set()
        path = str(folder / "index.faiss")
        hnsw = _read(path, mutable)
        index = cls.__new__(cls)
        index.dim = int(hnsw.d)
        index.m = int(hnsw.hnsw.nb_neighbors(1))
        index.ef_construction = int(hnsw.hnsw.efConstruction)
        index.ef_search = ef_search or int(hnsw.hnsw.efSearch)
        index._index = hnsw
        index._ids = ids
        # an id removed and added again is in ids twice: its live position is the later one
        index._pos = {doc_id: n for n, doc_id in enumerate(ids) if n not in removed}
        index._removed = removed
        index._params = index._selector = None
        return index


def _read(path: str, mutable: bool = False) -> Any:
    """Memory-map the index file where this faiss build supports it (and it is only to be
    searched), else read it whole."""
    if mutable:
        return faiss.read_index(path)
    try:
        return faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(path)
