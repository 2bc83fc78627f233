"""Limits everywhere (issue 19): each refused before any work with a 413 that names the limit and
its ``[api]`` setting, the largest request each allows answered cheaply, and source names checked
by ingest's own rule up front.

One workspace per module (med and a few tagged documents, one LSA release), copied per test.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedlake.api import create_app
from embedlake.cli.app import app, exit_code
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.errors import TooLarge
from embedlake.ingest import ingest_path
from embedlake.ingest.pipeline import ingest_object
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import collection, write_jsonl
from tests.integration.test_api import ENV, TAGGED, _problem, _snapshot


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        ingest_path(ws, write_jsonl(root.parent / "tagged.jsonl", TAGGED), source="tagged")
        _build_now(ws, train(ws, name="lsa", kind="lsa", components=32)[0])
    return root


class Client:
    def __init__(self, ws: Workspace, client: TestClient) -> None:
        self.ws, self.client = ws, client
        self.key = ws.catalog.keys.create(["admin"], "admin")[0]

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.key}", **kw.pop("headers", {})}
        return self.client.post(path, json=body, headers=headers, **kw)

    def get(self, path: str) -> Any:
        return self.client.get(path, headers={"Authorization": f"Bearer {self.key}"})

    def search(self, **body: Any) -> Any:
        return self.post("/v1/search", body)


def _serve(template: Path, tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Client]:
    shutil.copytree(template, tmp_path / "ws")
    with (
        Workspace.open(tmp_path / "ws", environ={**ENV, **(env or {})}) as ws,
        TestClient(create_app(ws, follow=False)) as client,
    ):
        yield Client(ws, client)


@pytest.fixture
def api(template: Path, tmp_path: Path) -> Iterator[Client]:
    yield from _serve(template, tmp_path)


def _ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.text[:500]
    return {h["id"] for h in response.json()["results"]}


def test_the_largest_filter_allowed_is_answered_at_once(api: Client) -> None:
    """(finding 1) 1,000 values in a list made SQLite refuse the query, 503 'Expression tree is
    too large', after building an expression per value; 100,000 took minutes and gigabytes."""
    words = [f"w{n}" for n in range(999)]
    where = {
        "lang": [*words, "en"],
        "year": [*range(999), 1991],
        "source": [*words, "tagged"],
        "reviewed": [True, *range(998), "x"],
    }
    started = time.perf_counter()
    assert _ids(api.search(query="kidney", k=10, filter={k: where[k] for k in ("lang",)})) == {
        "t1",
        "t3",
    }
    assert _ids(api.search(query="kidney", k=10, filter=where)) == set()  # no doc has all four
    del where["reviewed"]
    assert _ids(api.search(query="kidney", filter={**where, "lang": [*words, "de"]})) == {"t2"}
    assert _ids(api.search(id="t1", filter={"source": where["source"]})) == {"t2", "t3"}
    hybrid = api.search(query="kidney stones", mode="hybrid", filter={"year": where["year"]})
    assert _ids(hybrid) == {"t2"}
    assert time.perf_counter() - started < 10  # (seconds per request before, minutes at 100k)

    started = time.perf_counter()
    attack = api.search(query="kidney", filter={"lang": [f"w{n}" for n in range(100_000)]})
    _problem(attack, 413, "100,000 values", "1,000", "api.max_filter_values")
    assert time.perf_counter() - started < 5


def test_every_limit_is_refused_before_work_with_its_setting(api: Client) -> None:
    before = _snapshot(api.ws)
    many = [f"v{n}" for n in range(1_000)]
    cases = [
        (api.search(query="x", k=1_001), "api.max_k"),
        (api.search(query="x" * 20_001), "api.max_text_chars"),
        (api.search(query="x", filter={f"f{n}": 1 for n in range(17)}), "api.max_filter_keys"),
        (api.search(query="x", filter={"a": [*many, "x"]}), "api.max_filter_values"),
        (
            api.search(query="x", filter={f"f{n}": many for n in range(5)}),
            "api.max_filter_values_total",
        ),
        (api.search(query="x", filter={"a": "x" * 1_001}), "api.max_filter_value_chars"),
        (api.search(query="x", filter={"a" * 1_001: "x"}), "api.max_filter_value_chars"),
        (api.search(id="t1", k=5_000, filter={"a": [*many, "x"]}), "api.max_k"),
        (api.post("/v1/embed", {"texts": ["x"] * 257}), "api.max_texts"),
        (api.post("/v1/embed", {"texts": ["x" * 20_001]}), "api.max_text_chars"),
        (api.get("/v1/documents/t1/neighbours?k=1001"), "api.max_k"),
    ]
    for response, setting in cases:
        _problem(response, 413, setting, "the limit is")
    # the largest allowed of each is answered
    assert api.search(query="x" * 20_000, k=1_000).status_code == 200
    full = {f"f{n}": many for n in range(3)} | {"g": ["x" * 1_000, *many[1:]]}  # 4,000 values
    assert api.search(query="x", filter=full).status_code == 200
    assert _snapshot(api.ws) == before


def test_a_body_nested_deeper_than_the_limit_is_refused_before_it_is_parsed(api: Client) -> None:
    def nested(depth: int) -> dict[str, Any]:
        """A document batch whose body nests ``depth`` levels (3 are the envelope's)."""
        inner: Any = "leaf"
        for _ in range(depth - 3):
            inner = {"a": inner}
        return {"source": "deep", "documents": [{"id": "d", "text": "t", "metadata": inner}]}

    assert api.post("/v1/documents", nested(64)).status_code == 202
    _problem(api.post("/v1/documents", nested(65)), 413, "65 levels", "api.max_json_depth")
    # 100,000 levels: Python's JSON parser would fail with a RecursionError
    deep = b'{"query": "x", "filter": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    raw = api.client.post(
        "/v1/search",
        content=deep,
        headers={"Authorization": f"Bearer {api.key}", "content-type": "application/json"},
    )
    _problem(raw, 413, "100,001 levels", "api.max_json_depth")
    # brackets inside strings are text, not nesting
    assert api.search(query="[" * 500 + "{" * 500).status_code == 200


def test_limits_are_settings(template: Path, tmp_path: Path) -> None:
    env = {
        "EMBEDLAKE_API__MAX_K": "5",
        "EMBEDLAKE_API__MAX_FILTER_VALUES": "2",
        "EMBEDLAKE_API__MAX_JSON_DEPTH": "3",
        "EMBEDLAKE_API__MAX_BODY_BYTES": "1000",
    }
    for api in _serve(template, tmp_path, env):
        assert api.search(query="kidney", k=5, filter={"lang": ["en", "de"]}).status_code == 200
        _problem(api.search(query="kidney", k=6), 413, "the limit is 5 (api.max_k)")
        _problem(api.search(query="k", k=1, filter={"lang": ["en", "de", "fr"]}), 413, "2 (api.")
        _problem(api.search(query="k", k=1, filter={"a": [[1]]}), 413, "3 (api.max_json_depth)")
        _problem(api.search(query="k" * 1_000, k=1), 413, "1,000 (api.max_body_bytes)")


@pytest.mark.parametrize("source", [".hidden", "-dash", "a b", "é", "x" * 129])
def test_a_source_name_ingest_refuses_is_refused_up_front(api: Client, source: str) -> None:
    """(finding 5) These were accepted (202), then retried and dead-lettered by the runtime."""
    before = _snapshot(api.ws)
    batch = {"source": source, "documents": [{"id": "a", "text": "b"}]}
    _problem(api.post("/v1/documents", batch), 422, "source")
    assert _snapshot(api.ws) == before


def test_a_source_name_ingest_takes_is_taken(api: Client) -> None:
    batch = {"source": "a.b_c-1", "documents": [{"id": "n1", "text": "new"}]}
    accepted = api.post("/v1/documents", batch)
    assert accepted.status_code == 202
    ingest_object(api.ws, accepted.json()["key"])
    assert api.ws.catalog.documents.get("n1").source == "a.b_c-1"


def test_a_document_over_ingests_limit_is_refused_up_front(template: Path, tmp_path: Path) -> None:
    """Not accepted (202) and quarantined later: refused before the batch is written."""
    env = {"EMBEDLAKE_INGEST__MAX_DOCUMENT_BYTES": "100"}
    for api in _serve(template, tmp_path, env):
        before = _snapshot(api.ws)
        docs = [{"id": "ok", "text": "short"}, {"id": "big", "title": "t", "text": "é" * 50}]
        _problem(
            api.post("/v1/documents", {"source": "s", "documents": docs}),
            413,
            "document 1 ('big') is 101 bytes; the limit is 100 (ingest.max_document_bytes)",
        )
        assert _snapshot(api.ws) == before
        assert not list(api.ws.lake.list("raw/s/"))


def test_the_cli_search_meets_the_same_limits(template: Path, tmp_path: Path) -> None:
    shutil.copytree(template, tmp_path / "ws")
    runner = CliRunner(env={**ENV, "EMBEDLAKE_API__MAX_K": "20"})
    search = ["search", str(tmp_path / "ws"), "kidney", "--json"]
    assert runner.invoke(app, [*search, "-k", "20"]).exit_code == 0
    over = runner.invoke(app, [*search, "-k", "21"]).exception
    assert isinstance(over, TooLarge) and "the limit is 20 (api.max_k)" in str(over)
    assert exit_code(over) == 2
    long = runner.invoke(app, ["search", str(tmp_path / "ws"), "x" * 20_001]).exception
    assert isinstance(long, TooLarge) and "(api.max_text_chars)" in str(long)
