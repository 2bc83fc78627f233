"""The one place where errors become HTTP responses: RFC 9457 problem details, always JSON.

    {"type": "urn:embedlake:error:input", "title": "Bad input", "status": 400,
     "detail": "k must be between 1 and 1000, got 0"}

Validation errors add ``errors``: one entry per field with its location and message. An unexpected
exception is logged with its traceback and answered with a 500 that says nothing about it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from embedlake import errors

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

# most specific first: the first class the error is an instance of decides
_STATUS: list[tuple[type[errors.EmbedlakeError], int, str, str]] = [
    (errors.TooLarge, 413, "too-large", "Request too large"),
    (errors.TimedOut, 408, "timeout", "Request body too slow"),
    (errors.InputError, 400, "input", "Bad input"),
    (errors.Unauthenticated, 401, "unauthenticated", "Missing or invalid API key"),
    (errors.Forbidden, 403, "forbidden", "Access denied"),
    (errors.NotFound, 404, "not-found", "Not found"),
    (errors.ModelMismatch, 409, "model-mismatch", "Vectors of another model"),
    (errors.Conflict, 409, "conflict", "Conflict"),
    (errors.BackendError, 503, "backend", "Storage unavailable"),
    (errors.ConfigError, 500, "config", "Server misconfigured"),
    (errors.EmbedlakeError, 500, "internal", "Internal error"),
]


class Problem(BaseModel):
    """The error body of every 4xx and 5xx response."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


# what every authenticated route may answer besides its success (documented per router)
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in (
        (400, "bad input the schema cannot state (e.g. a vector of the wrong dimension)"),
        (401, "no API key, or not a valid one"),
        (403, "the key lacks the route's scope; a Host or Origin this server does not serve"),
        (404, "not found"),
        (409, "a vector of another model, or a publish that contradicts the alias"),
        (413, "body, batch or text over a limit"),
        (415, "a state change (POST) without Content-Type: application/json"),
        (422, "the body does not match the schema"),
        (503, "catalog or lake unavailable"),
    )
}


def document(app: FastAPI) -> None:
    """Make the OpenAPI document say what the server sends: every 4xx and 5xx body is a Problem
    as ``application/problem+json`` (FastAPI would list ``application/json`` and its own 422)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            problem_ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for code, response in operation.get("responses", {}).items():
                        if code[0] in "45":
                            response["content"] = {MEDIA_TYPE: problem_ref}
            components = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = Problem(
        type=f"urn:embedlake:error:{code}", title=title, status=status, detail=detail, **extra
    )
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse(
        body.model_dump(exclude_none=True), status, headers=headers, media_type=MEDIA_TYPE
    )


def from_error(exc: errors.EmbedlakeError) -> JSONResponse:
    for cls, status, code, title in _STATUS:
        if isinstance(exc, cls):
            if status >= 500:
                log.error("%s: %s", type(exc).__name__, exc)
            # a body cut off by its deadline leaves the connection unusable: close it
            headers = {"Connection": "close"} if status == 408 else None
            return problem(status, code, title, str(exc), headers)
    raise AssertionError("EmbedlakeError is the last entry")  # pragma: no cover


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.EmbedlakeError)
    async def _embedlake(_: Request, exc: errors.EmbedlakeError) -> JSONResponse:
        return from_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        found = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in found):
            where, why = found[0]["loc"][-1], exc.errors()[0].get("ctx", {}).get("error")
            detail = f"the body is not valid JSON (error at character {where})" + (
                f": {why}" if why else ""
            )
        else:
            detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found[:5])
        return problem(422, "validation", "Invalid request", detail, errors=found)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "no-route", 405: "method"}.get(exc.status_code, "http")
        # the exception's headers too: a 405's Allow (RFC 9110 requires it), which names every
        # method of the path (Starlette's names only its first route's: GET, not DELETE too)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = _methods(app.router.routes, request.scope)
            headers["Allow"] = ", ".join(
                sorted(allowed | ({"HEAD"} if "GET" in allowed else set()))
            )
        return problem(exc.status_code, code, str(exc.detail), str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return problem(500, "internal", "Internal error", "an unexpected error; see server log")


def _methods(routes: list[Any], scope: Any) -> set[str]:
    """The methods the routes that match ``scope``'s path take (an included router's routes
    looked into)."""
    found: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] == Match.NONE:
            continue
        inner = getattr(getattr(route, "original_router", None), "routes", None)
        found |= _methods(inner, scope) if inner else set(getattr(route, "methods", None) or ())
    return found
