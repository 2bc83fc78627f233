"""Where a `/v1/search` request's time goes, without a network: the ASGI app of `embedlake serve`
called directly in one event loop (no uvicorn, no sockets), beside the in-process index.

Prints requests/s by vector and by text through the app, the in-process anchors of the same run
(``index.search``, ``search_vectors``, ``search``), their ratios, and with ``--profile`` the
functions with the most own time (cProfile over the by-vector requests, or by text). A tool for finding the
API's own overhead; the claim itself is measured over HTTP by bench/api_search.py.

    .venv/bin/python bench/api_profile.py WORKSPACE [--requests 2000] [--profile [--text]]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedlake import Workspace
from embedlake.api import create_app
from embedlake.search.searcher import Searcher

from _common.corpora import real_queries

K = 10
COLLECTIONS = ["cranfield", "cisi", "med", "cacm", "npl", "lisa"]


def asgi_post(app: Any, path: str, key: str) -> Callable[[bytes], Awaitable[tuple[int, bytes]]]:
    """A coroutine function: POST ``body`` to ``app`` as uvicorn would, (status, response body)."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {key}".encode()),
    ]

    async def post(body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        sent = False
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await app(scope, receive, send)
        return out["status"], out["body"]

    return post


def per_second(fn: Callable[[Any], Any], items: list[Any], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        fn(items[i % len(items)])
    return n / (time.perf_counter() - started)


async def app_rate(post: Any, bodies: list[bytes], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        status, raw = await post(bodies[i % len(bodies)])
        if status != 200:
            raise SystemExit(f"{status}: {raw[:300]!r}")
    return n / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> None:
    with Workspace.open(args.workspace) as ws:
        key = ws.catalog.keys.create(["search"], "bench-profile")[0]
        app = create_app(ws, follow=False)
        async with app.router.lifespan_context(app):
            searcher: Searcher = app.state.serving.get().searcher
            texts = [t for t in real_queries(COLLECTIONS, 400) if t.strip()]
            vectors = np.asarray(searcher.encode(texts), dtype=np.float32)
            keep = [i for i in range(len(texts)) if np.any(vectors[i])][:200]
            texts, vectors = [texts[i] for i in keep], vectors[keep]
            ref = searcher.model.ref
            by_vector = [
                json.dumps({"vector": v.tolist(), "model": ref, "k": K}).encode() for v in vectors
            ]
            by_text = [json.dumps({"query": t, "k": K}).encode() for t in texts]
            rows = [np.asarray(json.loads(b)["vector"], dtype=np.float32)[None] for b in by_vector]
            post = asgi_post(app, "/v1/search", key)
            await app_rate(post, by_vector + by_text, len(by_vector) * 2)  # warm up
            searcher.snippets.reload()
            for r in range(args.rounds):
                index = per_second(lambda q: searcher.index.search(q, K), rows, args.requests)
                hydrated = per_second(lambda q: searcher.search_vectors(q, K), rows, args.requests)
                text = per_second(lambda t: searcher.search(t, K), texts, args.requests)
                api_vector = await app_rate(post, by_vector, args.requests)
                api_text = await app_rate(post, by_text, args.requests)
                print(
                    f"round {r + 1}: index.search {index:7.0f}/s  search_vectors {hydrated:7.0f}/s"
                    f"  search(text) {text:6.0f}/s | app by vector {api_vector:6.0f}/s "
                    f"({api_vector / index:.3f} of index), by text {api_text:6.0f}/s "
                    f"({api_text / text:.3f} of search(text))",
                    flush=True,
                )
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                await app_rate(post, by_text if args.text else by_vector, args.requests)
                profile.disable()
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(35)
                print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--text", action="store_true", help="profile the requests by text")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
