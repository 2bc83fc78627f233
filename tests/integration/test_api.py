"""The HTTP API in process: every endpoint, every error path, auth, metrics and the hot swap.

One workspace is built per module (med ingested, two LSA releases: ``production`` on the second,
the first in its history) and copied for each test, so tests can publish, delete and ingest freely.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedlake.api import create_app, fastpath
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import register_beir
from embedlake.ingest.pipeline import ingest_object
from embedlake.releases.publish import publish
from embedlake.search import searcher as searcher_module
from embedlake.training.train import train
from embedlake.workspace import Workspace
from tests.conftest import collection, write_jsonl

ENV = {
    "EMBEDLAKE_EMBED__MODEL": "lsa",
    "EMBEDLAKE_API__KEY_CACHE_SECONDS": "0",
    "EMBEDLAKE_MAP__METHOD": "pca",
}
TAGGED = [
    {"_id": "t1", "text": "kidney stones in adults", "metadata": {"lang": "en", "year": 1990}},
    {"_id": "t2", "text": "kidney stones in children", "metadata": {"lang": "de", "year": 1991}},
    {"_id": "t3", "text": "renal failure after surgery", "lang": "en", "reviewed": True},
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("api") / "ws"
    with Workspace.init(root, environ=ENV) as ws:
        ingest_path(ws, collection("med"))
        ingest_path(ws, write_jsonl(root.parent / "tagged.jsonl", TAGGED), source="tagged")
        register_beir(ws, collection("med"), name="med")
        first = _build_now(ws, train(ws, name="lsa-a", kind="lsa")[0])["release"]
        second = _build_now(ws, train(ws, name="lsa-b", kind="lsa", components=128)[0])["release"]
        assert ws.catalog.releases.stack("production") == [first, second]
    return {"root": root, "first": first, "second": second}


class Api:
    """A TestClient over a fresh copy of the template, with one key per scope."""

    def __init__(self, ws: Workspace, client: TestClient, first: str, second: str) -> None:
        self.ws, self.client, self.first, self.second = ws, client, first, second
        self.keys = {s: ws.catalog.keys.create([s], s)[0] for s in ("search", "embed", "write")}
        self.keys["admin"] = ws.catalog.keys.create(["admin"], "admin")[0]

    def call(self, method: str, path: str, scope: str = "admin", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.keys[scope]}", **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def search(self, scope: str = "search", **body: Any) -> Any:
        return self.call("POST", "/v1/search", scope, json=body)


def _open(template: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(template["root"], root)
    return Workspace.open(root, environ={**ENV, **(env or {})})


@pytest.fixture
def api(template: dict[str, Any], tmp_path: Path) -> Iterator[Api]:
    with _open(template, tmp_path) as ws, TestClient(create_app(ws, follow=False)) as client:
        yield Api(ws, client, template["first"], template["second"])


JSON = {"content-type": "application/json"}


def _problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].startswith("urn:embedlake:error:")
    for word in words:
        assert word in body["detail"], body
    return body


def _snapshot(ws: Workspace) -> tuple[Any, ...]:
    """Everything a bad request must leave alone."""
    return (
        ws.catalog.documents.corpus_hash(),
        ws.catalog.releases.aliases(),
        sorted((i.key, i.etag) for i in ws.lake.list("")),
        len(ws.catalog.events.all()),
        [(k.key_id, k.revoked_at) for k in ws.catalog.keys.all()],
    )


# -- search ------------------------------------------------------------------------------


def test_search_by_text_vector_and_document_agree(api: Api) -> None:
    text = api.search(query="kidney failure in children", k=5).json()
    assert text["release"] == api.second and text["alias"] == "production"
    assert len(text["results"]) == 5
    assert {"id", "score", "title", "snippet", "source"} <= set(text["results"][0])
    scores = [h["score"] for h in text["results"]]
    assert scores == sorted(scores, reverse=True)

    embedded = api.call(
        "POST", "/v1/embed", "embed", json={"texts": ["kidney failure in children"]}
    )
    vector = api.search(vector=embedded.json()["vectors"][0], model=text["model"], k=5).json()
    assert [h["id"] for h in vector["results"]] == [h["id"] for h in text["results"]]

    top = text["results"][0]["id"]
    like = api.search(id=top, k=5).json()["results"]
    assert top not in [h["id"] for h in like] and len(like) == 5
    same = api.call("GET", f"/v1/documents/{top}/neighbours?k=5", "search").json()
    assert [h["id"] for h in same["results"]] == [h["id"] for h in like]


@pytest.fixture
def remembering(template: dict[str, Any], tmp_path: Path) -> Iterator[Api]:
    """``api`` whose server remembers a checked key for a minute (as it does by default)."""
    env = {"EMBEDLAKE_API__KEY_CACHE_SECONDS": "60"}
    with _open(template, tmp_path, env) as ws, TestClient(create_app(ws, follow=False)) as client:
        yield Api(ws, client, template["first"], template["second"])


def test_a_key_check_that_reads_the_catalog_runs_off_the_event_loop(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Here no key is remembered (api.key_cache_seconds = 0): every request's check reads the
    catalog, and none on the event loop, which all the process's requests and probes share."""
    keys = api.ws.catalog.keys
    verify, on_loop = keys.verify, []

    def watched(plain: str, *, pepper: bytes = b"") -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop in this thread: a worker thread
            on_loop.append(False)
        return verify(plain, pepper=pepper)

    monkeypatch.setattr(keys, "verify", watched)
    model = api.search(query="kidney").json()["model"]
    vector = api.call("POST", "/v1/embed", "embed", json={"texts": ["kidney"]}).json()["vectors"][0]
    assert api.search(vector=vector, model=model).status_code == 200  # the fast path's case
    assert api.call("GET", "/v1/releases").status_code == 200  # a route run in the pool
    assert api.search(query="kidney", scope="embed").status_code == 403  # a refusal, too
    assert on_loop == [False] * 5


def test_a_lone_search_by_vector_is_answered_before_the_router_as_the_route_answers(
    remembering: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api/fastpath.py answers the common search itself, outside every other layer, with the
    bytes and headers the route and those layers write, counted in the same metrics; any other
    search, and every refusal (the guard's, the limits', the route's), is theirs."""
    api = remembering
    state = api.client.app.state  # type: ignore[attr-defined]
    model = api.search(query="kidney").json()["model"]
    embedded = api.call("POST", "/v1/embed", "embed", json={"texts": ["kidney failure"]})
    vector = embedded.json()["vectors"][0]
    before, counted = state.fast_searches, _searches_counted(api)
    fast = api.search(vector=vector, model=model, k=7)
    assert state.fast_searches == before + 1
    assert _searches_counted(api) == counted + 1
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["x-content-type-options"] == "nosniff"

    # the same request through the route: the fast path stood aside for one request
    state.search_seconds["search_vectors"] = 1.0  # "lately slow": the route's threads run it
    routed = api.search(vector=vector, model=model, k=7)
    assert state.fast_searches == before + 1
    assert routed.content == fast.content
    assert dict(routed.headers) == dict(fast.headers)  # the security headers included
    assert _searches_counted(api) == counted + 2
    state.search_seconds["search_vectors"] = 0.0

    # what the layers outside it refuse, they refuse: a cross-origin page (the guard), a body
    # over the size limit by its Content-Length, or nested too deep (the limits)
    body = {"vector": vector, "model": model}
    post = partial(api.call, "POST", "/v1/search", "search")
    _problem(post(json=body, headers={"origin": "https://elsewhere.example"}), 403, "origin")
    plain = json.dumps(body)
    padded = plain[:-1] + ', "pad": "' + "x" * 4_000_000 + '"}'
    _problem(post(content=padded, headers=JSON), 413, "api.max_body_bytes")
    deep = plain[:-1] + ', "pad": ' + "[" * 70 + "0" + "]" * 70 + "}"
    _problem(post(content=deep, headers=JSON), 413, "api.max_json_depth")
    # a Content-Length of a Latin-1 digit ("²", which str.isdigit takes; raw bytes, as an HTTP
    # server hands them on: the test client would re-encode them): the limits' 400
    assert _raw_status(api, plain.encode(), [(b"content-length", b"\xb2")]) == 400
    # or of more digits than int() reads (4,300): the limits' 413
    assert _raw_status(api, plain.encode(), [(b"content-length", b"9" * 5000)]) == 413
    # two of them: the first is read, by the limits and the fast path alike
    two = [(b"content-length", b"9" * 20), (b"content-length", str(len(plain)).encode())]
    assert _raw_status(api, plain.encode(), two) == 413
    # and a Host whose port is one (the guard compares it with a page's origin): the guard's 403
    length = str(len(plain)).encode()
    foreign = [(b"host", b"testserver:\xb2"), (b"origin", b"http://testserver:80")]
    assert _raw_status(api, plain.encode(), [(b"content-length", length), *foreign]) == 403
    assert state.fast_searches == before + 1

    # an error on its way (outside the app's own error handling) is the app's to meet: here the
    # fast path's writing of the response fails, and the route answers
    def broken(*_: object) -> bytes:
        raise RuntimeError("a bug in the fast path")

    with monkeypatch.context() as patch:
        patch.setattr(fastpath, "response_body", broken)
        assert api.search(vector=vector, model=model, k=7).content == fast.content
    assert state.fast_searches == before + 1

    # not its case: each goes on (to the route; a text/plain body is the guard's 415)
    others = [
        api.search(vector=vector, model=model, k=7, filter={"source": "tagged"}),
        api.search(vector=vector, model=model, k=7, release=api.second),
        api.search(vector=vector, model=model, k=101),
        api.search(vector=[0.0] * len(vector), model=model),
        api.search(vector=vector, model="minilm@1"),
        api.search(vector=vector),
        api.call("POST", "/v1/search", "embed", json={"vector": vector, "model": model}),
        api.client.post("/v1/search", json={"vector": vector, "model": model}),
        api.call("POST", "/v1/search", content=json.dumps({"vector": vector, "model": model}),
                 headers={"content-type": "text/plain"}),
    ]  # fmt: skip
    assert state.fast_searches == before + 1
    assert [r.status_code for r in others] == [200, 200, 200, 400, 409, 422, 403, 401, 415]
    assert others[1].json()["release"] == api.second and others[1].json()["alias"] is None
    text = api.client.get("/metrics").text
    assert 'route="/v1/search",status="200"' in text


def _raw_status(api: Api, body: bytes, extra: list[tuple[bytes, bytes]]) -> int:
    """The status the app answers a ``POST /v1/search`` with these raw headers (they replace the
    defaults of the same name), called as an ASGI server calls it, on the test client's loop."""
    sent: list[dict[str, Any]] = []
    defaults = {b"host": b"testserver", b"content-type": b"application/json"}
    defaults[b"authorization"] = f"Bearer {api.keys['search']}".encode()
    headers = [*[(k, v) for k, v in defaults.items() if k not in dict(extra)], *extra]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/search", "raw_path": b"/v1/search", "root_path": "",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
             "server": ("testserver", 80)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    api.client.portal.call(api.client.app, scope, receive, send)  # type: ignore[union-attr]
    return int(sent[0]["status"])


def _searches_counted(api: Api) -> float:
    """The metrics' count of answered searches (200s of POST /v1/search)."""
    wanted = ('route="/v1/search"', 'method="POST"', 'status="200"')
    for line in api.client.get("/metrics").text.splitlines():
        if line.startswith("embedlake_http_requests_total{") and all(w in line for w in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_search_a_named_release_or_alias(api: Api) -> None:
    old = api.search(query="kidney", release=api.first).json()
    assert old["release"] == api.first and old["alias"] is None
    assert old["model"].startswith("lsa-a@")
    _problem(api.search(query="kidney", release="nope"), 404, "nope")
    _problem(api.search(query="kidney", alias="staging"), 404, "staging")
    _problem(api.search(query="kidney", alias="production", release=api.first), 400, "not both")


def test_filters_on_source_and_metadata_return_k_matches(api: Api) -> None:
    def ids(**where: Any) -> list[str]:
        response = api.search(query="kidney stones", k=10, filter=where)
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["results"]]

    assert sorted(ids(source="tagged")) == ["t1", "t2", "t3"]
    assert sorted(ids(lang="en")) == ["t1", "t3"]
    assert ids(year=1991) == ["t2"]
    assert ids(reviewed=True) == ["t3"]
    assert sorted(ids(lang=["en", "de"], source="tagged")) == ["t1", "t2", "t3"]
    assert ids(lang="fr") == []
    assert all(not i.startswith("t") for i in ids(source="med"))
    assert len(ids(source="med")) == 10  # a broad filter still fills k
    _problem(api.search(query="x", filter={"lang": []}), 400, "non-empty list")


@pytest.mark.parametrize("broad_fetch", [20_000, 1])
def test_a_broad_filter_is_checked_on_the_candidates_with_the_same_results(
    api: Api, monkeypatch: pytest.MonkeyPatch, broad_fetch: int
) -> None:
    """Past ``BROAD`` matching documents a filter is not gathered whole for each request: it is
    checked on the candidates in SQL (and handed whole to the index only for a query that is
    still short after ``BROAD_FETCH`` candidates); the answers are the same."""
    wheres: list[dict[str, Any]] = [
        {"source": "tagged"},
        {"lang": "en"},
        {"source": "med"},
        {"year": 1991},
        {"lang": "fr"},
    ]

    def ids(where: dict[str, Any], mode: str = "dense") -> list[str]:
        response = api.search(query="kidney stones", k=10, filter=where, mode=mode)
        assert response.status_code == 200, response.text
        return [h["id"] for h in response.json()["results"]]

    expected = [ids(w, m) for w in wheres for m in ("dense", "hybrid")]
    whole: list[dict[str, Any]] = []  # filters gathered with every id they match
    documents = api.ws.catalog.documents
    ids_where = documents.ids_where

    def spied(where: Any, *, among: Any = None, limit: Any = None) -> set[str]:
        if among is None and limit is None:
            whole.append(where)
        return ids_where(where, among=among, limit=limit)

    monkeypatch.setattr(documents, "ids_where", spied)
    monkeypatch.setattr(searcher_module, "BROAD", 1)  # every filter matching 2 or more is broad
    monkeypatch.setattr(searcher_module, "BROAD_FETCH", broad_fetch)
    assert [ids(w, m) for w in wheres for m in ("dense", "hybrid")] == expected
    if broad_fetch > 1:
        assert whole == []  # no request gathered every id a filter matches
    else:  # the fallback: a query still short is handed every id, for the rare filters only
        assert {"source": "med"} not in whole and {"lang": "en"} in whole


def test_hybrid_search_fuses_bm25_and_dense(api: Api) -> None:
    dense = api.search(query="kidney stones", k=10).json()["results"]
    hybrid = api.search(query="kidney stones", k=10, mode="hybrid").json()["results"]
    assert len(hybrid) == 10
    assert [h["id"] for h in hybrid] != [h["id"] for h in dense]
    # RRF scores: at most 2/(60+1), ranked
    assert all(0 < h["score"] <= 2 / 61 for h in hybrid)
    tagged = api.search(query="kidney stones", k=10, mode="hybrid", filter={"source": "tagged"})
    assert {h["id"] for h in tagged.json()["results"]} <= {"t1", "t2", "t3"}
    _problem(api.search(id="t1", mode="hybrid"), 422, "hybrid mode needs a text query")


def test_bad_search_requests_are_4xx_and_change_nothing(api: Api) -> None:
    before = _snapshot(api.ws)
    model = api.search(query="x").json()["model"]
    dim = api.call("POST", "/v1/embed", "embed", json={"texts": ["x"]}).json()["dim"]
    cases = [
        (api.search(query="x", k=0), 422, "k"),
        (api.search(query="x", k=1001), 413, "api.max_k"),
        (api.search(query="x", vector=[1.0] * dim, model=model), 422, "exactly one"),
        (api.search(k=3), 422, "exactly one"),
        (api.search(vector=[1.0] * dim), 422, "must name the model"),
        (api.search(vector=[1.0] * (dim + 1), model=model), 400, f"{dim} dimensions"),
        (api.search(vector=[0.0] * dim, model=model), 400, "all zeros"),
        (api.search(vector=[1.0] * dim, model="minilm@1"), 409, "minilm@1"),
        (api.search(query="   "), 422, "query"),
        (api.search(query="x" * 20_001), 413, "api.max_text_chars"),
        (api.search(id="no-such-doc"), 404, "no-such-doc"),
        (api.search(query="x", filter={"a": {"b": 1}}), 422, "filter"),
        (api.search(query="x", unknown=1), 422, "unknown"),
    ]
    for response, status, word in cases:
        _problem(response, status, word)

    def raw(body: bytes) -> Any:
        headers = {"content-type": "application/json"}
        return api.call("POST", "/v1/search", "search", content=body, headers=headers)

    for bad in (b"[NaN]", b"[Infinity]", b"[1e999]", b"[1, -Infinity]"):
        _problem(raw(b'{"model": "%s", "vector": %s}' % (model.encode(), bad)), 422, "vector")
    _problem(raw(b'{"query": '), 422, "not valid JSON")
    _problem(raw(b"[1, 2]"), 422, "dictionary")
    _problem(raw(b'{"query": "x"}garbage'), 422, "not valid JSON")
    assert _snapshot(api.ws) == before


# -- embed -------------------------------------------------------------------------------


def test_embed_names_its_model_and_release_and_matches_the_encoder(api: Api) -> None:
    response = api.call("POST", "/v1/embed", "embed", json={"texts": ["renal", "kidney stones"]})
    body = response.json()
    assert body["release"] == api.second and body["model"].startswith("lsa-b@")
    vectors = np.array(body["vectors"], dtype=np.float32)
    assert vectors.shape == (2, body["dim"])
    served = api.client.app.state.serving.get()  # type: ignore[attr-defined]
    expected = served.encoder.encode(["renal", "kidney stones"], batch_size=32)
    assert np.allclose(vectors, expected, atol=1e-6)
    old = api.call("POST", "/v1/embed", "embed", json={"texts": ["x"], "release": api.first})
    assert old.json()["model"].startswith("lsa-a@") and old.json()["release"] == api.first


def test_bad_embed_requests(api: Api) -> None:
    def embed(body: Any) -> Any:
        return api.call("POST", "/v1/embed", "embed", json=body)

    _problem(embed({"texts": ["x"] * 257}), 413, "257 texts", "api.max_texts")
    _problem(embed({"texts": ["ok", "x" * 20_001]}), 413, "texts[1]", "api.max_text_chars")
    _problem(embed({"texts": []}), 422, "texts")
    _problem(embed({"texts": [""]}), 422, "texts")
    _problem(embed({"texts": ["ok", " \n"]}), 422, "texts.1")
    _problem(embed({"texts": "not a list"}), 422, "texts")
    _problem(embed({"texts": ["x"], "release": "gone"}), 404, "gone")


def test_concurrent_embed_requests_are_batched_together(api: Api) -> None:
    metrics = api.client.app.state.metrics  # type: ignore[attr-defined]
    barrier = threading.Barrier(8)
    results: list[int] = []

    def one(n: int) -> None:
        barrier.wait()
        response = api.call("POST", "/v1/embed", "embed", json={"texts": [f"kidney {n}"] * 4})
        results.append(response.status_code)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    sample = metrics.registry.get_sample_value
    assert sample("embedlake_embed_batch_size_sum") == 32  # every text embedded once
    assert sample("embedlake_embed_batch_size_count") < 8  # in fewer calls than requests


# -- documents ---------------------------------------------------------------------------


def test_documents_get_add_through_the_lake_and_delete_everywhere(api: Api) -> None:
    doc = api.call("GET", "/v1/documents/t1", "search").json()
    assert doc == {
        "id": "t1",
        "source": "tagged",
        "title": "",
        "text": "kidney stones in adults",
        "metadata": {"lang": "en", "year": 1990},
    }
    _problem(api.call("GET", "/v1/documents/nope", "search"), 404, "nope")

    batch = {
        "source": "api-test",
        "documents": [
            {"id": "n1", "title": "Ureteral calculi", "text": "stones", "metadata": {"lang": "en"}},
            {"id": "n2", "text": "a second one"},
        ],
    }
    accepted = api.call("POST", "/v1/documents", "write", json=batch)
    assert accepted.status_code == 202 and accepted.json()["documents"] == 2
    key = accepted.json()["key"]
    assert key.startswith("raw/api-test/api-") and api.ws.lake.exists(key)
    ingest_object(api.ws, key)  # what the runtime's ingest function does with the object
    added = api.call("GET", "/v1/documents/n1", "search").json()
    assert added["metadata"] == {"lang": "en"} and added["title"] == "Ureteral calculi"
    # not in the index yet: more-like-this embeds its text now
    assert len(api.call("GET", "/v1/documents/n1/neighbours?k=3", "search").json()["results"]) == 3

    def found(release: str) -> list[str]:
        body = api.search(query="kidney stones in adults", k=20, release=release).json()
        return [h["id"] for h in body["results"]]

    assert "t1" in found(api.first) and "t1" in found(api.second)
    deleted = api.call("DELETE", "/v1/documents/t1", "write")
    assert deleted.json() == {"id": "t1", "deleted": True}
    assert "t1" not in found(api.first) and "t1" not in found(api.second)
    assert len(found(api.second)) == 20
    _problem(api.call("GET", "/v1/documents/t1", "search"), 404)
    _problem(api.call("DELETE", "/v1/documents/t1", "write"), 404)
    _problem(api.call("GET", "/v1/documents/t1/neighbours", "search"), 404)


def test_bad_document_batches_store_nothing(api: Api) -> None:
    before = _snapshot(api.ws)
    post = lambda body: api.call("POST", "/v1/documents", "write", json=body)  # noqa: E731
    _problem(post({"source": "../etc", "documents": [{"id": "a", "text": "b"}]}), 422, "source")
    _problem(post({"source": "s", "documents": []}), 422, "documents")
    _problem(post({"source": "s", "documents": [{"id": "a"}]}), 422, "text")
    _problem(post({"source": "s", "documents": [{"id": "a", "text": "b", "x": 1}]}), 422)
    many = [{"id": str(n), "text": "t"} for n in range(257)]
    _problem(post({"source": "s", "documents": many}), 413, "api.max_texts")
    assert _snapshot(api.ws) == before


# -- releases and aliases ----------------------------------------------------------------


def test_publish_and_rollback_swap_what_is_served(api: Api) -> None:
    releases = api.call("GET", "/v1/releases").json()
    assert [r["id"] for r in releases] == [api.second, api.first]
    assert releases[0]["aliases"] == ["production"] and releases[0]["report"] is None
    detail = api.call("GET", f"/v1/releases/{api.first}").json()
    assert detail["report"]["gate"]["passed"] and detail["aliases"] == []
    _problem(api.call("GET", "/v1/releases/nope"), 404, "nope")
    models = {m["ref"].split("@")[0] for m in api.call("GET", "/v1/models").json()}
    assert {"lsa-a", "lsa-b"} <= models

    back = api.call("POST", "/v1/aliases/production/rollback", json={"reason": "test"}).json()
    assert back["to_release"] == api.first and back["kind"] == "rollback"
    assert back["actor"].startswith("key:")
    assert api.search(query="kidney").json()["release"] == api.first  # swapped before answering
    _problem(
        api.call("POST", "/v1/aliases/production/rollback", json={}), 400, "no earlier release"
    )

    move = api.call("POST", "/v1/aliases/production", json={"release": api.second, "force": True})
    assert move.status_code == 200 and move.json()["to_release"] == api.second
    assert api.search(query="kidney").json()["release"] == api.second
    _problem(
        api.call("POST", "/v1/aliases/production", json={"release": api.second}), 409, "already"
    )
    _problem(api.call("POST", "/v1/aliases/production", json={"release": "nope"}), 404, "nope")
    staging = api.call("POST", "/v1/aliases/staging", json={"release": api.first, "force": True})
    assert staging.status_code == 200
    assert api.search(query="kidney", alias="staging").json()["release"] == api.first


@pytest.mark.parametrize("mover", ["this process", "another process"])
def test_an_alias_moved_elsewhere_is_followed_without_failing_a_request(
    template: dict[str, Any], tmp_path: Path, mover: str
) -> None:
    """The move is announced: in this process to its listeners, from another one through the
    SQLite catalog's files; with an hour between unannounced looks, nothing else swaps."""
    env = {"EMBEDLAKE_API__RELOAD_SECONDS": "3600"}
    with _open(template, tmp_path, env) as ws, TestClient(create_app(ws)) as client:
        key = ws.catalog.keys.create(["search"])[0]
        seen: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def stream() -> None:
            while not stop.is_set():
                response = client.post(
                    "/v1/search",
                    json={"query": "kidney stones", "k": 5},
                    headers={"Authorization": f"Bearer {key}"},
                )
                seen.append((response.status_code, response.json().get("release")))

        thread = threading.Thread(target=stream)
        thread.start()
        try:
            while not seen:  # answered from the old release first
                time.sleep(0.01)
            if mover == "this process":  # the CLI's publish function on the catalog
                publish(ws, template["first"], force=True, actor="test")
            else:
                mover_script = (
                    "import json, sys; from pathlib import Path\n"
                    "from embedlake.releases.publish import publish\n"
                    "from embedlake.workspace import Workspace\n"
                    "root, release, env = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])\n"
                    "with Workspace.open(root, environ=env) as w:\n"
                    "    publish(w, release, force=True, actor='test')\n"
                )
                args = [str(ws.settings.workspace), template["first"], json.dumps({**ENV, **env})]
                subprocess.run([sys.executable, "-c", mover_script, *args], check=True)
            deadline = time.monotonic() + 30
            while (not seen or seen[-1][1] != template["first"]) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        metrics = client.get("/metrics").text
    assert {status for status, _ in seen} == {200}
    releases = [r for _, r in seen]
    assert releases[0] == template["second"] and releases[-1] == template["first"]
    switch = releases.index(template["first"])
    assert set(releases[switch:]) == {template["first"]}  # no flapping back
    assert 'embedlake_release_swaps_total{alias="production"} 1.0' in metrics
    assert (
        f'release="{template["first"]}"' in metrics
        and f'release="{template["second"]}"' not in metrics
    )


# -- auth --------------------------------------------------------------------------------


def test_keys_and_scopes(api: Api) -> None:
    body = {"query": "kidney"}
    _problem(api.client.post("/v1/search", json=body), 401, "needs an API key")
    wrong = {"Authorization": "Bearer elk_0000_nothing"}
    _problem(api.client.post("/v1/search", json=body, headers=wrong), 401, "not valid")
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    _problem(api.client.post("/v1/search", json=body, headers=basic), 401)
    assert api.client.post("/v1/search", json=body, headers=wrong).headers["www-authenticate"]
    _problem(api.search("embed", **body), 403, "needs 'search'")
    _problem(api.call("POST", "/v1/embed", "search", json={"texts": ["x"]}), 403, "'embed'")
    _problem(api.call("GET", "/v1/releases", "write"), 403, "'admin'")
    _problem(api.call("DELETE", "/v1/documents/t1", "search"), 403, "'write'")
    assert api.search("admin", **body).status_code == 200  # admin implies the others
    key_id = api.keys["search"].split("_")[1]
    assert api.search(**body).status_code == 200
    api.ws.catalog.keys.revoke(key_id)
    _problem(api.search(**body), 401, "revoked")
    # the probes need no key
    assert api.client.get("/healthz").json()["status"] == "alive"
    assert api.client.get("/readyz").json()["serving"] == {"production": api.second}


def test_open_mode_serves_loopback_clients_only(template: dict[str, Any], tmp_path: Path) -> None:
    with _open(template, tmp_path, {"EMBEDLAKE_API__AUTH": "open"}) as ws:
        app = create_app(ws, follow=False)
        loopback = {"base_url": "http://localhost:8000", "client": ("127.0.0.1", 5000)}
        with TestClient(app, **loopback) as local:  # type: ignore[arg-type]
            assert local.post("/v1/search", json={"query": "kidney"}).status_code == 200
            moved = local.post("/v1/aliases/production/rollback", json={}).json()
            assert moved["actor"] == "open"
        with TestClient(app, base_url="http://localhost:8000", client=("10.1.2.3", 5000)) as remote:
            _problem(remote.post("/v1/search", json={"query": "kidney"}), 403, "loopback")


def test_secrets_stay_out_of_logs_errors_and_metrics(
    template: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pepper-" + "x7Q2" * 8
    (tmp_path / "pepper").write_text(secret + "\n")
    env = {"EMBEDLAKE_API__KEY_PEPPER_FILE": str(tmp_path / "pepper")}
    caplog.set_level("DEBUG")
    with _open(template, tmp_path, env) as ws, TestClient(create_app(ws, follow=False)) as client:
        assert ws.settings.api.key_pepper is not None
        assert secret not in repr(ws.settings) and secret not in str(ws.settings.model_dump())
        peppered = ws.catalog.keys.create(["search"], pepper=secret.encode())[0]
        plain = ws.catalog.keys.create(["search"])[0]  # made without the pepper: refused
        texts = []
        for key in (peppered, plain, secret):
            response = client.post(
                "/v1/search", json={"query": "kidney"}, headers={"Authorization": f"Bearer {key}"}
            )
            texts.append(response.text)
        assert json.loads(texts[0])["results"] and '"status":401' in texts[1]
        texts += [client.get("/metrics").text, client.get("/readyz").text]
    everything = "\n".join(texts) + caplog.text
    assert secret not in everything and peppered not in everything


# -- limits, roles, probes ---------------------------------------------------------------


def test_oversized_bodies_get_413(api: Api) -> None:
    big = b'{"texts": ["' + b"x" * 4_100_000 + b'"]}'
    json_type = {"Content-Type": "application/json"}
    oversized = api.call("POST", "/v1/embed", "embed", content=big, headers=json_type)
    _problem(oversized, 413, "api.max_body_bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield b'{"texts": ["'
        for _ in range(50):
            yield b"x" * 100_000
        yield b'"]}'

    streamed = api.call("POST", "/v1/embed", "embed", content=chunks(), headers=json_type)
    _problem(streamed, 413, "api.max_body_bytes")
    bad_length = {**json_type, "content-length": "x1"}
    _problem(api.call("POST", "/v1/embed", "embed", headers=bad_length), 400)


def test_roles_mount_their_routes_only(template: dict[str, Any], tmp_path: Path) -> None:
    with _open(template, tmp_path) as ws:
        key = ws.catalog.keys.create(["admin"])[0]
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(ws, "embed", follow=False)) as embed_only:
            assert embed_only.post("/v1/embed", json={"texts": ["x"]}, headers=auth).is_success
            _problem(embed_only.post("/v1/search", json={"query": "x"}, headers=auth), 404)
            served = embed_only.app.state.serving.get()  # type: ignore[attr-defined]
            assert served.searcher is None  # the embed role loads no index
        with TestClient(create_app(ws, "search", follow=False)) as search_only:
            assert search_only.post("/v1/search", json={"query": "x"}, headers=auth).is_success
            _problem(search_only.post("/v1/embed", json={"texts": ["x"]}, headers=auth), 404)


def test_metrics_count_routes_by_template(api: Api) -> None:
    api.search(query="kidney")
    api.call("GET", "/v1/documents/t2", "search")
    api.call("GET", "/v1/documents/nope", "search")
    api.call("POST", "/v1/embed", "embed", json={"texts": ["a", "b", "c"]})
    text = api.client.get("/metrics").text
    assert 'route="/v1/search",status="200"' in text
    assert 'route="/v1/documents/{doc_id}",status="200"' in text
    assert 'route="/v1/documents/{doc_id}",status="404"' in text
    assert "nope" not in text and "t2" not in text  # ids never become labels
    assert 'embedlake_http_request_duration_seconds_count{method="POST",route="/v1/search"}' in text
    assert "embedlake_embed_batch_size_sum 4.0" in text  # the search query and the three texts
    assert 'embedlake_release_info{alias="production",model=' in text
    assert 'embedlake_index_vectors{alias="production"} 1036.0' in text


def test_nothing_to_serve_is_not_ready(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "empty", environ=ENV) as ws:
        key = ws.catalog.keys.create(["search"])[0]
        with TestClient(create_app(ws, follow=False)) as client:
            _problem(client.get("/readyz"), 503, "not loaded")
            response = client.post(
                "/v1/search", json={"query": "x"}, headers={"Authorization": f"Bearer {key}"}
            )
            _problem(response, 404, "index")


def test_the_openapi_document_covers_every_route_error_and_the_auth_scheme(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    routes = {
        (method.upper(), path) for path, operations in doc["paths"].items() for method in operations
    }
    from embedlake.api.routes import admin, documents, embed, map, probes, search

    served = {
        (method, route.path_format)
        for module in (admin, documents, embed, map, probes, search)
        for route in module.router.routes
        for method in getattr(route, "methods", set())
    }
    assert routes == served and len(routes) >= 19
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            responses = operation["responses"]
            assert "200" in responses or "202" in responses
            for code, response in responses.items():
                if code[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"]
            if path.startswith("/v1/"):
                assert operation["security"] == [{"HTTPBearer": []}], path
                assert {"401", "403", "422"} <= set(responses), path
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
