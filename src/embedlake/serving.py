"""Build an index from a model's vectors, load it back, and answer nearest-neighbour queries.

A query is always embedded by the model the index was built from (its identity is checked), so
vectors of two models never meet.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from embedlake import index as vector_index
from embedlake.batch import read_vectors
from embedlake.catalog.registry import IndexRecord, ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.encoders import Encoder, artifacts
from embedlake.encoders.resolve import encoder_options
from embedlake.errors import InputError, NotFound
from embedlake.index import VectorIndex
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


def index_params(ws: Workspace) -> dict[str, Any]:
    s = ws.settings.index
    return {"m": s.m, "ef_construction": s.ef_construction, "ef_search": s.ef_search}


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
    index = vector_index.create(engine, dim, **index_params(ws))
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
    return BuildReport(
        record.id, model.ref, engine, len(ids), missing, time.perf_counter() - started
    )


def load_reducer(ws: Workspace, release: ReleaseRecord) -> PcaReducer | None:
    """The release's PCA when it backs the release's index, else None."""
    if not release.report.get("reducer", {}).get("backs_index"):
        return None
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
    overrides = {"ef_search": ws.settings.index.ef_search}
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


class Searcher:
    """An index with the encoder of its model, ready to answer text queries."""

    def __init__(
        self,
        ws: Workspace,
        model_ref: str | None = None,
        *,
        release: str | None = None,
        alias: str | None = None,
    ) -> None:
        """Serve a release, the release behind an alias, a model's newest index, or by default
        the release behind the gate's alias (``production``), else the newest index."""
        registry, releases = ws.catalog.registry, ws.catalog.releases
        self.reducer: PcaReducer | None = None
        if release is None and model_ref is None:
            release = releases.alias(alias or ws.settings.gate.alias)
            if release is None and alias is not None:
                raise NotFound(f"alias {alias!r} points to no release")
        self.release = releases.get(release) if release else None
        if self.release is not None:
            if self.release.index_id is None:
                raise NotFound(f"release {release} has no index yet (it is {self.release.status})")
            self.record = registry.index(self.release.index_id)
            self.reducer = load_reducer(ws, self.release)
        else:
            model_id = registry.model(model_ref).id if model_ref else None
            self.record = registry.latest_index(model_id)
        self.model = registry.model_by_id(self.record.model_id)
        self.encoder: Encoder = artifacts.load(ws, self.model, **encoder_options(ws, self.model))
        self.index = load_index(ws, self.record)
        self._ws = ws

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 10) -> list[list[Hit]]:
        if not 1 <= k <= MAX_K:
            raise InputError(f"k must be between 1 and {MAX_K}, got {k}")
        if any(not q.strip() for q in queries):
            raise InputError("query text is empty")
        vectors = self.encoder.encode(queries, batch_size=self._ws.settings.embed.batch_size)
        if self.reducer is not None:
            vectors = self.reducer.transform(vectors)
        # Over-fetch so that documents deleted after the index was built can be dropped.
        raw = self.index.search(vectors, k * 2 + 10)
        docs = self._ws.catalog.documents.get_many(sorted({d for row in raw for d, _ in row}))
        out = []
        for row in raw:
            hits = [
                Hit(d, s, docs[d].title, _snippet(docs[d].text), docs[d].source)
                for d, s in row
                if d in docs
            ]
            out.append(hits[:k])
        return out


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
