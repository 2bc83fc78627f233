"""Which models serve, and keeping their indexes current as new documents arrive.

A release an alias points to must never be behind the catalog: when documents change, each model
that serves is embedded further (``embed-new``) and re-indexed here, and every aliased release of
that model moves to the new index; then any aliased release still behind (one published while
``embed-new`` ran, or whose index is older than its model's vectors) is caught up. A release being
built catches up by itself (its own catch-up stage, and its publish: ``releases.build``); embedding
for it here would run the shards its build is running. Before any release exists, the models with
an index serve (what ``embedlake index`` made), else the configured model. The CLI asks the same
questions.
"""

from __future__ import annotations

from embedlake.catalog.registry import ModelRecord
from embedlake.errors import NotFound
from embedlake.models.resolve import resolve_model
from embedlake.releases import coverage
from embedlake.search.build import build_index
from embedlake.workspace import Workspace


def indexed_models(ws: Workspace) -> list[ModelRecord]:
    """Registered models that have at least one index, in registration order: those that can
    answer a search without a release."""
    found = []
    for model in ws.catalog.registry.list_models():
        try:
            ws.catalog.registry.latest_index(model.id)
        except NotFound:
            continue
        found.append(model)
    return found


def serving_models(ws: Workspace) -> list[tuple[str, str | None]]:
    """(model ref, chunking key) of aliased releases; else of models that have an index; else
    the configured model with the settings' chunking (None)."""
    registry, releases = ws.catalog.registry, ws.catalog.releases
    aliased = {
        (r.model_id, r.chunker) for r in (releases.get(r) for r in set(releases.aliases().values()))
    }
    if aliased:
        return [(registry.model_by_id(m).ref, c) for m, c in sorted(aliased)]
    indexed: list[tuple[str, str | None]] = [
        (m.ref, str(registry.latest_index(m.id).params.get("chunker", "")))
        for m in indexed_models(ws)
    ]
    return indexed or [(resolve_model(ws, ws.settings.embed.model).ref, None)]


def reindex(ws: Workspace, ref: str, chunker: str) -> int | None:
    """Bring the indexes of a model's vectors of one chunking up to date: each aliased release
    of them moves to its index updated with what changed (or built again, and through its own
    PCA where that backs its index: ``coverage.reindexed``); a model no release serves gets an
    index built. Returns the newest index id (None: nothing changed)."""
    model = ws.catalog.registry.model(ref)
    releases = ws.catalog.releases
    aliased = [releases.get(r) for r in sorted(set(releases.aliases().values()))]
    mine = [r for r in aliased if r.model_id == model.id and r.chunker == chunker]
    if not mine:
        return build_index(ws, model, chunker=chunker).index_id
    newest = None
    with coverage.held(ws, model, chunker) as now:
        moved: dict[int | None, int | None] = {}  # releases that share an index share its update
        for release in mine:
            if release.index_id not in moved:
                built = coverage.reindexed(ws, release, model, now)
                moved[release.index_id] = None if built is None else built.index_id
            index_id = moved[release.index_id]
            if index_id is not None:
                coverage.record(ws, release.id, index_id, now)
                newest = max(newest or 0, index_id)
    return newest


def releases_behind(ws: Workspace) -> list[str]:
    """Aliased releases that lack live documents."""
    aliased = sorted(set(ws.catalog.releases.aliases().values()))
    return [r for r in aliased if coverage.lacking(ws, r)]
