"""The common search, answered before FastAPI's router: a lone, valid search by vector.

A search by vector at 100k documents spent more of its time in FastAPI's routing, dependency
solving and response plumbing than in the index (docs/benchmarks.md §8; decision 0020). This
layer, the innermost of the app's middlewares, answers the one request that dominates a serving
load (``POST /v1/search`` with a vector, no filter, a small ``k``, a valid key, the default or a
followed alias, no other request in flight) in one pass: the body is parsed and validated by
pydantic in Rust (``model_validate_json``: no second walk over the 384 floats), the key checked
through the app's cached :class:`~embedlake.api.auth.Auth`, the search run on the event loop
exactly as the route runs a short one, and the same bytes written as the route writes.

Anything else, and anything that goes wrong on the way (a bad key, an invalid body, a model
mismatch, an error from the search), is handed to the FastAPI route with the body as read, so
every refusal and every other kind of search is the route's, unchanged. The search is a read:
running it again there is harmless. The metrics middleware sees the route's template as for any
request.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake.api import schemas
from embedlake.api.limits import replay
from embedlake.api.routes.search import INLINE_MAX_K, INLINE_MAX_SECONDS, alone, fold, response_body
from embedlake.errors import EmbedlakeError
from embedlake.search.limits import check_search

PATH = "/v1/search"


class FastSearch:
    """``POST /v1/search`` by vector on the event loop, before the router; the rest passes on."""

    def __init__(self, app: ASGIApp, state: Any, route: Any) -> None:
        # the app's state (auth, serving, settings, timings), and the route's object: the
        # metrics middleware labels a request by its template
        self.app, self.state, self.route = app, state, route
        state.fast_searches = 0  # searches answered here (the tests read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        answer = self._answer(scope, body)
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        scope["route"] = self.route
        self.state.fast_searches += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(answer)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The response's body, or None: the route answers."""
        state = self.state
        serving = getattr(state, "serving", None)
        if serving is None:  # the app is starting
            return None
        # (a body that is not application/json never gets here: the guard outside refuses it)
        headers = _first(scope["headers"])
        seconds: dict[str, float] = state.search_seconds
        if seconds.get("search_vectors", 0.0) > INLINE_MAX_SECONDS or not alone():
            return None  # the route runs it on the search threads
        try:
            token = _bearer(headers.get(b"authorization"))
            client = scope["client"][0] if scope.get("client") else None
            state.auth.check(token, "search", client)
            request = schemas.SearchRequest.model_validate_json(body)
        except (EmbedlakeError, ValidationError):
            return None
        if request.vector is None or request.filter is not None or request.k > INLINE_MAX_K:
            return None
        served = serving.loaded(request.alias)
        if request.release is not None or served is None or served.searcher is None:
            return None  # a pinned release, or an alias not loaded yet: the route loads it
        if request.model != served.model.ref:
            return None  # the route says which model this release serves
        started = time.perf_counter()
        try:
            check_search(state.settings.api, k=request.k)
            hits = served.searcher.search_vectors([request.vector], request.k)[0]
        except Exception:  # the route runs it again, and answers as it does
            return None
        finally:
            fold(seconds, "search_vectors", time.perf_counter() - started)
        alias = request.alias or serving.default_alias
        return response_body(served, alias, hits)


def _first(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """Each header's first value, as Starlette's ``request.headers.get`` gives it."""
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        found.setdefault(name, value)
    return found


async def _body(receive: Receive) -> bytes:
    """The request's body (the limits middleware outside has read it whole, within its limit)."""
    chunks, more = [], True
    while more:
        message: Message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _bearer(value: bytes | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` as FastAPI's ``HTTPBearer`` reads it."""
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None
