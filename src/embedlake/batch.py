"""Batch inference: embed every live document a model has not embedded yet, in durable shards.

A run first writes its plan (which documents go in which shard) to the lake, then embeds shard by
shard; each finished shard is a Parquet object plus one catalog transaction recording it and the
(document, content hash) pairs it covers. A killed run resumes from its plan and skips finished
shards. Shards live under the model's own prefix and carry its content hash, so vectors of two models
can never mix.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlake.catalog.registry import ModelRecord, RunRecord
from embedlake.encoders import Encoder
from embedlake.errors import ModelMismatch
from embedlake.functions.context import Steps
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (documents done, documents planned)


@dataclass(frozen=True)
class EmbedReport:
    model: str
    run_id: int | None
    planned: int
    embedded: int
    resumed: bool
    seconds: float

    @property
    def rate(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def embeddings_prefix(model: ModelRecord) -> str:
    return f"embeddings/{model.name}/{model.version}"


def shard_schema(model: ModelRecord) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("content_hash", pa.string()),
            ("vector", pa.list_(pa.float32(), model.dim)),
        ],
        metadata={"model": model.ref, "model_hash": model.content_hash},
    )


def plan(ws: Workspace, model: ModelRecord) -> list[list[tuple[str, str]]]:
    """Shards of (doc id, content hash) that the model lacks or has for an older text."""
    covered = ws.catalog.registry.coverage(model.id)
    todo = [
        (doc_id, h)
        for doc_id, h in sorted(ws.catalog.documents.live_hashes().items())
        if covered.get(doc_id, ("",))[0] != h
    ]
    size = ws.settings.embed.shard_size
    return [todo[i : i + size] for i in range(0, len(todo), size)]


def _write_plan(ws: Workspace, key: str, shards: list[list[tuple[str, str]]]) -> None:
    table = pa.table(
        {
            "shard": [n for n, shard in enumerate(shards) for _ in shard],
            "id": [d for shard in shards for d, _ in shard],
            "content_hash": [h for shard in shards for _, h in shard],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ws.lake.put(key, buf.getvalue())


def _read_plan(ws: Workspace, key: str) -> list[list[tuple[str, str]]]:
    table = pq.read_table(io.BytesIO(ws.lake.get(key)))
    shards: dict[int, list[tuple[str, str]]] = {}
    for s, d, h in zip(
        *(table.column(c).to_pylist() for c in ("shard", "id", "content_hash")), strict=True
    ):
        shards.setdefault(s, []).append((d, h))
    return [shards[n] for n in sorted(shards)]


def open_run(ws: Workspace, model: ModelRecord) -> RunRecord | None:
    """The model's unfinished run, else a new planned run, else None (nothing to embed)."""
    registry = ws.catalog.registry
    run = registry.open_run(model.id)
    if run is not None:
        log.info("resuming embedding run %s of %s", run.id, model.ref)
        return run
    shards = plan(ws, model)
    if not shards:
        return None
    key = f"{embeddings_prefix(model)}/runs/{uuid4().hex[:12]}/plan.parquet"
    _write_plan(ws, key, shards)
    return registry.start_run(model.id, sum(map(len, shards)), len(shards), key)


def pending_shards(ws: Workspace, run: RunRecord) -> list[int]:
    done = ws.catalog.registry.done_shards(run.id)
    return [n for n in range(run.n_shards) if n not in done]


def embed(
    ws: Workspace, model: ModelRecord, encoder: Encoder, progress: Progress | None = None
) -> EmbedReport:
    """Embed what ``model`` is missing, shard after shard; resumes an interrupted run."""
    started = time.perf_counter()
    registry = ws.catalog.registry
    resumed = registry.open_run(model.id) is not None
    run = open_run(ws, model)
    if run is None:
        return EmbedReport(model.ref, None, 0, 0, False, time.perf_counter() - started)
    shards = _read_plan(ws, run.plan_key)
    todo = set(pending_shards(ws, run))
    finished = sum(len(shards[n]) for n in range(len(shards)) if n not in todo)
    embedded = 0
    if progress:
        progress(finished, run.n_documents)
    for number in sorted(todo):
        embedded += _embed_shard(ws, model, encoder, run, number, shards[number])
        finished += len(shards[number])
        if progress:
            progress(finished, run.n_documents)
    seconds = time.perf_counter() - started
    registry.finish_run(run.id, seconds)
    return EmbedReport(model.ref, run.id, run.n_documents, embedded, resumed, seconds)


MAX_ROUNDS = 5  # plans in one call: documents keep arriving while a large corpus is embedded


def embed_in_steps(ctx: Steps, ws: Workspace, model_ref: str, label: str) -> int:
    """Embed what the model lacks as checkpointed steps, one fan-out task per shard, until it
    covers every live document; returns the number embedded. ``label`` names the steps and the
    fan-out, so it must differ between calls in one invocation (it does: it holds the model)."""
    embedded = 0
    for round_ in range(MAX_ROUNDS):
        run_id = ctx.step(f"{label} {round_} plan", _plan_id, ws, model_ref)
        if run_id is None:
            break
        shards = ctx.step(f"{label} {round_} pending", _pending, ws, run_id)
        counts = ctx.map(
            f"{label}-{round_}", embed_shard_task, [(model_ref, run_id, n) for n in shards]
        )
        ctx.step(f"{label} {round_} finish", _finish, ws, run_id)
        embedded += int(sum(counts))
    return embedded


def _plan_id(ws: Workspace, ref: str) -> int | None:
    run = open_run(ws, ws.catalog.registry.model(ref))
    return None if run is None else run.id


def _pending(ws: Workspace, run_id: int) -> list[int]:
    return pending_shards(ws, ws.catalog.registry.run(run_id))


def _finish(ws: Workspace, run_id: int) -> None:
    ws.catalog.registry.finish_run(run_id)


def embed_shard_task(ws: Workspace, item: tuple[str, int, int]) -> int:
    """One shard of a planned run, as a fan-out task: ``(model ref, run id, shard number)``.

    Safe to deliver twice: a shard already recorded is not embedded again.
    """
    from embedlake.encoders import artifacts
    from embedlake.encoders.resolve import encoder_options

    model_ref, run_id, number = item
    registry = ws.catalog.registry
    model = registry.model(model_ref)
    run = registry.run(run_id)
    if number in registry.done_shards(run.id):
        return 0
    table = pq.read_table(io.BytesIO(ws.lake.get(run.plan_key)), filters=[("shard", "=", number)])
    shard = list(
        zip(table.column("id").to_pylist(), table.column("content_hash").to_pylist(), strict=True)
    )
    encoder = artifacts.load(ws, model, **encoder_options(ws, model))
    return _embed_shard(ws, model, encoder, run, number, shard)


def _embed_shard(
    ws: Workspace,
    model: ModelRecord,
    encoder: Encoder,
    run: RunRecord,
    number: int,
    shard: list[tuple[str, str]],
) -> int:
    docs = ws.catalog.documents.get_many([d for d, _ in shard])
    # A document deleted since the plan is skipped; one changed since is embedded as it is now.
    live = [docs[d] for d, _ in shard if d in docs]
    vectors = encoder.encode([d.full_text for d in live], batch_size=ws.settings.embed.batch_size)
    if vectors.shape != (len(live), model.dim):
        raise ModelMismatch(
            f"model {model.ref} returned vectors of shape {vectors.shape}, "
            f"expected ({len(live)}, {model.dim})"
        )
    table = pa.table(
        {
            "id": [d.id for d in live],
            "content_hash": [d.content_hash for d in live],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), model.dim),
        },
        schema=shard_schema(model),
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    key = f"{run.plan_key.rsplit('/', 1)[0]}/shard-{number:05d}.parquet"
    ws.lake.put(key, buf.getvalue())
    recorded = ws.catalog.registry.finish_shard(
        run, number, key, [(d.id, d.content_hash) for d in live]
    )
    return len(live) if recorded else 0


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
