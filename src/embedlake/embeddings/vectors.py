"""Reading a model's vectors back: the current vector of every live document it covers."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord
from embedlake.errors import ModelMismatch
from embedlake.workspace import Workspace


def read_vectors(ws: Workspace, model: ModelRecord) -> tuple[list[str], np.ndarray]:
    """The current vector of every live document the model covers (ids sorted)."""
    covered = ws.catalog.registry.coverage(model.id)
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
        keep = by_shard[key]
        shard_ids = table.column("id").to_pylist()
        hashes = table.column("content_hash").to_pylist()
        rows = [
            n
            for n, (d, h) in enumerate(zip(shard_ids, hashes, strict=True))
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
