"""The functions runtime: no-op throughput, event-to-start latency, commits per invocation and
idle cost (CPU, SQL statements) on SQLite and PostgreSQL; and the runtime's overhead on a real job
(batch-embedding a corpus through functions vs the direct call).

    .venv/bin/python bench/runtime.py [--events 500] [--idle 30] [--anchor-src ../main/src]
                                      [--collection cranfield] [--limit 600] [--rounds 2]

Anchors, measured in the same run: for the no-op measures, the same measurement of another
checkout's runtime (``--anchor-src``: its ``src`` folder, e.g. the commit before the wake-on-work
runtime), run in a subprocess in turn with this one's; for the real job, the direct
``batch.embed`` + ``build_index`` call on an identical workspace (target: ≤ 1.1× its time).
Targets (issue 20): idle CPU ≤ 1 % of a core, ≥ 100 invocations/s on SQLite and ≥ 300/s on
PostgreSQL, event-to-start p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select

from embedlake import Workspace
from embedlake.catalog.schema import invocations
from embedlake.embeddings.batch import embed
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.functions import Functions, on_event
from embedlake.functions.context import Context
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.runtime import Runtime
from embedlake.search.build import build_index

from _common import DATA, median, table, write_result
from _common.children import child_result
from _common.corpora import write_lines
from _common.timing import quantile

noop = Functions()


@noop.function(on=on_event("bench.noop"), concurrency=8, retries=0)
def nothing(event: Event, ctx: Context) -> None:
    return None


@contextmanager
def counted(engines: dict[str, Engine]) -> Iterator[Counter[str]]:
    """Statements and commits sent through each engine while the block runs (any thread)."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    listeners = []
    for name, engine in engines.items():

        def statement(*_: Any, name: str = name) -> None:
            with lock:
                counts[f"{name}.statements"] += 1

        def commit(*_: Any, name: str = name) -> None:
            with lock:
                counts[f"{name}.commits"] += 1

        for kind, fn in (("before_cursor_execute", statement), ("commit", commit)):
            event.listen(engine, kind, fn)
            listeners.append((engine, kind, fn))
    try:
        yield counts
    finally:
        for engine, kind, fn in listeners:
            event.remove(engine, kind, fn)


def _dbos_engine() -> Engine | None:
    """DBOS's engine, when DBOS is launched (since issue 20's direct first attempts it is
    launched only for durable work, so a no-op run may have none)."""
    from dbos import _dbos

    instance = _dbos._dbos_global_instance
    if instance is None or getattr(instance, "_sys_db", None) is None:
        return None
    engine: Engine = instance._sys_db.engine
    return engine


def _wait_done(ws: Workspace, n: int, timeout: float, every: float = 0.01) -> None:
    """Until ``n`` no-op invocations have finished (a COUNT every ``every`` s, this thread)."""
    c = invocations.c
    query = select(func.count()).where(c.function == "nothing", c.status == "succeeded")
    deadline = time.monotonic() + timeout
    while True:
        with ws.catalog.connect() as conn:
            if conn.execute(query).scalar_one() >= n:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} invocations finished in {timeout} s")
        time.sleep(every)


def noop_runs(root: Path, n: int, idle: float, env: dict[str, str]) -> dict[str, float]:
    env = {"EMBEDLAKE_RUNTIME__WATCH": "false", **env}
    with Workspace.init(root, environ=env) as ws, Runtime(ws, noop):
        dbos = _dbos_engine()
        engines = {"catalog": ws.catalog.engine, **({"dbos": dbos} if dbos is not None else {})}
        # latency: one event at a time, each after the previous one finished
        singles = min(n, 100)
        for i in range(singles):
            ws.catalog.events.add(Event("bench.noop", f"single-{i}"))
            _wait_done(ws, i + 1, 60)
        events = {e.id: e for e in ws.catalog.events.all()}
        latencies = [
            (inv.started_at - events[inv.event_id].time).total_seconds()
            for inv in ws.catalog.events.invocations(function="nothing")
            if inv.started_at is not None
        ]
        # throughput: a burst of n events, added at once
        # the burst ends when its last invocation finished (its finished_at), not when this
        # thread's COUNT saw it: the count runs every 0.2 s, so that the measuring costs the
        # runtime little CPU (every 10 ms it took ~10 % of the burst's)
        with counted(engines) as burst:
            started, cpu = datetime.now(UTC), time.process_time()
            for i in range(n):
                ws.catalog.events.add(Event("bench.noop", f"burst-{i}"))
            _wait_done(ws, singles + n, 3600, every=0.2)
            burst_cpu = time.process_time() - cpu
        ended = max(
            inv.finished_at
            for inv in ws.catalog.events.invocations(function="nothing")
            if inv.finished_at is not None
        )
        seconds = (ended - started).total_seconds()
        # idle: nothing to do; the process's CPU time and the statements of both databases
        time.sleep(2.0)
        with counted(engines) as quiet:
            cpu, wall = time.process_time(), time.perf_counter()
            time.sleep(idle)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    result = {
        "latency_p50_ms": 1000 * quantile(latencies, 50),
        "latency_p99_ms": 1000 * quantile(latencies, 99),
        "burst_events": n,
        "burst_seconds": seconds,
        "invocations_per_s": n / seconds,
        "burst_cpu_ms_per_invocation": 1000 * burst_cpu / n,
        "idle_seconds": wall,
        "idle_cpu_percent": 100 * cpu / wall,
    }
    result["dbos_launched"] = float("dbos" in engines)
    for name in ("catalog", "dbos"):  # a DBOS never launched sent nothing
        result[f"commits_per_invocation_{name}"] = burst[f"{name}.commits"] / n
        result[f"idle_statements_per_min_{name}"] = 60 * quiet[f"{name}.statements"] / wall
    return result


def _noop_in_subprocess(src: str, root: Path, n: int, idle: float, env: dict[str, str]) -> Any:
    """``noop_runs`` in a fresh process importing embedlake from ``src``."""
    args = json.dumps({"root": str(root), "n": n, "idle": idle, "env": env})
    path = os.pathsep.join([src, str(Path(__file__).parent)])
    return child_result(__file__, "--_noop", args, env={**os.environ, "PYTHONPATH": path})


def noop_compared(root: Path, args: argparse.Namespace, pg: Any) -> dict[str, Any]:
    """Each backend: this checkout's runtime, and the anchor's when given, in turn (catalog and
    DBOS in one fresh database per run on PostgreSQL, as in production)."""
    here = str(Path(__file__).resolve().parent.parent / "src")
    backends = ["sqlite"] if pg is None else ["sqlite", "postgresql"]
    found: dict[str, Any] = {}
    for backend in backends:
        for side, src in (("anchor", args.anchor_src), ("this", here)):
            if src is None:
                continue
            env: dict[str, str] = {}
            if backend == "postgresql":
                url = pg.database()
                env = {"EMBEDLAKE_CATALOG__URL": url, "EMBEDLAKE_RUNTIME__SYSTEM_DATABASE": url}
            folder = root / f"noop-{backend}-{side}"
            found[f"{backend}/{side}"] = _noop_in_subprocess(
                src, folder, args.events, args.idle, env
            )
            print(f"{backend}/{side}: {found[f'{backend}/{side}']}", flush=True)
    return found


def _prepared(root: Path, name: str, corpus: Path) -> Workspace:
    env = {"EMBEDLAKE_RUNTIME__WATCH": "false", "EMBEDLAKE_EMBED__MODEL": "minilm"}
    ws = Workspace.init(root / name, environ=env)
    ingest_path(ws, corpus)
    resolve_model(ws, "minilm")
    return ws


def job(root: Path, corpus: Path, rounds: int) -> dict[str, float]:
    direct, functions = [], []
    for r in range(rounds):
        ws = _prepared(root, f"direct-{r}", corpus)
        model = ws.catalog.registry.model("minilm")
        encoder = artifacts.load_encoder(ws, model)
        encoder.encode(["warm up"])
        started = time.perf_counter()
        embed(ws, model, encoder)
        build_index(ws, model)
        direct.append(time.perf_counter() - started)
        ws.close()

        ws = _prepared(root, f"functions-{r}", corpus)
        with Runtime(ws) as runtime:
            started = time.perf_counter()
            ws.catalog.events.add(Event(DOCUMENTS_CHANGED, "bench"))
            runtime.wait_idle(3600, settle=0.0)
            functions.append(time.perf_counter() - started)
            [run] = ws.catalog.events.invocations(function="embed-new")
            assert run.status == "succeeded", run.error
        ws.close()
    return {
        "direct_s": median(direct),
        "functions_s": median(functions),
        "ratio": median(functions) / median(direct),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idleness measured")
    parser.add_argument("--anchor-src", help="another checkout's src folder: the no-op anchor")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2, help="real-job rounds (0: skip)")
    parser.add_argument("--_noop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._noop:  # the subprocess of noop_compared
        spec = json.loads(args._noop)
        print(json.dumps(noop_runs(Path(spec["root"]), spec["n"], spec["idle"], spec["env"])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pg = None
        if not args.no_postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
            from tests.servers import start_postgres  # the test suite's throwaway server

            pg = start_postgres()
        try:
            runs = noop_compared(root, args, pg)
        finally:
            if pg is not None:
                pg.stop()
        overhead: dict[str, float] = {}
        if args.rounds:
            source = DATA / args.collection / "corpus.jsonl"
            corpus = write_lines(source, root / f"{args.collection}.jsonl", args.limit)
            overhead = job(root, corpus, args.rounds)
    measures = sorted({k for r in runs.values() for k in r})
    print(
        table(["measure", *runs], [(m, *(r.get(m, "") for r in runs.values())) for m in measures])
    )
    if overhead:
        print(table(["measure", "value"], list(overhead.items())))
        print(
            f"\nruntime overhead on a real job: {overhead['ratio']:.3f}x the direct call "
            f"(target <= 1.1x): {'met' if overhead['ratio'] <= 1.1 else 'MISSED'}"
        )
    write_result(
        "runtime",
        {"noop": runs, "job": overhead, "collection": args.collection, "documents": args.limit},
    )


if __name__ == "__main__":
    main()
