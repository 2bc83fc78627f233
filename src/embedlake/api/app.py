"""The FastAPI application: ``create_app(ws, role)``, and the factory ``serve`` hands to uvicorn.

Roles split the services so they can scale apart: ``embed`` (the encoder only: GPU nodes),
``search`` (index, encoder for text queries, documents and admin: CPU nodes), ``all`` (one
process, the embedded default). Probes and metrics are on every role.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake import __version__
from embedlake.api import problems
from embedlake.api.auth import Auth
from embedlake.api.fastpath import PATH, FastSearch
from embedlake.api.limits import RequestLimits
from embedlake.api.metrics import Metrics
from embedlake.api.routes import admin, documents, embed, probes, search
from embedlake.api.routes import map as map_routes
from embedlake.api.security import Guard, Policy, SecurityHeaders, allowed_hosts, page_policy
from embedlake.api.state import ServingState
from embedlake.machine import cores
from embedlake.workspace import Workspace

log = logging.getLogger(__name__)

Role = Literal["all", "embed", "search"]
ROLES: tuple[Role, ...] = ("all", "embed", "search")
# how `serve --workers N` tells each worker process what to serve (not an EMBEDLAKE_ setting)
FACTORY_ENV = "_EMBEDLAKE_SERVE"


def create_app(
    ws: Workspace, role: Role = "all", *, follow: bool = True, close_workspace: bool = False
) -> FastAPI:
    """The API over ``ws``. ``follow`` runs the thread that hot-swaps releases when an alias
    moves; ``close_workspace`` closes ``ws`` when the app shuts down."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServingState(ws, metrics, need_index=role != "embed", start=follow)
        app.state.serving = state
        app.state.search_pool = ThreadPoolExecutor(cores(), "search")
        app.state.search_seconds = {}  # kind of search → seconds a call lately (routes/search.py)
        try:
            yield
        finally:
            app.state.search_pool.shutdown(wait=False, cancel_futures=True)
            state.close()
            for batcher in state.batchers():
                await batcher.close()
            metrics.close()
            if close_workspace:
                ws.close()

    app = _App(
        title="embedlake",
        version=__version__,
        summary="Embedding, nearest neighbours, documents and releases of one workspace.",
        lifespan=lifespan,
        docs_url=None,  # served by docs() from the package, not a CDN
        redoc_url=None,
    )
    app.state.ws = ws
    app.state.settings = ws.settings
    app.state.role = role
    app.state.auth = Auth(ws)
    app.state.metrics = metrics
    problems.install(app)
    problems.document(app)
    app.include_router(probes.router)
    if role in ("all", "embed"):
        app.include_router(embed.router)
    if role in ("all", "search"):
        for module in (search, documents, admin, map_routes):
            app.include_router(module.router)
        page(app)
    docs(app)
    api = ws.settings.api
    policy = Policy(allowed_hosts(api.auth == "open", api.allowed_hosts), api.allowed_hosts)
    if role in ("all", "search"):  # outermost: see _App
        [route] = [r for r in search.router.routes if getattr(r, "path", None) == PATH]
        app.fast_search = lambda stack: FastSearch(stack, app, policy, route)
    app.add_middleware(RequestLimits, api=api)
    app.add_middleware(Guard, policy)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Measure, metrics=metrics, routes=app.router.routes)
    return app


class _App(FastAPI):
    """FastAPI, with the fast path of the common search (api/fastpath.py) outside every layer,
    FastAPI's own included: it does what those layers would do for its one kind of request,
    and hands every other request to them untouched."""

    fast_search: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return _HeadAsGet(stack if self.fast_search is None else self.fast_search(stack))


class _HeadAsGet:
    """A HEAD request answered as its GET, without the body (RFC 9110; a load balancer's health
    check may use it): FastAPI's GET routes do not take HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headless(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headless)


STATIC = Path(__file__).resolve().parents[1] / "web" / "static"


def page(app: FastAPI) -> None:
    """The map page at ``/``: static files, bundled at build time (no CDN, no build step here)."""
    # regl-scatterplot adds an empty <style> and fills it through CSSOM (which CSP allows):
    # the hash of "" admits that element and no other inline style
    policy = page_policy(eval_=True, inline_styles=[""])

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": policy})


def docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from ``static/vendor`` (a pinned copy, see web/README.md), and
    ``/static`` on every role. Its one inline script, the settings, is allowed by its hash."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # else it asks validator.swagger.io
        ).body
    ).decode()
    inline = html.partition("<script>")[2].partition("</script>")[0]
    policy = page_policy(inline_scripts=[inline])

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def from_environment() -> FastAPI:
    """The app each ``serve --workers N`` worker process serves (``cli.serve.worker_app``)."""
    spec = json.loads(os.environ[FACTORY_ENV])
    return create_app(Workspace.open(Path(spec["workspace"])), spec["role"], close_workspace=True)


class Measure:
    """Request counts and latency per route template (never the raw path: ids stay out)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Any]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route: Any = scope.get("route") or self._route(scope)
            path = getattr(route, "path_format", "unmatched")  # {doc_id}, not {doc_id:path}
            self.metrics.observe(path, scope["method"], status, time.perf_counter() - started)

    def _route(self, scope: Scope) -> Any:
        """The route a request refused before routing (by the limits or the guard: a 413, 415
        or 403) was for, so it is counted under its template, not as unmatched."""
        return _matching(self.routes, scope)


def _matching(routes: list[Any], scope: Scope) -> Any:
    for route in routes:
        if route.matches(scope)[0] == Match.NONE:
            continue
        # FastAPI lists an included router as one entry: the route is among its own
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        return (_matching(inner, scope) if inner else None) or route
    return None
