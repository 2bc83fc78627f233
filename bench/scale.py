"""A large collection end to end on this machine: each stage's wall time and peak memory.

Synthetic short documents made of real sentences (``generate``: ~1 KB each, a run of sentences of
one of the ~65,000 documents of the shared collections with about a fifth swapped for sentences of
other documents of its collection, so the collection has the topical structure of real text:
documents of words drawn independently have none, and no ANN engine reaches its recall on them
at a useful effort), then the CLI as a user runs it, each stage in its own process whose peak
resident memory is read from ``wait4``'s rusage: ``init``, ``ingest``, ``embed --model lsa``,
``index`` (streamed from the shards, ``[index] build_memory``), ``status``, then ``release``
(reducer, map, its own index, BM25; its resident memory sampled every 0.5 s and cut into the
stages by the seconds its report gives each, so the per-stage peaks are approximate; a release
after the first is published with ``--force``: there is no benchmark dataset). Then, with
``embedlake serve`` on the published release: search in one process, one query at a time (one
thread), and the same queries by vector through ``/v1/search`` from one client: p50/p99 latency
and recall@10 against exact search, on LSA encodings of held-out synthetic texts; then the map
page in headless Chromium, a cold load and ``--map-loads`` warm ones.

Each stage's bytes written to storage (``ru_oublock``, its children's included) beside its time,
and before the run the disk's own rate (2 GiB written and synced): a stage whose writes reach that
rate is bound by the disk, not by its code.

Anchors, in the same run: the index built the way it was before builds were streamed (every
vector read into memory, then added), in its own process, on the same vectors; with
``--embed-anchor``, a copy of the workspace made before the embed stage embedded in one process
(``[embed] processes = 1``), after the embed stage, with the same model (a seeded fit). A stage's
peak is its largest process's (``wait4``) and, beside it, the sum over it and its worker processes
(sampled every 0.5 s).

    .venv/bin/python bench/scale.py --docs 1000000 --engine rabitq --keep /tmp/scale1m
    .venv/bin/python bench/scale.py --docs 1000000 --keep /tmp/scale1m --start serve
    .venv/bin/python bench/scale.py --docs 10000000 --until ingest   # the catalog alone, then status
    .venv/bin/python bench/scale.py --docs 1000000 --until embed --embed-anchor  # 1 process vs all
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import DATA, table, write_result

HERE = Path(__file__).resolve().parent
EMBEDLAKE = [sys.executable, "-m", "embedlake"]
JSON = {"Content-Type": "application/json"}
STARTS = ["ingest", "embed", "index", "release", "serve"]  # where a run starts (--start)


def _sources() -> list[tuple[str, list[str]]]:
    """(collection, sentences) of every document of the shared collections with 3 or more."""
    out = []
    for folder in sorted(p for p in DATA.iterdir() if (p / "corpus.jsonl").is_file()):
        with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                text = " ".join(f"{row.get('title', '')}. {row['text']}".split())
                sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s) > 20]
                if len(sentences) >= 3:
                    out.append((folder.name, sentences))
    return out


def generate(path: Path, n: int, seed: int = 0) -> None:
    """``n`` JSONL documents of ~1,000 characters made of real sentences (module docstring)."""
    sources = _sources()
    members: dict[str, list[int]] = {}
    for number, (name, _) in enumerate(sources):
        members.setdefault(name, []).append(number)
    by_collection = {name: np.array(numbers) for name, numbers in members.items()}
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            name, sentences = sources[int(rng.integers(len(sources)))]
            start = int(rng.integers(len(sentences)))
            picked, size = [], 0
            while size < 1000 and len(picked) < 40:
                if rng.random() < 0.2:  # a sentence of another document of the collection
                    pool = by_collection[name]
                    other = sources[int(pool[rng.integers(len(pool))])][1]
                    sentence = other[int(rng.integers(len(other)))]
                else:
                    sentence = sentences[(start + len(picked)) % len(sentences)]
                picked.append(sentence)
                size += len(sentence) + 1
            doc = {
                "_id": f"d{i:08d}",
                "title": " ".join(picked[0].split()[:8]),
                "text": " ".join(picked[1:]),
            }
            out.write(json.dumps(doc) + "\n")


def measured(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` to its end: wall seconds, peak RSS in MiB (its own, from wait4), its stdout,
    and its resident memory every half second (``rss``: seconds since start, MiB)."""
    started = time.perf_counter()
    rss: list[tuple[float, int]] = []
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        sampler = threading.Thread(target=_sample_rss, args=(proc, started, rss), daemon=True)
        sampler.start()
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    result = {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_mib": round(usage.ru_maxrss / 1024),  # its largest process's (wait4)
        # the sum over it and its worker processes, sampled every 0.5 s
        "tree_peak_mib": max((mib for _, mib in rss), default=0),
        # bytes it sent to storage (its own and its children's; Linux counts 512-byte blocks)
        "written_gib": round(usage.ru_oublock * 512 / 2**30, 2),
        "stdout": out.decode(errors="replace"),
        "rss": rss,
    }
    # said as each stage ends: a run of an hour or more leaves its stages' numbers if cut short
    print(
        f"{time.strftime('%H:%M:%S')} {' '.join(cmd[2:5])}: {result['seconds']} s, peak "
        f"{result['peak_mib']} MiB (all processes {result['tree_peak_mib']} MiB), "
        f"{result['written_gib']} GiB written",
        flush=True,
    )
    return result


def disk_write_mib_s(folder: Path, mib: int = 2048) -> float:
    """The anchor for a stage bound by the disk: MiB/s of writing ``mib`` MiB and syncing it."""
    block = os.urandom(1 << 20)
    path = folder / "disk-anchor.bin"
    started = time.perf_counter()
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return round(mib / seconds, 1)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a stage's worker processes)."""
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*"):
            with contextlib.suppress(OSError):  # a thread or process that ended meanwhile
                pids += [int(c) for c in (task / "children").read_text().split()]
        i += 1
    return pids


def _rss_mib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # ended since it was listed
        return 0
    kib = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return round(kib / 1024)


def _sample_rss(
    proc: subprocess.Popen[bytes], started: float, out: list[tuple[float, int]]
) -> None:
    """Every half second, the resident memory of the stage's process and its worker processes
    together (the machine's budget is their sum)."""
    while proc.returncode is None:
        try:
            pids = _tree(proc.pid)
        except OSError:
            return
        out.append((round(time.perf_counter() - started, 1), sum(map(_rss_mib, pids))))
        time.sleep(0.5)


def _mib_s(stage: dict[str, Any]) -> float:
    return round(stage["written_gib"] * 1024 / stage["seconds"], 1) if stage["seconds"] else 0.0


def stage_peaks(rss: list[tuple[float, int]], seconds: dict[str, float]) -> dict[str, int]:
    """Peak MiB of each of a process's stages run one after the other, given each stage's
    seconds in order; the time before the first stage (start-up, loading) is ``start``."""
    bounds, at = [], float(rss[-1][0] if rss else 0) - sum(seconds.values())
    bounds.append(("start", 0.0, at))
    for name, length in seconds.items():
        bounds.append((name, at, at + length))
        at += length
    return {
        name: max((mib for t, mib in rss if lo <= t <= hi + 0.5), default=0)
        for name, lo, hi in bounds
    }


def child_read_all(ws_path: str, engine: str) -> None:
    """The anchor: the index built from every vector in memory (the path before streaming)."""
    from embedlake import Workspace
    from embedlake import index as vector_index
    from embedlake.embeddings.vectors import read_vectors
    from embedlake.index import tune
    from embedlake.search.build import index_params

    with Workspace.open(Path(ws_path)) as ws:
        model = ws.catalog.registry.model("lsa")
        ids, vectors = read_vectors(ws, model)
        index = vector_index.create(engine, model.dim, **index_params(ws, engine))
        tuning = tune.add_tuned(index, ids, vectors, ws.settings.index.recall_target)
    print(json.dumps({"n": len(ids), "tuning": tuning.describe() if tuning else None}))


TRUTH_BATCH = 25  # queries scored at once by the exact search: 1 GB of scores at ten million


def child_search(ws_path: str, queries: int, url: str = "") -> None:
    """p50/p99 of one-query searches on the newest index, and recall@10 against exact search
    over the same vectors, on LSA encodings of held-out synthetic texts. With ``url`` (an
    `embedlake serve` of the published release), the same queries through ``/v1/search`` by
    vector, one client on one kept-alive connection, measured at the client."""
    import faiss

    from embedlake import Workspace
    from embedlake.embeddings.vectors import read_vectors
    from embedlake.index import top_k
    from embedlake.models import artifacts
    from embedlake.search.load import load_index

    faiss.omp_set_num_threads(1)
    lines = Path(ws_path, "queries.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    with Workspace.open(Path(ws_path)) as ws:
        model = ws.catalog.registry.model("lsa")
        record = ws.catalog.registry.latest_index(model.id)
        index = load_index(ws, record)
        encoded = artifacts.load(ws, model).encode(texts[:queries])
        for q in encoded[:20]:  # warm the pages the first searches touch
            index.search(q[None, :], 10)
        latencies, found = [], []
        for q in encoded:
            started = time.perf_counter()
            hits = index.search(q[None, :], 10)[0]
            latencies.append(time.perf_counter() - started)
            found.append({d for d, _ in hits})
        ids, vectors = read_vectors(ws, model)
        del index
        api: dict[str, Any] = {}
        if url:
            api = _http_search(url, model.ref, encoded)
    # a few queries at a time: all 1,000 against a million rows took this process to 18 GB
    truth = [
        {d for d, _ in row}
        for start in range(0, len(encoded), TRUTH_BATCH)
        for row in top_k(encoded[start : start + TRUTH_BATCH], vectors, ids, 10)
    ]
    out = {"queries": len(encoded), **_latency(latencies, found, truth), "engine": record.engine}
    if api:
        out["api"] = _latency(api["latencies"], api["found"], truth)
    print(json.dumps(out))


def _http_search(url: str, model_ref: str, encoded: np.ndarray) -> dict[str, Any]:
    import httpx

    latencies, found = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        bodies = [json.dumps({"vector": q.tolist(), "model": model_ref, "k": 10}) for q in encoded]
        for body in bodies[:20]:  # warm
            client.post("/v1/search", content=body, headers=JSON).raise_for_status()
        for body in bodies:
            started = time.perf_counter()
            response = client.post("/v1/search", content=body, headers=JSON)
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
            found.append({hit["id"] for hit in response.json()["results"]})
    return {"latencies": latencies, "found": found}


def _latency(
    latencies: list[float], found: list[set[str]], truth: list[set[str]]
) -> dict[str, Any]:
    ms = np.array(latencies) * 1000
    recall = float(np.mean([len(t & f) / 10 for t, f in zip(truth, found, strict=True)]))
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "recall@10": round(recall, 4),
    }


def _release_stages(report: Any) -> dict[str, float]:
    """Seconds of each stage of the release build, from its report."""
    stages = report.get("report", report).get("stages", {})
    return {name: round(float(seconds), 1) for name, seconds in stages.items()}


def _serve(ws: Path, root: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """`embedlake serve` of the published release: search through it (in-process beside it, same
    queries), its peak memory, then the map page's cold and warm loads in headless Chromium."""
    from playwright.sync_api import sync_playwright

    import map_page

    from _common.servers import free_port, running

    port = free_port()
    cmd = [*EMBEDLAKE, "serve", str(ws), "--port", str(port)]
    with running(cmd, port, root / "serve.log", timeout=900, env=map_page.OPEN) as (url, proc):
        search = measured(
            [sys.executable, __file__, "--child", "search", str(ws), str(args.queries), url],
            root / "scale.log",
        )
        served = json.loads(search["stdout"])
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=map_page.CHROMIUM, args=map_page.BROWSER_ARGS
            )
            try:
                loads = [map_page.one_load(browser, url) for _ in range(args.map_loads + 1)]
            finally:
                browser.close()
        served["api"]["server_peak_mib"] = _peak_mib(proc.pid)
    page = {
        "points": loads[0]["points"],
        "cold_ready_s": round(loads[0]["ready_s"], 2),
        "warm_ready_s": [round(r["ready_s"], 2) for r in loads[1:]],
        "warm_marks_s": [{k: round(v, 2) for k, v in r["marks"].items()} for r in loads[1:]],
        "by_kind_warm": loads[-1]["by_kind"],
    }
    return served, page


def _peak_mib(pid: int) -> int:
    """Peak resident memory of a running process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it")
    parser.add_argument(
        "--start",
        choices=STARTS,
        default="ingest",
        help="with --keep: go on from this stage in the workspace a run left there",
    )
    parser.add_argument(
        "--until",
        choices=STARTS,
        default="serve",
        help="stop after this stage (`ingest`: the catalog alone, then `status`)",
    )
    parser.add_argument(
        "--embed-anchor",
        action="store_true",
        help="embed a copy of the workspace in one process too (`[embed] processes = 1`)",
    )
    parser.add_argument(
        "--whole-path",
        action="store_true",
        help="the path a user runs (ingest, embed, release, serve): no stand-alone index stage "
        "and no read-all anchor; the path's seconds and peak against the issue's 1 h and 12 GiB",
    )
    parser.add_argument("--map-loads", type=int, default=3, help="warm loads of the map page")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "read-all":
            child_read_all(*rest)
        else:
            child_search(rest[0], int(rest[1]), *rest[2:])
        return
    if args.start != "ingest" and not (
        args.keep and (args.keep / "ws" / "embedlake.toml").is_file()
    ):
        raise SystemExit("--start needs --keep with a workspace a run left there")
    from_ = STARTS[STARTS.index(args.start) : STARTS.index(args.until) + 1]

    tmp = tempfile.TemporaryDirectory()
    root = args.keep or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    ws, log = root / "ws", root / "scale.log"
    corpus = root / "docs.jsonl"
    stages: dict[str, dict[str, Any]] = {}
    disk = disk_write_mib_s(root)  # before the run: a large run's writes may outrun the disk
    print(f"disk: {disk} MiB/s written and synced", flush=True)
    if "ingest" in from_:
        made = root / "docs.made"  # the corpus of a run cut short is kept when it was finished
        if not (corpus.is_file() and made.is_file() and made.read_text() == f"{args.docs} 0"):
            generate(corpus, args.docs, seed=0)
            made.write_text(f"{args.docs} 0")
        shutil.rmtree(ws, ignore_errors=True)
        stages["init"] = measured([*EMBEDLAKE, "init", str(ws)], log)
        generate(ws / "queries.jsonl", args.queries, seed=1)  # held-out texts, as queries
        stages["ingest"] = measured([*EMBEDLAKE, "ingest", str(ws), str(corpus)], log)
        if args.until == "ingest":  # the catalog at this size: what `status` costs over it
            stages["status"] = measured([*EMBEDLAKE, "status", str(ws)], log)
    if "embed" in from_:
        anchor_ws = root / "ws-anchor"
        if args.embed_anchor:  # the same workspace, to be embedded in one process after
            shutil.rmtree(anchor_ws, ignore_errors=True)
            shutil.copytree(ws, anchor_ws)
        stages["embed"] = measured([*EMBEDLAKE, "embed", str(ws), "--model", "lsa"], log)
        if args.embed_anchor:
            env = {**os.environ, "EMBEDLAKE_EMBED__PROCESSES": "1"}
            stages["embed in one process (anchor)"] = measured(
                [*EMBEDLAKE, "embed", str(anchor_ws), "--model", "lsa"], log, env=env
            )
            shutil.rmtree(anchor_ws)
    built: dict[str, Any] = {}
    if "index" in from_ and not args.whole_path:
        stages["index"] = measured(
            [*EMBEDLAKE, "index", str(ws), "--model", "lsa", "--engine", args.engine, "--json"],
            log,
        )
        built = json.loads(stages["index"]["stdout"])
        stages["index (read all: anchor)"] = measured(
            [sys.executable, __file__, "--child", "read-all", str(ws), built["engine"]], log
        )
        stages["status"] = measured([*EMBEDLAKE, "status", str(ws)], log)
    released: dict[str, Any] = {}
    release_peaks: dict[str, int] = {}
    if "release" in from_:
        # the release as a user builds it: reducer, map, its own index, BM25, gate, publish
        env = {**os.environ, "EMBEDLAKE_INDEX__ENGINE": args.engine}
        stages["release"] = measured(
            [*EMBEDLAKE, "release", str(ws), "--model", "lsa", "--json"], log, env=env
        )
        built_release = json.loads(stages["release"]["stdout"])
        released = _release_stages(built_release)
        if built_release["status"] != "published":  # no benchmark dataset: only a first
            # release passes the gate by itself; a later one is published as a user would
            measured(
                [
                    *EMBEDLAKE,
                    "publish",
                    str(ws),
                    built_release["release"],
                    "--force",
                    "--reason",
                    "bench/scale.py: no benchmark dataset",
                ],
                log,
            )
        release_peaks = stage_peaks(stages["release"]["rss"], released)
    served, page = _serve(ws, root, args) if "serve" in from_ else ({}, {})
    rows = [
        [name, s["seconds"], s["peak_mib"], s["tree_peak_mib"], s["written_gib"], _mib_s(s)]
        for name, s in stages.items()
    ]
    rows += [
        [f"  release: {name}", seconds, "", release_peaks.get(name, ""), "", ""]
        for name, seconds in released.items()
    ]
    header = ["stage", "seconds", "peak MiB", "all processes' peak MiB", "written GiB", "MiB/s"]
    print(table(header, rows))
    if built:
        streamed, anchor = stages["index"], stages["index (read all: anchor)"]
        print(
            f"index {built['engine']}: streamed {streamed['seconds']} s at "
            f"{streamed['peak_mib']} MiB; read all {anchor['seconds']} s at "
            f"{anchor['peak_mib']} MiB (peak ratio "
            f"{streamed['peak_mib'] / anchor['peak_mib']:.2f}); tuning {built.get('tuning')}"
        )
    path = {
        "seconds": round(sum(s["seconds"] for s in stages.values()), 1),
        "peak_mib": max((s["tree_peak_mib"] for s in stages.values()), default=0),
    }
    print(f"the stages run here, in all: {path['seconds']} s, peak {path['peak_mib']} MiB")
    print(f"search, in process (one thread) and through the API (one client): {served}")
    print(f"map page, headless Chromium: {page}")
    write_result(
        f"scale_{args.docs}_{args.engine}"
        + ("" if "ingest" in from_ else f"_from_{args.start}")
        + ("" if args.until == "serve" else f"_until_{args.until}")
        + ("_whole_path" if args.whole_path else ""),
        {
            "docs": args.docs,
            "engine": args.engine,
            "disk_write_mib_s": disk,
            "stages": {k: {**v, "stdout": None, "rss": None} for k, v in stages.items()},
            "release_stages": released,
            "release_stage_peak_mib": release_peaks,
            "path": path,
            "index": built,
            "search": served,
            "map_page": page,
        },
    )
    tmp.cleanup()


if __name__ == "__main__":
    main()
