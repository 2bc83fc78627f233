"""Shard embedding throughput: the Ray engine (local Ray, actor pool) vs the local engine (anchor).

Both sides embed the same slice of a collection with MiniLM, shard by shard, through
``batch.embed_in_steps``: plan, one ``embed_shard_task`` per shard submitted to the engine from two
threads (the durable runtime's compute queue, without its checkpoints, the same for both sides),
finish. Each side and round uses a fresh workspace and a fresh engine; the engine is warmed first on
two shards of other documents (Ray: both actors started, model loaded in each; that cold start is
reported apart), then the timed slice is ingested and embedded.

The machine is used the same way by both: two shards at a time, one torch intra-op thread each
(Ray gives each 1-CPU actor OMP_NUM_THREADS=1, so torch runs one thread there; the local side calls
``torch.set_num_threads(1)`` and runs two engine threads). Rounds alternate the order of the sides.

Two more sides, for docs/decisions/0010-ray-engine.md (``--sides``): ``ray-tasks``, the engine this
one replaced (a Ray task per shard, workspace and models cached per worker process), and
``ray-tasks-fresh``, the same with ``max_calls=1``: what Ray does by default with a task declared
with ``num_gpus`` (a new worker process per task, so a model load per shard).

    .venv/bin/python bench/ray_engine.py [--collection npl] [--limit 3000] [--shard 250] [--rounds 2]
                                         [--sides local,ray,ray-tasks,ray-tasks-fresh]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ray
import torch

from embedlake import Workspace
from embedlake.config import Settings
from embedlake.embeddings.batch import embed_in_steps
from embedlake.ingest import ingest_path
from embedlake.models.resolve import resolve_model
from embedlake.runtime.engines import Engine, open_engine, resolve_task, task_ref

from _common import DATA, median, table, write_result
from _common.corpora import write_lines
from _common.timing import alternated

TARGET = 0.15  # Ray overhead: local docs/s ÷ Ray docs/s − 1
WIDTH = 2  # shards in flight: one per core, on both sides


class EngineSteps:
    """Steps run here; a fan-out is ``engine.run`` from ``WIDTH`` threads, results in order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def step(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def map(self, name: str, fn: Callable[..., Any], items: Sequence[Any]) -> list[Any]:
        ref = task_ref(fn)
        with ThreadPoolExecutor(WIDTH) as pool:
            return list(pool.map(lambda item: self.engine.run(ref, item), items))


_workspaces: dict[str, Workspace] = {}  # per Ray worker process, for the task sides


def run_in_task(settings: Settings, ref: str, item: Any) -> Any:
    key = settings.model_dump_json()
    if key not in _workspaces:
        _workspaces[key] = Workspace.from_settings(settings)
    return resolve_task(ref)(_workspaces[key], item)


class TaskEngine:
    """The former Ray engine: one Ray task per item; ``fresh``: a new worker process for each."""

    name = "ray-tasks"

    def __init__(self, ws: Workspace, fresh: bool) -> None:
        # Imported by name, so that Ray pickles the function by reference, globals and all.
        task = importlib.import_module("ray_engine").run_in_task
        options: dict[str, Any] = {"max_retries": 3, **({"max_calls": 1} if fresh else {})}
        self._remote = ray.remote(**options)(task)
        self._settings = ws.settings

    def run(self, ref: str, item: Any) -> Any:
        return ray.get(self._remote.remote(self._settings, ref, item))

    def close(self) -> None:
        pass


def threads(ws: Workspace, item: Any) -> dict[str, Any]:
    """Where a task runs, and with how many torch threads (run through each engine)."""
    time.sleep(0.5)  # so that the two probes in flight hold two workers
    return {
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def open_side(side: str, ws: Workspace) -> Engine:
    if side.startswith("ray-tasks"):
        return TaskEngine(ws, fresh=side.endswith("fresh"))
    return open_engine(ws.settings, ws)


def one_run(side: str, root: Path, warm: Path, timed: Path, shard: int) -> dict[str, Any]:
    env = {
        "EMBEDLAKE_RUNTIME__ENGINE": "local" if side == "local" else "ray",
        "EMBEDLAKE_RUNTIME__MAX_WORKERS": str(WIDTH),
        "EMBEDLAKE_RUNTIME__WATCH": "false",
        "EMBEDLAKE_EMBED__MODEL": "minilm",
        "EMBEDLAKE_EMBED__SHARD_SIZE": str(shard),
    }
    load = os.getloadavg()[0]
    with Workspace.init(root, environ=env) as ws:
        ingest_path(ws, warm, source="warm")
        ref = resolve_model(ws, "minilm").ref
        engine = open_side(side, ws)
        try:
            steps = EngineSteps(engine)
            started = time.perf_counter()
            embed_in_steps(steps, ws, ref, "warm")  # two shards: both Ray actors start
            cold = time.perf_counter() - started
            # By name, not __main__: Ray puts this script's folder on its workers' sys.path.
            with ThreadPoolExecutor(WIDTH) as pool:
                where = list(pool.map(lambda _: engine.run("ray_engine:threads", None), [0, 1]))
            ingest_path(ws, timed, source="timed")
            started = time.perf_counter()
            count = embed_in_steps(steps, ws, ref, "timed")
            seconds = time.perf_counter() - started
        finally:
            engine.close()
    return {
        "seconds": seconds,
        "documents": count,
        "docs_per_s": count / seconds,
        "warm_up_seconds": cold,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "where": where,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collection", default="npl")
    parser.add_argument("--limit", type=int, default=3000, help="documents timed")
    parser.add_argument("--shard", type=int, default=250, help="embed.shard_size")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sides", default="local,ray", help="the first is the anchor")
    parser.add_argument("--result", default="ray_engine", help='bench/results/NAME.json; "": none')
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)  # the local side's two engine threads: one intra-op thread each
    ray.init(num_cpus=WIDTH, include_dashboard=False, log_to_driver=False)
    sides = args.sides.split(",")
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="embedlake-ray-") as tmp:
        root = Path(tmp)
        corpus = DATA / args.collection / "corpus.jsonl"
        warm = write_lines(corpus, root / "warm.jsonl", 2 * args.shard)
        timed = write_lines(corpus, root / "t.jsonl", 2 * args.shard + args.limit, 2 * args.shard)
        for n in range(args.rounds):
            for side in alternated(sides, n):
                result = one_run(side, root / f"{side}-{n}", warm, timed, args.shard)
                if result["documents"] != args.limit:
                    raise SystemExit(f"{side} embedded {result['documents']} of {args.limit}")
                runs[side].append(result)
                print(
                    f"  {side:15} {result['docs_per_s']:6.1f} docs/s ({result['seconds']:.1f} s; "
                    f"warm-up {result['warm_up_seconds']:.1f} s; load {result['load_before']:.1f}"
                    f"→{result['load_after']:.1f}; {result['where']})",
                    flush=True,
                )
    ray.shutdown()
    anchor = sides[0]
    rate = {side: median([r["docs_per_s"] for r in rs]) for side, rs in runs.items()}
    overhead = {side: rate[anchor] / rate[side] - 1 for side in sides}
    print()
    print(
        table(
            ["engine", "runs (docs/s)", "median docs/s", f"{anchor} ÷ it − 1", "warm-up (s)"],
            [
                [
                    side,
                    ", ".join(f"{r['docs_per_s']:.1f}" for r in rs),
                    rate[side],
                    f"{overhead[side]:+.3f}",
                    ", ".join(f"{r['warm_up_seconds']:.1f}" for r in rs),
                ]
                for side, rs in runs.items()
            ],
        )
    )
    if anchor == "local" and "ray" in sides:
        verdict = "met" if overhead["ray"] <= TARGET else "MISSED"
        print(f"\nRay overhead = local / ray − 1 = {overhead['ray']:+.3f} (≤ {TARGET}: {verdict})")
    if args.result:
        write_result(
            args.result,
            {
                "collection": args.collection,
                "documents": args.limit,
                "shard_size": args.shard,
                "shards_in_flight": WIDTH,
                "torch_threads_per_shard": 1,
                "anchor": anchor,
                "runs": runs,
                "docs_per_s": rate,
                "overhead_vs_anchor": overhead,
                "target": TARGET,
                "met": overhead.get("ray", float("inf")) <= TARGET if anchor == "local" else None,
            },
        )


if __name__ == "__main__":
    main()
