"""Build a release's or a model's vector index from its vectors, stored in the lake (or, for
pgvector, in the catalog database).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from embedlake import index as vector_index
from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.vectors import VectorStream
from embedlake.errors import ConfigError, NotFound
from embedlake.index import tune
from embedlake.index.quantize import DEFAULT_RESCORE
from embedlake.reduce.pca import PcaReducer
from embedlake.search.tuning_queries import span_queries
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

UNTUNED_EF = 128  # HNSW's candidate list where nothing is tuned (faiss's and pgvector's examples)
UNTUNED_NPROBE = 16  # rabitq's lists visited where nothing is tuned


@dataclass(frozen=True)
class BuildReport:
    index_id: int
    model: str
    engine: str
    n_vectors: int  # passages (a document that fits the window is one)
    missing: int  # live documents the model has not embedded yet
    seconds: float
    tuning: dict[str, Any] | None = None  # the search effort measured to reach the recall target


def choose_engine(ws: Workspace, n: int, dim: int) -> str:
    """The engine of ``[index] engine``; for ``auto``, ``rabitq-hnsw`` (a graph over codes:
    faster than ``hnsw`` at the same recall and a third of its memory, decision 0032), unless
    the vectors are over ``compress_above`` or its graph and codes would take more than half of
    this machine's memory: then ``rabitq`` (IVF lists of codes: the smallest, and the fastest to
    build)."""
    s = ws.settings.index
    if s.engine != "auto":
        return s.engine
    width = max(dim, 64)  # rabitqlib pads narrower vectors
    graph_bytes = n * (width * s.bits // 8 + 24 + 2 * 4 * s.m)  # codes + level-0 links
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return "rabitq" if n >= s.compress_above or graph_bytes > memory // 2 else "rabitq-hnsw"


def index_params(ws: Workspace, engine: str) -> dict[str, Any]:
    """What ``index.create`` needs besides the dimension (pgvector: the catalog's URL, with its
    password: never log these)."""
    s = ws.settings.index
    params: dict[str, Any] = {
        "m": s.m,
        "ef_construction": s.ef_construction,
        "ef_search": s.ef_search or UNTUNED_EF,  # the start; tuned after the vectors are added
    }
    if s.quantization != "none" and engine != "exact":
        raise ConfigError(
            f"[index] quantization = {s.quantization!r} applies to the exact engine only, not "
            f"{engine!r}: set [index] engine to exact, or quantization to none"
        )
    rescore = DEFAULT_RESCORE if s.rescore is None else s.rescore
    if engine == "exact":
        params.update(quantization=s.quantization, rescore=rescore)
    if engine == "rabitq":
        nprobe = s.nprobe or UNTUNED_NPROBE
        params.update(nlist=s.nlist, nprobe=nprobe, rescore=max(rescore, 1), bits=s.bits)
    if engine == "rabitq-hnsw":  # the engine's own re-scoring depth unless the settings set one
        params.update(bits=s.bits, **({} if s.rescore is None else {"rescore": max(rescore, 1)}))
    if engine == "pgvector":
        params["url"] = catalog_url(ws)
    return params


def catalog_url(ws: Workspace) -> str:
    """The catalog database's URL for the pgvector engine, which keeps its vectors there."""
    url = ws.catalog.engine.url
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"index engine 'pgvector' keeps its vectors in the catalog database, which must be "
            f"PostgreSQL with pgvector; this catalog is {url.get_backend_name()}: set [catalog] "
            f"url to a postgresql+psycopg:// URL, or [index] engine to hnsw, rabitq or exact"
        )
    return url.render_as_string(hide_password=False)


def build_index(
    ws: Workspace,
    model: ModelRecord,
    engine: str | None = None,
    reducer: PcaReducer | None = None,
    chunker: str | None = None,
) -> BuildReport:
    """Index the model's passage vectors of the chunking ``chunker`` (None: its newest run's),
    reduced by ``reducer`` first when a release's PCA backs its index."""
    started = time.perf_counter()
    chunker = ws.catalog.registry.latest_chunker(model.id) if chunker is None else chunker
    budget = ws.settings.index.build_memory * 2**20
    stream = VectorStream(ws, model, chunker, rows=budget // 8 // (4 * model.dim))
    n, documents = ws.catalog.registry.count_current(model.id, chunker)
    if not n:
        raise NotFound(
            f"model {model.ref} has no vectors: run `embedlake embed --model {model.ref}` first"
        )
    missing = ws.catalog.documents.count() - documents
    if missing:
        log.warning("%d live documents are not embedded by %s yet", missing, model.ref)
    dim = model.dim if reducer is None else reducer.dim
    batches = stream if reducer is None else _Reduced(stream, reducer)
    if engine in (None, "auto"):
        engine = choose_engine(ws, n, dim)
    index = vector_index.create(engine, dim, **index_params(ws, engine))
    try:
        # an index that trains on a sample (rabitq's lists) gets what it asks for, within half
        # the budget (the sample is held twice while it is stacked)
        wants = getattr(index, "sample_for", None)
        train = min(wants(n), budget // 2 // (2 * 4 * dim)) if wants else 0
        tuning = _add_tuned(ws, index, batches, train, span_queries(ws, model, reducer))
        n = stream.vectors  # what was read and added (a document may change meanwhile)
        prefix = store(ws, index, model)
        params = {
            **index.params(),
            "dim": dim,
            "reduced": reducer is not None,
            "chunker": chunker,
            "whole": n == documents,  # every document one vector: no passages (the searcher)
            "tuning": tuning,
        }
        record = ws.catalog.registry.add_index(
            model_id=model.id, engine=engine, params=params, n_vectors=n, prefix=prefix
        )
    except BaseException:
        drop = getattr(index, "drop", None)  # an engine that stores outside the lake (pgvector)
        if drop is not None:
            drop()
        raise
    return BuildReport(
        record.id, model.ref, engine, n, missing, time.perf_counter() - started, tuning
    )


def store(ws: Workspace, index: vector_index.VectorIndex, model: ModelRecord) -> str:
    """Save ``index`` into a new folder of the lake (an index is never changed in place);
    returns its prefix."""
    prefix = f"indexes/{model.name}/{model.version}/{uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp))
        for path in sorted(Path(tmp).iterdir()):  # moved, not copied, where the lake allows
            ws.lake.put_path(f"{prefix}/{path.name}", path)
    return prefix


def _add_tuned(
    ws: Workspace,
    index: vector_index.VectorIndex,
    batches: tune.Batches,
    train: int,
    queries_for: tune.QueriesFor,
) -> dict[str, Any] | None:
    """Add the vectors, tuning the index's effort knob to ``[index] recall_target`` (on the
    held-back vectors and on the query-like spans ``queries_for`` makes of them) unless the
    settings fix it."""
    s = ws.settings.index
    found = tune.knob(index)
    fixed = found is not None and getattr(s, found[0]) is not None
    target = 0.0 if fixed else s.recall_target  # a knob the settings fix is not tuned
    settle = tune.SETTLED_FIRST.get(index.engine)
    free = settle is not None and getattr(s, settle[0]) is None
    tuning = tune.add_streamed(
        index, batches, target, s.tune_sample, settle=free, train=train, queries_for=queries_for
    )
    if tuning is None:
        return None
    log.info(
        "%s index: %s %d reaches recall@10 %.3f (target %.2f; queries: %s; %.1f s)",
        index.engine,
        tuning.knob,
        tuning.value,
        tuning.recall,
        tuning.target,
        ", ".join(f"{n} {name}" for name, n in tuning.sets.items()),
        tuning.seconds,
    )
    return tuning.describe()


class _Reduced:
    """The batches of a stream, reduced by a release's PCA (iterable as often as the stream)."""

    def __init__(self, stream: VectorStream, reducer: PcaReducer) -> None:
        self.stream, self.reducer = stream, reducer

    def __iter__(self) -> Iterator[tuple[list[str], Any]]:
        for ids, vectors in self.stream:
            yield ids, self.reducer.transform(vectors)
