"""The floor of a Python HTTP search: the least an ASGI server can do around the same index, and
how it compares with the index in process (issue 20's target for `/v1/search` by vector: ≥ 0.5×
the in-process index, 1 client).

One server process builds a faiss HNSW index (M 32, inner product) over ``--n`` clustered unit
vectors of 384 dimensions (seeded: 500 centres, noise), then serves ``POST /v1/search`` on
uvicorn (httptools, uvloop) doing only what any search by vector must: read the body, parse the
JSON (pydantic-core, in Rust), make the query an array and normalise it, search k + 10 hits (the
searcher's room for deleted documents and passages), and answer the first k as JSON from bytes
made before (id, title, snippet). No auth, no validation, no metrics, no deleted documents.

``--servers`` picks the HTTP servers: ``uvicorn`` (the one embedlake serves on), and granian, a
server written in Rust, through ASGI (``granian-asgi``) and its own RSGI (``granian-rsgi``): would
a server whose HTTP is not Python's reach the target? granian is not a dependency of embedlake:
``.venv/bin/pip install granian==2.8.9`` to run those.

The anchor runs in the same server process, on the same index, between the HTTP rounds:
``index.search`` of one query at k = 10 in a loop (what bench/api.py calls the in-process
index), asked for by ``GET /anchor``. HTTP: ``wrk -t1 -c1`` rotating over 200 bodies of real
query-like vectors (the vectors near documents). Ratio: the median over rounds of HTTP req/s ÷
the anchor's q/s of the same round.

    .venv/bin/python bench/api_floor.py [--n 106000] [--ef 48,128] [--rounds 3] [--seconds 6]
        [--servers uvicorn,granian-asgi,granian-rsgi]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import median, table, write_result
from _common.load import loadavg
from _common.servers import free_port
from _common.wrk import Target, run_wrk

# the server's module (floorapp.py), imported by whichever server runs it; its arguments in FLOOR
SERVER = r"""
import json, os, sys, time
import faiss, numpy as np
from pydantic_core import from_json, to_json

faiss.omp_set_num_threads(1)
n, ef, bodies = (json.loads(os.environ["FLOOR"])[k] for k in ("n", "ef", "bodies"))
rng = np.random.default_rng(0)
centres = rng.standard_normal((500, 384)).astype(np.float32)
x = centres[rng.integers(0, 500, n)] + 0.6 * rng.standard_normal((n, 384)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
index = faiss.IndexHNSWFlat(384, 32, faiss.METRIC_INNER_PRODUCT)
index.hnsw.efConstruction = 40
index.add(x)
index.hnsw.efSearch = ef
hits = [to_json({"id": f"doc-{i}", "title": f"Title of document {i}", "snippet": "word " * 40})
        for i in range(n)]
queries = x[rng.integers(0, n, 200)] + 0.3 * rng.standard_normal((200, 384)).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
with open(bodies, "w") as f:
    for q in queries:
        f.write(json.dumps({"vector": [round(float(v), 7) for v in q], "k": 10}) + "\n")


def anchor(seconds):
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for q in queries:
            index.search(q[None], 10)
        done += len(queries)
    return done / (time.perf_counter() - started)


anchor(1.0)  # warm


def answer(method, query_string, raw):
    if method == "GET":  # the anchor, in this process, on this index
        return to_json({"qps": anchor(float(query_string or "3"))})
    request = from_json(raw)
    q = np.asarray(request["vector"], dtype=np.float32)[None]
    q /= np.linalg.norm(q)
    k = request.get("k", 10)
    _, rows = index.search(q, k + 10)
    return b'{"hits":[' + b",".join(hits[r] for r in rows[0][:k].tolist() if r >= 0) + b"]}"


async def app(scope, receive, send):  # ASGI: uvicorn, granian-asgi
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = answer(scope["method"], scope["query_string"].decode(), b"".join(chunks))
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def rsgi(scope, proto):  # granian's own interface
    body = answer(scope.method, scope.query_string, await proto())
    proto.response_bytes(200, [("content-type", "application/json")], body)
"""


def command(server: str, port: int) -> list[str]:
    """How ``server`` runs floorapp.py on one worker, its event loop uvloop."""
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "floorapp:app", "--port", str(port),
                "--http", "httptools", "--loop", "uvloop", "--log-level", "warning"]  # fmt: skip
    interface = server.removeprefix("granian-")
    return [sys.executable, "-m", "granian", "--interface", interface, "--port", str(port),
            "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop",
            "--log-level", "warning", "floorapp:app" if interface == "asgi" else "floorapp:rsgi"]  # fmt: skip


def measure(server: str, n: int, ef: int, rounds: int, seconds: int, tmp: Path) -> dict[str, Any]:
    port, bodies = free_port(), tmp / f"bodies-{ef}.txt"
    (tmp / "floorapp.py").write_text(SERVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp),
           "FLOOR": json.dumps({"n": n, "ef": ef, "bodies": str(bodies)})}  # fmt: skip
    process = subprocess.Popen(command(server, port), env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600  # the index is built before the server binds
        while True:
            assert process.poll() is None, f"{server} exited with {process.returncode}"
            try:
                urllib.request.urlopen(f"{url}/anchor?0.1", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{server} did not answer in 600 s"
                time.sleep(0.2)
        target = Target(url, "/v1/search", bodies.read_text().splitlines(), pids=[process.pid])
        run_wrk(target, 1, 1, 2, tmp, f"warm-{server}-{ef}")
        anchors, rates, p50s = [], [], []
        for round_ in range(rounds):
            with urllib.request.urlopen(f"{url}/anchor?{seconds}", timeout=seconds + 30) as r:
                anchors.append(json.loads(r.read())["qps"])
            run = run_wrk(target, 1, 1, seconds, tmp, f"{server}-ef{ef}-{round_}")
            rates.append(run["rps"])
            p50s.append(run["p50_ms"])
    finally:
        process.terminate()
        process.wait()
    ratios = [r / a for r, a in zip(rates, anchors, strict=True)]
    return {"server": server, "ef": ef, "anchor_qps": anchors, "http_rps": rates, "http_p50_ms": p50s,
            "ratios": ratios, "ratio": median(ratios)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=106_000)
    parser.add_argument("--ef", default="48,128", help="HNSW search efforts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--servers", default="uvicorn", help="comma-separated: uvicorn, "
                        "granian-asgi, granian-rsgi (granian: pip install granian==2.8.9)")  # fmt: skip
    parser.add_argument("--name", default="api_floor", help="the result file's name")
    args = parser.parse_args()
    load = [loadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            measure(server, args.n, int(ef), args.rounds, args.seconds, Path(tmp))
            for ef in args.ef.split(",")
            for server in args.servers.split(",")
        ]
    load.append(loadavg())
    rows = [
        [
            r["server"],
            r["ef"],
            f"{median(r['anchor_qps']):,.0f} ({1e3 / median(r['anchor_qps']):.3f} ms)",
            f"{median(r['http_rps']):,.0f} (p50 {median(r['http_p50_ms']):.3f} ms)",
            f"{r['ratio']:.3f} ({min(r['ratios']):.3f}–{max(r['ratios']):.3f})",
        ]
        for r in runs
    ]
    print(f"{args.n:,} vectors, {args.rounds} rounds of {args.seconds} s")
    print(table(["server", "ef_search", "index.search, in process (q/s)", "HTTP (req/s)",
                 "HTTP ÷ index"], rows))  # fmt: skip
    write_result(args.name, {"n": args.n, "runs": runs, "load": load})


if __name__ == "__main__":
    main()
