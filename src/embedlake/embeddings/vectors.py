"""Reading a model's vectors back: the current passages of every live document it covers, and
documents' own vectors made of their passages."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord
from embedlake.errors import ModelMismatch
from embedlake.index.keys import doc_of
from embedlake.workspace import Workspace


def read_vectors(
    ws: Workspace, model: ModelRecord, chunker: str | None = None
) -> tuple[list[str], np.ndarray]:
    """The passage keys and vectors of every live document the model covers with the chunking
    ``chunker`` (None: that of its newest run), sorted by key. A document that is one passage
    has its id as key."""
    registry = ws.catalog.registry
    chunker = registry.latest_chunker(model.id) if chunker is None else chunker
    covered = registry.coverage(model.id, chunker)
    live = ws.catalog.documents.live_hashes()
    wanted = {d: h for d, (h, _) in covered.items() if live.get(d) == h}
    by_shard: dict[str, set[str]] = {}
    for doc_id in wanted:
        by_shard.setdefault(covered[doc_id][1], set()).add(doc_id)
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for key in sorted(by_shard):
        table = pq.read_table(io.BytesIO(ws.lake.get(key)))
        meta = table.schema.metadata or {}
        if meta.get(b"model_hash", b"").decode() != model.content_hash:
            raise ModelMismatch(f"shard {key} was not written by model {model.ref}")
        if meta.get(b"chunker", b"").decode() != chunker:
            raise ModelMismatch(f"shard {key} was not split with chunking {chunker!r}")
        keep = by_shard[key]
        shard_ids = table.column("id").to_pylist()
        # shards written before passages hold whole documents: the key is the document's id
        docs = table.column("doc").to_pylist() if "doc" in table.column_names else shard_ids
        hashes = table.column("content_hash").to_pylist()
        rows = [
            n
            for n, (d, h) in enumerate(zip(docs, hashes, strict=True))
            if d in keep and wanted[d] == h
        ]
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        matrix = flat.reshape(-1, model.dim)[rows]
        ids.extend(shard_ids[n] for n in rows)
        parts.append(matrix)
    if not ids:
        return [], np.empty((0, model.dim), dtype=np.float32)
    vectors = np.vstack(parts).astype(np.float32, copy=False)
    order = np.argsort(np.array(ids, dtype=object), kind="stable")
    return [ids[i] for i in order], np.ascontiguousarray(vectors[order])


def document_vectors(keys: list[str], vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """One unit vector per document: the mean of its passages' vectors, renormalised (a
    document that is one passage keeps its vector). Documents in order of first appearance."""
    row: dict[str, int] = {}
    groups = np.fromiter((row.setdefault(doc_of(k), len(row)) for k in keys), np.int64, len(keys))
    if len(row) == len(keys):
        return list(row), vectors
    sums = np.zeros((len(row), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, groups, vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return list(row), np.ascontiguousarray(sums / norms, dtype=np.float32)
