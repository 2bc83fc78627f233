"""Publish never shrinks coverage: a release built before documents arrived is brought up to date
before an alias moves to it (publish, rollback, the runtime's own publish), or the move is refused
with the count of documents it lacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embedlake import Workspace
from embedlake.cli.releases import build_now
from embedlake.errors import Conflict
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.functions.builtin import embed_new
from embedlake.functions.context import direct_context
from embedlake.ingest import ingest_path
from embedlake.ingest.datasets import register_beir
from embedlake.models import artifacts
from embedlake.releases import coverage, gate
from embedlake.releases.publish import publish, rollback
from embedlake.runtime import Runtime
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection, write_jsonl
from tests.integration.test_runtime import FAST, _drop

QUERY = "zygomatic quokka stones"


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.init(tmp_path / "ws", environ=FAST) as workspace:
        ingest_path(workspace, collection("med"))
        yield workspace


def _release(ws: Workspace, name: str, components: int, *, published: bool) -> str:
    prefix, _ = train(ws, name=name, kind="lsa", components=components)
    record, _ = artifacts.register_from_lake(ws, prefix)
    return str(build_now(ws, record.ref, name, publish=published)["release"])


def _arrive(ws: Workspace, tmp_path: Path, n: int, tag: str = "late") -> list[str]:
    """``n`` documents no release has seen, all about one odd query."""
    ids = [f"{tag}{i}" for i in range(n)]
    rows: list[object] = [{"_id": d, "text": f"{QUERY} {d} quokka zygomatic"} for d in ids]
    ingest_path(ws, write_jsonl(tmp_path / f"{tag}.jsonl", rows))
    return ids


def _found(ws: Workspace, alias: str = "production") -> set[str]:
    return {h.id for h in Searcher(ws, alias=alias).search(QUERY, 20)}


def test_publishing_a_release_behind_the_catalog_catches_it_up(
    ws: Workspace, tmp_path: Path
) -> None:
    _release(ws, "lsa-a", 64, published=True)
    behind = _release(ws, "lsa-b", 32, published=False)
    late = _arrive(ws, tmp_path, 7)
    assert coverage.lacking(ws, behind) == 7
    move = publish(ws, behind, force=True)
    assert move.to_release == behind and "caught up 7 documents" in move.reason
    assert set(late) <= _found(ws)
    assert coverage.lacking(ws, behind) == 0


def test_a_release_too_far_behind_is_refused_with_the_count(tmp_path: Path) -> None:
    env = {**FAST, "EMBEDLAKE_RELEASES__CATCH_UP_LIMIT": "3"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        ingest_path(ws, collection("med"))
        first = _release(ws, "lsa-a", 64, published=True)
        behind = _release(ws, "lsa-b", 32, published=False)
        late = _arrive(ws, tmp_path, 5)
        with pytest.raises(
            Conflict, match=r"lacks 5 .*releases.catch_up_limit.*embedlake catch-up"
        ):
            publish(ws, behind, force=True)
        assert ws.catalog.releases.alias("production") == first  # nothing moved
        assert coverage.catch_up(direct_context(ws, "cli"), ws, behind) == 5
        publish(ws, behind, force=True)
        assert set(late) <= _found(ws)


def test_rollback_to_a_release_built_before_documents_arrived_catches_it_up(
    ws: Workspace, tmp_path: Path
) -> None:
    first = _release(ws, "lsa-a", 64, published=True)
    second = _release(ws, "lsa-b", 32, published=False)
    publish(ws, second, force=True)
    late = _arrive(ws, tmp_path, 4)  # no runtime: nothing embeds them yet
    move = rollback(ws)
    assert move.to_release == first and "caught up 4 documents" in move.reason
    assert set(late) <= _found(ws)


def test_rollback_too_far_behind_is_refused_with_the_count(tmp_path: Path) -> None:
    env = {**FAST, "EMBEDLAKE_RELEASES__CATCH_UP_LIMIT": "2"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        ingest_path(ws, collection("med"))
        _release(ws, "lsa-a", 64, published=True)
        second = _release(ws, "lsa-b", 32, published=False)
        publish(ws, second, force=True)
        _arrive(ws, tmp_path, 3)
        with pytest.raises(Conflict, match="lacks 3 "):
            rollback(ws)
        assert ws.catalog.releases.alias("production") == second


def test_embed_new_brings_every_aliased_release_up_to_date(ws: Workspace, tmp_path: Path) -> None:
    """Even when the model has embedded everything already (so nothing is new to embed), an
    aliased release whose index is older than its model's vectors is indexed again."""
    _release(ws, "lsa-a", 64, published=True)
    behind = _release(ws, "lsa-b", 32, published=False)
    late = _arrive(ws, tmp_path, 6)
    model = ws.catalog.registry.model_by_id(ws.catalog.releases.get(behind).model_id)
    from embedlake.embeddings.batch import embed_in_steps

    embed_in_steps(direct_context(ws, "cli"), ws, model.ref, "by hand")  # vectors, no index
    # the alias moved by a path that did not catch up (an older embedlake, a restored catalog)
    ws.catalog.releases.move(
        "production", behind, kind="publish", actor="t", reason="", expect=None
    )
    assert not set(late) & _found(ws)
    event = Event(DOCUMENTS_CHANGED, "more", {"changed": 0})
    embed_new(event, direct_context(ws, "embed-new", request_id="e1"))
    assert set(late) <= _found(ws)


def test_documents_arriving_during_a_build_are_searchable_in_production_after_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's case: documents arrive after the build's own catch-up stage (here: while it is
    benchmarked), embed-new embeds them for the release that serves, then the new release is
    published by the runtime. They must be found in production once the runtime is idle."""
    judge = gate.judge
    arrived: list[str] = []

    def judge_while_documents_arrive(w: Workspace, release: Any, *args: Any) -> Any:
        if release.id.startswith("lsa-b") and not arrived:
            arrived.extend(f"mid{i}" for i in range(5))
            rows: list[object] = [{"_id": d, "text": f"{QUERY} {d}"} for d in arrived]
            _drop(w, write_jsonl(tmp_path / "mid.jsonl", rows), "raw/mid/mid.jsonl")
            _wait_embedded(w, arrived)
        return judge(w, release, *args)

    monkeypatch.setattr(gate, "judge", judge_while_documents_arrive)
    with Workspace.init(tmp_path / "ws", environ=FAST) as ws, Runtime(ws) as runtime:
        _drop(ws, collection("med") / "corpus.jsonl", "raw/med/corpus.jsonl")
        assert runtime.wait_idle(120)
        register_beir(ws, collection("med"), name="med")
        train(ws, name="lsa-a", kind="lsa", components=32)
        assert runtime.wait_idle(300)
        train(ws, name="lsa-b", kind="lsa")  # more components: it passes the gate
        assert runtime.wait_idle(300)
        production = ws.catalog.releases.alias("production")
        assert production is not None and production.startswith("lsa-b") and arrived
        assert set(arrived) <= _found(ws)
        assert coverage.lacking(ws, production) == 0
        assert {i.status for i in ws.catalog.events.invocations()} == {"succeeded"}


def _wait_embedded(ws: Workspace, ids: list[str]) -> None:
    """Until the release that serves has embedded ``ids`` (embed-new ran for them)."""
    import time

    deadline = time.monotonic() + 120
    production = ws.catalog.releases.alias("production")
    assert production is not None
    release = ws.catalog.releases.get(production)
    while not set(ids) <= set(ws.catalog.registry.current(release.model_id, release.chunker)):
        assert time.monotonic() < deadline, "embed-new never embedded the new documents"
        time.sleep(0.05)


def test_the_coverage_snapshot_is_sorted_streamed_and_read_in_either_form(
    ws: Workspace, tmp_path: Path
) -> None:
    import json

    import pyarrow.parquet as pq

    from embedlake.catalog.documents import pairs_hash

    release_id = _release(ws, "lsa-a", 16, published=True)
    release = ws.catalog.releases.get(release_id)
    with ws.lake.open(f"{release.prefix}/{coverage.FILE}") as f:
        snapshot = pq.read_table(f).to_pylist()
    ids = [r["id"] for r in snapshot]
    assert len(ids) == 1033 and ids == sorted(ids)  # code-point order, as the merge needs
    live = dict(ws.catalog.documents.iter_live_hashes())
    assert {r["id"]: r["hash"] for r in snapshot} == {
        d: h[: coverage.HASH_CHARS] for d, h in live.items()
    }
    # the snapshot's hash is the hash of every full pair, as it was when held in one dict
    assert release.snapshot["corpus_hash"] == pairs_hash(sorted(live.items()))
    assert release.snapshot["documents"] == 1033
    assert coverage.lacking(ws, release_id) == 0

    late = _arrive(ws, tmp_path, 3)
    changed = sorted(live)[500]
    new_text = write_jsonl(tmp_path / "changed.jsonl", [{"_id": changed, "text": "new"}])
    assert ingest_path(ws, new_text, source="med")[0].updated == 1
    ws.catalog.documents.delete(sorted(live)[0])  # a deletion lacks nothing
    assert coverage.lacking(ws, release_id) == len(late) + 1

    # a release indexed before the snapshot was streamed has a coverage.json: still counted
    ws.lake.put(
        f"{release.prefix}/{coverage.OLD_FILE}",
        json.dumps({d: h[: coverage.HASH_CHARS] for d, h in live.items()}).encode(),
    )
    ws.lake.delete(f"{release.prefix}/{coverage.FILE}")
    assert coverage.lacking(ws, release_id) == len(late) + 1


def test_the_merge_counts_what_the_snapshot_lacks() -> None:
    held = [("A", "h1"), ("a", "h2"), ("b", "h3"), ("é", "h4")]  # sorted by code point
    live = [("0", "x"), ("A", "h1"), ("a", "changed"), ("c", "h5"), ("é", "h4"), ("日", "h6")]
    # "0", "c" and "日" are not held, "a" is held at another text; "b" was deleted since
    assert coverage._missing(live, held) == 4
    assert coverage._missing(live, []) == len(live)
    assert coverage._missing([], held) == 0
