"""The same pipeline with heavy steps on a real local Ray (started by the engine, 2 CPUs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray

from embedlake import Workspace
from embedlake.batch import read_vectors
from embedlake.encoders import artifacts
from embedlake.runtime import Runtime
from embedlake.serving import Searcher
from tests.conftest import collection
from tests.integration.test_runtime import FAST, _drop


@pytest.fixture
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_dropped_file_is_embedded_by_ray_tasks(tmp_path: Path, local_ray: None) -> None:
    env = {**FAST, "EMBEDLAKE_RUNTIME__ENGINE": "ray", "EMBEDLAKE_EMBED__SHARD_SIZE": "300"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        with Runtime(ws) as runtime:
            _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
            assert runtime.wait_idle(300)
            assert runtime.engine is not None and runtime.engine.name == "ray"
            assert getattr(runtime.engine, "submitted", 0) == 4  # 1033 documents, shards of 300
        assert {i.status for i in ws.catalog.events.invocations()} == {"succeeded"}
        searcher = Searcher(ws)
        assert searcher.record.n_vectors == 1033
        ids, vectors = read_vectors(ws, searcher.model)
        docs = ws.catalog.documents.get_many(ids[:20])
        expected = artifacts.load(ws, searcher.model).encode([docs[d].full_text for d in ids[:20]])
        assert np.allclose(vectors[:20], expected, atol=1e-5)  # same vectors as in-process
