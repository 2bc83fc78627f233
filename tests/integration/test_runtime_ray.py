"""The same pipeline with heavy steps on a real local Ray (2 CPUs): the engine's actor pool, its
survival of a worker process that dies mid-shard, and its GPU requests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from embedlake import Workspace
from embedlake.embeddings.batch import chunking_for
from embedlake.embeddings.plan import open_run, pending_shards
from embedlake.embeddings.shards import embed_shard_task
from embedlake.embeddings.vectors import read_vectors
from embedlake.events import Event
from embedlake.functions import Functions, on_event
from embedlake.functions.context import Context
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.runtime import Runtime
from embedlake.runtime.engines import open_engine
from embedlake.runtime.ray import RayEngine
from embedlake.search.searcher import Searcher
from tests.conftest import collection, documents_of, passage_texts
from tests.integration.test_runtime import FAST, _drop

RAY = {**FAST, "EMBEDLAKE_RUNTIME__ENGINE": "ray", "EMBEDLAKE_EMBED__SHARD_SIZE": "300"}


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_dropped_file_is_embedded_by_ray_actors(tmp_path: Path, local_ray: None) -> None:
    with Workspace.init(tmp_path / "ws", environ=RAY) as ws:
        with Runtime(ws) as runtime:
            _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
            assert runtime.wait_idle(300)
            engine = runtime.engine
            assert isinstance(engine, RayEngine)
            assert engine.submitted == 4  # 1033 documents, shards of 300
            assert (engine.size, engine.gpus_per_actor) == (2, 0)  # one actor per CPU, no GPU
        assert {i.status for i in ws.catalog.events.invocations()} == {"succeeded"}
        searcher = Searcher(ws)
        ids, vectors = read_vectors(ws, searcher.model)  # passages of the documents
        assert searcher.record.n_vectors == len(ids) and len(documents_of(ids)) == 1033
        expected = artifacts.load(ws, searcher.model).encode(passage_texts(ws, ids[:20]))
        assert np.allclose(vectors[:20], expected, atol=1e-5)  # same vectors as in-process


# -- a worker process that dies mid-shard ---------------------------------------------------------

dying = Functions()
_results: dict[str, Any] = {}


def die_once_then_embed(ws: Workspace, item: tuple[str, int, int, str]) -> int:
    """Embed a shard; on an even shard's first attempt, the process dies with the model loaded
    and nothing written. Each attempt appends its process id to ``markers/shard-N.pids``."""
    model_ref, run_id, number, markers = item
    pids = Path(markers) / f"shard-{number}.pids"
    first = not pids.exists()
    with pids.open("a") as out:
        out.write(f"{os.getpid()}\n")
    if first and number % 2 == 0:
        artifacts.load(ws, ws.catalog.registry.model(model_ref))
        os._exit(1)  # no exception, no clean-up: as an OOM kill or a segfault would end it
    return embed_shard_task(ws, (model_ref, run_id, number))


def _plan(ws: Workspace, model_ref: str) -> tuple[int, list[int]]:
    model = ws.catalog.registry.model(model_ref)
    run = open_run(ws, model, chunking_for(ws, model))
    assert run is not None
    return run.id, pending_shards(ws, run)


@dying.function(on=on_event("test.embed-dying"), retries=0)
def embed_with_a_dying_worker(event: Event, ctx: Context) -> None:
    model_ref, markers = event.data["model"], event.data["markers"]
    run_id, shards = ctx.step("plan", _plan, ctx.ws, model_ref)
    items = [(model_ref, run_id, n, markers) for n in shards]
    _results["counts"] = ctx.map("embed", die_once_then_embed, items)
    _results["run"] = run_id
    ctx.step("finish", ctx.ws.catalog.registry.finish_run, run_id)


def run_dying_job(ws: Workspace, markers: Path) -> tuple[Any, dict[str, list[str]]]:
    """Run ``embed_with_a_dying_worker`` over med on a runtime of ``ws``'s engine and check that
    the job succeeded with every shard embedded once; returns the engine (closed) and each
    shard's process ids, one per attempt."""
    ingest_path(ws, collection("med") / "corpus.jsonl")
    model = resolve_model(ws, "lsa")
    live = sorted(d for d, _ in ws.catalog.documents.iter_live_hashes())
    with Runtime(ws, dying) as runtime:
        event = {"model": model.ref, "markers": str(markers)}
        ws.catalog.events.add(Event("test.embed-dying", "med", event))
        assert runtime.wait_idle(300)
        engine = runtime.engine
    [job] = ws.catalog.events.invocations(function="embed-with-a-dying-worker")
    assert (job.status, job.attempts, job.error) == ("succeeded", 1, None)
    assert _results["counts"] == [300, 300, 300, 133]
    assert ws.catalog.registry.done_shards(_results["run"]) == {0, 1, 2, 3}
    assert ws.catalog.registry.count_embedded(model.id) == 1033
    ids, vectors = read_vectors(ws, model)
    assert ids == live and vectors.shape == (1033, model.dim)
    return engine, {str(n): (markers / f"shard-{n}.pids").read_text().split() for n in range(4)}


def test_a_worker_dying_mid_shard_does_not_fail_the_job(tmp_path: Path, local_ray: None) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with Workspace.init(tmp_path / "ws", environ=RAY) as ws:
        engine, pids = run_dying_job(ws, markers)
    assert isinstance(engine, RayEngine)
    # Shards 0 and 2 ran twice, in two processes (the first died); 1 and 3 once.
    assert {n: len(p) for n, p in pids.items()} == {"0": 2, "1": 1, "2": 2, "3": 1}
    assert pids["0"][0] != pids["0"][1] and pids["2"][0] != pids["2"][1]
    # The driver sent each shard once (Ray resubmitted the two), and got each result once.
    assert engine.submitted == 4


# -- GPUs -----------------------------------------------------------------------------------------


def gpu_ids(ws: Workspace, item: None) -> list[str]:
    """The GPUs Ray gave the actor this runs in."""
    return [str(g) for g in ray.get_gpu_ids()]


@pytest.fixture(scope="module")
def ray_reporting_a_gpu() -> Iterator[None]:
    # A node that declares one GPU: Ray schedules on what nodes declare (no GPU is used here).
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize(("device", "gpus"), [("auto", 1), ("cuda", 1), ("cpu", 0)])
def test_actors_hold_a_gpu_when_the_cluster_has_one_and_the_encoder_may_use_it(
    tmp_path: Path, ray_reporting_a_gpu: None, device: str, gpus: int
) -> None:
    env = {**RAY, "EMBEDLAKE_EMBED__DEVICE": device}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        engine = open_engine(ws.settings, ws)
        try:
            assert isinstance(engine, RayEngine) and engine.gpus_per_actor == gpus
            assert engine.size == (1 if gpus else 2)  # one actor per GPU, else per CPU
            assert len(engine.run(f"{__name__}:gpu_ids", None)) == gpus
        finally:
            engine.close()


def assigned_cpus(ws: Workspace, item: None) -> float:
    """The CPUs Ray reserved for the actor this runs in."""
    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))


def test_an_actor_reserves_the_configured_cpus(tmp_path: Path, ray_reporting_a_gpu: None) -> None:
    env = {**RAY, "EMBEDLAKE_EMBED__DEVICE": "cpu", "EMBEDLAKE_RUNTIME__RAY_ACTOR_CPUS": "2"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        engine = open_engine(ws.settings, ws)
        try:
            assert isinstance(engine, RayEngine) and engine.size == 1  # 2 CPUs ÷ 2 per actor
            assert engine.run(f"{__name__}:assigned_cpus", None) == 2.0
        finally:
            engine.close()
