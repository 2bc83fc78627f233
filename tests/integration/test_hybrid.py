"""Hybrid search as a release's mode: BM25 built and saved with the release, the fusion fitted on
judged queries the gate never uses, served by the searcher and /v1/search, and rebuilt when the
corpus moves on."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embedlake import Workspace
from embedlake.api import create_app
from embedlake.cli.releases import register_and_build
from embedlake.errors import InputError
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import load_folder, split_copy
from embedlake.search.hybrid import CANDIDATES, Fusion, fuse
from embedlake.search.load import BM25_FOLDER
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection

QUERY = "kidney stones in children"


def test_fuse_and_its_settings() -> None:
    dense, lexical = [("a", 0.9), ("b", 0.5), ("c", 0.1)], [("c", 12.0), ("d", 6.0), ("a", 2.0)]
    rrf = fuse(dense, lexical, Fusion("rrf", k=1))
    assert rrf["a"] == pytest.approx(1 / 2 + 1 / 4) and rrf["d"] == pytest.approx(1 / 3)
    # weighted: each side min-max normalised, the dense side's share 0.7
    weighted = fuse(dense, lexical, Fusion("weighted", weight=0.7))
    assert weighted["a"] == pytest.approx(0.7 * 1 + 0.3 * 0)
    assert weighted["c"] == pytest.approx(0.7 * 0 + 0.3 * 1)
    assert weighted["b"] == pytest.approx(0.7 * 0.5)
    # tmm: each side over its theoretical floor (cosine −1, BM25 0) up to its best
    tmm = fuse(dense, lexical, Fusion("tmm", weight=0.5))
    assert tmm["a"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 12)
    assert tmm["c"] == pytest.approx(0.5 * 1.1 / 1.9 + 0.5 * 1)
    assert tmm["d"] == pytest.approx(0.5 * 6 / 12)
    assert fuse([("a", -1.0)], [("b", 0.0)], Fusion("tmm")) == {"a": 0.0, "b": 0.0}
    assert Fusion.from_report(None) == Fusion("rrf", 60)
    for bad in ({"method": "max", "k": 1, "weight": 0.5}, {"method": "rrf", "k": 0, "weight": 0}):
        with pytest.raises(InputError, match="hybrid fusion"):
            Fusion.from_report(bad)


@pytest.fixture
def released(tmp_path: Path) -> tuple[Workspace, str, Path]:
    folder = tmp_path / "split" / "med"
    split_copy(collection("med"), folder, train=0.3, dev=0.3, seed=2)
    ws = Workspace.init(tmp_path / "ws", environ={"EMBEDLAKE_SERVING__FORMS": "[]"})
    ingest_path(ws, folder)
    release = register_and_build(ws, train(ws, name="lsa", kind="lsa", components=64)[0])
    return ws, release["release"], folder


def test_the_release_fits_its_fusion_on_dev_queries_and_serves_it(
    released: tuple[Workspace, str, Path],
) -> None:
    ws, release_id, folder = released
    with ws:
        report = ws.catalog.releases.get(release_id).report
        hybrid = report["hybrid"]
        [fitted] = hybrid["fitted_on"]
        dev, test = load_folder(folder, "dev"), load_folder(folder, "test")
        train_split = load_folder(folder, "train")
        assert fitted == {
            "dataset": "med",
            "queries": len(dev.queries) + len(train_split.queries),
            "from": "dev and train judgments",
        }
        assert not (set(dev.queries) | set(train_split.queries)) & set(test.queries)
        best = max(hybrid["candidates"].values())
        fusion = Fusion.from_report(hybrid["fusion"])
        assert hybrid["candidates"][fusion.name] == best
        assert list(hybrid["candidates"]) == [c.name for c in CANDIDATES]
        # BM25 was built with the release and is what the searcher loads
        prefix = ws.catalog.releases.get(release_id).prefix
        assert ws.lake.exists(f"{prefix}/{BM25_FOLDER}/ids.json")
        searcher = Searcher(ws)
        assert searcher.fusion == fusion and searcher._release_bm25() is not None
        [(dense, lexical)] = searcher.sides([QUERY], 100)
        fused = fuse([(h.id, h.score) for h in dense], [(d, s) for d, s, _ in lexical], fusion)
        expected = sorted(fused, key=lambda d: -fused[d])[:10]
        assert [h.id for h in searcher.hybrid(QUERY, 10)] == expected
        # /v1/search in hybrid mode answers with the release's fusion
        key = ws.catalog.keys.create(["search"], "t")[0]
        with TestClient(create_app(ws, follow=False)) as client:
            response = client.post(
                "/v1/search",
                headers={"Authorization": f"Bearer {key}"},
                json={"query": QUERY, "k": 10, "mode": "hybrid"},
            )
        assert response.status_code == 200, response.text
        assert [h["id"] for h in response.json()["results"]] == expected
        # the gate measured hybrid and BM25 on the test queries
        modes = report["datasets"]["med"]["modes"]
        assert set(modes) == {"bm25", "hybrid"} and 0 < modes["hybrid"]["ndcg@10"] <= 1


def test_a_changed_corpus_rebuilds_bm25_unless_it_is_too_large_to_build_in_a_search(
    released: tuple[Workspace, str, Path], tmp_path: Path
) -> None:
    ws, release, _ = released
    with ws:
        assert Searcher(ws)._release_bm25() is not None
        rows = ws.catalog.releases.get(release).report["hybrid"]["bm25"]["rows"]
        new = tmp_path / "new.jsonl"
        new.write_text('{"_id": "fresh", "text": "zygomatic xylophone kidney stones"}\n')
        ingest_path(ws, new)
        searcher = Searcher(ws)
        assert searcher._release_bm25() is None  # the corpus moved on: built anew
        assert "fresh" in {d for d, _, _ in searcher.sides(["zygomatic xylophone"], 10)[0][1]}
    # one passage fewer than the release's BM25 holds may be built in a search: not that one,
    # which is served as the release saved it
    env = {"EMBEDLAKE_SERVING__FORMS": "[]", "EMBEDLAKE_RELEASES__BM25_REBUILD_MAX": str(rows - 1)}
    with Workspace.open(ws.settings.workspace, environ=env) as again:
        searcher = Searcher(again)
        saved = searcher._release_bm25()
        assert saved is not None and len(saved.ids) == rows
        lexical = {d for d, _, _ in searcher.sides(["zygomatic xylophone"], 10)[0][1]}
        assert "fresh" not in lexical  # not in the saved BM25: the dense side may still find it


def test_a_fine_tuned_model_fits_its_fusion_without_its_training_queries(
    released: tuple[Workspace, str, Path],
) -> None:
    from embedlake.releases.hybrid import fitting_sets

    ws, _, folder = released
    with ws:
        trained_on = sorted(load_folder(folder, "train").queries)
        model = ws.catalog.registry.add_model(
            name="tuned",
            version="1",
            kind="lsa",
            dim=2,
            content_hash="h",
            prefix="p",
            manifest={"training_data": {"dataset": "med", "train_queries": trained_on}},
        )
        ws.catalog.releases.create("tuned-r", model.id, "test")
        [(dataset, source)] = fitting_sets(ws, ws.catalog.releases.get("tuned-r"))
        assert source == "dev judgments"
        assert sorted(dataset.queries) == sorted(load_folder(folder, "dev").queries)


def test_a_release_with_few_queries_to_fit_on_keeps_the_live_fusion(
    released: tuple[Workspace, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule of ``releases/hybrid.py``: under ``MIN_QUERIES`` (raised here above med's 18
    fitting queries) the fusion of the release behind the alias is kept, and said so."""
    from embedlake.releases import hybrid as release_hybrid

    ws, first, _ = released
    monkeypatch.setattr(release_hybrid, "MIN_QUERIES", 1000)
    with ws:
        live = ws.catalog.releases.get(first).report["hybrid"]
        model = train(ws, name="lsa-b", kind="lsa", components=48)[0]
        second = register_and_build(ws, model)["release"]
        part = ws.catalog.releases.get(second).report["hybrid"]
    assert part["kept_from"] == first and part["fusion"] == live["fusion"]
    assert part["fitted_on"] and list(part["candidates"]) == [c.name for c in CANDIDATES]
