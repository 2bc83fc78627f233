"""Coverage: which live documents a release's index holds, and bringing a release up to date.

An alias never points to a release that is behind the catalog (docs/releases.md, Coverage). A
release's index holds what its model had embedded when the index was built; the (document,
content hash) pairs it was built from are written beside the release (``coverage.json``), so what
it lacks is counted exactly: live documents whose current content is not among them. Catching up
is the build's own code: embed what the release's model lacks (that model is the release's serving
form, so its own form and chunking), then index the release again (through its own PCA where that
backs its index).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

from embedlake.catalog.registry import ModelRecord
from embedlake.catalog.releases import ReleaseRecord
from embedlake.embeddings.batch import embed_in_steps
from embedlake.errors import NotFound
from embedlake.reduce.store import load_reducer
from embedlake.search.build import build_index
from embedlake.steps import Steps
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

FILE = "coverage.json"
HASH_CHARS = 16  # of a content hash: enough to tell two versions of a document apart


def current(ws: Workspace, model: ModelRecord, chunker: str) -> dict[str, str]:
    """doc id → content hash of every live document the model has embedded at its current content
    with the chunking ``chunker``: what an index of the model built now holds."""
    return ws.catalog.registry.current(model.id, chunker)


def record(ws: Workspace, release_id: str, index_id: int, held: dict[str, str]) -> None:
    """Point the release at a new index built from ``held`` (taken before the build began, so a
    document embedded meanwhile makes the release look behind, never ahead), with its snapshot."""
    release = ws.catalog.releases.get(release_id)
    pairs = sorted(held.items())
    ws.lake.put(
        f"{release.prefix}/{FILE}",
        json.dumps({d: h[:HASH_CHARS] for d, h in pairs}).encode(),
    )
    ws.catalog.releases.update(
        release_id,
        index_id=index_id,
        snapshot={
            "documents": len(pairs),
            "corpus_hash": hashlib.sha256(json.dumps(pairs).encode()).hexdigest(),
            "live_documents": ws.catalog.documents.count(),
        },
    )


def index_release(ws: Workspace, release_id: str) -> float:
    """Index the release's model's vectors (reduced by the release's PCA where it backs the
    index) and point the release at the index: the build's index stage; returns its seconds."""
    started = time.perf_counter()
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    held = current(ws, model, release.chunker)
    built = build_index(ws, model, reducer=load_reducer(ws, release), chunker=release.chunker)
    record(ws, release_id, built.index_id, held)
    latest = ws.catalog.releases.get(release_id)
    index = {"id": built.index_id, "engine": built.engine, "vectors": built.n_vectors}
    ws.catalog.releases.update(
        release_id, report={**latest.report, "index": {**index, "tuning": built.tuning}}
    )
    return time.perf_counter() - started


def lacking(ws: Workspace, release_id: str) -> int:
    """How many live documents the release's index does not hold at their current content."""
    release = ws.catalog.releases.get(release_id)
    live = ws.catalog.documents.live_hashes()
    if release.index_id is None:
        return len(live)
    try:
        held: dict[str, str] = json.loads(ws.lake.get(f"{release.prefix}/{FILE}"))
    except NotFound:
        return _estimate(ws, release, live)
    return sum(1 for d, h in live.items() if held.get(d) != h[:HASH_CHARS])


def _estimate(ws: Workspace, release: ReleaseRecord, live: dict[str, str]) -> int:
    """A release indexed before coverage files were written: its index's size against what its
    model has embedded now gives a lower bound; any gap at all makes it behind."""
    assert release.index_id is not None
    indexed = ws.catalog.registry.index(release.index_id).n_vectors
    embedded = current(ws, ws.catalog.registry.model_by_id(release.model_id), release.chunker)
    return max(len(live) - indexed, len(live) - len(embedded), 0)


def catch_up(ctx: Steps, ws: Workspace, release_id: str) -> int:
    """Bring a release up to date: embed what its model lacks (one fan-out task per shard) and
    index it again. Returns how many documents it lacked; 0 when it was current (nothing runs)."""
    behind = ctx.step(f"lacking {release_id}", lacking, ws, release_id)
    if not behind:
        return 0
    release = ws.catalog.releases.get(release_id)
    model = ws.catalog.registry.model_by_id(release.model_id)
    embed_in_steps(ctx, ws, model.ref, f"catch-up {release_id}", release.chunker)
    ctx.map(f"re-index {release_id}", index_release, [release_id])
    log.info("release %s caught up %d documents", release_id, behind)
    return int(behind)
