"""The common search, answered before any other layer of the app: a lone, valid search by vector.

A search by vector at 100k documents spent more of its time in the layers around the index than
in the index (docs/benchmarks.md §8; decision 0020): FastAPI's routing, dependency solving and
response plumbing first, then, with those skipped, the seven middlewares every request passes
(ours: metrics, security headers, the guard, the body limits; FastAPI's: errors, telemetry, body
size), each a Python call and a wrapped ``send``. This layer sits outside all of them
(``api.app._App``) and answers the one request that dominates a serving load (``POST /v1/search``
with a vector, no filter, a small ``k``, a valid key, the default or a followed alias, no other
request in flight) in one pass, doing for it what those layers would do:

- the guard's :class:`~embedlake.api.security.Policy` is asked, and the body limits checked (a
  Content-Length within ``api.max_body_bytes``, few enough brackets to be within
  ``api.max_json_depth``), before the body is read;
- the body is parsed and validated by pydantic in Rust (``model_validate_json``: no second walk
  over the 384 floats), the key checked through the app's cached :class:`~embedlake.api.auth.Auth`
  (a key not checked lately is the app's: its check reads the catalog);
- the search runs on the event loop exactly as the route runs a short one, and the route's bytes
  are written with the security headers, then counted in the route's metrics.

Anything else, and anything that goes wrong on the way (a refusal of the guard or the limits, a
bad key, an invalid body, a model mismatch, an error from the search) is handed to the app with
the body as read, so every refusal and every other kind of search is the app's, unchanged. The
search is a read: running it again there is harmless. FastAPI's native OpenTelemetry, when a
provider is configured, wraps the whole stack, this layer included (``FastAPI.__call__``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake.api import problems, schemas
from embedlake.api.limits import declared_length, first_header, may_nest_deeper, replay, timed_out
from embedlake.api.routes.search import INLINE_MAX_K, INLINE_MAX_SECONDS, alone, fold, response_body
from embedlake.api.security import API_HEADERS, Policy
from embedlake.errors import EmbedlakeError
from embedlake.search.limits import check_search

log = logging.getLogger(__name__)

PATH = "/v1/search"


class FastSearch:
    """``POST /v1/search`` by vector on the event loop, before every layer; the rest passes on."""

    def __init__(self, app: ASGIApp, outer: Any, policy: Policy, route: Any) -> None:
        # ``outer``: the FastAPI app (its state: auth, serving, settings, timings, metrics);
        # ``route``: the search route, whose template the metrics label
        self.app, self.outer, self.policy = app, outer, policy
        self.template: str = route.path_format
        api = outer.state.settings.api
        self.max_bytes, self.max_depth = api.max_body_bytes, api.max_json_depth
        self.seconds = api.body_timeout_seconds
        outer.state.fast_searches = 0  # searches answered here (the tests read it)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if not self._may_read(scope):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.seconds):
                body, complete = await _body(receive)
        except TimeoutError:  # answered as the limits answer it
            await problems.from_error(timed_out(self.seconds, 0))(scope, receive, send)
            return
        if not complete:
            return  # the client went away: nobody to answer
        try:
            answer = self._answer(scope, body)
        except Exception:  # outside the app's error handling: the app meets it, and answers
            log.debug("the fast path stood aside after an error", exc_info=True)
            answer = None
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        state = self.outer.state
        state.fast_searches += 1
        headers = [
            (b"content-length", str(len(answer)).encode()),
            (b"content-type", b"application/json"),
            *API_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        state.metrics.observe(self.template, "POST", 200, time.perf_counter() - started)

    def _may_read(self, scope: Scope) -> bool:
        """What the guard and the limits would let through, before a byte of the body is read."""
        length = declared_length(first_header(scope, b"content-length") or b"")
        if length is None or length > self.max_bytes:
            return False  # no length (streamed), or over the limit: the limits' to judge
        return self.policy.refusal("POST", Headers(scope=scope)) is None

    def _answer(self, scope: Scope, body: bytes) -> bytes | None:
        """The response's body, or None: the app answers."""
        state = self.outer.state
        serving = getattr(state, "serving", None)
        if serving is None:  # the app is starting
            return None
        if may_nest_deeper(body, self.max_depth):
            return None  # the limits measure it
        seconds: dict[str, float] = state.search_seconds
        if seconds.get("search_vectors", 0.0) > INLINE_MAX_SECONDS or not alone():
            return None  # the route runs it on the search threads
        try:
            token = _bearer(first_header(scope, b"authorization"))
            if not state.auth.cached(token):
                return None  # the key needs a catalog read: the app's, in its thread pool
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


async def _body(receive: Receive) -> tuple[bytes, bool]:
    """The request's body (its Content-Length is within the limit), and whether it all came."""
    chunks, more = [], True
    while more:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b"", False
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks), True


def _bearer(value: bytes | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` as FastAPI's ``HTTPBearer`` reads it."""
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" and token else None
