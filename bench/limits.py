"""Claim: a request can never cost more than its limits allow. For each `[api]` limit, the worst
request it allows and one just over it (and the probe's original 100,000-value filter) are sent
over HTTP to a real `embedlake serve` on a small workspace (med, 1,033 documents, one LSA
release, SQLite catalog); each request's wall time and the server's resident memory (VmRSS of the
server and its children) before and after are recorded. Target: no request over 5 s, and the
server's memory grows by < 200 MiB over the whole run. (Before issue 19, a 1 MB filter of 100,000
values took 166 s of CPU and grew the server by 4 GB; 1,000 values got a 503.)

Anchor, same run: `GET /healthz` (the cheapest request) and a plain 10-result text search.

    .venv/bin/python bench/limits.py [--reps 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedlake import Workspace
from embedlake.cli.releases import register_and_build
from embedlake.config import ApiSettings
from embedlake.ingest import ingest_path
from embedlake.training.train import train

from _common import DATA, median, table, write_result
from _common.results import met
from _common.servers import EMBEDLAKE, free_port, post, running

A = ApiSettings()  # the defaults: what is measured is what a server starts with


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def nested(depth: int) -> dict[str, Any]:
    """A document batch nesting ``depth`` levels (3 are the envelope's)."""
    inner: Any = "leaf"
    for _ in range(depth - 3):
        inner = {"a": inner}
    return {"source": "deep", "documents": [{"id": "deep", "text": "t", "metadata": inner}]}


def cases() -> list[tuple[str, str, str, int]]:
    """(name, path, body, expected status): the worst allowed, then just over, per limit."""
    words = [f"w{n:0{A.max_filter_value_chars - 6}d}" for n in range(A.max_filter_values)]
    per = A.max_filter_values_total // 4
    biggest = {  # every limit of a filter at once, kinds mixed (~3.5 MB)
        "source": [*words[: per - 1], "med"],
        "lang": words[:per],
        "year": list(range(per)),
        "flag": [True, False, *range(per - 2)],
    }
    text = "kidney stones " * (A.max_text_chars // 14)
    short = "renal failure " * 1_000
    docs = [{"id": f"n{n}", "text": short} for n in range(A.max_texts)]
    s, e, d = "/v1/search", "/v1/embed", "/v1/documents"

    def q(**body: Any) -> str:
        return json.dumps(body)

    over_keys = {f"f{n}": 1 for n in range(A.max_filter_keys + 1)}
    brackets = '{"query": "k", "filter": {"a": [' + "[]," * ((A.max_body_bytes - 60) // 3) + "[]]}}"
    deep = '{"query": "k", "filter": ' + "[" * 100_000 + "]" * 100_000 + "}"
    return [
        ("healthz (anchor)", "/healthz", "", 200),
        ("search, k=10 (anchor)", s, q(query="kidney stones"), 200),
        ("search, k=max_k", s, q(query="kidney", k=A.max_k), 200),
        ("search, k=max_k+1", s, q(query="kidney", k=A.max_k + 1), 413),
        ("search, query of max_text_chars", s, q(query=text[: A.max_text_chars]), 200),
        ("search, query of max_text_chars+1", s, q(query="x" * (A.max_text_chars + 1)), 413),
        ("search, largest filter, k=max_k", s, q(query="kidney", k=A.max_k, filter=biggest), 200),
        ("hybrid, largest filter", s, q(query="kidney", k=A.max_k, mode="hybrid", filter=biggest), 200),
        ("search, max_filter_values+1", s, q(query="k", filter={"a": [*range(A.max_filter_values), 0]}), 413),
        ("search, 100,000 values (the probe)", s, q(query="k", filter={"a": list(range(100_000))}), 413),
        ("search, max_filter_keys+1", s, q(query="k", filter=over_keys), 413),
        ("embed, max_texts × 14k chars", e, q(texts=[text[:14_000]] * A.max_texts), 200),
        ("embed, max_texts+1", e, q(texts=["x"] * (A.max_texts + 1)), 413),
        ("documents, max_texts × 14k chars", d, q(source="bench", documents=docs), 202),
        ("documents, nested max_json_depth", d, json.dumps(nested(A.max_json_depth)), 202),
        ("documents, nested max_json_depth+1", d, json.dumps(nested(A.max_json_depth + 1)), 413),
        ("search, nested 100,000 levels", s, deep, 413),
        ("search, max_body_bytes of brackets", s, brackets, 422),
        ("any, max_body_bytes+1", s, q(query="x" * A.max_body_bytes), 413),
    ]  # fmt: skip


def prepare(root: Path) -> str:
    """med ingested, one LSA release published; an admin key."""
    with Workspace.init(root, environ={"EMBEDLAKE_EMBED__MODEL": "lsa"}) as ws:
        ingest_path(ws, DATA / "med")
        register_and_build(ws, train(ws, name="lsa", kind="lsa", components=64)[0])
        return ws.catalog.keys.create(["admin"], "bench-limits")[0]


def measure(url: str, pid: int, key: str, reps: int) -> list[dict[str, Any]]:
    out = []
    for name, path, body, expected in cases():
        send: Callable[[], tuple[int, bytes]] = (
            (lambda p=path: _get(f"{url}{p}"))
            if not body
            else (lambda p=path, b=body: _declared(url, p, b, key))
            if expected == 413 and len(body) > A.max_body_bytes
            else (lambda p=path, b=body: post(f"{url}{p}", b, key))
        )
        before = rss_mib(pid)
        seconds, statuses = [], set()
        for _ in range(reps):
            started = time.perf_counter()
            status, _ = send()
            seconds.append(time.perf_counter() - started)
            statuses.add(status)
        row = {
            "case": name,
            "body_bytes": len(body.encode()),
            "status": sorted(statuses),
            "expected": expected,
            "median_s": median(seconds),
            "max_s": max(seconds),
            "rss_before_mib": before,
            "rss_after_mib": rss_mib(pid),
        }
        print(f"  {name}: {row['status']} in {row['median_s']:.3f} s", flush=True)
        out.append(row)
    return out


def _declared(url: str, path: str, body: str, key: str) -> tuple[int, bytes]:
    """Headers and the body's first 64 KB, then the answer: a server that refuses by
    Content-Length answers at once and closes, and a client still sending gets a reset."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.putrequest("POST", path)
    for name, value in (
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body.encode()))),
        ("Authorization", f"Bearer {key}"),
    ):
        conn.putheader(name, value)
    conn.endheaders(body.encode()[:65_536])
    response = conn.getresponse()
    answer = response.status, response.read()
    conn.close()
    return answer


def _get(url: str) -> tuple[int, bytes]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="embedlake-limits-") as tmp:
        root = Path(tmp) / "ws"
        print("preparing the workspace (med, LSA)…", flush=True)
        key = prepare(root)
        port = free_port()
        cmd = [EMBEDLAKE, "serve", str(root), "--host", "127.0.0.1", "--port", str(port)]
        env = {"EMBEDLAKE_EMBED__MODEL": "lsa"}
        with running(cmd, port, Path(tmp) / "serve.log", env=env) as (url, proc):
            started_mib = rss_mib(proc.pid)
            rows = measure(url, proc.pid, key, args.reps)
            final_mib = rss_mib(proc.pid)
    worst = max(r["max_s"] for r in rows)
    growth = final_mib - started_mib
    wrong = [r["case"] for r in rows if r["status"] != [r["expected"]]]
    print()
    print(
        table(
            ["request", "body bytes", "status", "median s", "max s", "RSS before MiB", "after"],
            [
                (
                    r["case"],
                    f"{r['body_bytes']:,}",
                    ",".join(map(str, r["status"])),
                    r["median_s"],
                    r["max_s"],
                    r["rss_before_mib"],
                    r["rss_after_mib"],
                )
                for r in rows
            ],
        )
    )
    print(f"\nslowest request: {worst:.3f} s (< 5 s: {met(worst < 5)})")
    print(
        f"server RSS: {started_mib:.0f} → {final_mib:.0f} MiB (growth < 200: {met(growth < 200)})"
    )
    print(f"statuses as expected: {met(not wrong)} {wrong or ''}")
    write_result(
        "limits",
        {
            "limits": A.model_dump(
                include={f for f in ApiSettings.model_fields if f.startswith("max_")}
            ),
            "rows": rows,
            "slowest_s": worst,
            "rss_start_mib": started_mib,
            "rss_end_mib": final_mib,
            "unexpected_status": wrong,
            "cpus": os.cpu_count(),
        },
    )


if __name__ == "__main__":
    main()
