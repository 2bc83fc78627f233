"""The map's API: releases with maps, points as binary pages, ids, labels; documents that arrive
later are placed on the map and deleted ones leave it; the page and its bundle are served."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from embedlake.api import create_app
from embedlake.events import Event
from embedlake.functions.builtin import embed_new
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from embedlake.reduce import topics
from embedlake.reduce.projection import Projection
from tests.conftest import write_jsonl
from tests.integration.test_api import Api, _open, _problem, api, template

__all__ = ["api", "template"]  # fixtures shared with test_api
IDENTITY = {"Accept-Encoding": "identity"}


def _points(response: Any) -> np.ndarray:
    return np.frombuffer(response.content, dtype="<f4").reshape(-1, 2)


def test_releases_with_maps_and_their_points_ids_and_labels(api: Api) -> None:
    index = api.call("GET", "/v1/map", "search").json()
    assert index["alias"] == "production"
    assert [r["id"] for r in index["releases"]] == [api.second, api.first]
    assert index["releases"][0]["aliases"] == ["production"]
    assert index["releases"][0]["method"] == "pca" and index["releases"][0]["documents"] == 1036
    assert index["fields"] == ["source", "lang", "year"]  # not `reviewed`: one value
    # of 1,036 documents, three have a language (en, en, de), two a year (1990, 1991), three
    # another source: the language tells most (0.031 bits; source 0.029, year 0.022)
    assert index["default_field"] == "lang"
    # chosen when the map was fitted and kept in its report (a request samples nothing); a map
    # fitted before they were kept has them computed per request, to the same answer
    report = api.ws.catalog.releases.get(api.second).report
    assert (report["map"]["fields"], report["map"]["default_field"]) == (index["fields"], "lang")
    older = {k: v for k, v in report["map"].items() if k not in ("fields", "default_field")}
    api.ws.catalog.releases.update(api.second, report={**report, "map": older})
    again = api.call("GET", "/v1/map", "search").json()
    assert (again["fields"], again["default_field"]) == (index["fields"], "lang")

    points = api.call("GET", f"/v1/map/{api.second}/points", "search")
    assert points.headers["content-type"] == "application/octet-stream"
    xy = _points(points)
    assert xy.shape == (1036, 2) and int(points.headers["x-total-count"]) == 1036
    assert np.abs(xy).max() <= 1.0 + 1e-6 and len(np.unique(xy, axis=0)) > 1000
    ids = api.call("GET", f"/v1/map/{api.second}/ids", "search").json()
    assert len(ids) == 1036 and len(set(ids)) == 1036
    stored = Projection.load(api.ws.lake, f"releases/{api.second}")
    assert np.array_equal(xy, stored.coords[[stored.ids.index(i) for i in ids]])

    page = api.call("GET", f"/v1/map/{api.second}/points?offset=1000&limit=30", "search")
    assert np.array_equal(_points(page), xy[1000:1030])
    assert api.call("GET", f"/v1/map/{api.second}/ids?offset=1030", "search").json() == ids[1030:]

    # the page's form: uint16 points and ids as lines, gzipped for a client that accepts it
    # (httpx asks for it and decodes it), the same bytes as plain for one that does not
    u16 = api.call("GET", f"/v1/map/{api.second}/points?encoding=u16", "search")
    assert u16.headers["content-encoding"] == "gzip" and u16.headers["vary"] == "Accept-Encoding"
    grid = np.frombuffer(u16.content, dtype="<u2").reshape(-1, 2) / 32767.5 - 1
    assert grid.shape == xy.shape and np.abs(grid - xy).max() <= 1 / 65535 + 1e-6
    plain = api.call("GET", f"/v1/map/{api.second}/points?encoding=u16", "search", headers=IDENTITY)
    assert "content-encoding" not in plain.headers and plain.content == u16.content
    text = api.call("GET", f"/v1/map/{api.second}/ids?format=text&offset=1000", "search")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.split("\n") == ids[1000:] and text.headers["x-total-count"] == "1036"
    _problem(api.call("GET", f"/v1/map/{api.second}/points?encoding=f16", "search"), 422)
    _problem(api.call("GET", f"/v1/map/{api.second}/ids?format=csv", "search"), 422)

    labels = api.call("GET", f"/v1/map/{api.second}/labels?field=source", "search").json()
    codes = np.frombuffer(base64.b64decode(labels["codes"]), dtype="<u2")
    assert labels["categories"] == ["med", "tagged"] and labels["counts"] == [1033, 3]
    assert [labels["categories"][c] for c in codes[[ids.index("t1"), ids.index("5")]]] == [
        "tagged",
        "med",
    ]
    lang = api.call("GET", f"/v1/map/{api.second}/labels?field=lang", "search").json()
    assert dict(zip(lang["categories"], lang["counts"], strict=True)) == {
        "(none)": 1033,
        "en": 2,
        "de": 1,
    }
    other = _points(api.call("GET", f"/v1/map/{api.first}/points", "search"))
    assert other.shape == xy.shape and not np.allclose(other, xy)  # another model, another map


def test_the_regions_topics_are_served_with_the_map(api: Api) -> None:
    found = api.call("GET", f"/v1/map/{api.second}/topics", "search").json()
    info = api.call("GET", f"/v1/map/{api.second}", "search").json()
    levels = [level["clusters"] for level in found["levels"]]
    assert levels == info["fit"]["topics"]["levels"] == [8, 32, 103]  # 1,036 documents: 103 of 10
    assert found["sampled"] == 1036 and info["fit"]["topics"]["seconds"] >= 0
    ids = api.call("GET", f"/v1/map/{api.second}/ids", "search").json()
    xy = _points(api.call("GET", f"/v1/map/{api.second}/points", "search"))
    for level in found["levels"]:
        assert sum(t["size"] for t in level["topics"]) == 1036
        for topic in level["topics"]:
            # each label on its point of the map, named by words (no stop words, no numbers)
            assert np.allclose(xy[ids.index(topic["id"])], [topic["x"], topic["y"]], atol=1e-4)
            assert 1 <= len(topic["keywords"]) <= 3
            assert all(re.fullmatch(topics.TOKENS, w) for w in topic["keywords"])
            assert not set(topic["keywords"]) & {"the", "and", "of", "in", "with"}
    words = {w for t in found["levels"][0]["topics"] for w in t["keywords"]}
    assert len(words) >= 12  # eight regions of MEDLINE, named apart


def test_documents_that_arrive_later_are_placed_and_deleted_ones_leave(
    api: Api, tmp_path: Path
) -> None:
    info = api.call("GET", f"/v1/map/{api.second}", "search").json()
    assert info["points"] == 1036 and info["placed_since"] == 0 and info["fit"]["method"] == "pca"
    near = api.call("GET", f"/v1/map/{api.second}/ids", "search").json().index("t1")
    rows = [{"_id": "late", "text": "kidney stones in adults and children"}]
    ingest_path(api.ws, write_jsonl(tmp_path / "late.jsonl", rows), source="late")
    # what the runtime does next: embed-new embeds it and re-indexes the aliased releases
    embed_new(Event("documents.changed", "late"), direct_context(api.ws, "embed-new"))
    api.call("DELETE", "/v1/documents/t2", "write")
    api.client.app.state.serving.refresh()  # type: ignore[attr-defined]
    info = api.call("GET", f"/v1/map/{api.second}", "search").json()
    assert info["points"] == 1036 and info["placed_since"] == 1  # +1 placed, -1 deleted
    ids = api.call("GET", f"/v1/map/{api.second}/ids", "search").json()
    assert "late" in ids and "t2" not in ids
    xy = _points(api.call("GET", f"/v1/map/{api.second}/points", "search"))
    late = xy[ids.index("late")]
    # placed among its nearest neighbours: closer to t1 ("kidney stones in adults") than most
    distances = np.linalg.norm(xy - late, axis=1)
    assert (distances < distances[ids.index("t1")]).mean() < 0.2, near


def test_the_served_map_is_prepared_before_the_page_asks(api: Api) -> None:
    # a million points take ~15 s to gather: the server does it once it serves the release, so
    # the first page load does not wait for it (its colours by the default field too)
    served = api.client.app.state.serving.get()
    deadline = time.monotonic() + 60
    while served._map is None or "lang" not in served._map._labels:
        assert time.monotonic() < deadline, "the served release's map was not prepared"
        time.sleep(0.05)
    assert served._map.release == api.second and len(served._map.ids) == 1036


def test_map_errors_and_the_page(api: Api) -> None:
    _problem(api.call("GET", "/v1/map/nope/points", "search"), 404, "nope")
    _problem(api.call("GET", f"/v1/map/{api.second}/points?limit=0", "search"), 422)
    _problem(api.call("GET", f"/v1/map/{api.second}/labels?field=", "search"), 422)
    _problem(api.client.get("/v1/map"), 401)
    _problem(api.call("GET", "/v1/map", "embed"), 403, "'search'")
    page = api.client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    script = api.client.get("/static/vendor/regl-scatterplot.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    licences = api.client.get("/static/vendor/LICENSES.txt").text
    assert "== regl-scatterplot " in licences and "== regl " in licences
    assert "cdn" not in api.client.get("/static/app.js").text.lower()  # nothing from the network


def test_the_embed_role_serves_no_map(template: dict[str, Any], tmp_path: Path) -> None:
    with _open(template, tmp_path) as ws:
        key = ws.catalog.keys.create(["admin"])[0]
        with TestClient(create_app(ws, "embed", follow=False)) as client:
            headers = {"Authorization": f"Bearer {key}"}
            _problem(client.get("/v1/map", headers=headers), 404)
            _problem(client.get("/"), 404)
