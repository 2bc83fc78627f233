"""The functions runtime's embedding of a large collection by LSA: worker processes against
threads (``[runtime] engine = "processes"`` against ``"local"``), same run.

bench/scale.py's synthetic documents (~1 KB of real sentences each) are ingested once into a
workspace and LSA fitted there; each side then runs on a copy of it: a runtime is started with
the side's engine, a ``documents.changed`` event added, and the wall time taken until the runtime
is idle again (``embed-new``: the plan, every shard as a fan-out task on the engine, the run
finished, then the model's index, ``exact`` here: its vectors saved, no graph built). The events
the preparation left (a file, a model, documents changed) are consumed before the copies are
made, by a runtime with no functions, so each side runs only what its own event starts. The
sides alternate round by round; the ratio is the median of the rounds' ratios.

    .venv/bin/python bench/runtime_engines.py --docs 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import median, table, write_result
from _common.children import child_result
from _common.timing import alternated, paired

ENGINES = ("local", "processes")
# the sides' settings but for the engine: LSA, and the `exact` index (the vectors saved, nothing
# built) so that what embed-new does after embedding costs little beside it
SETTINGS = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_INDEX__ENGINE": "exact",
    "EMBEDLAKE_RUNTIME__WATCH": "false",
}


def timed(ws_path: Path, engine: str) -> dict[str, Any]:
    from embedlake import Workspace
    from embedlake.events import DOCUMENTS_CHANGED, Event
    from embedlake.runtime import Runtime

    env = {**SETTINGS, "EMBEDLAKE_RUNTIME__ENGINE": engine}
    with Workspace.open(ws_path, environ=env) as ws:
        model = ws.catalog.registry.model("lsa")
        with Runtime(ws) as runtime:
            since = datetime.now(UTC)
            started = time.perf_counter()
            ws.catalog.events.add(Event(DOCUMENTS_CHANGED, "bench"))
            runtime.wait_idle(3600, settle=0.0)
            seconds = time.perf_counter() - started
        [run] = ws.catalog.events.invocations(function="embed-new")
        assert run.status == "succeeded", run.error
        return {
            "engine": engine,
            "ran": sorted(
                i.function
                for i in ws.catalog.events.invocations()
                if i.started_at is not None and _utc(i.started_at) >= since
            ),
            "seconds": round(seconds, 1),
            "embed_new_seconds": run.seconds,
            "embedded": ws.catalog.registry.count_embedded(model.id),
        }


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("WS", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timed(Path(args.child[0]), args.child[1])))
        return
    from embedlake import Workspace
    from embedlake.functions import Functions
    from embedlake.ingest import ingest_path
    from embedlake.models.resolve import resolve_model
    from embedlake.runtime import Runtime
    from scale import generate

    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in ENGINES}
    with tempfile.TemporaryDirectory(prefix="embedlake-engines-") as tmp:
        root = Path(tmp)
        generate(root / "docs.jsonl", args.docs)
        with Workspace.init(root / "ws", environ=SETTINGS) as ws:
            ingest_path(ws, root / "docs.jsonl")
            resolve_model(ws, "lsa")  # fitted here, once: the sides embed with the same model
            # the events of that (a file, a model, documents changed) consumed by a runtime with
            # no functions, so that a side's runtime finds only the event it is timed on
            with Runtime(ws, Functions()) as runtime:
                runtime.wait_idle(600)
        for r in range(args.rounds):
            for engine in alternated(ENGINES, r):
                copy = root / f"ws-{engine}-{r}"
                shutil.copytree(root / "ws", copy)
                # each side in its own process: a runtime's DBOS is one per process
                runs[engine].append(child_result(__file__, "--child", str(copy), engine))
                print(f"round {r} {engine}: {runs[engine][-1]}", flush=True)
                shutil.rmtree(copy)
    speedup = median(
        paired([x["seconds"] for x in runs["local"]], [x["seconds"] for x in runs["processes"]])
    )
    rows = [[e, median([x["seconds"] for x in got]), got[0]["embedded"]] for e, got in runs.items()]
    print(table(["engine", "seconds (median)", "documents embedded"], rows))
    print(f"\nprocesses ÷ local: {speedup:.2f}× faster (median of rounds)")
    write_result(
        f"runtime_engines_{args.docs}", {"docs": args.docs, "runs": runs, "speedup": speedup}
    )


if __name__ == "__main__":
    main()
