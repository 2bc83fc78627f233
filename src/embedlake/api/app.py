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
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedlake import __version__
from embedlake.api import problems
from embedlake.api.auth import Auth
from embedlake.api.metrics import Metrics
from embedlake.api.routes import admin, documents, embed, probes, search
from embedlake.api.routes import map as map_routes
from embedlake.api.state import ServingState
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
        app.state.search_pool = ThreadPoolExecutor(os.cpu_count() or 2, "search")
        try:
            yield
        finally:
            app.state.search_pool.shutdown(wait=False, cancel_futures=True)
            state.close()
            for batcher in state.batchers():
                await batcher.close()
            if close_workspace:
                ws.close()

    app = FastAPI(
        title="embedlake",
        version=__version__,
        summary="Embedding, nearest neighbours, documents and releases of one workspace.",
        lifespan=lifespan,
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
    app.add_middleware(BodyLimit, limit=ws.settings.api.max_body_bytes)
    app.add_middleware(Measure, metrics=metrics)
    return app


STATIC = Path(__file__).resolve().parents[1] / "web" / "static"


def page(app: FastAPI) -> None:
    """The map page at ``/``: static files, bundled at build time (no CDN, no build step here)."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def from_environment() -> FastAPI:
    """The factory each ``serve --workers N`` worker process calls (an entry point)."""
    spec = json.loads(os.environ[FACTORY_ENV])
    return create_app(Workspace.open(Path(spec["workspace"])), spec["role"], close_workspace=True)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or while a chunked body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            response = problems.problem(
                413 if declared.isdigit() else 400,
                "too-large" if declared.isdigit() else "input",
                "Request too large" if declared.isdigit() else "Bad input",
                f"the body has {int(declared):,} bytes; the limit is {self.limit:,} "
                "(api.max_body_bytes)"
                if declared.isdigit()
                else "Content-Length is not a number",
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(
                    413, f"the body is over {self.limit:,} bytes (api.max_body_bytes)"
                )
            return message

        await self.app(scope, limited, send)


class Measure:
    """Request counts and latency per route template (never the raw path: ids stay out)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

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
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(path, method, str(status)).inc()
            self.metrics.latency.labels(path, method).observe(time.perf_counter() - started)
