"""An index brought up to date with a few changed documents, instead of built again.

When a few documents arrive in a corpus of millions, ``embed-new`` embeds them and the serving
releases must hold them; building their indexes again costs what the first build cost (minutes
at a million vectors) for each ingest. Here the index is loaded as it was saved, the passages of
the changed documents are removed, the model's current vectors of them are added (a document
deleted, or not embedded at its current text, gets none), and the result is saved as a new index:
indexes are never changed in place, and a release moves to the new one as it would to a rebuilt
one. The effort its build tuned is kept.

Not updated, built again instead (``update_index`` returns None): an engine that keeps its vectors
outside the lake (pgvector), and more changed documents than ``UPDATE_SHARE`` of the index's
vectors (a document is one vector, or one per passage: an HNSW graph grown or thinned that much,
or IVF lists trained on another corpus, would drift from the effort tuned for them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from embedlake.catalog.registry import IndexRecord, ModelRecord
from embedlake.embeddings.vectors import VectorStream
from embedlake.index.keys import doc_of
from embedlake.reduce.pca import PcaReducer
from embedlake.search.build import BuildReport, store
from embedlake.search.load import load_index
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

UPDATABLE = ("exact", "hnsw", "rabitq", "rabitq-hnsw")  # their saved files hold the vectors
UPDATE_SHARE = 0.1  # changed documents over this share of the index's vectors: built again


def update_index(
    ws: Workspace,
    model: ModelRecord,
    base: IndexRecord,
    changed: Collection[str],
    reducer: PcaReducer | None = None,
) -> BuildReport | None:
    """A new index: ``base`` with the passages of the ``changed`` documents replaced by the
    model's current vectors of them, reduced by ``reducer`` where the base was (a release's PCA
    backing its index); None where it is to be built again instead (module docstring)."""
    started = time.perf_counter()
    chunker = str(base.params.get("chunker", ""))
    if base.engine not in UPDATABLE or bool(base.params.get("reduced")) != (reducer is not None):
        return None
    if len(changed) > UPDATE_SHARE * max(base.n_vectors, 1):
        return None
    index = load_index(ws, base, mutable=True)
    index.remove([key for key in index.ids() if doc_of(key) in changed])
    budget = ws.settings.index.build_memory * 2**20
    stream = VectorStream(ws, model, chunker, rows=budget // 8 // (4 * model.dim), only=changed)
    for keys, vectors in stream:
        index.add(keys, vectors if reducer is None else reducer.transform(vectors))
    keys = index.ids()
    documents = len({doc_of(key) for key in keys})
    params = {
        **base.params,
        **index.params(),
        "whole": len(keys) == documents,
        "updated_from": base.id,
    }
    record = ws.catalog.registry.add_index(
        model_id=model.id,
        engine=base.engine,
        params=params,
        n_vectors=len(keys),
        prefix=store(ws, index, model),
    )
    seconds = time.perf_counter() - started
    log.info(
        "index %d: index %d updated with %d changed documents (%d vectors added) in %.1f s",
        record.id,
        base.id,
        len(changed),
        stream.vectors,
        seconds,
    )
    missing = ws.catalog.documents.count() - documents
    tuning = base.params.get("tuning")
    return BuildReport(record.id, model.ref, base.engine, len(keys), missing, seconds, tuning)
