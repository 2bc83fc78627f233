"""The map's data: which releases have one, and per release its points (binary float32), ids,
colour labels and topic labels, in pages, separately, so the page can draw 100k points before it
has anything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.state import ServingState
from embedlake.errors import NotFound
from embedlake.reduce import maps
from embedlake.reduce.maps import MapData
from embedlake.workspace import Workspace

router = APIRouter(tags=["map"], responses=problems.RESPONSES, dependencies=[require("search")])

PAGE = 1_000_000  # points per page at most: 8 MB of coordinates
Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=PAGE)]


async def _map(request: Request, release_id: str) -> MapData:
    state: ServingState = request.app.state.serving
    ws: Workspace = request.app.state.ws
    served = await state.aget(release=release_id)
    return await run_in_threadpool(served.map, ws)


@router.get("/v1/map", response_model=schemas.MapIndex)
def map_index(request: Request) -> schemas.MapIndex:
    """Releases with a map (newest first, with their aliases), the fields to colour by and the
    one to colour by first."""
    ws: Workspace = request.app.state.ws
    held: dict[str, list[str]] = {}
    for alias, release_id in ws.catalog.releases.aliases().items():
        held.setdefault(release_id, []).append(alias)
    mapped = [
        r
        for r in reversed(ws.catalog.releases.all())
        if "map" in r.report and r.status not in ("removed", "failed", "building")
    ]
    alias = request.app.state.serving.default_alias
    offered = _offered(ws, mapped, held, alias)
    releases = [
        schemas.MapRelease(
            id=r.id,
            model=ws.catalog.registry.model_by_id(r.model_id).ref,
            aliases=sorted(held.get(r.id, [])),
            method=r.report["map"]["method"],
            documents=r.report["map"]["n"],
        )
        for r in mapped
    ]
    return schemas.MapIndex(
        alias=alias, releases=releases, fields=offered.offered, default_field=offered.default
    )


@router.get("/v1/map/{release_id}", response_model=schemas.MapInfo)
async def map_info(release_id: str, request: Request) -> schemas.MapInfo:
    """How many points the release's map has now, and how it was fitted."""
    found = await _map(request, release_id)
    return schemas.MapInfo(
        release=found.release, points=len(found.ids), placed_since=found.placed_late, fit=found.meta
    )


@router.get(
    "/v1/map/{release_id}/points",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "x, y pairs"}},
)
async def map_points(
    release_id: str,
    request: Request,
    offset: Offset = 0,
    limit: Limit = PAGE,
    encoding: Annotated[Literal["f32", "u16"], Query()] = "f32",
) -> Response:
    """Coordinates in [-1, 1] as little-endian pairs (x0, y0, x1, y1, …) in the order of
    ``/ids``: float32, or with ``encoding=u16`` uint16 from 0 (-1) to 65535 (1), half the bytes.
    ``X-Total-Count`` has the number of points; gzipped for a client that accepts it."""
    found = await _map(request, release_id)
    return await _bulk(
        request,
        found,
        f"points:{offset}:{limit}:{encoding}",
        lambda: found.points(offset, limit, encoding),
        "application/octet-stream",
    )


@router.get(
    "/v1/map/{release_id}/ids",
    response_model=list[str],
    responses={200: {"content": {"text/plain": {}}, "description": "with format=text"}},
)
async def map_ids(
    release_id: str,
    request: Request,
    offset: Offset = 0,
    limit: Limit = PAGE,
    form: Annotated[Literal["json", "text"], Query(alias="format")] = "json",
) -> Any:
    """Document ids of the points, in order: a JSON list, or with ``format=text`` one per line
    (a tenth of the work for a million of them; gzipped for a client that accepts it)."""
    found = await _map(request, release_id)
    if form == "json":
        return found.ids[offset : offset + limit]
    return await _bulk(
        request,
        found,
        f"ids:{offset}:{limit}",
        lambda: found.ids_text(offset, limit),
        "text/plain; charset=utf-8",
    )


async def _bulk(
    request: Request, found: MapData, key: str, make: Callable[[], bytes], media_type: str
) -> Response:
    headers = {"X-Total-Count": str(len(found.ids)), "Vary": "Accept-Encoding"}
    if not _accepts_gzip(request.headers.get("accept-encoding", "")):
        return Response(await run_in_threadpool(make), media_type=media_type, headers=headers)
    body = await run_in_threadpool(found.compressed, key, make)
    headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=headers)


def _accepts_gzip(header: str) -> bool:
    """Whether ``Accept-Encoding`` takes gzip: named (or ``*``) with a q above 0 (RFC 9110;
    ``gzip;q=0`` refuses it, ``nogzip`` is another coding)."""
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        try:
            return not q.startswith("q=") or float(q[2:]) > 0
        except ValueError:
            return False
    return False


def _offered(
    ws: Workspace, mapped: list[Any], held: dict[str, list[str]], alias: str
) -> maps.Fields:
    """The fields chosen when the served map was fitted (the alias's, else the newest map's);
    for a map fitted before they were stored, computed here."""
    served = [r for r in mapped if alias in held.get(r.id, [])] or mapped[:1]
    fitted = served[0].report["map"] if served else {}
    if "fields" in fitted:
        return maps.Fields(fitted["fields"], fitted["default_field"])
    return maps.fields(ws)


def _may_colour(request: Request, release_id: str, field: str) -> None:
    """A field the page offers, or NotFound: colouring by any other name read every document's
    metadata and kept the answer, per name asked."""
    ws: Workspace = request.app.state.ws
    release = ws.catalog.releases.get(release_id)
    allowed = {"source", *release.report.get("map", {}).get("fields", [])}
    if field in allowed:
        return
    held: dict[str, list[str]] = {}
    for alias, rid in ws.catalog.releases.aliases().items():
        held.setdefault(rid, []).append(alias)
    mapped = [r for r in reversed(ws.catalog.releases.all()) if "map" in r.report]
    allowed |= set(_offered(ws, mapped, held, request.app.state.serving.default_alias).offered)
    if field not in allowed:
        raise NotFound(
            f"the map is coloured by {', '.join(sorted(allowed))}, not by {field[:64]!r}"
        )


@router.get("/v1/map/{release_id}/labels", response_model=schemas.MapLabels)
async def map_labels(
    release_id: str,
    request: Request,
    field: Annotated[str, Query(min_length=1, max_length=128)] = "source",
) -> schemas.MapLabels:
    """A category per point for colouring: ``codes`` is base64 of little-endian uint16 indexes
    into ``categories``."""
    await run_in_threadpool(_may_colour, request, release_id, field)
    found = await _map(request, release_id)
    labels = await run_in_threadpool(found.labels, request.app.state.ws, field)
    return schemas.MapLabels(**labels)


@router.get("/v1/map/{release_id}/topics", response_model=schemas.MapTopics)
async def map_topics(release_id: str, request: Request) -> schemas.MapTopics:
    """Labels of the map's regions: per level (coarse to fine) its clusters' keywords and the
    point each label sits on; fitted with the map."""
    found = await _map(request, release_id)
    return schemas.MapTopics(
        levels=found.topics.get("levels", []), sampled=found.topics.get("sampled", 0)
    )
