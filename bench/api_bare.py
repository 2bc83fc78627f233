"""Anchor B of bench/api_search.py: a bare FastAPI app, served by uvicorn in a process of its own.

Its POST /v1/search parses the same body with a pydantic model and answers with the bytes of a real
/v1/search response; given a workspace, it also runs ``search_vectors`` before it answers (what is
left between it and the API is the API's own layer: auth, middleware, release lookup, response
model). Started by bench/api_search.py:

    .venv/bin/python bench/api_bare.py PORT RESPONSE_FILE [WORKSPACE]
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from embedlake import Workspace
from embedlake.search.searcher import Searcher


class BareSearch(BaseModel):
    """The fields of a /v1/search body, as the bare app parses them."""

    query: str | None = None
    vector: list[float] | None = None
    model: str | None = None
    k: int = 10


def bare_app(response: bytes, searcher: Searcher | None = None) -> Any:
    """POST /v1/search: the same JSON body parsed by a pydantic model, a fixed real response.
    With ``searcher``, the endpoint also does the search work (``search_vectors`` on a worker
    thread, as the API does) before it answers."""
    from fastapi import FastAPI, Response
    from starlette.concurrency import run_in_threadpool

    app = FastAPI()

    @app.post("/v1/search")
    async def search(body: BareSearch) -> Response:
        if searcher is not None:
            await run_in_threadpool(searcher.search_vectors, [body.vector], body.k)
        return Response(response, media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


def serve_bare(port: int, response_file: Path, workspace: Path | None = None) -> None:
    """Serve the bare app on loopback with the settings `embedlake serve` uses."""
    import uvicorn

    with contextlib.ExitStack() as stack:
        searcher = None
        if workspace is not None:
            searcher = Searcher(stack.enter_context(Workspace.open(workspace)))
        app = bare_app(response_file.read_bytes(), searcher)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")  # as `embedlake serve`


def command(port: int, response_file: Path, workspace: Path | None = None) -> list[str]:
    """The command line that serves the bare app."""
    tail = [str(workspace)] if workspace is not None else []
    return [sys.executable, __file__, str(port), str(response_file), *tail]


def main(argv: list[str]) -> None:
    if len(argv) not in (2, 3):
        raise SystemExit(__doc__)
    serve_bare(int(argv[0]), Path(argv[1]), Path(argv[2]) if argv[2:] else None)


if __name__ == "__main__":
    main(sys.argv[1:])
