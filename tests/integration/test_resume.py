"""Batch inference killed mid-way (SIGKILL) resumes at the shard where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from embedlake import Workspace
from embedlake.catalog.schema import embedding_shards
from embedlake.embeddings.batch import chunking_for, embed
from embedlake.embeddings.vectors import read_vectors
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from tests.conftest import collection, documents_of, passage_texts

SHARD = 25  # 8 shards of the 200 documents: room for the kill to land mid-run


def _shards(ws: Workspace) -> dict[int, tuple[str, object]]:
    with ws.catalog.connect() as conn:
        rows = conn.execute(select(embedding_shards))
        return {r.shard: (r.key, r.finished_at) for r in rows}


@pytest.mark.slow
def test_killed_embedding_resumes_without_redoing_finished_shards(tmp_path: Path) -> None:
    lines = collection("cranfield").joinpath("corpus.jsonl").read_text().splitlines()[:200]
    corpus = tmp_path / "subset.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    env = {"EMBEDLAKE_EMBED__SHARD_SIZE": str(SHARD)}
    path = tmp_path / "ws"
    with Workspace.init(path, environ=env) as ws:
        ingest_path(ws, corpus)
        record = resolve_model(ws, "minilm")  # registered here so the child only embeds
        total = ws.catalog.documents.count()
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "embedlake.cli.app",
                "embed",
                str(path),
                "--model",
                "minilm",
                "--json",
            ],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with Workspace.open(path, environ=env) as ws:
            # generous: the bound only stops a hung child from hanging the suite
            deadline = time.monotonic() + 900
            while len(_shards(ws)) < 2:
                assert child.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no shard finished in 900 s"
                time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)  # also when the wait failed: no child outlives the test
        child.wait()
    with Workspace.open(path, environ=env) as ws:
        before = _shards(ws)
        n_shards = -(-total // SHARD)
        assert 2 <= len(before) < n_shards, "the kill must land mid-run"
        chunker = chunking_for(ws, record).key
        run = ws.catalog.registry.open_run(record.id, chunker)
        assert run is not None and run.status == "running"

        encoder = artifacts.load_encoder(ws, record)
        report = embed(ws, record, encoder)
        assert report.resumed and report.run_id == run.id
        assert report.embedded == total - sum(min(SHARD, total - n * SHARD) for n in before)
        after = _shards(ws)
        assert len(after) == n_shards
        assert {n: after[n] for n in before} == before  # finished shards were not redone
        assert ws.catalog.registry.open_run(record.id, chunker) is None

        ids, vectors = read_vectors(ws, record)
        assert len(documents_of(ids)) == total
        sample = ids[:: max(1, len(ids) // 25)]
        expected = encoder.encode(passage_texts(ws, sample))
        got = vectors[[ids.index(d) for d in sample]]
        assert np.allclose(got, expected, atol=1e-4)
        assert json.loads(ws.lake.get(f"{record.prefix}/manifest.json"))["dim"] == 384
