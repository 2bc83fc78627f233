"""The built-in functions: the pipeline of the first issue, wired by events.

raw/<source>/<file> ──object.created──▶ ingest ──documents.changed──▶ embed-new
                                                 (embed shards in fan-out, then re-index)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from embedlake.embeddings.batch import embed_in_steps
from embedlake.encoders import sentence_transformers
from embedlake.errors import Conflict, InputError, NotFound
from embedlake.events import DOCUMENTS_CHANGED, MODEL_REGISTERED, MODEL_REJECTED, Event
from embedlake.functions import Functions, object_created, on_event, schedule
from embedlake.functions.context import Context
from embedlake.ingest import ingest_object
from embedlake.ingest.readers import reader_for
from embedlake.models import artifacts
from embedlake.releases import coverage, serving
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

functions = Functions()


@functions.function(on=object_created("raw/**"), concurrency=2, timeout="30m", retries=3)
def ingest(event: Event, ctx: Context) -> dict[str, Any]:
    """Ingest a file dropped into raw/<source>/; announce the documents it changed."""
    if reader_for(event.key) is None:
        log.info("not an ingestible file, skipped: %s", event.key)
        return {"skipped": event.key}
    if not ctx.ws.lake.exists(event.key):  # deleted after it was seen: nothing to ingest, and
        # no retries (a retry that finds it gone lands here too)
        log.info("deleted before it was ingested, skipped: %s", event.key)
        return {"skipped": event.key, "gone": True}
    report = ingest_object(ctx.ws, event.key)
    changed = report.inserted + report.updated
    if changed:
        ctx.emit(DOCUMENTS_CHANGED, report.source, {"raw_key": event.key, "changed": changed})
    return report.counts()


@functions.function(
    on=on_event(DOCUMENTS_CHANGED), concurrency=1, timeout="6h", retries=3, durable=True
)
def embed_new(event: Event, ctx: Context) -> dict[str, int]:
    """Embed new and changed documents with every serving model, one fan-out task per shard, then
    re-index: the releases aliases point to get the new index, so a published release is never
    behind the catalog. Last, any aliased release still behind (published while this ran, or
    indexed before its model embedded everything) is caught up. Which models serve, and the
    re-indexing, are ``releases.serving``'s."""
    embedded: dict[str, int] = {}
    for ref, chunker in ctx.step("serving models", serving.serving_models, ctx.ws):
        # a model served with two chunkings (a rollback kept) has vectors of each
        name = ref if not chunker else f"{ref} {chunker}"
        embedded[name] = embed_in_steps(ctx, ctx.ws, ref, f"embed {name}", chunker)
        if embedded[name]:
            key = (
                chunker
                if chunker is not None
                else ctx.ws.catalog.registry.latest_chunker(ctx.ws.catalog.registry.model(ref).id)
            )
            ctx.step(f"index {name}", serving.reindex, ctx.ws, ref, key)
    for release_id in ctx.step("releases behind", serving.releases_behind, ctx.ws):
        embedded[release_id] = coverage.catch_up(ctx, ctx.ws, release_id)
    return embedded


@functions.function(
    on=object_created("models/*/*/manifest.json"), concurrency=1, timeout="1h", retries=2
)
def register_model(event: Event, ctx: Context) -> dict[str, str]:
    """Verify a model folder that arrived in the lake; register it, or quarantine it with the
    reason (a broken model is not retried: it changes nothing that is live)."""
    prefix = event.key.rsplit("/", 1)[0]
    try:
        record, new = artifacts.register_from_lake(ctx.ws, prefix, **_options(ctx.ws, prefix))
    except (InputError, Conflict) as exc:
        reason = {"model": prefix, "reason": str(exc), "event": event.id}
        ctx.lake.put(f"quarantine/{prefix}.reason.json", json.dumps(reason, indent=2).encode())
        ctx.emit(MODEL_REJECTED, prefix, reason)
        log.warning("model rejected: %s", exc)
        return {"rejected": str(exc)}
    if new:
        ctx.emit(MODEL_REGISTERED, record.ref, {"model": record.ref, "prefix": prefix})
    return {"registered": record.ref}


def _options(ws: Workspace, prefix: str) -> dict[str, object]:
    try:
        kind = json.loads(ws.lake.get(f"{prefix}/manifest.json")).get("kind")
    except (NotFound, ValueError):
        return {}
    if kind == sentence_transformers.KIND:
        return {
            "device": ws.settings.embed.device,
            "max_seq_length": ws.settings.embed.max_seq_length,
        }
    return {}


@functions.function(
    on=on_event(MODEL_REGISTERED), concurrency=1, timeout="12h", retries=2, durable=True
)
def build_release(event: Event, ctx: Context) -> dict[str, str]:
    """Build a release of the new model; the gate publishes it or rejects it."""
    from embedlake.releases.build import build

    release_id = build(ctx, ctx.ws, event.data["model"], reason=f"model {event.subject} registered")
    return {"release": release_id, "status": ctx.ws.catalog.releases.get(release_id).status}


@functions.function(
    on=on_event(DOCUMENTS_CHANGED), name="retrain-on-growth", concurrency=1, timeout="6h", retries=1
)
def retrain_on_growth(event: Event, ctx: Context) -> dict[str, str]:
    """ "Repeat" by rule: retrain once the corpus has grown by ``training.grow`` since the release
    behind the alias. The new model's arrival starts its release (and the gate decides)."""
    settings = ctx.ws.settings.training
    if not settings.kind or settings.grow <= 0:
        return {"skipped": "training.kind or training.grow is off"}
    release_id = ctx.ws.catalog.releases.alias(ctx.ws.settings.gate.alias)
    if release_id is None:
        return {"skipped": "no release to grow from"}
    base = int(ctx.ws.catalog.releases.get(release_id).snapshot.get("documents", 0))
    live = ctx.ws.catalog.documents.count()
    if live < (1 + settings.grow) * base:
        return {"skipped": f"{live} documents, retraining at {(1 + settings.grow) * base:.0f}"}
    return {"model": ctx.step("train", retrain, ctx.ws)}


def retrain(ws: Workspace) -> str:
    """Train a model as ``[training]`` says and write it into the lake; returns its prefix."""
    from embedlake.training.train import train

    settings = ws.settings.training
    prefix, _ = train(
        ws,
        name=settings.name,
        kind=settings.kind,
        base=settings.base,
        pairs=settings.pairs if settings.kind != "lsa" else None,
    )
    return prefix


def scheduled_retraining(ws: Workspace) -> Functions:
    """A ``retrain-scheduled`` function when ``training.schedule`` is set (else nothing)."""
    extra = Functions()
    settings = ws.settings.training
    if settings.kind and settings.schedule:

        @extra.function(
            on=schedule(settings.schedule),
            name="retrain-scheduled",
            timeout="6h",
            retries=1,
            durable=True,
        )
        def retrain_scheduled(event: Event, ctx: Context) -> dict[str, str]:
            return {"model": ctx.step("train", retrain, ctx.ws)}

    return extra
