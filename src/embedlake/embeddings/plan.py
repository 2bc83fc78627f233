"""The plan of an embedding run: which documents go in which shard, stored in the lake before the
first shard so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import io
import logging
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord, RunRecord
from embedlake.embeddings.passages import Chunking
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


def embeddings_prefix(model: ModelRecord) -> str:
    return f"embeddings/{model.name}/{model.version}"


def plan(ws: Workspace, model: ModelRecord, chunking: Chunking) -> list[list[tuple[str, str]]]:
    """Shards of (doc id, content hash) that the model lacks, with this chunking, or has for an
    older text."""
    todo = list(ws.catalog.registry.lacking(model.id, chunking.key))
    size = ws.settings.embed.shard_size
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def write_plan(
    ws: Workspace, key: str, shards: list[list[tuple[str, str]]], chunker: str = ""
) -> None:
    table = pa.table(
        {
            "shard": [n for n, shard in enumerate(shards) for _ in shard],
            "id": [d for shard in shards for d, _ in shard],
            "content_hash": [h for shard in shards for _, h in shard],
        }
    ).replace_schema_metadata({"chunker": chunker})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ws.lake.put(key, buf.getvalue())


def read_plan(ws: Workspace, key: str) -> list[list[tuple[str, str]]]:
    table = pq.read_table(io.BytesIO(ws.lake.get(key)))
    shards: dict[int, list[tuple[str, str]]] = {}
    for s, d, h in zip(
        *(table.column(c).to_pylist() for c in ("shard", "id", "content_hash")), strict=True
    ):
        shards.setdefault(s, []).append((d, h))
    return [shards[n] for n in sorted(shards)]


def open_run(ws: Workspace, model: ModelRecord, chunking: Chunking) -> RunRecord | None:
    """The model's unfinished run with this chunking, else a new planned run, else None
    (nothing to embed)."""
    registry = ws.catalog.registry
    run = registry.open_run(model.id, chunking.key)
    if run is not None:
        log.info("resuming embedding run %s of %s", run.id, model.ref)
        return run
    shards = plan(ws, model, chunking)
    if not shards:
        return None
    key = f"{embeddings_prefix(model)}/runs/{uuid4().hex[:12]}/plan.parquet"
    write_plan(ws, key, shards, chunking.key)
    return registry.start_run(model.id, sum(map(len, shards)), len(shards), key, chunking.key)


def pending_shards(ws: Workspace, run: RunRecord) -> list[int]:
    done = ws.catalog.registry.done_shards(run.id)
    return [n for n in range(run.n_shards) if n not in done]
