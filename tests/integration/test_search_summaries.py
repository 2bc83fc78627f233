"""Titles and snippets of search results held in memory by a serving process (search/summaries.py):
served from memory while the catalog is unchanged, and never showing a document deleted (or the
old title of one changed) before the search began, whoever made the change: this process, a
second workspace, or another process (the CLI). The cache's bound holds. On PostgreSQL there is
no cheap exact change signal, and every search reads the catalog."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from embedlake.api import create_app
from embedlake.api.routes.search import INLINE_MAX_SECONDS
from embedlake.catalog import open_catalog
from embedlake.catalog.changes import watch
from embedlake.catalog.documents import Document
from embedlake.embeddings.batch import embed
from embedlake.ingest import delete_document, ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.summaries import Summaries
from embedlake.workspace import Workspace
from tests.conftest import write_jsonl

ENV = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_EMBED__LSA_COMPONENTS": "8",
}
TOPICS = ["kidney stones", "heart failure", "lung cancer", "bone fracture", "skin rash"]
ROWS = [
    {"_id": f"d{i}", "title": f"{TOPICS[i % 5]} {i}", "text": f"{TOPICS[i % 5]} case {i} " * 3}
    for i in range(40)
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Any, TestClient]]:
    """A workspace with an LSA index over 40 documents, served in process."""
    root = tmp_path / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, write_jsonl(tmp_path / "docs.jsonl", ROWS), source="docs")
        record = resolve_model(ws, "lsa")
        embed(ws, record, artifacts.load_encoder(ws, record))
        build_index(ws, record)
    with Workspace.open(root, environ=ENV) as ws:
        key = ws.catalog.keys.create(["admin"], "test")[0]
        app = create_app(ws, follow=False)
        with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
            yield root, app, client


def _search(client: TestClient, **body: Any) -> dict[str, str]:
    response = client.post("/v1/search", json={"k": 20, **body})
    assert response.status_code == 200, response.text
    return {h["id"]: h["title"] for h in response.json()["results"]}


def test_deletes_and_changes_from_anywhere_show_at_once(served: Any, tmp_path: Path) -> None:
    root, app, client = served
    summaries: Summaries = app.state.serving.summaries
    vector = client.post("/v1/embed", json={"texts": ["kidney stones"]}).json()
    by_vector = {"vector": vector["vectors"][0], "model": vector["model"]}
    first = _search(client, query="kidney stones")
    assert {"d0", "d5", "d10"} <= set(first)
    assert _search(client, query="kidney stones") == first  # the second time from memory
    assert len(summaries) >= len(first)
    assert {"d0", "d5", "d10"} <= set(_search(client, **by_vector))

    with Workspace.open(root, environ=ENV) as other:  # a second workspace: its own connections
        delete_document(other, "d0")
        other.catalog.documents.upsert([Document("d5", "docs", "renamed", "kidney stones")])
    assert "d0" not in _search(client, query="kidney stones")
    assert "d0" not in _search(client, **by_vector)
    assert _search(client, query="kidney stones")["d5"] == "renamed"

    # another process: the CLI, as a user deletes a document while the API serves
    cli = [sys.executable, "-m", "embedlake.cli.app", "delete", str(root), "d10"]
    done = subprocess.run(
        cli, capture_output=True, text=True, env={**os.environ, **ENV}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "d10" not in _search(client, query="kidney stones")
    assert "d10" not in _search(client, **by_vector)
    neighbours = client.get("/v1/documents/d15/neighbours?k=20").json()["results"]
    assert {"d0", "d10"}.isdisjoint(h["id"] for h in neighbours)

    # this process's own delete, through the API
    assert client.delete("/v1/documents/d15").status_code == 200
    assert "d15" not in _search(client, query="kidney stones")
    assert "d15" not in _search(client, query="kidney stones", mode="hybrid")


def test_the_bound_holds_and_results_stay_whole(served: Any) -> None:
    root, _, _ = served
    with Workspace.open(root, environ=ENV) as ws:
        documents = ws.catalog.documents
        summaries = Summaries(documents, watch(ws.catalog.engine), capacity=3)
        ids = [f"d{i}" for i in range(12)] + ["nope"]
        for _ in range(2):
            found = summaries.get(ids)
            assert set(found) == set(ids) - {"nope"}
            assert found["d7"].title == "lung cancer 7"
            assert len(summaries) == 3
        assert set(summaries.get(["d11", "nope"])) == {"d11"}  # the most recent, kept
        summaries.close()


def test_postgresql_reads_the_catalog_every_time(postgres: Any) -> None:
    url = postgres.database()
    catalog, other = open_catalog(url), open_catalog(url)
    try:
        catalog.migrate()
        catalog.documents.upsert([Document(f"p{i}", "s", f"title {i}", "text") for i in range(3)])
        assert watch(catalog.engine) is None
        summaries = Summaries(catalog.documents, watch(catalog.engine), capacity=100)
        assert set(summaries.get(["p0", "p1", "p2"])) == {"p0", "p1", "p2"}
        other.documents.delete("p1")
        assert set(summaries.get(["p0", "p1", "p2"])) == {"p0", "p2"}
    finally:
        catalog.engine.dispose()
        other.engine.dispose()


def test_bodies_read_as_the_standard_library_reads_them(served: Any) -> None:
    """The search routes parse JSON with pydantic's parser (api/fastjson.py); what it refuses
    is read by ``json.loads``, so errors and a byte order mark are as before, and a lone
    surrogate (which only ``json.loads`` takes) is refused as the body is read."""
    _, _, client = served
    post = lambda raw: client.post(  # noqa: E731
        "/v1/search", content=raw, headers={"Content-Type": "application/json"}
    )
    broken = post(b'{"query": "kidney", "k": 3,}')
    assert broken.status_code == 422, broken.text
    assert "error at character 27" in broken.json()["detail"]  # where json.loads stops
    nan = post(b'{"vector": [NaN, 1.0], "model": "lsa@x", "k": 3}')
    assert nan.status_code == 422 and "finite" in nan.text
    with_bom = post('\ufeff{"query": "kidney stones", "k": 3}'.encode())
    assert with_bom.status_code == 200 and len(with_bom.json()["results"]) == 3
    surrogate = post(b'{"query": "kidney \\ud800 stones", "k": 3}')
    assert surrogate.status_code == 422 and "lone surrogate" in surrogate.text  # refused on read


def test_a_slow_kind_of_search_runs_on_the_threads(served: Any) -> None:
    """Each kind of search keeps a moving average of its calls' seconds; above
    ``INLINE_MAX_SECONDS`` it leaves the event loop, and is measured there until quick again."""
    _, app, client = served
    seconds: dict[str, float] = app.state.search_seconds
    vector = client.post("/v1/embed", json={"texts": ["heart failure"]}).json()
    by_vector = {"vector": vector["vectors"][0], "model": vector["model"]}
    quick = _search(client, **by_vector)
    assert "search_vectors" in seconds and "search_many" not in seconds
    seconds["search_vectors"] = 1000 * INLINE_MAX_SECONDS  # as if its calls had been slow
    assert _search(client, **by_vector) == quick  # on a search thread: the same answer
    assert seconds["search_vectors"] < 1000 * INLINE_MAX_SECONDS  # and measured there
    assert _search(client, query="heart failure")
    assert "search_many" in seconds
