"""The functions runtime: event-to-start latency and no-op throughput on the local engine, and the
runtime's overhead on a real job (batch-embedding a corpus through functions vs the direct call).

    .venv/bin/python bench/runtime.py [--events 500] [--collection cranfield] [--limit 600]

Anchors, measured in the same run: the direct ``batch.embed`` + ``build_index`` call on an identical
workspace (target: through functions ≤ 1.1× its time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from embedlake import Workspace
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
from _common.corpora import write_lines
from _common.timing import quantile

noop = Functions()


@noop.function(on=on_event("bench.noop"), concurrency=8, retries=0)
def nothing(event: Event, ctx: Context) -> None:
    return None


def noop_runs(root: Path, n: int) -> dict[str, float]:
    env = {"EMBEDLAKE_RUNTIME__WATCH": "false", "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.02"}
    with Workspace.init(root / "noop", environ=env) as ws, Runtime(ws, noop) as runtime:
        # latency: one event at a time, each after the previous one finished
        for i in range(min(n, 100)):
            ws.catalog.events.add(Event("bench.noop", f"single-{i}"))
            runtime.wait_idle(60, settle=0.0)
        singles = ws.catalog.events.invocations(function="nothing")
        latencies = []
        events = {e.id: e for e in ws.catalog.events.all()}
        for inv in singles:
            assert inv.started_at is not None
            latencies.append((inv.started_at - events[inv.event_id].time).total_seconds())
        # throughput: a burst of n events
        started = time.perf_counter()
        for i in range(n):
            ws.catalog.events.add(Event("bench.noop", f"burst-{i}"))
        runtime.wait_idle(3600, settle=0.0)
        seconds = time.perf_counter() - started
    return {
        "latency_p50_ms": 1000 * quantile(latencies, 50),
        "latency_p99_ms": 1000 * quantile(latencies, 99),
        "burst_events": n,
        "burst_seconds": seconds,
        "invocations_per_s": n / seconds,
    }


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
    parser.add_argument("--collection", default="cranfield")
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = DATA / args.collection / "corpus.jsonl"
        corpus = write_lines(source, root / f"{args.collection}.jsonl", args.limit)
        runs = noop_runs(root, args.events)
        overhead = job(root, corpus, args.rounds)
    print(table(["measure", "value"], [(k, v) for k, v in {**runs, **overhead}.items()]))
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
