"""Batch inference: embed every live document a model has not embedded yet, in durable shards.

A run first writes its plan (which documents go in which shard) to the lake, then embeds shard by
shard; each finished shard is a Parquet object plus one catalog transaction recording it and the
(document, content hash) pairs it covers. A killed run resumes from its plan and skips finished
shards. Shards live under the model's own prefix and carry its content hash, so vectors of two models
can never mix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from embedlake.catalog.registry import ModelRecord
from embedlake.embeddings.passages import Chunking
from embedlake.embeddings.plan import open_run, pending_shards, read_shard, shard_sizes
from embedlake.embeddings.processes import embed_shards, processes_for
from embedlake.embeddings.shards import embed_shard, embed_shard_task
from embedlake.encoders import Encoder, token_window
from embedlake.models import artifacts
from embedlake.steps import Steps
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


def chunking_for(ws: Workspace, model: ModelRecord, encoder: Encoder | None = None) -> Chunking:
    """The chunking the workspace's ``[passages]`` settings give the model's encoder."""
    window = token_window(encoder or artifacts.load_encoder(ws, model))
    return Chunking.resolve(ws.settings.passages, None if window is None else window.tokens)


def embed(
    ws: Workspace,
    model: ModelRecord,
    encoder: Encoder,
    progress: Progress | None = None,
    chunking: Chunking | None = None,
) -> EmbedReport:
    """Embed what ``model`` is missing, shard after shard (in ``[embed] processes`` processes:
    :mod:`.processes`); resumes an interrupted run. The chunking is the settings' unless given."""
    started = time.perf_counter()
    registry = ws.catalog.registry
    chunking = chunking or chunking_for(ws, model, encoder)
    resumed = registry.open_run(model.id, chunking.key) is not None
    run = open_run(ws, model, chunking)
    if run is None:
        return EmbedReport(model.ref, None, 0, 0, False, time.perf_counter() - started)
    sizes = shard_sizes(ws, run)
    todo = set(pending_shards(ws, run))
    finished = sum(size for n, size in enumerate(sizes) if n not in todo)
    embedded = 0
    if progress:
        progress(finished, run.n_documents)
    processes = processes_for(
        ws.settings.embed.processes, encoder, len(todo), run.n_documents - finished
    )
    if processes > 1:
        done = embed_shards(ws.settings, model.ref, run.id, sorted(todo), processes)
    else:
        done = (
            (n, embed_shard(ws, model, encoder, run, n, read_shard(ws, run, n)))
            for n in sorted(todo)
        )
    for number, count in done:
        embedded += count
        finished += sizes[number]
        if progress:
            progress(finished, run.n_documents)
    seconds = time.perf_counter() - started
    registry.finish_run(run.id, seconds)
    return EmbedReport(model.ref, run.id, run.n_documents, embedded, resumed, seconds)


MAX_ROUNDS = 5  # plans in one call: documents keep arriving while a large corpus is embedded


def embed_in_steps(
    ctx: Steps, ws: Workspace, model_ref: str, label: str, chunker: str | None = None
) -> int:
    """Embed what the model lacks with the chunking ``chunker`` (a ``Chunking.key``; None: the
    settings') as checkpointed steps, one fan-out task per shard, until it covers every live
    document; returns the number embedded. ``label`` names the steps and the fan-out, so it must
    differ between calls in one invocation (it does: it holds the model)."""
    embedded = 0
    for round_ in range(MAX_ROUNDS):
        run_id = ctx.step(f"{label} {round_} plan", _plan_id, ws, model_ref, chunker)
        if run_id is None:
            break
        shards = ctx.step(f"{label} {round_} pending", _pending, ws, run_id)
        counts = ctx.map(
            f"{label}-{round_}", embed_shard_task, [(model_ref, run_id, n) for n in shards]
        )
        ctx.step(f"{label} {round_} finish", _finish, ws, run_id)
        embedded += int(sum(counts))
    return embedded


def _plan_id(ws: Workspace, ref: str, chunker: str | None) -> int | None:
    model = ws.catalog.registry.model(ref)
    chunking = chunking_for(ws, model) if chunker is None else Chunking.from_key(chunker)
    run = open_run(ws, model, chunking)
    return None if run is None else run.id


def _pending(ws: Workspace, run_id: int) -> list[int]:
    return pending_shards(ws, ws.catalog.registry.run(run_id))


def _finish(ws: Workspace, run_id: int) -> None:
    ws.catalog.registry.finish_run(run_id)
