"""Request bodies parsed in one pass: the JSON bytes straight into the model, in pydantic's Rust
parser, instead of FastAPI's ``json.loads`` into Python objects and a second pass validating them
(a search vector is 384+ floats: each became a Python float, then was checked one by one).

Errors are exactly FastAPI's, so the problem bodies do not change: on any failure the body is
parsed again the old way (``json.loads``, then the model), which only a bad request pays for.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model``, or the RequestValidationError FastAPI would have raised for it."""
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        pass
    if not raw:  # FastAPI treats an empty body as a missing one
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:  # as fastapi.routing does
        invalid = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([invalid]) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        invalid = {"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error"}
        raise RequestValidationError(
            [{**invalid, "input": {}, "ctx": {"error": str(exc)}}]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``requestBody`` of an operation that parses ``model`` itself (``openapi_extra``):
    the schema FastAPI would have listed, inline (the models here nest no other model)."""
    schema = model.model_json_schema()
    if "$defs" in schema:
        raise TypeError(f"{model.__name__} nests models: list them as components instead")
    return {"required": True, "content": {"application/json": {"schema": schema}}}
