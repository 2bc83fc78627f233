"""The release chain under the functions runtime: a model arrives, a release is built, benchmarked,
gated, and published or rejected, while searches keep being answered."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from embedlake import Workspace
from embedlake.evaluate.bench import bench_index
from embedlake.events import MODEL_REJECTED
from embedlake.ingest.datasets import Dataset
from embedlake.releases.gate import NO_REGRESSION
from embedlake.releases.publish import publish, rollback
from embedlake.runtime import Runtime
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection
from tests.integration.test_runtime import FAST, _drop, wait_noticed

QUERIES = [
    "cancer cells in mice",
    "blood pressure in children",
    "kidney failure",
    "the effect of drugs on the heart",
]


class Searching(threading.Thread):
    """Asks the production alias a stream of queries, a round of them every ``PAUSE`` seconds
    (each round loads the alias's release again); remembers every failure."""

    # paced, not a busy loop: encoding queries without a pause took a core from the work under
    # test (a third of the fine-tune chain's CPU time), and the claim is that searches keep
    # being answered, not how many
    PAUSE = 0.5

    def __init__(self, ws: Workspace) -> None:
        super().__init__(daemon=True)
        self.ws, self.stop, self.errors, self.answered = ws, threading.Event(), [], 0

    def __enter__(self) -> Searching:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # always stopped, even when the test fails: a thread left inside torch at interpreter
        # exit aborts the whole process
        self.stop.set()
        self.join()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                searcher = Searcher(self.ws)
                for query in QUERIES:
                    assert len(searcher.search(query, 5)) == 5
                    self.answered += 1
            except Exception as exc:
                self.errors.append(repr(exc))
            self.stop.wait(self.PAUSE)


def _top(ws: Workspace) -> list[list[tuple[str, float]]]:
    searcher = Searcher(ws)
    return [[(h.id, round(h.score, 6)) for h in searcher.search(q, 10)] for q in QUERIES]


@pytest.fixture
def ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Workspace.init(tmp_path / "ws", environ=FAST) as workspace:
        yield workspace


def test_train_release_gate_publish_reject_and_roll_back(ws: Workspace, tmp_path: Path) -> None:
    with Runtime(ws) as runtime:
        _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
        assert runtime.wait_idle(120)
        from embedlake.ingest.datasets import register_beir

        register_beir(ws, collection("med"), name="med")
        # 1. the first release publishes if it builds
        train(ws, name="lsa-a", kind="lsa")
        assert runtime.wait_idle(300)
        [first] = ws.catalog.releases.all()
        assert first.status == "published" and first.report["gate"]["first_release"]
        assert ws.catalog.releases.alias("production") == first.id
        assert ws.lake.exists(f"{first.prefix}/report.json")
        assert ws.lake.exists(f"{first.prefix}/reducer/pca_components.npy")
        assert 0 < first.report["reducer"]["dims"] < 256
        assert 0 < first.report["reducer"]["recall@10_vs_full"] <= 1
        # the index's search effort, tuned to the recall target at build, is what serving uses
        index = first.report["index"]
        assert index["id"] == first.index_id and index["tuning"]["reached"]
        assert index["tuning"]["recall"] >= ws.settings.index.recall_target
        served = Searcher(ws).index
        assert getattr(served, index["tuning"]["knob"]) == index["tuning"]["value"]
        model = ws.catalog.registry.model_by_id(first.model_id)
        assert "Gate: passed" in ws.lake.get(f"{model.prefix}/card.md").decode()
        before = _top(ws)

        with Searching(ws) as searching:
            # 2. a deliberately bad model is built, benchmarked and rejected
            train(ws, name="lsa-bad", kind="lsa", components=2)
            assert runtime.wait_idle(300)
            bad = next(r for r in ws.catalog.releases.all() if r.id.startswith("lsa-bad"))
            assert bad.status == "rejected"
            rules = {(r["rule"], r["mode"]): r for r in bad.report["gate"]["rules"]}
            rule = rules[NO_REGRESSION, "dense"]
            assert not rule["passed"] and rule["margin"] < -0.3 and rule["change"]["high"] < 0
            # hybrid (BM25 holds it up) and BM25 alone are gated too: BM25 did not move
            assert rules[NO_REGRESSION, "bm25"]["change"]["delta"] == 0.0
            assert rules[NO_REGRESSION, "hybrid"]["change"]["delta"] < 0
            assert ws.catalog.releases.alias("production") == first.id
            assert _top(ws) == before

            # 3. a broken model folder is refused with a reason; nothing live changes
            broken = ws.settings.workspace / "lake" / "models" / "broken" / "1"
            shutil.copytree(ws.settings.workspace / "lake" / model.prefix, broken)
            manifest = json.loads((broken / "manifest.json").read_text())
            manifest.update(name="broken", version="1")
            (broken / "components.npy").unlink()
            (broken / "manifest.json").write_text(json.dumps(manifest))
            wait_noticed(ws, "models/broken/1/manifest.json")
            assert runtime.wait_idle(120)
            reason = json.loads(ws.lake.get("quarantine/models/broken/1.reason.json"))
            assert "missing files components.npy" in reason["reason"]
            assert any(e.type == MODEL_REJECTED for e in ws.catalog.events.all())
            assert [m.name for m in ws.catalog.registry.list_models()].count("broken") == 0

            # 4. forced publish of the bad release, then rollback restores results exactly
            publish(ws, bad.id, force=True, reason="to see it fail")
            assert _top(ws) != before
            assert rollback(ws).to_release == first.id
            assert _top(ws) == before

            # 5. documents arriving after the publish join the production release
            new = tmp_path / "new.jsonl"
            new.write_text(
                "".join(f'{{"_id": "new{i}", "text": "kidney stones {i}"}}\n' for i in range(3))
            )
            _drop(ws, new, "raw/med-extra/new.jsonl")
            assert runtime.wait_idle(120)
    assert searching.errors == [] and searching.answered > 0
    production = ws.catalog.releases.get(first.id)
    assert production.index_id is not None
    assert ws.catalog.registry.index(production.index_id).n_vectors == 1036
    statuses = {i.function: i.status for i in ws.catalog.events.invocations()}
    assert set(statuses.values()) == {"succeeded"}


def test_the_corpus_growing_by_a_fifth_retrains_and_releases(tmp_path: Path) -> None:
    env = {**FAST, "EMBEDLAKE_TRAINING__KIND": "lsa", "EMBEDLAKE_TRAINING__GROW": "0.2"}
    lines = (collection("med") / "corpus.jsonl").read_text().splitlines()
    first, more = tmp_path / "first.jsonl", tmp_path / "more.jsonl"
    first.write_text("\n".join(lines[:800]) + "\n")
    more.write_text("\n".join(lines[800:]) + "\n")  # 233 more: +29%
    with Workspace.init(tmp_path / "ws", environ=env) as ws, Runtime(ws) as runtime:
        _drop(ws, first, "raw/med/first.jsonl")
        assert runtime.wait_idle(120)
        train(ws, name="lsa-a", kind="lsa")
        assert runtime.wait_idle(300)
        assert [m.name for m in ws.catalog.registry.list_models()].count("auto") == 0
        _drop(ws, more, "raw/med/more.jsonl")
        assert runtime.wait_idle(300)
        models = [m.name for m in ws.catalog.registry.list_models()]
        assert models.count("auto") == 1
        auto = next(r for r in ws.catalog.releases.all() if r.id.startswith("auto-"))
        assert auto.status in ("published", "rejected")
        assert auto.snapshot["documents"] == 1033
        grown = [i for i in ws.catalog.events.invocations(function="retrain-on-growth")]
        assert {i.status for i in grown} == {"succeeded"}


def test_retention_keeps_what_aliases_need(tmp_path: Path) -> None:
    from embedlake.releases.publish import retain

    env = {**FAST, "EMBEDLAKE_RELEASES__KEEP_MOVES": "1"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        from embedlake.ingest import ingest_path

        ingest_path(ws, collection("med"))
        made = []
        for n, components in enumerate((64, 2, 32)):
            prefix, _ = train(ws, name=f"lsa-{n}", kind="lsa", components=components)
            from embedlake.cli.releases import register_and_build

            made.append(register_and_build(ws, prefix)["release"])
        statuses = {r.id: r.status for r in ws.catalog.releases.all()}
        assert statuses[made[1]] == "rejected"
        removed = retain(ws)
        current = ws.catalog.releases.alias("production")
        assert made[1] in removed  # rejected, never aliased
        assert current not in removed
        assert list(ws.lake.list(f"releases/{made[1]}")) == []
        assert ws.catalog.releases.get(made[1]).status == "removed"
        assert Searcher(ws).search("kidney", 3)  # what is live still answers
        assert retain(ws) == []  # nothing more to remove


def test_self_supervised_pairs_and_a_seeded_split(ws: Workspace, tmp_path: Path) -> None:
    from embedlake.ingest import ingest_path
    from embedlake.training.pairs import from_spec

    ingest_path(ws, collection("cisi"))
    pairs = from_spec(ws, "self:title", seed=3)
    assert len(pairs) > 1000 and pairs.info["pairs"] == "self:title"
    assert pairs.anchors[0] != pairs.positives[0]
    qrels = from_spec(ws, f"qrels:{collection('cisi')}", seed=3)
    again = from_spec(ws, f"qrels:{collection('cisi')}", seed=3)
    other = from_spec(ws, f"qrels:{collection('cisi')}", seed=4)
    assert qrels.info["train_queries"] == again.info["train_queries"]
    assert qrels.info["pairs_hash"] == again.info["pairs_hash"]
    assert qrels.info["train_queries"] != other.info["train_queries"]
    assert set(qrels.info["train_queries"]).isdisjoint(qrels.info["heldout_queries"])
    with pytest.raises(Exception, match="qrels:PATH"):
        from_spec(ws, "labels:nowhere")


def test_a_release_whose_pca_backs_its_index(tmp_path: Path) -> None:
    from embedlake.cli.releases import register_and_build
    from embedlake.ingest import ingest_path

    env = {**FAST, "EMBEDLAKE_REDUCE__BACK_INDEX": "true", "EMBEDLAKE_REDUCE__COMPONENTS": "64"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        ingest_path(ws, collection("med"))
        prefix, _ = train(ws, name="lsa-a", kind="lsa")
        release = ws.catalog.releases.get(register_and_build(ws, prefix)["release"])
        assert release.status == "published"
        reducer = release.report["reducer"]
        assert reducer["backs_index"] and reducer["dims"] == 64 and reducer["from_dims"] == 256
        assert release.index_id is not None
        index = ws.catalog.registry.index(release.index_id)
        assert index.params["dim"] == 64 and index.params["reduced"]
        searcher = Searcher(ws)
        assert searcher.reducer is not None and searcher.index.dim == 64
        hits = searcher.search("kidney failure in children", 10)
        assert len(hits) == 10
        # words LSA never saw: a zero vector, which the PCA's centring must not turn into a query
        assert not searcher.encode(["zqxv wwjk"]).any()
        assert searcher.search("zqxv wwjk", 10) == []
        # and the gate's benchmark answers it as served: with nothing, outside the ANN recall
        doc = hits[0].id
        probe = Dataset("probe", {"a": "kidney failure in children", "b": "zqxv wwjk"}, {})
        probe.qrels.update({"a": {doc: 1}, "b": {doc: 1}})
        judged = bench_index(ws, probe, searcher.model, index, reducer=searcher.reducer)
        assert judged.top10["b"] == [] and judged.top10["a"][0] == doc
        assert judged.metrics["ann_recall@10"] >= 0.9
        med = release.report["datasets"]["med"]["release"]
        assert med["ann_recall@10"] >= 0.95 and med["ndcg@10"] > 0.5  # quality kept at 64 dims


def test_new_documents_reach_every_aliased_release_and_compare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two aliases on releases of two models: embed-new must embed for both (each fan-out of one
    invocation has its own name) and re-index both."""
    from embedlake.cli.releases import build_now
    from embedlake.ingest import ingest_path
    from embedlake.releases.compare import compare

    with Workspace.init(tmp_path / "ws", environ=FAST) as ws:
        ingest_path(ws, collection("med"))
        a, _ = train(ws, name="lsa-a", kind="lsa", components=64)
        b, _ = train(ws, name="lsa-b", kind="lsa", components=32)
        from embedlake.models import artifacts

        refs = [artifacts.register_from_lake(ws, p)[0].ref for p in (a, b)]
        first = build_now(ws, refs[0], "a", publish=True)["release"]
        second = build_now(ws, refs[1], "b", publish=False)["release"]
        # the alias move and the release's status are one transaction: if marking it
        # published fails, the alias has not moved either (no reader sees it half done)
        releases, real = ws.catalog.releases, ws.catalog.releases.update

        def failing(release_id: str, **values: Any) -> None:
            if values.get("status") == "published":
                raise RuntimeError("the catalog went away")
            real(release_id, **values)

        with monkeypatch.context() as patched:
            patched.setattr(releases, "update", failing)
            with pytest.raises(RuntimeError, match="went away"):
                publish(ws, second, alias="staging", force=True)
        assert releases.alias("staging") is None and releases.get(second).status == "built"
        publish(ws, second, alias="staging", force=True)
        with pytest.raises(Exception, match="already points"):
            publish(ws, second, alias="staging")
        compared = compare(ws, first, second)
        [row] = compared["datasets"]
        change = row["ndcg@10_change"]
        assert change["wins"] + change["losses"] + change["ties"] == row["queries"] == 30
        assert 0 <= row["overlap@10"] <= 1 and row[first]["ndcg@10"] > 0
        assert change["low"] <= change["delta"] <= change["high"] and 0 < change["p_value"] <= 1
        assert change["delta"] == pytest.approx(
            row[second]["ndcg@10"] - row[first]["ndcg@10"], abs=1e-9
        )
        # the same rules as the gate, with the same statistics
        [rule] = [
            r
            for r in compared["gate"]["rules"]
            if r["rule"] == NO_REGRESSION and r["mode"] == "dense"
        ]
        assert rule["change"] == change
        # BM25 and hybrid compared on the same queries (the same corpus: BM25 does not move)
        modes = {m["mode"]: m for m in compared["modes"]}
        assert set(modes) == {"bm25", "hybrid"}
        assert modes["bm25"]["ndcg@10_change"]["delta"] == 0.0
        # the CLI says the same: the interval, the p-value and the policy's verdict
        from typer.testing import CliRunner

        from embedlake.cli.app import app

        shown = CliRunner().invoke(app, ["compare", str(ws.settings.workspace), first, second])
        assert shown.exit_code == 0, shown.output
        p_value = f"p {change['p_value']:.3g}, 30 queries"
        assert f"{change['delta']:+.4f} (95% CI {change['low']:+.4f}" in shown.output
        assert p_value in shown.output and "med (hybrid): nDCG@10" in shown.output
        assert "gate (no_regression), " in shown.output
        listed = CliRunner().invoke(app, ["releases", str(ws.settings.workspace), "--json"])
        row_b = next(r for r in json.loads(listed.output) if r["release"] == second)
        assert row_b["ndcg@10"]["med"]["queries"] == 30 and row_b["against"] == first
        with Runtime(ws) as runtime:
            new = tmp_path / "new.jsonl"
            new.write_text(
                "".join(f'{{"_id": "n{i}", "text": "renal stones {i}"}}\n' for i in range(4))
            )
            _drop(ws, new, "raw/more/new.jsonl")
            assert runtime.wait_idle(120)
        for release_id in (first, second):
            release = ws.catalog.releases.get(release_id)
            assert release.index_id is not None
            assert ws.catalog.registry.index(release.index_id).n_vectors == 1037
        assert {i.status for i in ws.catalog.events.invocations()} == {"succeeded"}


def test_only_built_releases_can_be_published(ws: Workspace) -> None:
    model = ws.catalog.registry.add_model(
        name="m", version="1", kind="lsa", dim=2, content_hash="h", prefix="p", manifest={}
    )
    ws.catalog.releases.create("r1", model.id, "test")
    with pytest.raises(Exception, match="is building: only a built release"):
        publish(ws, "r1", force=True)
    with pytest.raises(Exception, match="does not exist"):
        publish(ws, "nope")
    assert ws.catalog.releases.alias("production") is None


def test_a_release_runs_its_heavy_stages_as_fan_outs_on_the_engine(ws: Workspace) -> None:
    """Reducer, map and index go through ``ctx.map``: on the Ray engine they run on its actors."""
    from embedlake.ingest import ingest_path
    from embedlake.models import artifacts
    from embedlake.releases.build import build
    from embedlake.steps import DirectSteps

    class Recording(DirectSteps):
        request_id = "heavy-stages"

        def __init__(self, workspace: Workspace) -> None:
            super().__init__(workspace)
            self.mapped: list[tuple[str, str]] = []

        def map(self, name: str, fn: Any, items: Any) -> list[Any]:
            self.mapped.append((name, fn.__name__))
            return super().map(name, fn, items)

    ingest_path(ws, collection("med"))
    record, _ = artifacts.register_from_lake(ws, train(ws, name="lsa-h", kind="lsa")[0])
    steps = Recording(ws)
    released = build(steps, ws, record.ref, reason="test")
    stages = [m for m in steps.mapped if not m[0].startswith(("embed", "catch-up"))]
    assert stages == [
        ("serving form", "_serving_form"),
        ("reducer", "reduce_release"),
        ("map", "map_release"),
        ("index", "index_release"),
        ("hybrid", "prepare"),
    ]
    assert ws.catalog.releases.get(released).status == "published"
