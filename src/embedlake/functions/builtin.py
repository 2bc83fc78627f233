"""The built-in functions: the pipeline of the first issue, wired by events.

raw/<source>/<file> ──object.created──▶ ingest ──documents.changed──▶ embed-new
                                                 (embed shards in fan-out, then re-index)
"""

from __future__ import annotations

import logging
from typing import Any

from embedlake.batch import embed_shard_task, open_run, pending_shards
from embedlake.encoders.resolve import resolve_model
from embedlake.errors import NotFound
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.functions import Functions, object_created, on_event
from embedlake.functions.context import Context
from embedlake.ingest import ingest_object
from embedlake.ingest.readers import reader_for
from embedlake.serving import build_index
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

functions = Functions()


@functions.function(on=object_created("raw/**"), concurrency=2, timeout="30m", retries=3)
def ingest(event: Event, ctx: Context) -> dict[str, Any]:
    """Ingest a file dropped into raw/<source>/; announce the documents it changed."""
    if reader_for(event.key) is None:
        log.info("not an ingestible file, skipped: %s", event.key)
        return {"skipped": event.key}
    report = ingest_object(ctx.ws, event.key)
    changed = report.inserted + report.updated
    if changed:
        ctx.emit(DOCUMENTS_CHANGED, report.source, {"raw_key": event.key, "changed": changed})
    return report.counts()


@functions.function(on=on_event(DOCUMENTS_CHANGED), concurrency=1, timeout="6h", retries=3)
def embed_new(event: Event, ctx: Context) -> dict[str, int]:
    """Embed new and changed documents with every serving model (the configured one until a
    model has an index), one fan-out task per shard, then rebuild that model's index."""
    embedded: dict[str, int] = {}
    for ref in ctx.step("serving models", serving_models, ctx.ws):
        run_id = ctx.step(f"plan {ref}", _plan, ctx.ws, ref)
        if run_id is None:
            continue
        shards = ctx.step(f"pending {ref}", _pending, ctx.ws, run_id)
        counts = ctx.map("embed-shard", embed_shard_task, [(ref, run_id, n) for n in shards])
        ctx.step(f"finish {ref}", _finish, ctx.ws, run_id)
        ctx.step(f"index {ref}", _index, ctx.ws, ref)
        embedded[ref] = int(sum(counts))
    return embedded


def serving_models(ws: Workspace) -> list[str]:
    """Models that have an index; the configured default while there is none."""
    refs = []
    for model in ws.catalog.registry.list_models():
        try:
            ws.catalog.registry.latest_index(model.id)
        except NotFound:
            continue
        refs.append(model.ref)
    return refs or [resolve_model(ws, ws.settings.embed.model).ref]


def _plan(ws: Workspace, ref: str) -> int | None:
    run = open_run(ws, ws.catalog.registry.model(ref))
    return None if run is None else run.id


def _pending(ws: Workspace, run_id: int) -> list[int]:
    return pending_shards(ws, ws.catalog.registry.run(run_id))


def _finish(ws: Workspace, run_id: int) -> None:
    ws.catalog.registry.finish_run(run_id, 0.0)


def _index(ws: Workspace, ref: str) -> int:
    return build_index(ws, ws.catalog.registry.model(ref)).index_id
