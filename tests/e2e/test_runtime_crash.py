"""kill -9 of `embedlake up` during a multi-shard embedding job: restart, and the job completes
with the result of an uninterrupted run, without redoing the shards it had finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from embedlake import Workspace
from embedlake.catalog.schema import embedding_shards
from embedlake.embeddings.vectors import read_vectors
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.searcher import Searcher
from tests.conftest import collection, documents_of, passage_texts

SHARD = 40
ENV = {
    "EMBEDLAKE_EMBED__MODEL": "minilm",
    # whole documents: the claim is resumption, and passages have their own tests (test_passages;
    # test_resume resumes a run of passages)
    "EMBEDLAKE_PASSAGES__ENABLED": "false",
    # and at any window: 128 word pieces take MiniLM half the time of 256 on these abstracts
    "EMBEDLAKE_EMBED__MAX_SEQ_LENGTH": "128",
    "EMBEDLAKE_EMBED__SHARD_SIZE": str(SHARD),
    "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.05",
    "EMBEDLAKE_RUNTIME__MAX_WORKERS": "1",
}


def _shards(ws: Workspace) -> dict[int, object]:
    with ws.catalog.connect() as conn:
        return {r.shard: r.finished_at for r in conn.execute(select(embedding_shards))}


@contextmanager
def _up(
    path: Path, log: Path, *extra: str, env: dict[str, str] = ENV
) -> Iterator[subprocess.Popen[bytes]]:
    """`embedlake up` as a child process, killed on the way out whatever the test did (a
    failed assertion must not leave a runtime running into the next test)."""
    with log.open("ab") as out:
        child = subprocess.Popen(
            [sys.executable, "-m", "embedlake.cli.app", "up", str(path), *extra],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def _wait_for_shards(ws: Workspace, child: subprocess.Popen[bytes], log: Path, n: int) -> None:
    # generous: on a 2-core machine shared with another test worker the model's first shards
    # can take minutes; the bound only stops a hung runtime from hanging the suite
    deadline = time.monotonic() + 900
    while len(_shards(ws)) < n:
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.mark.slow
def test_kill_9_during_a_multi_shard_job_then_restart(tmp_path: Path) -> None:
    lines = (collection("cranfield") / "corpus.jsonl").read_text().splitlines()[:280]
    corpus = tmp_path / "subset.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    path, log = tmp_path / "ws", tmp_path / "up.log"
    with Workspace.init(path, environ=ENV) as ws:
        resolve_model(ws, "minilm")  # registered up front, so the run is all embedding
    target = path / "lake" / "raw" / "cran" / "subset.jsonl"
    with _up(path, log) as child, Workspace.open(path, environ=ENV) as ws:
        target.parent.mkdir(parents=True)
        target.write_bytes(corpus.read_bytes())  # dropped by hand while the runtime runs
        _wait_for_shards(ws, child, log, 2)
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = _shards(ws)
        total = ws.catalog.documents.count()
        n_shards = -(-total // SHARD)
        assert 2 <= len(before) < n_shards, "the kill must land mid-job"

    with _up(path, log, "--until-idle", "--timeout", "900") as restarted:
        assert restarted.wait(timeout=1000) == 0, log.read_text()

    with Workspace.open(path, environ=ENV) as ws:
        after = _shards(ws)
        assert len(after) == n_shards
        assert {n: after[n] for n in before} == before  # finished shards were not redone
        statuses = {i.function: i.status for i in ws.catalog.events.invocations()}
        assert {"ingest", "embed-new"} <= set(statuses)
        assert set(statuses.values()) == {"succeeded"}
        searcher = Searcher(ws)
        ids, vectors = read_vectors(ws, searcher.model)  # passages: a long document has several
        assert searcher.record.n_vectors == len(ids) and len(documents_of(ids)) == total
        encoder = artifacts.load_encoder(ws, searcher.model)
        # the uninterrupted result, for a sample across the shards (as test_resume): encoding
        # all 280 again was a third of the test's CPU time
        rows = list(range(0, len(ids), 7))
        expected = encoder.encode(passage_texts(ws, [ids[r] for r in rows]))
        assert np.allclose(vectors[rows], expected, atol=1e-4)


@pytest.mark.slow
def test_kill_9_during_a_release_build_then_restart(tmp_path: Path) -> None:
    from embedlake.encoders.sentence_transformers import KIND, builtin_path
    from embedlake.ingest import ingest_path
    from embedlake.models import artifacts

    lines = (collection("cranfield") / "corpus.jsonl").read_text().splitlines()[:280]
    corpus = tmp_path / "subset.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    path, log = tmp_path / "ws", tmp_path / "up.log"
    env = {**ENV, "EMBEDLAKE_EMBED__MODEL": "lsa"}
    # the serving-form choice has its own tests (test_release_forms): here the release serves
    # the model itself, so the time to the first shards is the build's, not the forms' timing
    runtime_env = {**ENV, "EMBEDLAKE_SERVING__FORMS": "[]"}
    with Workspace.init(path, environ=env) as ws:
        ingest_path(ws, corpus)
        # a model delivered into the lake (as one trained elsewhere would be): its manifest's
        # arrival is an event the runtime handles when it starts
        prefix, _ = artifacts.write_folder(ws, builtin_path(), name="mini", kind=KIND)
    with _up(path, log, env=runtime_env) as child, Workspace.open(path, environ=env) as ws:
        _wait_for_shards(ws, child, log, 2)
        child.send_signal(signal.SIGKILL)
        child.wait()
        before = _shards(ws)
        [building] = ws.catalog.releases.all()
        assert building.status == "building"
        assert ws.catalog.releases.alias("production") is None  # nothing half-built is live
    with _up(path, log, "--until-idle", "--timeout", "900", env=runtime_env) as restarted:
        assert restarted.wait(timeout=1000) == 0, log.read_text()
    with Workspace.open(path, environ=env) as ws:
        after = _shards(ws)
        assert {n: after[n] for n in before} == before  # resumed, not redone
        [release] = ws.catalog.releases.all()
        assert release.status == "published" and release.id == building.id
        assert ws.catalog.releases.alias("production") == release.id
        assert release.snapshot["documents"] == ws.catalog.documents.count()
        searcher = Searcher(ws)
        assert searcher.model.name == "mini", searcher.model
        assert len(documents_of(searcher.index.ids())) == 280
        assert f"{prefix}/manifest.json" in {o.key for o in ws.lake.list(prefix)}
