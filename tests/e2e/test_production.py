"""The production stack end to end, as separate processes: PostgreSQL (catalog, runtime queue),
an S3 lake (moto's server over HTTP) and Ray; files written straight into the bucket, workers and
API processes sharing one database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from embedlake import Workspace
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.ingest import ingest_path
from embedlake.training.train import train
from tests.conftest import collection, production_environ
from tests.e2e.test_serve import Server, cli
from tests.servers import S3

FAST = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_MAP__METHOD": "pca",
    "EMBEDLAKE_API__AUTH": "open",
    "EMBEDLAKE_API__RELOAD_SECONDS": "3600",  # only an announcement swaps
    "EMBEDLAKE_RUNTIME__POLL_INTERVAL": "0.05",
}


class Worker:
    """`embedlake up` in its own process."""

    def __init__(self, ws: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "embedlake.cli.app", "up", str(ws), "-v"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.log.read_text()


def until(what: str, check: Callable[[], bool], seconds: float, *logs: Path) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
            pytest.fail(f"timed out waiting for {what}\n{tails}")
        time.sleep(0.5)


def _put(s3: S3, env: dict[str, str], key: str, body: bytes) -> None:
    """A file written into the lake by another program (boto3), not through embedlake."""
    bucket, _, prefix = env["EMBEDLAKE_LAKE__URL"][len("s3://") :].partition("/")
    s3.client().put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)


@pytest.fixture
def stack(postgres: object, s3: object) -> Iterator[tuple[dict[str, str], S3]]:
    assert isinstance(s3, S3)
    yield {**FAST, **production_environ(postgres, s3)}, s3


def test_the_full_chain_on_postgres_s3_and_ray(
    stack: tuple[dict[str, str], S3], tmp_path: Path
) -> None:
    """ingest → embed → index → a trained model's release → gate → publish → search over HTTP."""
    env, s3 = stack
    env = {**env, "EMBEDLAKE_RUNTIME__ENGINE": "ray"}
    ws = tmp_path / "ws"
    cli("init", str(ws), env=env)
    worker = Worker(ws, env, tmp_path / "up.log")
    server: Server | None = None
    try:
        _put(s3, env, "raw/med/corpus.jsonl", (collection("med") / "corpus.jsonl").read_bytes())
        with Workspace.open(ws, environ=env) as w:
            until(
                "the corpus ingested, embedded and indexed",
                lambda: w.catalog.documents.count() == 1033 and _indexed(w) == 1033,
                300,
                worker.log,
            )
        trained = json.loads(
            cli("train", str(ws), "--name", "lsa-prod", "--kind", "lsa", "--json", env=env)
        )
        with Workspace.open(ws, environ=env) as w:
            until(
                "the release published",
                lambda: w.catalog.releases.alias("production") is not None,
                300,
                worker.log,
            )
            release = w.catalog.releases.get(w.catalog.releases.alias("production") or "")
            assert release.status == "published"
            assert w.catalog.registry.model_by_id(release.model_id).name == "lsa-prod"
        assert trained["model"].startswith("lsa-prod")
        server = Server(ws, tmp_path / "serve.log", "--role", "search", env=env)
        answer = httpx.post(
            f"{server.url}/v1/search", json={"query": "kidney failure", "k": 5}, timeout=30
        ).json()
        assert answer["release"] == release.id and len(answer["results"]) == 5
    finally:
        if server is not None:
            server.stop()
        log = worker.stop()
    assert "compute engine: ray" in log
    assert "stopping: interrupted invocations resume" in log  # a graceful stop, with Ray too


def _indexed(ws: Workspace) -> int:
    try:
        return ws.catalog.registry.latest_index().n_vectors
    except Exception:
        return 0


def test_two_workers_and_two_api_processes_share_one_postgres(
    stack: tuple[dict[str, str], S3], tmp_path: Path
) -> None:
    env, s3 = stack
    ws = tmp_path / "ws"
    with Workspace.init(ws, environ=env) as w:
        ingest_path(w, collection("med"))
        first = _build_now(w, train(w, name="lsa-a", kind="lsa", components=64)[0])["release"]
        second = _build_now(w, train(w, name="lsa-b", kind="lsa", components=32)[0])["release"]
        assert w.catalog.releases.alias("production") == first
    logs = [tmp_path / f"up-{n}.log" for n in (1, 2)]
    workers = [
        Worker(ws, {**env, "EMBEDLAKE_RUNTIME__EXECUTOR_ID": f"worker-{n}"}, log)
        for n, log in zip((1, 2), logs, strict=True)
    ]
    servers: list[Server] = []
    try:
        servers = [Server(ws, tmp_path / f"serve-{n}.log", env=env) for n in (1, 2)]
        # a burst of files from outside: both workers see every one, each is handled once
        for n in range(20):
            rows = "".join(
                json.dumps({"_id": f"burst-{n}-{i}", "text": f"burst document {n} {i} kidney"})
                + "\n"
                for i in range(5)
            )
            _put(s3, env, f"raw/burst/file-{n:02d}.jsonl", rows.encode())
        with Workspace.open(ws, environ=env) as w:

            def burst_ingests() -> list[Any]:
                return [
                    r
                    for r in w.catalog.events.invocations(function="ingest")
                    if w.catalog.events.get(r.event_id).subject.startswith("raw/burst/")
                ]

            def handled() -> bool:
                runs = burst_ingests()
                return len(runs) == 20 and all(r.status == "succeeded" for r in runs)

            until("the burst ingested", handled, 300, *logs)
            ingests = burst_ingests()
            assert {r.attempts for r in ingests} == {1}
            assert len({r.event_id for r in ingests}) == 20
            assert w.catalog.documents.count() == 1033 + 100
        # publish in a third process: both API processes swap to the new release
        cli("publish", str(ws), second, "--force", "--reason", "e2e", env=env)
        for server in servers:
            until(
                f"{server.url} serving {second}",
                lambda s=server: _served(s) == second,  # type: ignore[misc]
                60,
                server.log,
            )
        both = {_served(s) for s in servers}
        assert both == {second}
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.stop()
    # both workers took part: DBOS's queues on PostgreSQL hand each invocation to one of them
    with Workspace.open(ws, environ=env) as w, w.catalog.engine.connect() as conn:
        took = dict(
            conn.execute(
                text(
                    "SELECT executor_id, count(*) FROM dbos.workflow_status "
                    "WHERE name = 'embedlake.invoke' GROUP BY executor_id"
                )
            ).all()
        )
    assert set(took) == {"worker-1", "worker-2"}, took


def _served(server: Server) -> Any:
    body = httpx.post(f"{server.url}/v1/search", json={"query": "kidney", "k": 1}, timeout=30)
    return body.json().get("release")
