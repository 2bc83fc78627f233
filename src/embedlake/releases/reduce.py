"""A release's reducer and map stages, over its vectors read a batch at a time.

The PCA is fitted on a seeded uniform sample of the passage vectors (``[reduce] fit_sample``), and
the map on a sample of the documents (``[map] fit_sample``, the rest placed by their neighbours),
so neither stage holds every vector: a pass of the shards feeds the samples, a second writes the
reduced vectors (Parquet: ``id``, ``vector``) and measures the reducer's recall cost on 200 sampled
rows against exact search in both spaces; the map keeps only each document's first ``pca_dims``
reduced coordinates.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.shards import WRITER  # the write was most of its second pass at 10M
from embedlake.embeddings.vectors import VectorStream, document_batches
from embedlake.index.stream import Reservoir, RunningTopK
from embedlake.reduce import maps, projection, topics
from embedlake.reduce.pca import PcaReducer
from embedlake.reduce.store import read_reducer
from embedlake.workspace import Workspace

REDUCED = "reduced.parquet"
COST_QUERIES = 200  # sampled rows whose top 10 measure the reducer's recall cost


def _stream(ws: Workspace, model: ModelRecord, chunker: str) -> VectorStream:
    """The model's vectors in batches of an eighth of ``[index] build_memory``."""
    rows = ws.settings.index.build_memory * 2**20 // 8 // (4 * model.dim)
    return VectorStream(ws, model, chunker, rows=rows)


def reduce_release(ws: Workspace, release_id: str) -> float:
    """Fit PCA on a sample of the release's passage vectors (what its index holds); store it,
    the reduced vectors, and its recall cost. Returns the stage's seconds."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    settings = ws.settings.reduce
    stream = _stream(ws, model, release.chunker)
    sample, n = Reservoir(settings.fit_sample, seed=0), 0
    for ids, vectors in stream:
        sample.offer(ids, vectors, n)
        n += len(ids)
    reducer = PcaReducer.fit(
        sample.matrix(), variance=settings.variance, components=settings.components
    )
    sample.shrink(COST_QUERIES, seed=0)
    queries = sample.matrix()
    full, reduced = RunningTopK(queries, 11), RunningTopK(reducer.transform(queries), 11)
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), reducer.dim))])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / REDUCED
        with pq.ParquetWriter(path, schema, **WRITER) as writer:
            for ids, vectors in stream:
                small = reducer.transform(vectors)
                full.add(ids, vectors)
                reduced.add(ids, small)
                column = pa.FixedSizeListArray.from_arrays(pa.array(small.ravel()), reducer.dim)
                writer.write_table(pa.table([pa.array(ids), column], schema=schema))
        ws.lake.put_path(f"{release.prefix}/{REDUCED}", path)
        for path in _saved(reducer, Path(tmp) / "reducer"):
            ws.lake.put(f"{release.prefix}/reducer/{path.name}", path.read_bytes())
    # each sampled row finds itself first in both spaces: its next 10 are what is compared
    hits = [
        len(set(a[1:]) & set(b[1:])) / 10 for a, b in zip(full.hits(), reduced.hits(), strict=True)
    ]
    ws.catalog.releases.merge_report(
        release_id,
        reducer={
            "backs_index": settings.back_index,
            "dims": reducer.dim,
            "from_dims": model.dim,
            "explained_variance": reducer.explained,
            "recall@10_vs_full": float(np.mean(hits)),
            "fitted_on": min(n, settings.fit_sample),
            "vectors": n,
        },
    )
    return time.perf_counter() - started


def _saved(reducer: PcaReducer, folder: Path) -> list[Path]:
    folder.mkdir()
    reducer.save(folder)
    return sorted(folder.iterdir())


def map_release(ws: Workspace, release_id: str) -> float:
    """Fit the release's 2D map on its PCA-reduced vectors, and its regions' topic labels, and
    store them beside the release. One point per document, at the mean of its passages'
    vectors (docs/decisions/0022-passages.md). Returns the stage's seconds."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    reducer = read_reducer(ws, release)
    dims = min(ws.settings.map.pca_dims, reducer.dim)
    axes, mean = reducer.components[:dims].T, reducer.mean
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for doc_ids, vectors in document_batches(_stream(ws, model, release.chunker)):
        ids.extend(doc_ids)
        parts.append(((vectors - mean) @ axes).astype(np.float32))
    reduced = np.vstack(parts) if parts else np.empty((0, dims), np.float32)
    fitted = projection.fit(ids, reduced, ws.settings.map)
    topics.label(ws, fitted, ws.settings.map)
    fitted.save(ws.lake, release.prefix)
    # the fields to colour by, chosen here once (a sample of the live documents), not by every
    # request for the map's index
    offered = maps.fields(ws)
    meta = {**fitted.meta, "fields": offered.offered, "default_field": offered.default}
    ws.catalog.releases.merge_report(release_id, map=meta)
    return time.perf_counter() - started
