"""The same pipeline with heavy steps in worker processes (``[runtime] engine = "processes"``):
tasks run outside the runtime's process, give the vectors of in-process embedding, and a worker
that dies mid-shard costs a retry, not the job."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedlake import Workspace
from embedlake.embeddings.vectors import read_vectors
from embedlake.machine import cores
from embedlake.models import artifacts
from embedlake.runtime import Runtime
from embedlake.runtime.engines import open_engine
from embedlake.runtime.processes import ProcessEngine
from embedlake.search.searcher import Searcher
from tests.conftest import collection, documents_of, passage_texts
from tests.integration.test_runtime import FAST, _drop
from tests.integration.test_runtime_ray import run_dying_job

PROCESSES = {
    **FAST,
    "EMBEDLAKE_RUNTIME__ENGINE": "processes",
    "EMBEDLAKE_EMBED__SHARD_SIZE": "300",
}


def process_id(ws: Workspace, item: int) -> tuple[int, int, str]:
    """The process this task ran in, its item, and the workspace it was given."""
    return os.getpid(), item, str(ws.settings.workspace)


def test_tasks_run_in_worker_processes_that_open_the_workspace(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", environ=PROCESSES) as ws:
        engine = open_engine(ws.settings, ws)
        try:
            assert isinstance(engine, ProcessEngine)
            assert engine.size == min(cores(), ws.settings.runtime.max_workers)
            ran = [engine.run(f"{__name__}:process_id", n) for n in range(6)]
        finally:
            engine.close()
    pids = {pid for pid, _, _ in ran}
    assert os.getpid() not in pids and 1 <= len(pids) <= engine.size
    assert [n for _, n, _ in ran] == list(range(6))
    assert {folder for _, _, folder in ran} == {str(ws.settings.workspace)}


def test_a_dropped_file_is_embedded_in_worker_processes(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", environ=PROCESSES) as ws:
        with Runtime(ws) as runtime:
            _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
            assert runtime.wait_idle(300)
            assert isinstance(runtime.engine, ProcessEngine)
        assert {i.status for i in ws.catalog.events.invocations()} == {"succeeded"}
        searcher = Searcher(ws)
        ids, vectors = read_vectors(ws, searcher.model)  # passages of the documents
        assert searcher.record.n_vectors == len(ids) and len(documents_of(ids)) == 1033
        expected = artifacts.load(ws, searcher.model).encode(passage_texts(ws, ids[:20]))
        assert np.allclose(vectors[:20], expected, atol=1e-5)  # same vectors as in-process


def test_a_worker_dying_mid_shard_costs_a_retry_not_the_job(tmp_path: Path) -> None:
    """Shards 0 and 2 kill their process on a first attempt (``die_once_then_embed``): the pool
    breaks, the tasks running in it fail and are retried in a fresh pool, and the job succeeds
    with every shard embedded once (``run_dying_job`` checks the job and the vectors)."""
    markers = tmp_path / "markers"
    markers.mkdir()
    with Workspace.init(tmp_path / "ws", environ=PROCESSES) as ws:
        engine, pids = run_dying_job(ws, markers)
    assert isinstance(engine, ProcessEngine)
    for n in ("0", "2"):  # died once, then ran again in another process
        assert len(pids[n]) >= 2 and pids[n][0] != pids[n][-1]
    assert str(os.getpid()) not in {p for ran in pids.values() for p in ran}
