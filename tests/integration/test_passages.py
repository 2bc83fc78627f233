"""Long documents end to end: split into passages, found by a sentence from their end through the
searcher, the CLI and the API, with the passage that matched; k distinct documents under filters;
a changed or deleted long document; another chunking is another release; every cut counted.

The collection is the issue's: 60 med abstracts and one ~3,000-word report whose last sentence is
about a ceramic coating tested on an airship over Lake Baikal (its first words are about hockey).
all-MiniLM-L6-v2 reads 128 word pieces here, to keep the module quick.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from embedlake.api import create_app
from embedlake.cli.app import app
from embedlake.cli.releases import build_now
from embedlake.embeddings.batch import embed, embed_in_steps
from embedlake.embeddings.passages import Chunking
from embedlake.functions.context import direct_context
from embedlake.index.keys import doc_of, span_of
from embedlake.ingest import delete_document, ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.releases import serving
from embedlake.releases.publish import publish
from embedlake.search.build import build_index
from embedlake.search.searcher import Searcher
from embedlake.workspace import Workspace
from tests.conftest import collection, write_jsonl

ENV = {
    "EMBEDLAKE_EMBED__MODEL": "minilm",
    "EMBEDLAKE_EMBED__MAX_SEQ_LENGTH": "128",
    "EMBEDLAKE_SERVING__FORMS": "[]",
    "EMBEDLAKE_MAP__METHOD": "pca",
    "EMBEDLAKE_API__AUTH": "open",
}
LAST = "Finally, a ceramic coating for turbine blades was tested on an airship over Lake Baikal."
QUERY = "turbine blade ceramic coating tested on an airship over Baikal"


def _documents() -> list[dict[str, Any]]:
    with (collection("med") / "corpus.jsonl").open() as f:
        med = [json.loads(line) for line, _ in zip(f, range(60), strict=False)]
    rows = [{**d, "metadata": {"kind": "abstract"}} for d in med]
    words: list[str] = []
    with (collection("20newsgroups") / "corpus.jsonl").open() as f:
        for line in f:
            doc = json.loads(line)
            if doc["_id"].startswith("rec.sport.hockey"):
                words += doc["text"].split()
            if len(words) > 3000:
                break
    report = " ".join(words[:3000]) + "\n\n" + LAST
    return [*rows, {"_id": "report", "title": "Season notes", "text": report, "kind": "report"}]


def _workspace(root: Path, env: dict[str, str], docs: list[dict[str, Any]]) -> dict[str, Any]:
    with Workspace.init(root, environ=env) as ws:
        ingest_path(ws, write_jsonl(root.parent / f"{root.name}.jsonl", docs), source="mixed")
        ref = resolve_model(ws, "minilm").ref
        built = build_now(ws, ref, "test", publish=True)
    return {"root": root, "release": built["release"], "ref": ref}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("passages") / "ws"
    return _workspace(root, ENV, _documents())


@pytest.fixture
def ws(template: dict[str, Any], tmp_path: Path) -> Iterator[Workspace]:
    root = tmp_path / "ws"
    shutil.copytree(template["root"], root)
    with Workspace.open(root, environ=ENV) as workspace:
        yield workspace


def _client(ws: Workspace) -> TestClient:
    """The API with `api.auth = "open"`, which answers loopback clients only."""
    app_ = create_app(ws, follow=False)
    return TestClient(app_, base_url="http://localhost:8000", client=("127.0.0.1", 5000))


def _report_keys(searcher: Searcher) -> set[str]:
    return {k for k in searcher.index.ids() if doc_of(k) == "report"}


def test_a_sentence_from_the_end_of_a_long_document_finds_it_and_the_passage(
    ws: Workspace,
) -> None:
    searcher = Searcher(ws)  # the release behind production
    release = ws.catalog.releases.get(searcher.release.id if searcher.release else "")
    assert release.report["chunking"]["key"] == searcher.chunking.key == "p128-o16-m64"
    top = searcher.search(QUERY, 5)
    assert top[0].id == "report" and len({h.id for h in top}) == 5
    passage = top[0].passage
    assert passage is not None and "Baikal" in passage.text
    text = ws.catalog.documents.get("report").text
    assert text[passage.start : passage.end] == passage.text and passage.end == len(text)
    assert top[0].snippet.startswith(passage.text[:40])
    for hit in top[1:]:  # abstracts: over 128 word pieces, most are passages too
        doc = ws.catalog.documents.get(hit.id)
        p = hit.passage
        assert p is None or doc.text[p.start : p.end] == p.text

    # the same model with passages off cuts the report after its first words: not found
    model = ws.catalog.registry.model(searcher.model.ref)
    embed(ws, model, artifacts.load_encoder(ws, model), chunking=Chunking())
    whole = Searcher(ws, index_id=build_index(ws, model, engine="exact", chunker="").index_id)
    assert whole.chunking.key == "" and "report" not in [h.id for h in whole.search(QUERY, 3)]
    # a search of whole documents sizes its effort for k; one of passages for all it fetches
    assert (whole.whole, searcher.whole) == (True, False)


def test_the_cli_and_the_api_show_the_passage_that_matched(ws: Workspace) -> None:
    done = CliRunner().invoke(
        app, ["search", str(ws.settings.workspace), QUERY, "-k", "3", "--json"], env=ENV
    )
    assert done.exit_code == 0, done.output
    hit = json.loads(done.output)["hits"][0]
    assert hit["id"] == "report" and "Baikal" in hit["passage"]["text"]

    with _client(ws) as client:
        response = client.post("/v1/search", json={"query": QUERY, "k": 3})
        assert response.status_code == 200, response.text
        found = response.json()["results"]
        assert found[0]["id"] == "report"
        assert found[0]["passage"]["end"] == hit["passage"]["end"]
        like = client.get("/v1/documents/report/neighbours?k=10").json()["results"]
        assert len({h["id"] for h in like}) == 10 and "report" not in {h["id"] for h in like}
        # the map: one point per document, placed from its passages
        release = response.json()["release"]
        ids = client.get(f"/v1/map/{release}/ids?limit=1000").json()
        assert sorted(ids) == sorted(d for d, _ in ws.catalog.documents.iter_live_hashes())
        hybrid = client.post("/v1/search", json={"query": QUERY, "k": 3, "mode": "hybrid"})
        assert hybrid.json()["results"][0]["id"] == "report"
        assert "Baikal" in hybrid.json()["results"][0]["passage"]["text"]


def test_embed_refuses_a_text_over_the_window_or_pools_its_passages(ws: Workspace) -> None:
    report = ws.catalog.documents.get("report").text
    with _client(ws) as client:
        refused = client.post("/v1/embed", json={"texts": ["short", report]})
        assert refused.status_code == 400, refused.text
        assert "texts[1]" in refused.json()["detail"] and "128 tokens" in refused.json()["detail"]
        pooled = client.post("/v1/embed", json={"texts": ["short", report], "long": "pool"})
        body = pooled.json()
        # every passage is a text to embed: a request's passages have a limit of their own
        many = client.post("/v1/embed", json={"texts": [report] * 30, "long": "pool"})
        assert many.status_code == 413 and "api.max_passages" in many.json()["detail"]
        assert "at least" in many.json()["detail"]  # counted from the tokens, before splitting
        # a text of more passages than a text may have is refused, never pooled cut short
        assert ws.settings.passages.max_per_document < 19_000 // 128  # a token a character
        cut = client.post("/v1/embed", json={"texts": ["!" * 19_000], "long": "pool"})
        assert cut.status_code == 400, cut.text
        assert "passages.max_per_document" in cut.json()["detail"]
        assert body["passages"][0] == 1 and body["passages"][1] > 20
        assert abs(sum(x * x for x in body["vectors"][1]) - 1) < 1e-4
        # a long query is searched as the mean of its passages, never cut
        long = client.post("/v1/search", json={"query": report[-3000:], "k": 1})
        assert long.json()["results"][0]["id"] == "report"
        metrics = client.get("/metrics").text
        assert 'embedlake_texts_split_total{route="embed"} 1.0' in metrics
        assert 'embedlake_texts_split_total{route="search"} 1.0' in metrics
        assert 'embedlake_release_cut_documents{alias="production"} 0.0' in metrics


@pytest.mark.parametrize("engine", ["exact", "hnsw"])
def test_k_distinct_live_documents_under_filters(ws: Workspace, engine: str) -> None:
    model = ws.catalog.registry.model(resolve_model(ws, "minilm").ref)
    searcher = Searcher(ws, index_id=build_index(ws, model, engine=engine).index_id)
    assert len(_report_keys(searcher)) > 20  # the report fills the index with passages
    for where, k, expect in [
        (None, 20, 20),
        ({"kind": "abstract"}, 10, 10),
        ({"kind": "report"}, 5, 1),
    ]:
        [hits] = searcher.search_many([QUERY], k, where)
        ids = [h.id for h in hits]
        assert len(ids) == len(set(ids)) == expect, (where, ids)
    delete_document(ws, "report")  # a tombstone: its passages stay in the index until a rebuild
    [hits] = searcher.search_many([QUERY], 10)
    assert "report" not in [h.id for h in hits] and len(hits) == 10


def test_a_changed_long_document_replaces_its_passages_and_a_deleted_one_loses_them(
    ws: Workspace,
) -> None:
    ref = resolve_model(ws, "minilm").ref
    chunker = "p128-o16-m64"
    before = _report_keys(Searcher(ws))
    doc = ws.catalog.documents.get("report")
    changed = doc.text.replace(LAST, "The coating was then tested over Lake Titicaca.")
    rows = [{"_id": "report", "title": doc.title, "text": changed[2000:], "kind": "report"}]
    ingest_path(
        ws, write_jsonl(ws.settings.workspace.parent / "changed.jsonl", rows), source="mixed"
    )

    def update() -> Searcher:  # what the runtime's embed-new function does
        embed_in_steps(direct_context(ws, "embed-new"), ws, ref, "update", chunker)
        serving.reindex(ws, ref, chunker)
        return Searcher(ws)

    searcher = update()
    after = _report_keys(searcher)
    assert after and not after & before  # every span moved: no passage of the old text is left
    assert max(span_of(k)[1] for k in after) == len(changed) - 2000  # type: ignore[index]
    hit = searcher.search("coating tested over Lake Titicaca", 1)[0]
    assert hit.id == "report" and hit.passage is not None and "Titicaca" in hit.passage.text

    delete_document(ws, "report")
    searcher = update()
    assert not _report_keys(searcher)
    assert "report" not in [h.id for h in searcher.search(QUERY, 10)]


def test_other_chunking_settings_make_another_release_beside_the_first(
    template: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(template["root"], root)
    env = {**ENV, "EMBEDLAKE_PASSAGES__SIZE": "96", "EMBEDLAKE_PASSAGES__MAX_PER_DOCUMENT": "8"}
    with Workspace.open(root, environ=env) as ws:
        second = build_now(ws, template["ref"], "smaller passages", publish=True)["release"]
        assert second != template["release"]
        # no benchmark dataset here: the gate will not publish blind, a person may
        assert ws.catalog.releases.get(second).status == "rejected"
        publish(ws, second, force=True, actor="test", reason="smaller passages")
        new = ws.catalog.releases.get(second)
        assert new.report["chunking"]["key"] == "p96-o12-m8"
        # 8 passages of 96 tokens cannot hold the report: counted in the report and in status
        assert new.report["passages"]["cut_documents"] == 1
        status = CliRunner().invoke(app, ["status", str(root), "--json"], env=env)
        assert json.loads(status.output)["models"][0]["cut"] == 1
        searchers = {r: Searcher(ws, release=r) for r in (template["release"], second)}
        lengths = {
            r: max(e - s for k in _report_keys(s_) if (span := span_of(k)) for s, e in [span])
            for r, s_ in searchers.items()
        }
        assert lengths[second] < lengths[template["release"]]  # each release keeps its own
        assert searchers[template["release"]].search(QUERY, 1)[0].id == "report"
        with _client(ws) as client:
            metrics = client.get("/metrics").text
            assert 'embedlake_release_cut_documents{alias="production"} 1.0' in metrics


def test_the_maps_panel_marks_the_passage_that_matched(
    template: dict[str, Any], tmp_path: Path
) -> None:
    """In a real browser (Debian's Chromium), against `embedlake serve` on loopback."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_map_browser import ARGS, CHROMIUM, SHOTS
    from tests.e2e.test_serve import Server

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    root = tmp_path / "ws"
    shutil.copytree(template["root"], root)
    server = Server(root, tmp_path / "serve.log", env=ENV)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            page.fill("#query", QUERY)
            page.click("#search button")
            page.wait_for_function(
                "() => /results highlighted/.test(document.getElementById('status').textContent)"
            )
            first = page.eval_on_selector(
                "#list li", "li => [li.dataset.id, li.querySelector('.passage')?.textContent]"
            )
            assert first[0] == "report" and first[1]  # the passage's start, under its title
            page.click("#list li[data-id='report']")
            page.wait_for_function(
                "() => document.querySelector('#doc mark')?.textContent.includes('Baikal')",
                timeout=20_000,
            )
            marked = page.eval_on_selector(
                "#doc p", "p => [p.textContent, p.querySelector('mark').textContent]"
            )
            assert marked[0].endswith(marked[1]) and LAST in marked[1]  # the last passage
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "7-passage.png"))
            browser.close()
        assert errors == []
    finally:
        server.stop()


def test_k_distinct_documents_under_filters_with_pgvector(postgres: Any, tmp_path: Path) -> None:
    """The pgvector engine applies filters and tombstones in SQL: joined on the document a
    passage key belongs to."""
    env = {
        **ENV,
        "EMBEDLAKE_CATALOG__URL": postgres.database(),
        "EMBEDLAKE_INDEX__ENGINE": "pgvector",
    }
    docs = _documents()[-31:]  # 30 abstracts and the report
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        ingest_path(ws, write_jsonl(tmp_path / "docs.jsonl", docs), source="mixed")
        model = resolve_model(ws, "minilm")
        embed(ws, model, artifacts.load_encoder(ws, model))
        searcher = Searcher(ws, index_id=build_index(ws, model).index_id)
        assert searcher.index.engine == "pgvector" and len(_report_keys(searcher)) > 20
        cases = [(None, 20, 20), ({"kind": "abstract"}, 10, 10), ({"kind": "report"}, 5, 1)]
        for where, k, expect in cases:
            [hits] = searcher.search_many([QUERY], k, where)
            ids = [h.id for h in hits]
            assert len(ids) == len(set(ids)) == expect, (where, ids)
        assert searcher.search_many([QUERY], 1, {"kind": "report"})[0][0].passage is not None
        delete_document(ws, "report")
        for where in (None, {"kind": ["report", "abstract"]}):
            [hits] = searcher.search_many([QUERY], 10, where)
            assert "report" not in [h.id for h in hits] and len(hits) == 10
        searcher.index.drop()  # type: ignore[attr-defined]
