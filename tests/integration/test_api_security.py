"""What a web page in the same browser must not be able to do, in process: the Host allow-list
(DNS rebinding), the Origin check and the JSON-only rule for state changes (cross-site forms),
the security headers, `/docs` served from the package, and ids that need escaping in a URL."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from embedlake.api import create_app
from embedlake.events import Event
from embedlake.functions.builtin import embed_new
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from tests.conftest import write_jsonl
from tests.integration.test_api import Api, _open, _problem, _snapshot, api, template

__all__ = ["api", "template"]  # fixtures shared with test_api

OPEN = {"EMBEDLAKE_API__AUTH": "open"}
LOCAL = ("127.0.0.1", 50000)
ROLLBACK = "/v1/aliases/production/rollback"


@pytest.fixture
def laptop(template: dict[str, Any], tmp_path: Path) -> Iterator[tuple[Any, TestClient]]:
    """Open mode, as the demo serves it, called from loopback at http://localhost:8000."""
    with _open(template, tmp_path, OPEN) as ws:
        app = create_app(ws, follow=False)
        with TestClient(app, base_url="http://localhost:8000", client=LOCAL) as client:
            yield ws, client


# -- the Host allow-list ------------------------------------------------------------------


def test_open_mode_answers_loopback_host_names_only(laptop: tuple[Any, TestClient]) -> None:
    _, client = laptop
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"):
        assert client.get("/v1/documents/t1", headers={"Host": host}).status_code == 200, host
    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own name
    for host in ("evil.example:8000", "evil.example", "localhost.evil.example", "testserver"):
        for path in ("/v1/documents/t1", "/", "/healthz", "/openapi.json"):
            body = _problem(client.get(path, headers={"Host": host}), 403, host.split(":")[0])
            assert "api.allowed_hosts" in body["detail"]
    _problem(client.get("/v1/documents/t1", headers={"Host": ""}), 403, "Host")
    # a bracketed loopback address with something after it that is no port names no server
    for host in ("[::1]evil", "[::1]:80x", "[::1].evil.example"):
        _problem(client.get("/v1/documents/t1", headers={"Host": host}), 403)


def test_more_host_names_are_allowed_through_the_setting(
    template: dict[str, Any], tmp_path: Path
) -> None:
    env = {**OPEN, "EMBEDLAKE_API__ALLOWED_HOSTS": '["search.internal"]'}
    with (
        _open(template, tmp_path, env) as ws,
        TestClient(create_app(ws, follow=False), client=LOCAL) as client,
    ):
        for host in ("search.internal", "search.internal:443", "localhost:1"):
            assert client.get("/healthz", headers={"Host": host}).status_code == 200
        _problem(client.get("/healthz", headers={"Host": "other.internal"}), 403)


def test_keys_mode_answers_any_host_unless_names_are_listed(
    api: Api, template: dict[str, Any], tmp_path: Path
) -> None:
    # a key is needed anyway, and a server behind a proxy has names we cannot guess
    assert api.call("GET", "/v1/documents/t1", headers={"Host": "any.example"}).status_code == 200
    env = {"EMBEDLAKE_API__ALLOWED_HOSTS": '["api.example.org"]'}
    with _open(template, tmp_path / "listed", env) as ws:
        key = ws.catalog.keys.create(["search"])[0]
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(ws, follow=False)) as client:
            ok = client.get("/v1/documents/t1", headers={**auth, "Host": "api.example.org"})
            assert ok.status_code == 200
            _problem(client.get("/v1/documents/t1", headers=auth), 403, "testserver")


# -- Origin and JSON bodies: what a cross-site page can send ------------------------------


def test_a_cross_site_page_cannot_roll_production_back(laptop: tuple[Any, TestClient]) -> None:
    ws, client = laptop
    before = _snapshot(ws)
    # what a <form method=post action=http://localhost:8000/v1/aliases/production/rollback> sends
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}
    _problem(client.post(ROLLBACK, content=b"reason=x", headers=form), 403, "https://evil.example")
    # another local server's page (another port is another origin)
    other_port = {**form, "Origin": "http://localhost:9999"}
    _problem(client.post(ROLLBACK, content=b"x", headers=other_port), 403, "localhost:9999")
    # with no Origin (an old browser, a privacy extension) the form is still not JSON
    _problem(client.post(ROLLBACK, content=b"reason=x", headers=form | {"Origin": ""}), 415)
    # fetch(url, {method: "POST", mode: "no-cors"}) from a page whose Origin the browser hides
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "multipart/form-data"}):
        _problem(client.post(ROLLBACK, headers=headers), 415, "application/json")
    _problem(client.post(ROLLBACK, content=b"{}", headers={"Origin": "null"}), 403, "null")
    json_elsewhere = {"Origin": "http://evil.example:8000"}
    _problem(client.post(ROLLBACK, json={}, headers=json_elsewhere), 403, "evil.example:8000")
    _problem(client.delete("/v1/documents/t1", headers={"Origin": "https://evil.example"}), 403)
    assert _snapshot(ws) == before


def test_the_servers_own_pages_still_change_state(laptop: tuple[Any, TestClient]) -> None:
    _, client = laptop
    own = {"Origin": "http://localhost:8000"}
    found = client.post("/v1/search", json={"query": "kidney"}, headers=own)
    assert found.status_code == 200
    moved = client.post(ROLLBACK, json={"reason": "from the page"}, headers=own).json()
    assert moved["actor"] == "open" and moved["reason"] == "from the page"
    # a JSON content type with no body is a rollback without a reason; charset is fine
    back = client.post("/v1/aliases/production", json={"release": moved["from_release"]})
    assert back.status_code == 200, back.text
    plain = client.post(ROLLBACK, headers={"Content-Type": "application/json; charset=utf-8"})
    assert plain.status_code == 200, plain.text
    assert client.delete("/v1/documents/t1", headers=own).status_code == 200


def test_keys_mode_checks_origin_and_json_too(api: Api) -> None:
    before = _snapshot(api.ws)
    _problem(api.call("POST", ROLLBACK), 415, "application/json")
    evil = {"Origin": "https://evil.example"}
    _problem(api.call("POST", ROLLBACK, json={}, headers=evil), 403, "evil.example")
    assert _snapshot(api.ws) == before
    assert api.call("POST", ROLLBACK, json={}).status_code == 200


# -- headers and /docs --------------------------------------------------------------------


def _secured(response: Any) -> str:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp: str = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    return csp


def test_every_response_has_the_security_headers(api: Api) -> None:
    for response in (
        api.client.get("/healthz"),
        api.search(query="kidney"),
        api.client.get("/v1/search"),  # 405
        api.client.get("/nowhere"),  # 404
        api.call("POST", ROLLBACK),  # 415 from the guard
        api.client.get("/static/app.js"),
    ):
        assert _secured(response).startswith("default-src 'none'"), response.request.url
    page = _secured(api.client.get("/"))
    assert "script-src 'self'" in page and "connect-src 'self'" in page


def test_docs_are_served_from_the_package_with_no_other_host(api: Api) -> None:
    assert api.client.get("/redoc").status_code == 404
    docs = api.client.get("/docs")
    assert docs.status_code == 200
    hosts = re.findall(r"(?:https?:)?//[\w.-]+", docs.text)
    assert hosts == [], hosts  # nothing from a CDN, not even the favicon
    csp = _secured(docs)
    # the one inline script (Swagger UI's settings) is allowed by its hash, nothing else
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.text)
    assert len(assets) == 2
    for asset in assets:
        served = api.client.get(asset)
        assert served.status_code == 200 and len(served.content) > 100_000, asset
    licences = api.client.get("/static/vendor/LICENSES.txt").text
    assert "== swagger-ui-dist 5." in licences


# -- ids that need escaping ----------------------------------------------------------------

ODD = ["a/b", "dir/sub/leaf", "50%", "with space", "ünï/cødé", "t1/neighbours-not"]


def test_ids_with_slashes_percent_spaces_and_unicode_work_on_every_route(
    api: Api, tmp_path: Path
) -> None:
    rows: list[object] = [
        {"_id": i, "text": f"kidney stones and renal colic, case {n}"} for n, i in enumerate(ODD)
    ]
    ingest_path(api.ws, write_jsonl(tmp_path / "odd.jsonl", rows), source="odd")
    embed_new(Event("documents.changed", "odd"), direct_context(api.ws, "embed-new"))
    api.client.app.state.serving.refresh()  # type: ignore[attr-defined]
    ids = api.call("GET", f"/v1/map/{api.second}/ids", "search").json()
    assert set(ODD) <= set(ids)
    for doc_id in ODD:
        path = f"/v1/documents/{quote(doc_id, safe='')}"
        doc = api.call("GET", path, "search")
        assert doc.status_code == 200 and doc.json()["id"] == doc_id, (doc_id, doc.text)
        near = api.call("GET", f"{path}/neighbours?k=3&release={api.second}", "search")
        assert near.status_code == 200, (doc_id, near.text)
        assert doc_id not in [h["id"] for h in near.json()["results"]]
        assert api.search(id=doc_id, k=3).status_code == 200
    # the old URLs keep working, and an id ending in /neighbours is still a document
    assert api.call("GET", "/v1/documents/t1/neighbours?k=2", "search").status_code == 200
    for doc_id in ODD:
        gone = api.call("DELETE", f"/v1/documents/{quote(doc_id, safe='')}", "write")
        assert gone.status_code == 200 and gone.json()["id"] == doc_id
        _problem(api.call("GET", f"/v1/documents/{quote(doc_id, safe='')}", "search"), 404)
