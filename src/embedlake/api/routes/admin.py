"""Releases, aliases (publish, rollback) and models: the admin scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from embedlake.api import problems, schemas
from embedlake.api.auth import caller
from embedlake.api.fastjson import FastJsonRoute
from embedlake.catalog.releases import ALIAS_MAX, AliasMove, ReleaseRecord
from embedlake.releases.publish import publish, rollback
from embedlake.workspace import Workspace

router = APIRouter(tags=["admin"], responses=problems.RESPONSES, route_class=FastJsonRoute)
Admin = Annotated[str, Depends(caller("admin"))]
# an alias in the path: 422 when over the length or holding a control character (the catalog's
# check_alias, stated in the OpenAPI document)
AliasName = Annotated[str, Path(min_length=1, max_length=ALIAS_MAX, pattern=schemas.REF_PATTERN)]


def _release(ws: Workspace, r: ReleaseRecord, *, report: bool = False) -> schemas.Release:
    held = [name for name, rid in ws.catalog.releases.aliases().items() if rid == r.id]
    return schemas.Release(
        id=r.id,
        model=ws.catalog.registry.model_by_id(r.model_id).ref,
        status=r.status,
        created_at=r.created_at,
        finished_at=r.finished_at,
        reason=r.reason,
        aliases=sorted(held),
        report=r.report if report else None,
    )


def _move(m: AliasMove) -> schemas.AliasMove:
    return schemas.AliasMove(**vars(m))


@router.get("/v1/releases", response_model=list[schemas.Release])
def list_releases(request: Request, _: Admin) -> list[schemas.Release]:
    """Every release, newest first, with the aliases that point to it."""
    ws: Workspace = request.app.state.ws
    return [_release(ws, r) for r in reversed(ws.catalog.releases.all())]


@router.get("/v1/releases/{release_id}", response_model=schemas.Release)
def get_release(release_id: str, request: Request, _: Admin) -> schemas.Release:
    """One release with its report (benchmarks, gate decision, build stages)."""
    ws: Workspace = request.app.state.ws
    return _release(ws, ws.catalog.releases.get(release_id), report=True)


@router.post("/v1/aliases/{alias}", response_model=schemas.AliasMove)
async def publish_release(
    alias: AliasName, body: schemas.Publish, request: Request, actor: Admin
) -> schemas.AliasMove:
    """Point ``alias`` at a release (through the gate unless ``force``); this process swaps to
    it before answering, the others when the move is announced (api/state.py)."""
    ws: Workspace = request.app.state.ws
    move = await run_in_threadpool(
        lambda: publish(ws, body.release, alias, force=body.force, actor=actor, reason=body.reason)
    )
    await run_in_threadpool(request.app.state.serving.refresh)
    return _move(move)


@router.post("/v1/aliases/{alias}/rollback", response_model=schemas.AliasMove)
async def rollback_alias(
    alias: AliasName, request: Request, actor: Admin, body: schemas.Rollback | None = None
) -> schemas.AliasMove:
    """Move ``alias`` back to the release it pointed to before its last publish."""
    ws: Workspace = request.app.state.ws
    reason = body.reason if body else ""
    move = await run_in_threadpool(lambda: rollback(ws, alias, actor=actor, reason=reason))
    await run_in_threadpool(request.app.state.serving.refresh)
    return _move(move)


@router.get("/v1/models", response_model=list[schemas.Model])
def list_models(request: Request, _: Admin) -> list[schemas.Model]:
    """Every registered model."""
    ws: Workspace = request.app.state.ws
    return [
        schemas.Model(ref=m.ref, kind=m.kind, dim=m.dim, content_hash=m.content_hash)
        for m in ws.catalog.registry.list_models()
    ]
