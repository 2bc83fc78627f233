"""Probes and metrics: no key needed (they reveal nothing a scraper should not see)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from embedlake.api import schemas
from embedlake.api.problems import Problem, problem
from embedlake.api.state import ServingState

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=schemas.Health)
def healthz(request: Request) -> schemas.Health:
    """The process is alive."""
    return schemas.Health(status="alive", role=request.app.state.role)


@router.get(
    "/readyz",
    response_model=schemas.Health,
    responses={503: {"model": Problem, "description": "nothing loaded yet"}},
)
def readyz(request: Request) -> Response | schemas.Health:
    """Ready once the release behind the default alias (model and index) is loaded."""
    state: ServingState = request.app.state.serving
    if not state.ready:
        return problem(503, "not-ready", "Not ready", "the default release is not loaded yet")
    return schemas.Health(status="ready", role=request.app.state.role, serving=state.serving())


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format: requests and latency per route, batch sizes, what is served."""
    m = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)
