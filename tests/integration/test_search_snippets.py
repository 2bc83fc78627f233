"""Titles and snippets of hits held in memory (search/snippets.py): the same results as the
catalog gives, deletions and updates followed at once (by this process or another), and
``/v1/search`` answering exactly what the searcher answers in process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedlake.api import create_app
from embedlake.catalog.documents import Document
from embedlake.embeddings.batch import embed
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.search.build import build_index
from embedlake.search.searcher import Hit, Searcher
from embedlake.search.snippets import Snippets, snippet
from embedlake.workspace import Workspace
from tests.conftest import collection

ENV = {"EMBEDLAKE_EMBED__MODEL": "lsa"}
QUERIES = ["kidney stones", "blood pressure in children", "cancer of the lung", "heart surgery"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("snippets") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        record = resolve_model(ws, "lsa")
        embed(ws, record, artifacts.load_encoder(ws, record))
        build_index(ws, record)
    return root


@pytest.fixture
def root(template: Path, tmp_path: Path) -> Path:
    shutil.copytree(template, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def searcher(root: Path) -> Iterator[Searcher]:
    with Workspace.open(root, environ=ENV) as ws:
        found = Searcher(ws)
        found.snippets.reload()
        yield found


def _from_catalog(searcher: Searcher, vectors: Any, k: int = 10) -> list[list[Hit]]:
    """The same search with the titles and snippets read from the catalog (no store)."""
    store = searcher.snippets
    searcher.snippets = Snippets(searcher._ws.catalog.engine, None)
    try:
        return searcher.search_vectors(vectors, k)
    finally:
        searcher.snippets = store


def _query_vectors(searcher: Searcher) -> np.ndarray:
    return np.asarray(searcher.encode(QUERIES), dtype=np.float32)


def test_hits_from_memory_equal_hits_from_the_catalog(searcher: Searcher) -> None:
    assert searcher.snippets.enabled
    vectors = _query_vectors(searcher)
    assert searcher.snippets.shown(["1"]) is not None  # current: answered from memory
    in_memory = searcher.search_vectors(vectors, 10)
    assert in_memory == _from_catalog(searcher, vectors)
    assert all(len(hits) == 10 for hits in in_memory)
    doc = searcher._ws.catalog.documents.get(in_memory[0][0].id)
    assert in_memory[0][0].title == doc.title
    assert in_memory[0][0].snippet == snippet(doc.text)


def test_a_deletion_by_another_process_is_followed_at_once(searcher: Searcher, root: Path) -> None:
    vectors = _query_vectors(searcher)
    top = searcher.search_vectors(vectors[:1], 10)[0][0].id
    with Workspace.open(root, environ=ENV) as other:  # another catalog connection and engine
        other.catalog.documents.delete(top)
    assert searcher.snippets.shown([top]) is None  # stale: searches read the catalog
    after = searcher.search_vectors(vectors[:1], 10)[0]
    assert top not in [h.id for h in after] and len(after) == 10
    searcher.snippets.reload()  # what the background reload does
    assert searcher.snippets.shown([top]) == {}
    assert searcher.search_vectors(vectors[:1], 10)[0] == after


def test_a_deletion_in_this_process_is_followed_at_once(searcher: Searcher) -> None:
    vectors = _query_vectors(searcher)
    first = searcher.search_vectors(vectors, 10)
    gone = {hits[0].id for hits in first}
    for doc_id in gone:
        searcher._ws.catalog.documents.delete(doc_id)
    for hits in searcher.search_vectors(vectors, 10):
        assert not gone & {h.id for h in hits} and len(hits) == 10
    searcher.snippets.reload()
    assert searcher.search_vectors(vectors, 10) == _from_catalog(searcher, vectors)


def test_an_updated_title_is_shown_at_once(searcher: Searcher) -> None:
    vectors = _query_vectors(searcher)
    hit = searcher.search_vectors(vectors[:1], 10)[0][0]
    old = searcher._ws.catalog.documents.get(hit.id)
    new = Document(old.id, old.source, "A new title", "Changed text. " + old.text, old.metadata)
    searcher._ws.catalog.documents.upsert([new])
    shown = {h.id: h for h in searcher.search_vectors(vectors[:1], 10)[0]}
    assert shown[hit.id].title == "A new title"
    assert shown[hit.id].snippet.startswith("Changed text.")
    searcher.snippets.reload()
    again = {h.id: h for h in searcher.search_vectors(vectors[:1], 10)[0]}
    assert again[hit.id] == shown[hit.id]


def test_the_store_reloads_itself_in_the_background(searcher: Searcher) -> None:
    store = searcher.snippets
    store._not_before = 0.0  # no wait between reloads here
    searcher._ws.catalog.documents.delete("1")
    assert store.shown(["1", "2"]) is None  # starts the reload
    with store._reloading:  # held by the reload until it is done
        pass
    shown = store.shown(["1", "2"])
    assert shown is not None and list(shown) == ["2"]


def test_a_catalog_without_a_cheap_change_check_is_always_read(ws: Workspace) -> None:
    from sqlalchemy import create_engine

    store = Snippets.of(create_engine("sqlite://"))
    assert not store.enabled and store.shown(["a"]) is None


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def client(root: Path) -> Iterator[tuple[TestClient, Searcher]]:
    with Workspace.open(root, environ=ENV) as ws, TestClient(create_app(ws, follow=False)) as c:
        c.headers["Authorization"] = f"Bearer {ws.catalog.keys.create(['admin'], 'test')[0]}"
        searcher = c.app.state.serving.get().searcher  # type: ignore[attr-defined]
        searcher.snippets.reload()
        yield c, searcher


def _hits(hits: list[Hit]) -> list[dict[str, Any]]:
    return [vars(h) for h in hits]


def test_results_by_http_equal_the_results_in_process(client: tuple[TestClient, Searcher]) -> None:
    c, searcher = client
    vectors = _query_vectors(searcher)
    for query, vector in zip(QUERIES, vectors, strict=True):
        body = {"vector": vector.tolist(), "model": searcher.model.ref, "k": 7}
        by_vector = c.post("/v1/search", json=body)
        assert by_vector.status_code == 200, by_vector.text
        expected = _hits(searcher.search_vectors(vector[None, :], 7)[0])
        got = by_vector.json()["results"]
        assert [h["id"] for h in got] == [h["id"] for h in expected]
        for g, e in zip(got, expected, strict=True):
            assert g["score"] == pytest.approx(e["score"], abs=1e-6)
            assert {f: g[f] for f in ("title", "snippet", "source")} == {
                f: e[f] for f in ("title", "snippet", "source")
            }
        by_text = c.post("/v1/search", json={"query": query, "k": 7})
        assert by_text.json()["results"] == _hits(searcher.search(query, 7))


def test_a_document_deleted_over_http_never_comes_back(client: tuple[TestClient, Searcher]) -> None:
    c, searcher = client
    body = {"query": QUERIES[0], "k": 5}
    top = c.post("/v1/search", json=body).json()["results"][0]["id"]
    assert c.delete(f"/v1/documents/{top}").status_code == 200
    for _ in range(3):  # before, during and after the store's reload
        assert top not in [h["id"] for h in c.post("/v1/search", json=body).json()["results"]]
        searcher.snippets.reload()


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (b'{"vector": [1, 2', "body"),
        (b'{"vector": [1, NaN], "model": "m@1"}', "vector"),
        (b'{"vector": [1, "a"], "model": "m@1"}', "vector"),
        (b'{"vector": [], "model": "m@1"}', "vector"),
        (b'{"vector": [1, 2]}', "model"),
        (b'{"query": "a", "vector": [1], "model": "m@1"}', "exactly one"),
        (b'{"query": "a", "k": 0}', "k"),
        (b'{"query": "a", "extra": 1}', "extra"),
        (b"[]", "body"),
        (b"", "body"),
    ],
)
def test_a_bad_body_is_a_validation_problem(
    client: tuple[TestClient, Searcher], raw: bytes, where: str
) -> None:
    c, _ = client
    response = c.post("/v1/search", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = json.loads(response.content)
    assert problem["type"].endswith("validation") and where in problem["detail"], problem
