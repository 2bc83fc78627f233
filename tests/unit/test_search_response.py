"""A search's response body (api/routes/search.py ``response_body``) is written from plain values,
without building the pydantic models: it must still be what ``schemas.SearchResponse`` (the
OpenAPI schema clients are generated from) writes, hit for hit."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from embedlake.api import schemas
from embedlake.api.routes.search import response_body
from embedlake.search.searcher import Hit, Passage


def test_the_body_is_the_schema_s_own_serialisation() -> None:
    served: Any = SimpleNamespace(release_id="rel-1", model=SimpleNamespace(ref="m@1"))
    hits = [
        Hit("doc/1", 0.8125, "A title", "the start…", "med"),
        Hit("d2", float(np.float32(0.1)), "", "é “quoted” \\ \x1f", "src", Passage("x y", 10, 13)),
    ]
    for alias, shown in (("production", hits), (None, hits[1:]), ("other", [])):
        expected = schemas.SearchResponse(
            release="rel-1",
            alias=alias,
            model="m@1",
            results=[
                schemas.Hit(**{**vars(h), "passage": vars(h.passage) if h.passage else None})
                for h in shown
            ],
        ).model_dump_json()
        assert response_body(served, alias, shown).decode() == expected
