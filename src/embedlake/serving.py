"""Build an index from a model's vectors, load it back, and answer nearest-neighbour queries.

A query is always embedded by the model the index was built from (its identity is checked), so
vectors of two models never meet.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast
from uuid import uuid4

import numpy as np

from embedlake import index as vector_index
from embedlake.batch import read_vectors
from embedlake.catalog.registry import IndexRecord, ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.catalog.schema import documents as documents_table
from embedlake.encoders import Encoder, artifacts
from embedlake.encoders.resolve import encoder_options
from embedlake.errors import ConfigError, InputError, NotFound
from embedlake.evaluate.bm25 import Bm25
from embedlake.index import Matrix, VectorIndex, check_vectors
from embedlake.reduce.pca import PcaReducer
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

MAX_K = 1000


@dataclass(frozen=True)
class BuildReport:
    index_id: int
    model: str
    engine: str
    n_vectors: int
    missing: int  # live documents the model has not embedded yet
    seconds: float


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


def index_params(ws: Workspace, engine: str | None = None) -> dict[str, Any]:
    """What ``index.create`` needs besides the dimension (pgvector: the catalog's URL, with its
    password: never log these)."""
    s = ws.settings.index
    engine = engine or s.engine
    params: dict[str, Any] = {
        "m": s.m,
        "ef_construction": s.ef_construction,
        "ef_search": s.ef_search,
    }
    if s.quantization != "none" and s.engine != "exact":
        raise ConfigError(
            f"[index] quantization = {s.quantization!r} applies to the exact engine only, not "
            f"{s.engine!r}: set [index] engine to exact, or quantization to none"
        )
    if engine == "exact":
        params.update(quantization=s.quantization, rescore=s.rescore)
    if engine == "pgvector":
        params["url"] = _catalog_url(ws)
    return params


def _catalog_url(ws: Workspace) -> str:
    """The catalog database's URL for the pgvector engine, which keeps its vectors there."""
    url = ws.catalog.engine.url
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"index engine 'pgvector' keeps its vectors in the catalog database, which must be "
            f"PostgreSQL with pgvector; this catalog is {url.get_backend_name()}: set [catalog] "
            f"url to a postgresql+psycopg:// URL, or [index] engine to hnsw or exact"
        )
    return url.render_as_string(hide_password=False)


def build_index(
    ws: Workspace, model: ModelRecord, engine: str | None = None, reducer: PcaReducer | None = None
) -> BuildReport:
    """Index the model's vectors (reduced by ``reducer`` first, when a release's PCA backs its
    index)."""
    started = time.perf_counter()
    engine = engine or ws.settings.index.engine
    ids, vectors = read_vectors(ws, model)
    if not ids:
        raise NotFound(
            f"model {model.ref} has no vectors: run `embedlake embed --model {model.ref}` first"
        )
    missing = ws.catalog.documents.count() - len(ids)
    if missing:
        log.warning("%d live documents are not embedded by %s yet", missing, model.ref)
    dim = model.dim
    if reducer is not None:
        vectors, dim = reducer.transform(vectors), reducer.dim
    index = vector_index.create(engine, dim, **index_params(ws, engine))
    try:
        index.add(ids, vectors)
        prefix = f"indexes/{model.name}/{model.version}/{uuid4().hex[:12]}"
        with tempfile.TemporaryDirectory() as tmp:
            index.save(Path(tmp))
            for path in sorted(Path(tmp).iterdir()):
                with path.open("rb") as f:
                    ws.lake.put_file(f"{prefix}/{path.name}", f)
        params = {**index.params(), "dim": dim, "reduced": reducer is not None}
        record = ws.catalog.registry.add_index(
            model_id=model.id, engine=engine, params=params, n_vectors=len(ids), prefix=prefix
        )
    except BaseException:
        drop = getattr(index, "drop", None)  # an engine that stores outside the lake (pgvector)
        if drop is not None:
            drop()
        raise
    return BuildReport(
        record.id, model.ref, engine, len(ids), missing, time.perf_counter() - started
    )


def load_reducer(ws: Workspace, release: ReleaseRecord) -> PcaReducer | None:
    """The release's PCA when it backs the release's index, else None."""
    if not release.report.get("reducer", {}).get("backs_index"):
        return None
    return read_reducer(ws, release)


def read_reducer(ws: Workspace, release: ReleaseRecord) -> PcaReducer:
    """The PCA every release fits (it backs the index only if configured so)."""
    if not ws.lake.exists(f"{release.prefix}/reducer/pca_components.npy"):
        raise NotFound(f"release {release.id} has no reducer yet (it is {release.status})")
    with tempfile.TemporaryDirectory() as tmp:
        for info in ws.lake.list(f"{release.prefix}/reducer"):
            (Path(tmp) / info.key.rsplit("/", 1)[1]).write_bytes(ws.lake.get(info.key))
        return PcaReducer.load(Path(tmp))


def load_index(ws: Workspace, record: IndexRecord) -> VectorIndex:
    """Load from the lake folder in place when it is local (memory-mapped where possible)."""
    first = next(iter(ws.lake.list(record.prefix)), None)
    if first is None:
        raise NotFound(f"index {record.id}: no files under {record.prefix}/")
    local = ws.lake.local_path(first.key)
    overrides: dict[str, Any] = {
        "ef_search": ws.settings.index.ef_search,
        "rescore": ws.settings.index.rescore,
    }
    if record.engine == "pgvector":
        overrides["url"] = _catalog_url(ws)
    if local is not None:
        return vector_index.load(record.engine, Path(local).parent, **overrides)
    with tempfile.TemporaryDirectory() as tmp:
        for info in ws.lake.list(record.prefix):
            with (
                ws.lake.open(info.key) as src,
                (Path(tmp) / info.key.rsplit("/", 1)[1]).open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
        return vector_index.load(record.engine, Path(tmp), **overrides)


def resolve(
    ws: Workspace,
    model_ref: str | None = None,
    *,
    release: str | None = None,
    alias: str | None = None,
    index_id: int | None = None,
) -> tuple[ReleaseRecord | None, IndexRecord]:
    """What to serve: a release, the release behind an alias, a model's newest index, an index
    by id, or by default the release behind the gate's alias (``production``), else the newest
    index."""
    registry, releases = ws.catalog.registry, ws.catalog.releases
    if index_id is not None:  # a given index (of the release, when one is named)
        return (releases.get(release) if release else None), registry.index(index_id)
    if release is None and model_ref is None:
        release = releases.alias(alias or ws.settings.gate.alias)
        if release is None and alias is not None:
            raise NotFound(f"alias {alias!r} points to no release")
    if release is not None:
        record = releases.get(release)
        if record.index_id is None:
            raise NotFound(f"release {release} has no index yet (it is {record.status})")
        return record, registry.index(record.index_id)
    model_id = registry.model(model_ref).id if model_ref else None
    return None, registry.latest_index(model_id)


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
    ) -> None:
        """Serve what ``resolve`` picks; ``encoder`` reuses one already loaded for the model."""
        self.release, self.record = resolve(
            ws, model_ref, release=release, alias=alias, index_id=index_id
        )
        self.reducer = load_reducer(ws, self.release) if self.release is not None else None
        self.model = ws.catalog.registry.model_by_id(self.record.model_id)
        self.encoder: Encoder = encoder or artifacts.load(
            ws, self.model, **encoder_options(ws, self.model)
        )
        self.index = load_index(ws, self.record)
        self._ws = ws
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
        fused: dict[str, float] = {}
        for ranking in ([h.id for h in dense], lexical):
            for rank, doc_id in enumerate(ranking):
                fused[doc_id] = fused.get(doc_id, 0.0) + 1.0 / (_RRF_K + rank + 1)
        top = sorted(fused, key=lambda d: -fused[d])[: k * 2 + 10]
        found = self._ws.catalog.documents.summaries(top)
        return [
            Hit(d, fused[d], found[d].title, _snippet(found[d].head), found[d].source)
            for d in top
            if d in found
        ][:k]

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
                    vectors[todo], fetch, in_sql, documents_table.name
                )
            else:
                raw = self.index.search(vectors[todo], fetch, allowed)
            found = documents.summaries(list({d for row in raw for d, _ in row}))
            again = []
            for n, row in zip(todo, raw, strict=True):
                live = [(d, s) for d, s in row if d in found and d != exclude][:k]
                out[n] = [
                    Hit(d, s, found[d].title, _snippet(found[d].head), found[d].source)
                    for d, s in live
                ]
                if len(live) < k and len(row) == fetch and fetch < len(self.index):
                    again.append(n)  # the index may hold more live documents further down
            todo, fetch = again, fetch * 4
        return out


_RRF_K = 60


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, got {k}")


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text[: limit * 2].split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
