"""`embedlake serve` as a real uvicorn process on loopback: the docs' curl examples, and publish and
rollback (from the API and from the CLI) during a stream of searches, with no failed request."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from embedlake.cli.releases import register_and_build as _build_now
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import register_beir
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import ROOT, collection

ENV = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_API__RELOAD_SECONDS": "3600",  # only an announcement swaps
    "EMBEDLAKE_MAP__METHOD": "pca",
}


def cli(*args: str, env: dict[str, str] = ENV) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


class Server:
    def __init__(self, ws: Path, log: Path, *extra: str, env: dict[str, str] = ENV) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "embedlake.cli.app", "serve", str(ws)),
                    *("--port", str(self.port), "--log-level", "info", *extra),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"server not ready: {log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serve") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        register_beir(ws, collection("med"), name="med")
        first = _build_now(ws, train(ws, name="lsa-a", kind="lsa")[0])["release"]
        second = _build_now(ws, train(ws, name="lsa-b", kind="lsa", components=128)[0])["release"]
    key = json.loads(
        cli(
            "keys",
            "create",
            str(root),
            "--scope",
            "search",
            "--scope",
            "embed",
            "--scope",
            "write",
            "--json",
        )
    )["key"]
    admin = json.loads(cli("keys", "create", str(root), "--scope", "admin", "--json"))["key"]
    return {"root": root, "first": first, "second": second, "key": key, "admin": admin}


@pytest.fixture
def mine(built: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A copy of the built workspace for one test (tests publish, roll back and delete)."""
    shutil.copytree(built["root"], tmp_path / "ws")
    return {**built, "root": tmp_path / "ws"}


@pytest.fixture
def server(mine: dict[str, Any], tmp_path: Path) -> Iterator[Server]:
    srv = Server(mine["root"], tmp_path / "serve.log")
    yield srv
    srv.stop()


def _examples() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    return [b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "curl" in b]


def test_the_api_docs_curl_examples_work(mine: dict[str, Any], server: Server) -> None:
    examples = _examples()
    assert len(examples) >= 7
    env = {**os.environ, "URL": server.url, "KEY": mine["key"], "ADMIN_KEY": mine["admin"]}
    for block in examples:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, f"{block}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip(), block
    # the examples did what they say: the posted batch landed in the lake, 14 is gone
    with Workspace.open(mine["root"], environ=ENV) as ws:
        assert any(i.key.startswith("raw/tickets/api-") for i in ws.lake.list("raw/tickets/"))
        assert "14" in ws.catalog.documents.deleted_ids()


class Stream:
    """Search requests back to back on two keep-alive connections; every answer is recorded."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.answers: list[tuple[int, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(2)]

    def __enter__(self) -> Stream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/v1/search", json={"query": "kidney stones", "k": 5})
                    self.answers.append((r.status_code, r.json().get("release")))
                    if r.status_code != 200:
                        self.failures.append(r.text)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))

    def wait_for(self, release: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers and self.answers[-1][1] == release:
                return
            time.sleep(0.05)
        raise AssertionError(f"still not serving {release}: {self.answers[-3:]}")

    def wait_for_more(self, than: int, timeout: float = 30) -> None:
        """Until more than ``than`` answers came (a deadline, not a pause: on a busy machine a
        fixed pause may hold none)."""
        deadline = time.monotonic() + timeout
        while len(self.answers) <= than:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer in {timeout} s; failures: {self.failures[-3:]}")
            time.sleep(0.05)


def _hot_swaps(built: dict[str, Any], server: Server) -> list[tuple[int, str | None]]:
    admin = {"Authorization": f"Bearer {built['admin']}"}
    first, second = built["first"], built["second"]
    with Stream(server.url, built["key"]) as stream:
        stream.wait_for(second)
        # a rollback through the API of one process ...
        moved = httpx.post(f"{server.url}/v1/aliases/production/rollback", json={}, headers=admin)
        assert moved.status_code == 200 and moved.json()["to_release"] == first
        stream.wait_for(first)
        # ... and a publish from another process (the CLI), which every server must follow
        cli("publish", str(built["root"]), second, "--force")
        stream.wait_for(second)
        cli("rollback", str(built["root"]))
        stream.wait_for(first)
        served = len(stream.answers)
        stream.wait_for_more(served)  # still answering after the last swap
    assert stream.failures == []
    assert {r for _, r in stream.answers[served:]} == {first}  # no process left behind
    for _ in range(20):  # fresh connections, spread over the worker processes
        r = httpx.post(
            f"{server.url}/v1/search",
            json={"query": "kidney stones"},
            headers={"Authorization": f"Bearer {built['key']}"},
        )
        assert r.json()["release"] == first
    return stream.answers


def test_publish_and_rollback_during_a_stream_of_searches(
    mine: dict[str, Any], server: Server
) -> None:
    answers = _hot_swaps(mine, server)
    assert {status for status, _ in answers} == {200}
    assert len(answers) > 20
    metrics = httpx.get(f"{server.url}/metrics").text
    assert re.search(r'embedlake_release_swaps_total\{alias="production"\} 3\.0', metrics)
    log = server.log.read_text()
    assert mine["key"] not in log and mine["admin"] not in log


def test_two_workers_both_follow_the_alias(mine: dict[str, Any], tmp_path: Path) -> None:
    srv = Server(mine["root"], tmp_path / "serve.log", "--workers", "2")
    try:
        answers = _hot_swaps(mine, srv)
        metrics = httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.stop()
    assert {status for status, _ in answers} == {200}
    # each worker says it serves the release the alias points to now, and only that one
    serving = re.findall(r"embedlake_release_info\{([^}]*)\} 1\.0", metrics)
    assert len(serving) == 2 and all(f'release="{mine["first"]}"' in s for s in serving), metrics
    # the swaps left nothing in the log: no retired batcher collected pending, no metrics warning
    log = srv.log.read_text()
    assert "Task was destroyed" not in log and "Removal of labels" not in log, log
    # multiprocess metrics: requests of both workers add up in whichever worker answers
    total = sum(
        float(v)
        for v in re.findall(
            r'embedlake_http_requests_total\{method="POST",route="/v1/search",status="200"\} (\S+)',
            metrics,
        )
    )
    assert total >= len(answers)


def test_open_mode_refuses_to_bind_a_public_address(built: dict[str, Any]) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedlake.cli.app",
            "serve",
            str(built["root"]),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV, "EMBEDLAKE_API__AUTH": "open"},
        timeout=120,
    )
    assert proc.returncode == 2 and "loopback" in proc.stderr


def test_open_mode_answers_its_own_pages_not_other_sites(
    mine: dict[str, Any], tmp_path: Path
) -> None:
    """What a web page in the browser of the laptop tried (finding 2 of issue 19): read through a
    rebound name, roll production back with a form or an empty POST. Its own pages still work."""
    srv = Server(mine["root"], tmp_path / "serve.log", env={**ENV, "EMBEDLAKE_API__AUTH": "open"})
    rollback = f"{srv.url}/v1/aliases/production/rollback"
    try:
        rebound = httpx.get(f"{srv.url}/v1/documents/13", headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and "evil.example" in rebound.json()["detail"]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        cross_site = {**form, "Origin": "https://evil.example"}
        assert httpx.post(rollback, content=b"reason=x", headers=cross_site).status_code == 403
        assert httpx.post(rollback, content=b"reason=x", headers=form).status_code == 415
        assert httpx.post(rollback).status_code == 415  # empty, no Content-Type
        assert httpx.get(f"{srv.url}/readyz").json()["serving"] == {"production": mine["second"]}
        # the map page's own calls: JSON, from the server's origin
        own = {"Origin": srv.url}
        assert httpx.post(f"{srv.url}/v1/search", json={"query": "kidney"}, headers=own).is_success
        moved = httpx.post(rollback, json={}, headers=own)
        assert moved.status_code == 200 and moved.json()["to_release"] == mine["first"]
        page = httpx.get(f"{srv.url}/")
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        docs = httpx.get(f"{srv.url}/docs")
        assert docs.status_code == 200 and "//" not in docs.text  # no other host
        assert httpx.get(f"{srv.url}/static/vendor/swagger-ui-bundle.js").status_code == 200
    finally:
        srv.stop()


def test_serve_up_ingests_posted_documents_into_the_served_release(
    mine: dict[str, Any], tmp_path: Path
) -> None:
    """One process, the embedded default: the API writes the batch to the lake, the runtime's
    ingest and embed-new functions take it from there, and the server swaps to the release's
    rebuilt index, for the alias and for the release asked for by id."""
    srv = Server(mine["root"], tmp_path / "serve.log", "--up")
    key = {"Authorization": f"Bearer {mine['key']}"}
    query = {"query": "ureteral calculi lithotripsy outcome", "k": 3}
    try:
        before = httpx.post(f"{srv.url}/v1/search", json=query, headers=key).json()
        pinned = {**query, "release": before["release"]}
        assert httpx.post(f"{srv.url}/v1/search", json=pinned, headers=key).status_code == 200
        batch = {
            "source": "urology",
            "documents": [
                {"id": "uro-1", "text": "ureteral calculi lithotripsy outcome in adults"},
                {"id": "uro-2", "text": "ureteral calculi lithotripsy outcome in children"},
            ],
        }
        posted = httpx.post(f"{srv.url}/v1/documents", json=batch, headers=key)
        assert posted.status_code == 202
        deadline, found = time.monotonic() + 120, list[str]()
        while time.monotonic() < deadline and not {"uro-1", "uro-2"} <= set(found):
            time.sleep(0.5)
            body = httpx.post(f"{srv.url}/v1/search", json=query, headers=key).json()
            found = [h["id"] for h in body["results"]]
        assert {"uro-1", "uro-2"} <= set(found), found
        assert body["release"] == before["release"]  # same release, its index rebuilt
        again = httpx.post(f"{srv.url}/v1/search", json=pinned, headers=key).json()
        deadline = time.monotonic() + 10
        while "uro-1" not in [h["id"] for h in again["results"]] and time.monotonic() < deadline:
            time.sleep(0.3)
            again = httpx.post(f"{srv.url}/v1/search", json=pinned, headers=key).json()
        assert "uro-1" in [h["id"] for h in again["results"]]
    finally:
        srv.stop()


def test_keys_list_and_revoke_from_the_cli(mine: dict[str, Any]) -> None:
    root = str(mine["root"])
    made = json.loads(cli("keys", "create", root, "--scope", "embed", "--name", "ci", "--json"))
    listed = {k["id"]: k for k in json.loads(cli("keys", "list", root, "--json"))}
    assert listed[made["id"]]["scopes"] == ["embed"] and listed[made["id"]]["revoked_at"] is None
    assert made["key"] not in json.dumps(listed)  # only ids, never the keys
    cli("keys", "revoke", root, made["id"])
    listed = {k["id"]: k for k in json.loads(cli("keys", "list", root, "--json"))}
    assert listed[made["id"]]["revoked_at"] is not None
    again = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", "keys", "revoke", root, made["id"]],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
    )
    assert again.returncode == 2 and "revoked already" in again.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "embedlake.cli.app", "keys", "create", root, "--scope", "root"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
    )
    assert bad.returncode == 2 and "unknown scope" in bad.stderr


def test_a_client_that_never_finishes_its_headers_is_closed(
    mine: dict[str, Any], tmp_path: Path
) -> None:
    """Half a request held its connection, and one of api.max_connections, for good: four such
    sockets under max_connections 4 made every request a 503."""
    env = {
        **ENV,
        "EMBEDLAKE_API__HEADER_TIMEOUT_SECONDS": "1",
        "EMBEDLAKE_API__MAX_CONNECTIONS": "4",
    }
    srv = Server(mine["root"], tmp_path / "serve.log", env=env)
    try:
        stalled = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
            stalled.append(s)
        time.sleep(2.5)  # past the deadline
        for s in stalled:
            s.settimeout(5)
            assert s.recv(1024) == b""  # closed by the server
            s.close()
        assert httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200
        with httpx.Client() as client:  # a kept-alive connection keeps working past it
            assert client.get(f"{srv.url}/healthz").status_code == 200
            time.sleep(0.5)
            assert client.get(f"{srv.url}/healthz").status_code == 200
    finally:
        srv.stop()
