"""Request bodies parsed by pydantic's JSON parser (Rust) instead of the standard library's.

FastAPI reads a JSON body with ``json.loads`` before validating it: for a search by vector (384
floats, ~8 KB) that took ~0.11 ms of a ~1 ms request, against ~0.014 ms for
``pydantic_core.from_json``. Only the parser changes: what it returns is what ``json.loads``
returns (the same objects for every document both accept), and whatever it refuses is handed to
``json.loads`` again, so an invalid body gets FastAPI's usual 422 with the standard library's
message, and a byte order mark is still taken. Every refusal of the standard library becomes
that 422 (invalid UTF-8 and an integer of over 4,300 digits raise other errors there, which
FastAPI would answer with a bare 400), and a string with a lone surrogate escape (``"\ud800"``,
which ``json.loads`` takes) is refused too: it is no Unicode text, and encoding it later, to
store a title or metadata, would fail with a 500. Every router with a JSON body uses this route
class. The OpenAPI schema and validation are FastAPI's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import Request, Response
from fastapi.routing import APIRoute


class _Request(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError:
                self._json = standard_json(body)
        return self._json


def standard_json(body: bytes) -> Any:
    """``json.loads``' verdict on a body ``from_json`` refused, each refusal a JSONDecodeError
    (FastAPI's 422), and no lone surrogate let through."""
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # UnicodeDecodeError, or an integer too long to convert
        raise json.JSONDecodeError(str(exc), "", 0) from None
    if _lone_surrogate(value):
        raise json.JSONDecodeError(
            "a string holds a lone surrogate escape (\\ud800 to \\udfff): not Unicode text", "", 0
        )
    return value


def _lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (keys included) holds an unpaired surrogate. Iterative:
    nesting is bounded by the parser, not by this walk."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class FastJsonRoute(APIRoute):
    """A route whose handler gets a request that parses its JSON body with ``from_json``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(_Request(request.scope, request.receive))

        return route
