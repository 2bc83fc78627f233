"""Hostile inputs to the API, each class of them refused with a clear problem before any work and
with nothing stored changed (an outside review of the API, 2026-12-08): lone surrogates and other
bodies only the standard library's JSON parser takes, filter names and values the catalog cannot
match exactly, documents ingest would quarantine after a 202, alias names, lax types, oversized
keys, a document whose id ends in "/neighbours", slow bodies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedlake.api.limits import RequestLimits
from embedlake.config import ApiSettings
from embedlake.ingest import ingest_path
from tests.conftest import write_jsonl
from tests.integration.test_api import _problem, _snapshot
from tests.integration.test_api_limits import Client, _ids, _serve, template  # noqa: F401


@pytest.fixture
def api(template: Path, tmp_path: Path) -> Iterator[Client]:  # noqa: F811
    yield from _serve(template, tmp_path)


def _raw(api: Client, path: str, body: bytes) -> Any:
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "application/json"}
    return api.client.post(path, content=body, headers=headers)


def test_a_lone_surrogate_anywhere_in_a_body_is_refused(api: Client) -> None:
    """A title or metadata holding "\\ud800" was a 500 (UnicodeEncodeError writing the batch)."""
    before = _snapshot(api.ws)
    doc = {"id": "S-1", "text": "x"}
    for path, body in (
        ("/v1/documents", {"source": "s", "documents": [{**doc, "title": "\udc00"}]}),
        ("/v1/documents", {"source": "s", "documents": [{**doc, "metadata": {"k": "\ud800"}}]}),
        ("/v1/documents", {"source": "s", "documents": [{**doc, "metadata": {"\ud800": 1}}]}),
        ("/v1/search", {"query": "kidney \udfff"}),
        ("/v1/embed", {"texts": ["\ud83d"]}),
    ):
        escaped = json.dumps(body).encode()  # (ASCII: the surrogate as its escape)
        _problem(_raw(api, path, escaped), 422, "lone surrogate")
    paired = json.dumps({"query": "kidney \U0001f600"}).encode()  # a pair: one character
    assert _raw(api, "/v1/search", paired).status_code == 200
    assert _snapshot(api.ws) == before


def test_bodies_only_the_standard_library_refuses_otherwise_are_422(api: Client) -> None:
    """Invalid UTF-8 and an integer of 5,000 digits were FastAPI's bare 400."""
    for path in ("/v1/search", "/v1/embed", "/v1/documents"):
        _problem(_raw(api, path, b'{"query": "wing \xff"}'), 422, "not valid JSON")
        _problem(_raw(api, path, b'{"k": ' + b"9" * 5000 + b"}"), 422, "not valid JSON")


def test_filter_names_and_values_the_catalog_cannot_match_are_refused(api: Client) -> None:
    """A name was put into a JSON path: '"' read nested fields (or a 503), NUL cut a value."""
    for name in ('lang"', 'nested"."sub', "la\x00ng", "la\nng", "a\\b", "la\x85ng"):
        _problem(api.search(query="kidney", filter={name: "en"}), 400, "field name")
    _problem(api.search(query="kidney", filter={"lang": "en\x00garbage"}), 400, "NUL")
    _problem(api.search(query="kidney", filter={"source": ["med", "x\x00"]}), 400, "NUL")


def test_a_filter_matches_values_of_its_own_json_type(api: Client) -> None:
    """ "1990" matched the number 1990; 1 did not match true: now each type matches its own."""
    assert _ids(api.search(query="kidney", k=50, filter={"year": 1990})) == {"t1"}
    assert _ids(api.search(query="kidney", k=50, filter={"year": "1990"})) == set()
    assert _ids(api.search(query="renal", k=50, filter={"reviewed": True})) == {"t3"}
    assert _ids(api.search(query="renal", k=50, filter={"reviewed": 1})) == set()
    assert _ids(api.search(query="kidney", k=50, filter={"lang": ["en", 1990]})) == {"t1", "t3"}
    assert _ids(api.search(query="renal", k=50, filter={"source": ["tagged", 5]})) == {
        "t1",
        "t2",
        "t3",
    }
    assert _ids(api.search(query="renal", k=50, filter={"source": [5, True]})) == set()


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"id": "C-1\x00x", "text": "x"}, "control characters"),
        ({"id": "C\x85-2", "text": "x"}, "control characters"),  # C1 (at an end: trimmed)
        ({"id": "C-3", "text": "\x00\x01"}, "empty after normalisation"),
        ({"id": "  C-4  ", "text": "x"}, "would be stored as 'C-4'"),
        ({"id": "C-5", "text": "x", "metadata": {"k": float("nan")}}, "not JSON-serialisable"),
    ],
)
def test_a_document_ingest_would_quarantine_is_refused_before_the_202(
    api: Client, document: dict[str, Any], words: str
) -> None:
    before = _snapshot(api.ws)
    batch = {"source": "s", "documents": [{"id": "fine", "text": "ok"}, document]}
    body = _problem(
        _raw(api, "/v1/documents", json.dumps(batch).encode()), 400, "document 1", words
    )
    assert body["type"] == "urn:embedlake:error:input"
    assert _snapshot(api.ws) == before


def test_an_id_twice_in_one_batch_is_refused(api: Client) -> None:
    before = _snapshot(api.ws)
    docs = [{"id": "D", "text": "a"}, {"id": "E", "text": "b"}, {"id": "D", "text": "c"}]
    _problem(api.post("/v1/documents", {"source": "s", "documents": docs}), 400, "document 0")
    assert _snapshot(api.ws) == before


def test_a_source_name_with_a_final_newline_is_refused(api: Client) -> None:
    """'abc\\n' passed a "$"-anchored pattern: 202, then never ingested."""
    batch = {"source": "abc\n", "documents": [{"id": "a", "text": "b"}]}
    _problem(api.post("/v1/documents", batch), 422, "source")


def test_a_document_whose_id_ends_in_neighbours_is_read(api: Client, tmp_path: Path) -> None:
    docs = [{"_id": "M-3/neighbours", "text": "kidney"}, {"_id": "M-3", "text": "renal"}]
    ingest_path(api.ws, write_jsonl(tmp_path / "n.jsonl", docs), source="n")
    found = api.get("/v1/documents/M-3%2Fneighbours")
    assert found.status_code == 200, found.text
    assert found.json()["id"] == "M-3/neighbours"
    near = api.get("/v1/documents/M-3/neighbours?k=2")
    assert near.status_code == 200 and "results" in near.json()


def test_numbers_and_booleans_are_strict(api: Client) -> None:
    """ "k": "3", a vector of strings and "force": "yes" were taken as 3, floats and true."""
    _problem(api.search(query="kidney", k="3"), 422, "k")
    _problem(api.search(query="kidney", k=True), 422, "k")
    _problem(api.search(vector=["0.1"] * 32, model="x@1"), 422, "vector")
    before = _snapshot(api.ws)
    release = api.get("/v1/releases").json()[0]["id"]
    publish = {"release": release, "force": "yes"}
    _problem(api.post("/v1/aliases/staging", publish), 422, "force")
    assert _snapshot(api.ws) == before


@pytest.mark.parametrize("alias", ["a" * 129, "x%0Ay", "x%00y", "x%C2%85y"])
def test_an_alias_name_over_the_length_or_with_a_control_character_is_422(
    api: Client, alias: str
) -> None:
    before = _snapshot(api.ws)
    release = api.get("/v1/releases").json()[0]["id"]
    response = api.post(f"/v1/aliases/{alias}", {"release": release, "force": True})
    _problem(response, 422, "alias")
    assert _snapshot(api.ws) == before


def test_a_key_longer_than_any_key_is_not_looked_up_or_kept(api: Client) -> None:
    """Every bad token was kept in memory, keyed by itself: 1,000 of 200 KB held 190 MB."""
    auth = api.client.app.state.auth  # type: ignore[attr-defined]
    kept = len(auth._cache)
    for n in range(20):
        token = f"{n:08d}" + "a" * 100_000
        response = api.client.get("/v1/releases", headers={"Authorization": f"Bearer {token}"})
        _problem(response, 401, "over 256 characters")
    assert len(auth._cache) == kept
    for n in range(5):  # short bad tokens are remembered, by a 32-byte digest each
        api.client.get("/v1/releases", headers={"Authorization": f"Bearer bad{n}"})
    assert len(auth._cache) == kept + 5 and all(len(d) == 32 for d in auth._cache)


def test_a_405_names_the_methods_allowed(api: Client) -> None:
    headers = {"Authorization": f"Bearer {api.key}"}
    response = api.client.get("/v1/search", headers=headers)
    _problem(response, 405)
    assert response.headers["allow"] == "POST"
    put = api.client.put(
        "/v1/documents/t1", headers={**headers, "Content-Type": "application/json"}
    )
    assert put.status_code == 405 and put.headers["allow"] == "DELETE, GET, HEAD"


def test_a_release_or_alias_with_a_control_character_is_422(api: Client) -> None:
    """They were looked up, and answered 404, wherever a path parameter was not checked."""
    _problem(api.search(query="kidney", alias="a\nb"), 422, "alias")
    _problem(api.post("/v1/embed", {"texts": ["x"], "release": "r\x07"}), 422, "release")
    _problem(api.get("/v1/documents/t1/neighbours?alias=%00"), 422, "alias")


def test_gzip_only_where_the_client_takes_it(api: Client) -> None:
    release = api.get("/v1/releases").json()[0]["id"]
    url, key = f"/v1/map/{release}/points", f"Bearer {api.key}"
    for accept, gzipped in (("gzip", True), ("gzip;q=0, identity", False), ("nogzip", False)):
        got = api.client.get(url, headers={"Authorization": key, "Accept-Encoding": accept})
        assert got.status_code == 200
        assert (got.headers.get("content-encoding") == "gzip") is gzipped, accept


def test_an_error_does_not_echo_a_huge_input(api: Client) -> None:
    missing = api.get("/v1/documents/" + "x" * 60_000)
    assert missing.status_code == 404 and len(missing.content) < 2_000
    huge_k = api.search(query="kidney", k=int("9" * 4000))
    _problem(huge_k, 413, "a 4,000-digit number")
    assert len(huge_k.content) < 2_000


def test_a_value_beyond_float32_is_named_as_such(api: Client) -> None:
    model = api.search(query="kidney").json()["model"]
    vector = [1e39] + [0.0] * 31
    _problem(api.search(vector=vector, model=model), 400, "beyond float32's range")


def test_a_request_refused_before_routing_is_counted_under_its_route(api: Client) -> None:
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "text/plain"}
    assert api.client.post("/v1/search", content=b"x", headers=headers).status_code == 415
    metrics = api.get("/metrics").text
    refused = [
        line for line in metrics.splitlines() if "requests_total{" in line and '"415"' in line
    ]
    assert len(refused) == 1 and 'route="/v1/search"' in refused[0], refused


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    """300 connections that sent one byte of a 1,000-byte body stayed open for good."""
    sent: list[dict[str, Any]] = []

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not be reached")

    async def slow() -> dict[str, Any]:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    limits = RequestLimits(never, ApiSettings(body_timeout_seconds=0.05))
    scope = {"type": "http", "method": "POST", "path": "/v1/search", "headers": []}
    asyncio.run(asyncio.wait_for(limits(scope, slow, send), 5))
    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert b"api.body_timeout_seconds" in sent[1]["body"]


def test_head_is_answered_as_get_without_a_body(api: Client) -> None:
    health = api.client.head("/healthz")
    assert health.status_code == 200 and health.content == b""
    headers = {"Authorization": f"Bearer {api.key}"}
    found = api.client.head("/v1/documents/t1", headers=headers)
    assert found.status_code == 200 and found.content == b""
    assert int(found.headers["content-length"]) > 0  # the GET's length
    assert api.client.head("/v1/documents/nope", headers=headers).status_code == 404


def test_a_map_is_coloured_only_by_the_fields_it_offers(api: Client) -> None:
    """Any name was computed over every document's metadata, and kept, per name asked."""
    release = api.get("/v1/releases").json()[0]["id"]
    index = api.get("/v1/map").json()
    for field in index["fields"]:
        assert api.get(f"/v1/map/{release}/labels?field={field}").status_code == 200
    _problem(api.get(f"/v1/map/{release}/labels?field=nope"), 404, "not by 'nope'")


def test_an_id_of_another_source_is_refused_before_the_202(api: Client) -> None:
    before = _snapshot(api.ws)
    batch = {"source": "zz", "documents": [{"id": "new-1", "text": "a"}, {"id": "t1", "text": "b"}]}
    _problem(api.post("/v1/documents", batch), 400, "document 1", "belongs to source 'tagged'")
    assert _snapshot(api.ws) == before
    again = {"source": "tagged", "documents": [{"id": "t1", "text": "kidney stones, revised"}]}
    assert api.post("/v1/documents", again).status_code == 202  # its own source: an update


def test_a_document_deleted_after_the_map_was_built_leaves_it(api: Client) -> None:
    """The served map was built once and kept: a deleted document stayed on it in that process."""
    release = api.get("/v1/releases").json()[0]["id"]
    before = api.get(f"/v1/map/{release}/ids?limit=100000").json()
    assert "t2" in before
    headers = {"Authorization": f"Bearer {api.key}"}
    assert api.client.delete("/v1/documents/t2", headers=headers).status_code == 200
    after = api.get(f"/v1/map/{release}/ids?limit=100000").json()
    assert "t2" not in after and len(after) == len(before) - 1
