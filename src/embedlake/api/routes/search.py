"""Nearest neighbours: by text, by vector (of a named model), or more like a document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.state import Served, ServingState
from embedlake.errors import ModelMismatch
from embedlake.search.limits import check_search
from embedlake.search.searcher import Hit, Searcher

T = TypeVar("T")
router = APIRouter(tags=["search"], responses=problems.RESPONSES)


def _response(served: Served, alias: str | None, hits: list[Hit]) -> Response:
    """Serialised here, in one pass: FastAPI would re-validate the model and encode it through
    ``jsonable_encoder``, ~0.12 ms a request (measured by bench/api.py)."""
    body = schemas.SearchResponse(
        release=served.release_id,
        alias=alias,
        model=served.model.ref,
        results=[schemas.Hit(**vars(h)) for h in hits],
    )
    return Response(body.model_dump_json(), media_type="application/json")


async def _work(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a search on the app's search threads: as many as cores, not the default pool's 40,
    which on 2 cores made 16 concurrent clients slower than 1 (bench/api.py)."""
    pool = request.app.state.search_pool
    return await asyncio.get_running_loop().run_in_executor(pool, partial(fn, *args))


async def _served(
    request: Request, release: str | None, alias: str | None
) -> tuple[Served, Searcher]:
    state: ServingState = request.app.state.serving
    served = await state.aget(release=release, alias=alias)
    assert served.searcher is not None  # the search routes are mounted only with an index
    return served, served.searcher


@router.post("/v1/search", response_model=schemas.SearchResponse, dependencies=[require("search")])
async def search(body: schemas.SearchRequest, request: Request) -> Response:
    """The ``k`` nearest documents of a text query, a vector or a document, optionally filtered
    by metadata, from a release or the release behind an alias (default ``production``)."""
    api = request.app.state.settings.api
    check_search(api, k=body.k, query=body.query, where=body.filter)
    served, searcher = await _served(request, body.release, body.alias)
    alias = None if body.release else body.alias or request.app.state.serving.default_alias
    if body.query is not None:
        if body.mode == "hybrid":
            hits = await _work(request, searcher.hybrid, body.query, body.k, body.filter)
        else:
            vectors = await served.batcher.encode([body.query])
            rows = await _work(request, searcher.search_encoded, vectors, body.k, body.filter)
            hits = rows[0]
    elif body.vector is not None:
        if body.model != served.model.ref:
            raise ModelMismatch(
                f"the vector comes from model {body.model}, but release "
                f"{served.release_id or served.key} serves {served.model.ref}: embed the query "
                "with that model (POST /v1/embed) or search a release of yours"
            )
        rows = await _work(request, searcher.search_vectors, [body.vector], body.k, body.filter)
        hits = rows[0]
    else:
        assert body.id is not None
        hits = await _work(request, searcher.more_like, body.id, body.k, body.filter)
    return _response(served, alias, hits)


@router.get(
    "/v1/documents/{doc_id:path}/neighbours",  # ids may hold "/" (sent as %2F)
    response_model=schemas.SearchResponse,
    dependencies=[require("search")],
)
async def neighbours(
    doc_id: str,
    request: Request,
    k: Annotated[int, Query(ge=1, description="at most `api.max_k`")] = 10,
    release: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    alias: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Response:
    """The ``k`` nearest documents of a document (itself left out)."""
    check_search(request.app.state.settings.api, k=k)
    served, searcher = await _served(request, release, alias)
    hits = await _work(request, searcher.more_like, doc_id, k)
    alias = None if release else alias or request.app.state.serving.default_alias
    return _response(served, alias, hits)
