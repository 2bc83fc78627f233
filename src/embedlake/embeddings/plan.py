"""The plan of an embedding run: which documents go in which shard, stored in the lake before the
first shard so that a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord, RunRecord
from embedlake.embeddings.passages import Chunking
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)


def embeddings_prefix(model: ModelRecord) -> str:
    return f"embeddings/{model.name}/{model.version}"


def plan(ws: Workspace, model: ModelRecord, chunking: Chunking) -> Iterator[list[tuple[str, str]]]:
    """Shards of (doc id, content hash) that the model lacks, with this chunking, or has for an
    older text: read from the catalog in pages, a shard at a time, never every id at once."""
    size = ws.settings.embed.shard_size
    shard: list[tuple[str, str]] = []
    for pair in ws.catalog.registry.lacking(model.id, chunking.key):
        shard.append(pair)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


_PLAN = pa.schema([("shard", pa.int64()), ("id", pa.string()), ("content_hash", pa.string())])


def write_plan(
    ws: Workspace, key: str, shards: Iterable[list[tuple[str, str]]], chunker: str = ""
) -> tuple[int, int]:
    """Write the plan at ``key`` (unless it has no shard): one Parquet row group a shard, so that
    a worker embedding shard n reads row group n alone (a plan of a million documents is
    ~70 MB). Streamed through a temporary file; returns (documents, shards)."""
    documents = count = 0
    with tempfile.TemporaryDirectory(prefix="embedlake-plan-") as tmp:
        path = Path(tmp) / "plan.parquet"
        # no statistics: a shard is found by its row group's number, and each group's smallest
        # and largest id would only make the footer, which a worker reads, larger
        schema = _PLAN.with_metadata({"chunker": chunker})
        with pq.ParquetWriter(path, schema, write_statistics=False) as writer:
            for number, shard in enumerate(shards):
                ids, hashes = zip(*shard, strict=True)
                columns = [
                    pa.array([number] * len(shard), pa.int64()),
                    pa.array(ids),
                    pa.array(hashes),
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=_PLAN), len(shard))
                documents, count = documents + len(shard), number + 1
        if count:
            ws.lake.put_path(key, path)
    return documents, count


def shard_sizes(ws: Workspace, run: RunRecord) -> list[int]:
    """Documents in each shard of ``run``'s plan, from its row groups' metadata."""
    with ws.lake.open(run.plan_key) as source:
        plan = _plan_file(ws, run.plan_key, source)
        if plan.num_row_groups == run.n_shards:
            meta = plan.metadata
            return [meta.row_group(n).num_rows for n in range(run.n_shards)]
        numbers = plan.read(columns=["shard"]).column("shard").to_numpy()
    return [int(c) for c in np.bincount(numbers, minlength=run.n_shards)]


def read_shard(ws: Workspace, run: RunRecord, number: int) -> list[tuple[str, str]]:
    """The (doc id, content hash) pairs of shard ``number`` of ``run``'s plan: its row group
    alone, or (a plan written in one row group, before they were a shard each) the rows of it."""
    with ws.lake.open(run.plan_key) as source:
        plan = _plan_file(ws, run.plan_key, source)
        if plan.num_row_groups == run.n_shards:
            table = plan.read_row_group(number, columns=["id", "content_hash"])
        else:
            table = plan.read(columns=["shard", "id", "content_hash"])
            table = table.filter(pc.equal(table.column("shard"), number))
    return list(
        zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist(), strict=True)
    )


_FOOTERS: dict[tuple[str, str], pq.FileMetaData] = {}  # a plan's footer, by (lake, key)


def _plan_file(ws: Workspace, key: str, source: IO[bytes]) -> pq.ParquetFile:
    """The plan as a Parquet file, its footer parsed once per process: a plan never changes
    (its key is new for each run), and at ten million documents the footer describes ~5,000
    row groups, which every shard would otherwise parse again."""
    cached = _FOOTERS.get((ws.lake.url, key))
    plan = pq.ParquetFile(source, metadata=cached)
    if cached is None:
        if len(_FOOTERS) >= 8:
            _FOOTERS.clear()
        _FOOTERS[(ws.lake.url, key)] = plan.metadata
    return plan


def open_run(ws: Workspace, model: ModelRecord, chunking: Chunking) -> RunRecord | None:
    """The model's unfinished run with this chunking, else a new planned run, else None
    (nothing to embed)."""
    registry = ws.catalog.registry
    run = registry.open_run(model.id, chunking.key)
    if run is not None:
        log.info("resuming embedding run %s of %s", run.id, model.ref)
        return run
    key = f"{embeddings_prefix(model)}/runs/{uuid4().hex[:12]}/plan.parquet"
    documents, shards = write_plan(ws, key, plan(ws, model, chunking), chunking.key)
    if not shards:
        return None
    return registry.start_run(model.id, documents, shards, key, chunking.key)


def pending_shards(ws: Workspace, run: RunRecord) -> list[int]:
    done = ws.catalog.registry.done_shards(run.id)
    return [n for n in range(run.n_shards) if n not in done]
