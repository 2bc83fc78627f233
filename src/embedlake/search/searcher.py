"""Build an index from a model's vectors, load it back, and answer nearest-neighbour queries.

A query is always embedded by the model the index was built from (its identity is checked), so
vectors of two models never meet, and split the way the index's documents were (a query longer
than the window is the mean of its passages, never cut). The index holds passages; a search
returns documents, each once, ranked by their passages (``search.passages``), with the passage
that matched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

import numpy as np

from embedlake.catalog.documents import Document
from embedlake.embeddings.passages import Chunking, Splitter
from embedlake.encoders import Encoder, normalise, token_window
from embedlake.errors import InputError
from embedlake.index import Matrix, check_vectors
from embedlake.index.keys import doc_of, span_of
from embedlake.models import artifacts
from embedlake.reduce.store import load_reducer
from embedlake.search.bm25 import Bm25
from embedlake.search.hybrid import Fusion, fuse
from embedlake.search.load import BM25_FOLDER, load_bm25, load_index, resolve
from embedlake.search.passages import collapse, keys_by_document
from embedlake.search.summaries import Summaries, snippet
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_K = 1000
# a filter matching more documents than this is checked in SQL on each search's candidates,
# rather than handed to the index as a set of every id it matches (all of a million documents:
# 2.9 s and +480 MB a query, 14.5 ms and +72 MB checked on the candidates; docs/benchmarks.md,
# section 18); a query still short after BROAD_FETCH candidates gets the whole set
SPARE = 10  # hits fetched beyond k at first: deleted documents and passages take places
BROAD = 10_000
BROAD_FETCH = 20_000


@dataclass(frozen=True)
class Passage:
    """The passage of a document that matched: its text and character offsets in the text."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    title: str
    snippet: str
    source: str
    passage: Passage | None = None  # None: the document is one passage (all of it matched)


class FiltersInSql(Protocol):
    """An index that applies document filters and tombstones itself, in the catalog's SQL
    (``filters_in_sql = True``: pgvector), instead of being handed the allowed ids."""

    def search_where(
        self,
        queries: Matrix,
        k: int,
        where: Mapping[str, Any],
        documents: str = "documents",
        effort_hits: int | None = None,
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
        hybrid = (self.release.report.get("hybrid") or {}) if self.release is not None else {}
        self.fusion = Fusion.from_report(hybrid.get("fusion"))  # what the release fitted
        self._bm25_lock = threading.Lock()
        # the index's documents were split this way: queries are too (legacy indexes: "")
        self.chunking = Chunking.from_key(str(self.record.params.get("chunker", "")))
        self._aggregate = ws.settings.passages.aggregate, ws.settings.passages.aggregate_top
        # the index holds one vector per document (its build said so, or nothing is split)
        self.whole = bool(self.record.params.get("whole")) or not self.chunking.enabled
        self._splitter: Splitter | None = None
        self._keys: dict[str, list[str]] | None = None
        self.cut_texts = 0  # texts longer than the chunking allows, cut (for the metrics)

    def splitter(self) -> Splitter:
        if self._splitter is None:
            self._splitter = Splitter(self.chunking, token_window(self.encoder))
        return self._splitter

    def encode(self, texts: list[str]) -> Matrix:
        """Texts as vectors of this model (before any reduction); a text longer than the window
        is split like the index's documents and the mean of its passages (passages off: cut at
        the window, and counted)."""
        if any(not t.strip() for t in texts):
            raise InputError("text is empty")
        batch = self._ws.settings.embed.batch_size
        splitter = self.splitter()
        short = splitter.short_chars
        if short is None or all(len(t) <= short for t in texts):
            return self.encoder.encode(texts, batch_size=batch)
        pieces: list[str] = []
        owner: list[int] = []
        for n, text in enumerate(texts):
            parts, cut = ([text], 0) if len(text) <= short else splitter.split_text(text)
            self.cut_texts += cut > 0
            pieces += parts
            owner += [n] * len(parts)
        vectors = self.encoder.encode(pieces, batch_size=batch)
        return _pool(vectors, owner, len(texts))

    def encode_document(self, doc: Document) -> Matrix:
        """A document's vector as its passages make it: the mean of their vectors."""
        [split] = self.splitter().split_many([(doc.id, doc.title, doc.text)])
        vectors = self.encoder.encode(
            [p.text for p in split.passages], batch_size=self._ws.settings.embed.batch_size
        )
        return _pool(vectors, [0] * len(vectors), 1)

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
        allowed, broad = self._allowed(where)
        out: list[list[Hit]] = [[] for _ in range(len(vectors))]
        # judged before the PCA: it centres, so a zero vector would come out as a real direction
        spoken = vectors.any(axis=1)
        rows = np.flatnonzero(spoken).tolist()
        if rows:
            chosen = vectors if spoken.all() else vectors[rows]
            if self.reducer is not None:
                chosen = self.reducer.transform(chosen)
            found = self._search(chosen, k, allowed, where=where, broad=broad)
            for n, hits in zip(rows, found, strict=True):
                out[n] = hits
        return out

    def more_like(
        self, doc_id: str, k: int = 10, where: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Neighbours of a document (itself left out): its indexed vector, or its text embedded
        now when the release was built before the document arrived."""
        _check_k(k)
        vector = self._document_vector(doc_id)
        doc = self._ws.catalog.documents.get(doc_id)  # NotFound for unknown or deleted ids
        if vector is None:
            hits = self.search_encoded(self.encode_document(doc), k + 1, where)[0]
            return [h for h in hits if h.id != doc_id][:k]
        allowed, broad = self._allowed(where)
        return self._search(vector[None, :], k, allowed, exclude=doc_id, where=where, broad=broad)[
            0
        ]

    def _document_vector(self, doc_id: str) -> Matrix | None:
        """A document's indexed vector: the mean of its passages' (in the index's space)."""
        keys = self.passage_keys().get(doc_id)
        if keys is None:
            return self.index.vector(doc_id)
        found = [v for key in keys if (v := self.index.vector(key)) is not None]
        if not found:
            return None
        pooled: Matrix = _pool(np.vstack(found), [0] * len(found), 1)[0]
        return pooled

    def passage_keys(self) -> dict[str, list[str]]:
        """The index's passage keys of each document split into several (read once)."""
        if self._keys is None:
            self._keys = keys_by_document(self.index.ids()) if self.chunking.enabled else {}
        return self._keys

    def hybrid(self, query: str, k: int = 10, where: Mapping[str, Any] | None = None) -> list[Hit]:
        """Dense and BM25 results fused the way the release fitted (``self.fusion``; RRF k=60 for
        a release that fitted none), each document once."""
        _check_k(k)
        [(dense, passages)] = self.sides([query], max(100, k), where)
        fused = fuse(
            [(h.id, h.score) for h in dense], [(d, s) for d, s, _ in passages], self.fusion
        )
        top = sorted(fused, key=lambda d: -fused[d])[: k * 2 + 10]
        found = self._summaries.get(top)
        matched = {h.id: h.passage for h in dense}
        hits = [Hit(d, fused[d], *found[d], matched.get(d)) for d in top if d in found][:k]
        best = {d: key for d, _, key in passages}  # a document only BM25 found: its passage
        return self._with_passages(
            hits, [best[h.id] for h in hits if h.passage is None and h.id in best]
        )

    def sides(
        self, queries: list[str], depth: int, where: Mapping[str, Any] | None = None
    ) -> list[tuple[list[Hit], list[tuple[str, float, str]]]]:
        """Both halves of hybrid search, per query: ``depth`` dense hits, and ``depth`` documents
        by their best BM25 passage (document id, score, passage key)."""
        dense = self.search_many(queries, depth, where)
        lexical = [collapse(row, depth * 2) for row in self.bm25().search(queries, depth * 4)]
        allowed = None
        if where:  # the filter checked on BM25's candidates only, never every matching id
            candidates = {d for row in lexical for d, _, _ in row}
            allowed = self._ws.catalog.documents.ids_where(where, among=candidates)
        out = []
        for hits, passages in zip(dense, lexical, strict=True):
            kept = [p for p in passages if allowed is None or p[0] in allowed][:depth]
            out.append((hits, kept))
        return out

    def bm25(self) -> Bm25:
        """BM25 over the live corpus's passages (the units of the dense index): the one the
        release built, while the corpus is still the one it was built on, or while building it
        again would be too large (``releases.bm25_rebuild_max``); else built now."""
        with self._bm25_lock:
            if self._bm25 is None:
                self._bm25 = self._release_bm25() or passage_bm25(self._ws, self.passage_keys())
            return self._bm25

    def use_bm25(self, bm25: Bm25) -> None:
        """Search with ``bm25`` (the one a release is building) instead of loading one."""
        with self._bm25_lock:
            self._bm25 = bm25

    def _release_bm25(self) -> Bm25 | None:
        if self.release is None:
            return None
        saved = (self.release.report.get("hybrid") or {}).get("bm25")
        if not saved:
            return None
        if saved.get("documents_version") != self._ws.catalog.documents.version():
            limit = self._ws.settings.releases.bm25_rebuild_max
            if int(saved.get("rows", 0)) <= limit:
                log.info("release %s: the corpus changed since its BM25 was built", self.release.id)
                return None
            log.warning(
                "release %s: the corpus changed since its BM25 was built; serving that BM25 "
                "(%d passages: more than releases.bm25_rebuild_max, %d, to build again here)",
                self.release.id,
                int(saved["rows"]),
                limit,
            )
        return load_bm25(self._ws, f"{self.release.prefix}/{BM25_FOLDER}")

    def _allowed(
        self, where: Mapping[str, Any] | None
    ) -> tuple[set[str] | None, Mapping[str, Any] | None]:
        """For an index that cannot apply a filter in SQL itself: the passage keys a narrow
        filter keeps (at most ``BROAD`` documents), or a broad filter itself, to be checked on
        each search's candidates instead of gathering every id it matches."""
        if where is None or getattr(self.index, "filters_in_sql", False):
            return None, None
        docs = self._ws.catalog.documents.ids_where(where, limit=BROAD + 1)
        if len(docs) > BROAD:
            return None, where
        return self._keys_of(docs), None

    def _keys_of(self, docs: set[str]) -> set[str]:
        split = self.passage_keys()
        if not split:
            return docs
        return {key for d in docs for key in split.get(d, [d])}

    def _search(
        self,
        vectors: Matrix,
        k: int,
        allowed: set[str] | None,
        exclude: str = "",
        where: Mapping[str, Any] | None = None,
        broad: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Vectors in the index's space → hits of ``k`` distinct live documents, ranked by their
        passages. Deleted documents are still in the index until the next build, and a document
        may fill several places with its passages, so fetch more and hydrate until ``k`` live
        documents remain. An index with ``filters_in_sql`` gets ``where`` itself and leaves
        deleted ones out; a ``broad`` filter is checked on the candidates of each round in SQL,
        and a query still short after ``BROAD_FETCH`` candidates gets the filter's every id."""
        documents = self._ws.catalog.documents
        in_sql = where if getattr(self.index, "filters_in_sql", False) else None
        aggregate, top = self._aggregate
        out: list[list[Hit]] = [[] for _ in range(len(vectors))]
        todo, fetch = list(range(len(vectors))), k + SPARE
        # an index of whole documents: the first round's effort is that of k hits, as the
        # tuning measured it, and the spares (room for deleted documents) cost no more (an HNSW
        # list of ef ≥ fetch holds them anyway). Passages, or a round after a short one: every
        # hit fetched may be needed, at the effort of as many.
        effort: int | None = k if self.whole else None
        while todo:
            if in_sql is not None:
                raw = cast(FiltersInSql, self.index).search_where(
                    vectors[todo], fetch, in_sql, documents.table_name, effort_hits=effort
                )
            else:
                raw = self.index.search(vectors[todo], fetch, allowed, effort_hits=effort)
            ranked = [collapse(row, fetch, aggregate, top) for row in raw]
            if broad is not None:
                candidates = {d for row in ranked for d, _, _ in row}
                kept = documents.ids_where(broad, among=candidates)
                ranked = [[p for p in row if p[0] in kept] for row in ranked]
            found = self._summaries.get([d for row in ranked for d, _, _ in row])
            again = []
            for n, row, docs in zip(todo, raw, ranked, strict=True):
                live = [(d, s, key) for d, s, key in docs if d in found and d != exclude][:k]
                out[n] = [Hit(d, s, *found[d]) for d, s, _ in live]
                if len(live) < k and len(row) == fetch and fetch < len(self.index):
                    again.append(n)  # the index may hold more live documents further down
                elif any(doc != key for doc, _, key in live):
                    out[n] = self._with_passages(out[n], [key for _, _, key in live])
            todo, fetch, effort = again, fetch * 4, None
            if broad is not None and todo and fetch > BROAD_FETCH:
                # the filter's documents are rare near these queries: hand the index all of them
                every = self._keys_of(documents.ids_where(broad))
                rest = self._search(vectors[todo], k, every, exclude, where)
                for n, hits in zip(todo, rest, strict=True):
                    out[n] = hits
                todo = []
        return out

    def _with_passages(self, hits: list[Hit], keys: list[str]) -> list[Hit]:
        """Hits of documents split into passages get the passage that matched (its text read
        from the catalog: the summaries hold only a document's start)."""
        spans = {doc_of(key): span for key in keys if (span := span_of(key)) is not None}
        docs = self._ws.catalog.documents.get_many(list(spans))
        out = []
        for hit in hits:
            span, doc = spans.get(hit.id), docs.get(hit.id)
            if span is None or doc is None:
                out.append(hit)
                continue
            text = doc.text[span[0] : span[1]]
            out.append(replace(hit, snippet=snippet(text), passage=Passage(text, *span)))
        return out


def _pool(vectors: Matrix, owner: list[int], n: int) -> Matrix:
    """Row i: the renormalised mean of the rows of ``vectors`` that ``owner`` gives to i."""
    if len(owner) == n:
        return vectors
    sums = np.zeros((n, vectors.shape[1]), dtype=np.float32)
    np.add.at(sums, np.asarray(owner), vectors)
    return normalise(sums)


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")


def passage_units(ws: Workspace, split: Mapping[str, list[str]]) -> Iterator[tuple[str, str]]:
    """(passage key, text) of every live document, one per passage key of ``split`` (a document
    not in it is one unit), each passage with its document's title: what BM25 indexes."""
    for d in ws.catalog.documents.iter_live():
        for key in split.get(d.id, [d.id]):
            span = span_of(key)
            body = d.text if span is None else d.text[span[0] : span[1]]
            yield key, (f"{d.title} {body}".strip() if d.title else body)


def passage_bm25(ws: Workspace, split: Mapping[str, list[str]]) -> Bm25:
    """BM25 (stemmed) over :func:`passage_units`, built in memory (a corpus of at most
    ``releases.bm25_rebuild_max`` passages; a release builds its own on disk)."""
    units = list(passage_units(ws, split))
    return Bm25([key for key, _ in units], [text for _, text in units], stem=True)
