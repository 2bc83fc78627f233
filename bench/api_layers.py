"""Where a by-vector search's time goes, layer by layer, on the workspace bench/api.py caches.

In process, on the same 200 query vectors (one at a time): the index alone (``index.search``),
the searcher as the server runs it (``search_vectors`` with the serving process's in-memory
summaries), and the whole app (``create_app``, role search) driven through ASGI without a socket.
Then two steps of the request, a vector of 384 floats turned into an array and the catalog's
change counter asked (``PRAGMA data_version``, once a search), each timed in a loop of its own and
right after an index search (what the caches hold after a search). Last, the
floor of HTTP on this machine: a bare uvicorn ASGI app that reads the body and writes 1.6 KB,
under ``wrk -t1 -c1``. No target: the anchor of each row is the row above it.

    .venv/bin/python bench/api_layers.py [--n 100000] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import api_search
from embedlake import Workspace
from embedlake.api.app import create_app
from embedlake.catalog.changes import watch
from embedlake.search.searcher import Searcher
from embedlake.search.summaries import Summaries

from _common import table, write_result
from _common.servers import free_port
from _common.wrk import WRK

RAW_APP = """
import sys, uvicorn
BODY = b'{"x":"' + b"y" * 1600 + b'"}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def per_call(fn: Callable[[int], Any], n: int) -> float:
    """Microseconds a call, after a warm-up of a tenth as many."""
    for i in range(n // 10):
        fn(i)
    started = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - started) / n * 1e6


def through_asgi(app: Any, bodies: list[bytes], key: str, n: int) -> float:
    """Microseconds a ``POST /v1/search`` through the whole app, no socket."""

    async def one(body: bytes) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/v1/search", "raw_path": b"/v1/search",
            "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "headers": [
                (b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", f"Bearer {key}".encode()),
            ],
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    async def run() -> float:
        async with app.router.lifespan_context(app):
            for i in range(n // 10):
                await one(bodies[i % len(bodies)])
            started = time.perf_counter()
            for i in range(n):
                await one(bodies[i % len(bodies)])
            return (time.perf_counter() - started) / n * 1e6

    return asyncio.run(run())


def http_floor(seconds: int = 6) -> float:
    """Microseconds a request to a bare uvicorn app takes under wrk -t1 -c1."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", RAW_APP, str(port)])
    try:
        time.sleep(3)
        url = f"http://127.0.0.1:{port}/"
        subprocess.run([WRK, "-t1", "-c1", "-d2s", url], check=True, capture_output=True)
        out = subprocess.run(
            [WRK, "-t1", "-c1", f"-d{seconds}s", url], check=True, capture_output=True, text=True
        ).stdout
        rate = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
        return 1e6 / rate
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    path, _ = api_search.search_workspace(args.n)  # built once, cached (bench/api.py)
    rows: list[list[Any]] = []
    with Workspace.open(path) as ws:
        key = ws.catalog.keys.create(["search"], "bench-layers")[0]
        summaries = Summaries(ws.catalog.documents, watch(ws.catalog.engine), 100_000)
        searcher = Searcher(ws, summaries=summaries)
        rng = np.random.default_rng(0)
        queries = rng.standard_normal((200, searcher.model.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        lists = [q.tolist() for q in queries]
        bodies = [
            json.dumps({"vector": v, "model": searcher.model.ref, "k": 10}).encode() for v in lists
        ]
        n = args.requests
        index = per_call(lambda i: searcher.index.search(queries[i % 200][None], 10), n)
        search = per_call(lambda i: searcher.search_vectors([lists[i % 200]], 10), n)
        app = through_asgi(create_app(ws, "search", follow=False), bodies, key, n)
        alone = per_call(lambda i: np.asarray(lists[i % 200], dtype=np.float32), n)

        changes = watch(ws.catalog.engine)
        assert changes is not None  # the cached workspace is on SQLite
        version = per_call(lambda i: changes.current(), n)

        def after_search(step: Callable[[int], Any]) -> float:
            """Median µs of ``step`` right after an index search."""
            took = []
            for i in range(n):
                searcher.index.search(queries[i % 200][None], 10)
                started = time.perf_counter()
                step(i)
                took.append(time.perf_counter() - started)
            return float(np.median(took)) * 1e6

        between = after_search(lambda i: np.asarray(lists[(i + 1) % 200], dtype=np.float32))
        version_between = after_search(lambda i: changes.current())
    floor = http_floor()
    rows = [
        ["index.search, in process", f"{index:.1f}"],
        ["search_vectors (in-memory summaries)", f"{search:.1f}"],
        ["the app through ASGI, no socket", f"{app:.1f}"],
        ["a bare uvicorn app under wrk -t1 -c1", f"{floor:.1f}"],
        ["384 floats to an array, in a loop of its own", f"{alone:.1f}"],
        ["the same, right after an index search (median)", f"{between:.1f}"],
        ["the catalog's change counter (PRAGMA data_version), alone", f"{version:.1f}"],
        ["the same, right after an index search (median)", f"{version_between:.1f}"],
    ]
    print(table(["what", "µs a call"], rows))
    write_result(
        "api_layers",
        {
            "ef_search": searcher.index.params().get("ef_search"),
            "us": {
                "index_search": index,
                "search_vectors": search,
                "app_asgi": app,
                "uvicorn_floor": floor,
                "vector_to_array_alone": alone,
                "vector_to_array_after_search": between,
                "data_version_alone": version,
                "data_version_after_search": version_between,
            },
        },
    )


if __name__ == "__main__":
    main()
