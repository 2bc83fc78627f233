"""Build an index from a model's vectors, load it back, and answer nearest-neighbour queries.

A query is always embedded by the model the index was built from (its identity is checked), so
vectors of two models never meet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from embedlake.encoders import Encoder
from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors
from embedlake.models import artifacts
from embedlake.reduce.store import load_reducer
from embedlake.search.bm25 import Bm25
from embedlake.search.hybrid import rrf
from embedlake.search.load import load_index, resolve
from embedlake.search.summaries import Summaries
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_K = 1000


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    title: str
    snippet: str
    source: str


class FiltersInSql(Protocol):
    """An index that applies document filters and tombstones itself, in the catalog's SQL
    (``filters_in_sql = True``: pgvector), instead of being handed the allowed ids."""

    def search_where(
        self, queries: Matrix, k: int, where: Mapping[str, Any], documents: str = "documents"
    ) -> list[list[tuple[str, float]]]: ...


class Searcher:
    """An index with the encoder of its model (and the release's reducer), ready for queries."""

    def __init__(
        self,
        ws: Workspace,
        model_ref: str | None = None,
        *,
        release: str | None = None,
        alias: str | None = None,
        index_id: int | None = None,
        encoder: Encoder | None = None,
        summaries: Summaries | None = None,
    ) -> None:
        """Serve what ``resolve`` picks; ``encoder`` reuses one already loaded for the model;
        ``summaries`` shows results' titles and snippets (a serving process shares one that keeps
        them in memory; by default each search reads them from the catalog)."""
        self.release, self.record = resolve(
            ws, model_ref, release=release, alias=alias, index_id=index_id
        )
        self.reducer = load_reducer(ws, self.release) if self.release is not None else None
        self.model = ws.catalog.registry.model_by_id(self.record.model_id)
        self.encoder: Encoder = encoder or artifacts.load_encoder(ws, self.model)
        self.index = load_index(ws, self.record)
        self._ws = ws
        self._summaries = summaries if summaries is not None else Summaries(ws.catalog.documents)
        self._bm25: Bm25 | None = None
        self._bm25_lock = threading.Lock()

    def encode(self, texts: list[str]) -> Matrix:
        """Texts as vectors of this model (before any reduction)."""
        if any(not t.strip() for t in texts):
            raise InputError("text is empty")
        return self.encoder.encode(texts, batch_size=self._ws.settings.embed.batch_size)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(
        self, queries: list[str], k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        _check_k(k)
        if any(not q.strip() for q in queries):
            raise InputError("query text is empty")
        return self.search_encoded(self.encode(queries), k, where)

    def search_vectors(
        self, vectors: Any, k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Queries given as vectors of this searcher's model (unit length or not)."""
        _check_k(k)
        vectors = check_vectors(vectors, self.model.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if (norms == 0).any():
            raise InputError("a query vector is all zeros")
        return self.search_encoded(vectors / norms, k, where)

    def search_encoded(
        self, vectors: Matrix, k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[list[Hit]]:
        """Queries as this model's encoder made them. A query the model has nothing to say about
        (LSA on words it never saw gives a zero vector) matches nothing."""
        _check_k(k)
        allowed = self._allowed(where)
        if self.reducer is not None:
            vectors = self.reducer.transform(vectors)
        out: list[list[Hit]] = [[] for _ in range(len(vectors))]
        rows = [n for n, v in enumerate(vectors) if np.any(v)]
        if rows:
            found = self._search(vectors[rows], k, allowed, where=where)
            for n, hits in zip(rows, found, strict=True):
                out[n] = hits
        return out

    def more_like(
        self, doc_id: str, k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Neighbours of a document (itself left out): its indexed vector, or its text embedded
        now when the release was built before the document arrived."""
        _check_k(k)
        vector = self.index.vector(doc_id)
        doc = self._ws.catalog.documents.get(doc_id)  # NotFound for unknown or deleted ids
        if vector is None:
            hits = self.search_encoded(self.encode([doc.full_text]), k + 1, where)[0]
            return [h for h in hits if h.id != doc_id][:k]
        allowed = self._allowed(where)
        return self._search(vector[None, :], k, allowed, exclude=doc_id, where=where)[0]

    def hybrid(self, query: str, k: int = 10, where: Mapping[str, Any] | None = None) -> list[Hit]:
        """Dense and BM25 results fused by reciprocal rank (RRF, k=60, Cormack et al. 2009)."""
        _check_k(k)
        depth = max(100, k)
        dense = self.search_many([query], depth, where)[0]
        allowed = self._ws.catalog.documents.ids_where(where) if where else None
        lexical = [
            d
            for d, _ in self.bm25().search([query], depth * 2)[0]
            if allowed is None or d in allowed
        ][:depth]
        fused = rrf([[h.id for h in dense], lexical])
        top = sorted(fused, key=lambda d: -fused[d])[: k * 2 + 10]
        found = self._summaries.get(top)
        return [Hit(d, fused[d], *found[d]) for d in top if d in found][:k]

    def bm25(self) -> Bm25:
        """A BM25 index over the live corpus, built on first use (for hybrid search)."""
        with self._bm25_lock:
            if self._bm25 is None:
                docs = list(self._ws.catalog.documents.iter_live())
                self._bm25 = Bm25([d.id for d in docs], [d.full_text for d in docs], stem=True)
            return self._bm25

    def _allowed(self, where: Mapping[str, Any] | None) -> set[str] | None:
        """The ids a filter keeps, for an index that cannot apply it in SQL itself."""
        if where is None or getattr(self.index, "filters_in_sql", False):
            return None
        return self._ws.catalog.documents.ids_where(where)

    def _search(
        self,
        vectors: Matrix,
        k: int,
        allowed: set[str] | None,
        exclude: str = "",
        where: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Vectors in the index's space → hits of live documents. Deleted documents are still in
        the index until the next build, so fetch more and hydrate until ``k`` live ones remain.
        An index with ``filters_in_sql`` gets ``where`` itself and leaves deleted ones out."""
        documents = self._ws.catalog.documents
        in_sql = where if getattr(self.index, "filters_in_sql", False) else None
        out: list[list[Hit]] = [[] for _ in range(len(vectors))]
        todo, fetch = list(range(len(vectors))), k + 10
        while todo:
            if in_sql is not None:
                raw = cast(FiltersInSql, self.index).search_where(
                    vectors[todo], fetch, in_sql, documents.table_name
                )
            else:
                raw = self.index.search(vectors[todo], fetch, allowed)
            found = self._summaries.get([d for row in raw for d, _ in row])
            again = []
            for n, row in zip(todo, raw, strict=True):
                live = [(d, s) for d, s in row if d in found and d != exclude][:k]
                out[n] = [Hit(d, s, *found[d]) for d, s in live]
                if len(live) < k and len(row) == fetch and fetch < len(self.index):
                    again.append(n)  # the index may hold more live documents further down
            todo, fetch = again, fetch * 4
        return out


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
