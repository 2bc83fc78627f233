"""The floor of a Python HTTP search: the least an ASGI server can do around the same index, and
how it compares with the index in process (issue 20's target for `/v1/search` by vector: ≥ 0.5×
the in-process index, 1 client).

One server process builds a faiss HNSW index (M 32, inner product) over ``--n`` clustered unit
vectors of 384 dimensions (seeded: 500 centres, noise), then serves ``POST /v1/search`` on
uvicorn (httptools, uvloop) doing only what any search by vector must: read the body, parse the
JSON (pydantic-core, in Rust), make the query an array and normalise it, search k + 10 hits (the
searcher's room for deleted documents and passages), and answer the first k as JSON from bytes
made before (id, title, snippet). No auth, no validation, no metrics, no deleted documents.

The anchor runs in the same server process, on the same index, between the HTTP rounds:
``index.search`` of one query at k = 10 in a loop (what bench/api.py calls the in-process
index), asked for by ``GET /anchor``. HTTP: ``wrk -t1 -c1`` rotating over 200 bodies of real
query-like vectors (the vectors near documents). Ratio: the median over rounds of HTTP req/s ÷
the anchor's q/s of the same round.

    .venv/bin/python bench/api_floor.py [--n 106000] [--ef 48,128] [--rounds 3] [--seconds 6]
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

SERVER = r"""
import json, os, sys, time
import faiss, numpy as np, uvicorn
from pydantic_core import from_json, to_json

faiss.omp_set_num_threads(1)
n, ef, port, bodies = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
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


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "GET":  # the anchor, in this process, on this index
        body = to_json({"qps": anchor(float(scope["query_string"] or b"3"))})
    else:
        request = from_json(b"".join(chunks))
        q = np.asarray(request["vector"], dtype=np.float32)[None]
        q /= np.linalg.norm(q)
        k = request.get("k", 10)
        _, rows = index.search(q, k + 10)
        body = b'{"hits":[' + b",".join(hits[r] for r in rows[0][:k].tolist() if r >= 0) + b"]}"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", http="httptools", loop="uvloop")
"""


def measure(n: int, ef: int, rounds: int, seconds: int, tmp: Path) -> dict[str, Any]:
    port, bodies = free_port(), tmp / f"bodies-{ef}.txt"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(n), str(ef), str(port), str(bodies)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # uvicorn binds after the line above
            try:
                urllib.request.urlopen(f"{url}/anchor?0.1", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        target = Target(url, "/v1/search", bodies.read_text().splitlines(), pids=[server.pid])
        run_wrk(target, 1, 1, 2, tmp, f"warm-{ef}")
        anchors, rates, p50s = [], [], []
        for round_ in range(rounds):
            with urllib.request.urlopen(f"{url}/anchor?{seconds}", timeout=seconds + 30) as r:
                anchors.append(json.loads(r.read())["qps"])
            run = run_wrk(target, 1, 1, seconds, tmp, f"ef{ef}-{round_}")
            rates.append(run["rps"])
            p50s.append(run["p50_ms"])
    finally:
        server.terminate()
        server.wait()
    ratios = [r / a for r, a in zip(rates, anchors, strict=True)]
    return {"ef": ef, "anchor_qps": anchors, "http_rps": rates, "http_p50_ms": p50s,
            "ratios": ratios, "ratio": median(ratios)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=106_000)
    parser.add_argument("--ef", default="48,128", help="HNSW search efforts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    args = parser.parse_args()
    load = [loadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            measure(args.n, int(ef), args.rounds, args.seconds, Path(tmp))
            for ef in args.ef.split(",")
        ]
    load.append(loadavg())
    rows = [
        [
            r["ef"],
            f"{median(r['anchor_qps']):,.0f} ({1e3 / median(r['anchor_qps']):.3f} ms)",
            f"{median(r['http_rps']):,.0f} (p50 {median(r['http_p50_ms']):.3f} ms)",
            f"{r['ratio']:.3f} ({min(r['ratios']):.3f}–{max(r['ratios']):.3f})",
        ]
        for r in runs
    ]
    print(f"{args.n:,} vectors, {args.rounds} rounds of {args.seconds} s")
    print(table(["ef_search", "index.search, in process (q/s)", "floor server, HTTP (req/s)",
                 "HTTP ÷ index"], rows))  # fmt: skip
    write_result("api_floor", {"n": args.n, "runs": runs, "load": load})


if __name__ == "__main__":
    main()
