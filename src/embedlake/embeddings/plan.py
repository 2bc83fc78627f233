"""The plan of an embedding run: which documents go in which shard, stored in the lake before the
first shard so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import io
import logging
from uuid import uuid4

import pyarrow as pa
import pyarrow.compute as pc
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


_PLAN = pa.schema([("shard", pa.int64()), ("id", pa.string()), ("content_hash", pa.string())])


def write_plan(
    ws: Workspace, key: str, shards: list[list[tuple[str, str]]], chunker: str = ""
) -> None:
    """One Parquet row group a shard, so that a worker embedding shard n reads row group n of
    the plan, not all of it (a plan of a million documents is ~70 MB)."""
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, _PLAN.with_metadata({"chunker": chunker})) as writer:
        for n, shard in enumerate(shards):
            ids, hashes = zip(*shard, strict=True) if shard else ((), ())
            columns = [pa.array([n] * len(shard), pa.int64()), pa.array(ids), pa.array(hashes)]
            writer.write_table(pa.Table.from_arrays(columns, schema=_PLAN), len(shard) or 1)
    ws.lake.put(key, buf.getvalue())


def read_plan(ws: Workspace, key: str) -> list[list[tuple[str, str]]]:
    table = pq.read_table(io.BytesIO(ws.lake.get(key)))
    shards: dict[int, list[tuple[str, str]]] = {}
    for s, d, h in zip(
        *(table.column(c).to_pylist() for c in ("shard", "id", "content_hash")), strict=True
    ):
        shards.setdefault(s, []).append((d, h))
    return [shards[n] for n in sorted(shards)]


def read_shard(ws: Workspace, run: RunRecord, number: int) -> list[tuple[str, str]]:
    """The (doc id, content hash) pairs of shard ``number`` of ``run``'s plan: its row group
    alone, or (a plan written in one row group, before they were a shard each) the rows of it."""
    with ws.lake.open(run.plan_key) as source:
        plan = pq.ParquetFile(source)
        if plan.num_row_groups == run.n_shards:
            table = plan.read_row_group(number, columns=["id", "content_hash"])
        else:
            table = plan.read(columns=["shard", "id", "content_hash"])
            table = table.filter(pc.equal(table.column("shard"), number))
    return list(
        zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist(), strict=True)
    )


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
