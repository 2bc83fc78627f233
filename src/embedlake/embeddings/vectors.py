"""Reading a model's vectors back: the current passages of every live document it covers, and
documents' own vectors made of their passages."""

from __future__ import annotations

import io
from collections.abc import Collection, Iterable, Iterator

import numpy as np
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord
from embedlake.errors import ModelMismatch
from embedlake.index.keys import doc_of
from embedlake.workspace import Workspace


class VectorStream:
    """The passage vectors of every live document ``model`` covers with the chunking
    ``chunker``, read a shard at a time in batches of at most ``rows``, never all at once; it can
    be read more than once (a build reads it twice). Each pass checks that every shard was written
    by this model with this chunking; after a pass, ``documents`` and ``vectors`` count what it
    read. A document that is one passage has its id as key."""

    def __init__(
        self,
        ws: Workspace,
        model: ModelRecord,
        chunker: str,
        rows: int = 65_536,
        only: Collection[str] | None = None,
    ):
        """``only``: the vectors of these documents alone (a shard holding none is not read)."""
        self.ws, self.model, self.chunker, self.rows = ws, model, chunker, max(1, rows)
        self.only = only
        self.documents = self.vectors = 0

    def __iter__(self) -> Iterator[tuple[list[str], np.ndarray]]:
        registry, model = self.ws.catalog.registry, self.model
        documents = vectors = 0
        for key in registry.shard_keys(model.id, self.chunker):
            wanted = registry.current(model.id, self.chunker, key)
            if self.only is not None:
                wanted = {d: h for d, h in wanted.items() if d in self.only}
            if not wanted:
                continue
            documents += len(wanted)
            shard = pq.ParquetFile(io.BytesIO(self.ws.lake.get(key)))
            self._check(key, shard.schema_arrow.metadata or {})
            for batch in shard.iter_batches(batch_size=self.rows):
                ids = batch.column("id").to_pylist()
                # shards written before passages hold whole documents: the key is the id
                docs = batch.column("doc").to_pylist() if "doc" in batch.schema.names else ids
                hashes = batch.column("content_hash").to_pylist()
                rows = [
                    n
                    for n, (d, h) in enumerate(zip(docs, hashes, strict=True))
                    if wanted.get(d) == h
                ]
                if not rows:
                    continue
                flat = batch.column("vector").flatten().to_numpy()
                matrix = flat.reshape(-1, model.dim)[rows].astype(np.float32, copy=False)
                vectors += len(rows)
                yield [ids[n] for n in rows], np.ascontiguousarray(matrix)
        self.documents, self.vectors = documents, vectors

    def _check(self, key: str, meta: dict[bytes, bytes]) -> None:
        if meta.get(b"model_hash", b"").decode() != self.model.content_hash:
            raise ModelMismatch(f"shard {key} was not written by model {self.model.ref}")
        if meta.get(b"chunker", b"").decode() != self.chunker:
            raise ModelMismatch(f"shard {key} was not split with chunking {self.chunker!r}")


def read_vectors(
    ws: Workspace, model: ModelRecord, chunker: str | None = None
) -> tuple[list[str], np.ndarray]:
    """Every vector of ``VectorStream`` at once, sorted by key (``chunker`` None: that of the
    model's newest run). For what needs them all in memory; an index build streams them."""
    chunker = ws.catalog.registry.latest_chunker(model.id) if chunker is None else chunker
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for batch_ids, matrix in VectorStream(ws, model, chunker):
        ids.extend(batch_ids)
        parts.append(matrix)
    if not ids:
        return [], np.empty((0, model.dim), dtype=np.float32)
    vectors = np.vstack(parts)
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


def document_batches(
    batches: Iterable[tuple[list[str], np.ndarray]],
) -> Iterator[tuple[list[str], np.ndarray]]:
    """``document_vectors`` of a stream of passage batches, a batch at a time: a document whose
    passages a batch boundary splits (they are consecutive in a shard) is held over to the
    next batch, so each document comes out once, made of all its passages."""
    keys: list[str] = []
    held: list[np.ndarray] = []
    for ids, vectors in batches:
        keys, held = keys + ids, [*held, vectors]
        last = doc_of(keys[-1])
        cut = len(keys)
        while cut and doc_of(keys[cut - 1]) == last:
            cut -= 1
        if not cut:  # one document so far: wait for its end
            continue
        stacked = np.vstack(held)
        yield document_vectors(keys[:cut], stacked[:cut])
        keys, held = keys[cut:], [stacked[cut:]]
    if keys:
        yield document_vectors(keys, np.vstack(held))
