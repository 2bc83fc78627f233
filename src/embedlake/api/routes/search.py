"""Nearest neighbours: by text, by vector (of a named model), or more like a document."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import pydantic_core
from fastapi import APIRouter, Query, Request, Response

from embedlake.api import problems, schemas
from embedlake.api.auth import require
from embedlake.api.fastjson import FastJsonRoute
from embedlake.api.routes import documents
from embedlake.api.state import Served, ServingState
from embedlake.errors import ModelMismatch
from embedlake.search.limits import check_search
from embedlake.search.searcher import Hit, Searcher

T = TypeVar("T")
router = APIRouter(tags=["search"], responses=problems.RESPONSES, route_class=FastJsonRoute)


def respond(served: Served, alias: str | None, hits: list[Hit]) -> Response:
    """Serialised here, in one pass: FastAPI would re-validate the model and encode it through
    ``jsonable_encoder``, ~0.12 ms a request (measured by bench/api.py)."""
    return Response(response_body(served, alias, hits), media_type="application/json")


def response_body(served: Served, alias: str | None, hits: list[Hit]) -> bytes:
    """The JSON of a search's response (the route's and the fast path's, api/fastpath.py), as
    ``schemas.SearchResponse`` describes it: written by pydantic's serializer from plain values
    (the hits are the searcher's, already of the right types: validating them again into models
    took more than a tenth of a by-vector request)."""
    return pydantic_core.to_json(
        {
            "release": served.release_id,
            "alias": alias,
            "model": served.model.ref,
            "results": [
                {
                    "id": h.id,
                    "score": float(h.score),
                    "title": h.title,
                    "snippet": h.snippet,
                    "source": h.source,
                    "passage": None
                    if h.passage is None
                    else {"text": h.passage.text, "start": h.passage.start, "end": h.passage.end},
                }
                for h in hits
            ],
        }
    )


# A search short enough to run on the event loop itself: no filter (whose catalog query can take
# long), a small k, and a kind of search whose calls have lately taken at most INLINE_MAX_SECONDS
# (an exact scan of millions of vectors, pgvector's round trip or a large encoder take longer,
# and run on the threads even for a lone client: probes and other requests must not wait on them)
INLINE_MAX_K = 100
INLINE_MAX_SECONDS = 0.005


async def _work(request: Request, fn: Callable[..., T], *args: Any, short: bool = False) -> T:
    """Run a search on the app's search threads: as many as cores, not the default pool's 40,
    which on 2 cores made 16 concurrent clients slower than 1 (bench/api.py). A ``short`` one
    runs right here when no other request is being served or waits to start: the hop to a
    thread and back costs ~0.1-0.5 ms (two thread wake-ups), as much as the search itself, and
    a lone client gains nothing from it. Requests that arrive meanwhile wait that long, then
    see each other and go to the threads."""
    seconds: dict[str, float] = request.app.state.search_seconds
    if short and seconds.get(fn.__name__, 0.0) <= INLINE_MAX_SECONDS and alone():
        return _timed(seconds, fn, *args)
    pool = request.app.state.search_pool
    return await asyncio.get_running_loop().run_in_executor(
        pool, partial(_timed, seconds, fn, *args)
    )


def _timed(seconds: dict[str, float], fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, its duration folded into ``seconds[fn.__name__]`` (a moving average,
    wherever it ran: a kind that became quick again may run inline again)."""
    started = time.perf_counter()
    try:
        return fn(*args)
    finally:
        fold(seconds, fn.__name__, time.perf_counter() - started)


def fold(seconds: dict[str, float], kind: str, took: float) -> None:
    seconds[kind] = 0.8 * seconds.get(kind, took) + 0.2 * took


def alone() -> bool:
    """No request task of this event loop but the current one, running or waiting to start.
    Counting tasks, not requests that entered the app: requests read in the same turn of the
    loop have their tasks created before any runs, so a count kept by the app would see one
    at a time, and every request would run inline, one after another on one core."""
    me = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not me and task.get_coro().__qualname__.endswith(".run_asgi"):  # type: ignore[union-attr]
            return False
    return True


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
            hits = await _text(request, served, searcher, body)
    elif body.vector is not None:
        if body.model != served.model.ref:
            raise ModelMismatch(
                f"the vector comes from model {body.model}, but release "
                f"{served.release_id or served.key} serves {served.model.ref}: embed the query "
                "with that model (POST /v1/embed) or search a release of yours"
            )
        short = body.filter is None and body.k <= INLINE_MAX_K
        rows = await _work(
            request, searcher.search_vectors, [body.vector], body.k, body.filter, short=short
        )
        hits = rows[0]
    else:
        assert body.id is not None
        hits = await _work(request, searcher.more_like, body.id, body.k, body.filter)
    return respond(served, alias, hits)


async def _text(
    request: Request, served: Served, searcher: Searcher, body: schemas.SearchRequest
) -> list[Hit]:
    """A dense search by text: encoded and searched at once when the request is alone and
    short; else encoded with the texts of concurrent requests (dynamic batching), then searched
    on the search threads."""
    assert body.query is not None
    short = searcher.splitter().short_chars
    if short is not None and len(body.query) > short:  # maybe longer than the window: split
        before = searcher.cut_texts
        hits = await _work(request, searcher.search_many, [body.query], body.k, body.filter)
        metrics = request.app.state.metrics
        if searcher.cut_texts > before:
            metrics.texts_cut.labels("search").inc()
        elif searcher.splitter().window_tokens(body.query):
            metrics.texts_split.labels("search").inc()
        return hits[0]
    if body.filter is None and body.k <= INLINE_MAX_K:
        seconds: dict[str, float] = request.app.state.search_seconds
        if seconds.get("search_many", 0.0) <= INLINE_MAX_SECONDS and alone():
            request.app.state.metrics.batch_size.observe(1)  # an encoder call of one text
            return _timed(seconds, searcher.search_many, [body.query], body.k)[0]
    started = time.perf_counter()
    vectors = await served.batcher.encode([body.query])
    rows = await _work(request, searcher.search_encoded, vectors, body.k, body.filter)
    if body.filter is None:  # what the inline path would have cost, waits for company included
        fold(request.app.state.search_seconds, "search_many", time.perf_counter() - started)
    return rows[0]


@router.get(
    "/v1/documents/{doc_id:path}/neighbours",  # ids may hold "/" (sent as %2F)
    response_model=schemas.SearchResponse,
    dependencies=[require("search")],
)
async def neighbours(
    doc_id: str,
    request: Request,
    k: Annotated[int, Query(ge=1, description="at most `api.max_k`")] = 10,
    release: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=schemas.REF_PATTERN)
    ] = None,
    alias: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=schemas.REF_PATTERN)
    ] = None,
) -> Response:
    """The ``k`` nearest documents of a document (itself left out)."""
    if not request.scope.get("raw_path", b"/neighbours").split(b"?")[0].endswith(b"/neighbours"):
        # the path was decoded before routing: ".../M-3%2Fneighbours" reads the document whose
        # id ends in "/neighbours", which this route's template would otherwise take
        found = await documents.document(request, f"{doc_id}/neighbours")
        return Response(found.model_dump_json(), media_type="application/json")
    check_search(request.app.state.settings.api, k=k)
    served, searcher = await _served(request, release, alias)
    hits = await _work(request, searcher.more_like, doc_id, k)
    alias = None if release else alias or request.app.state.serving.default_alias
    return respond(served, alias, hits)
