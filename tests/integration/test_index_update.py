"""A serving release's index brought up to date by an update, not a build (search/update.py): the
changed documents' passages replaced, the result the same as a build would hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedlake import Workspace
from embedlake.events import DOCUMENTS_CHANGED, Event
from embedlake.functions.builtin import embed_new
from embedlake.functions.context import direct_context
from embedlake.ingest import delete_document, ingest_path
from embedlake.releases import coverage
from embedlake.releases.publish import publish
from embedlake.search.build import build_index
from embedlake.search.load import load_index
from embedlake.search.update import UPDATE_SHARE
from tests.conftest import collection, write_jsonl
from tests.integration.test_publish_coverage import QUERY, _arrive, _found, _release
from tests.integration.test_runtime import FAST


@pytest.fixture(params=["hnsw", "rabitq", "rabitq-hnsw", "exact"])
def ws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    env = {**FAST, "EMBEDLAKE_INDEX__ENGINE": str(request.param)}
    with Workspace.init(tmp_path / "ws", environ=env) as workspace:
        ingest_path(workspace, collection("med"))
        yield workspace


def _embed_new(ws: Workspace, tag: str) -> None:
    event = Event(DOCUMENTS_CHANGED, "med", {"changed": 1})
    embed_new(event, direct_context(ws, "embed-new", request_id=tag))


def test_a_few_changes_update_the_index_to_what_a_build_would_hold(
    ws: Workspace, tmp_path: Path
) -> None:
    release_id = _release(ws, "lsa-a", 32, published=True)
    before = ws.catalog.releases.get(release_id).index_id
    late = _arrive(ws, tmp_path, 6)
    changed = {"_id": "2", "text": f"{QUERY} rewritten: nothing of its old text is left"}
    ingest_path(ws, write_jsonl(tmp_path / "changed.jsonl", [changed]), source="med")
    delete_document(ws, "3")
    _embed_new(ws, "e1")

    release = ws.catalog.releases.get(release_id)
    assert release.index_id is not None and release.index_id != before
    record = ws.catalog.registry.index(release.index_id)
    assert record.params["updated_from"] == before  # updated, not built again
    assert record.params["tuning"] == ws.catalog.registry.index(before).params["tuning"]
    updated = load_index(ws, record)
    model = ws.catalog.registry.model_by_id(release.model_id)
    built = load_index(ws, ws.catalog.registry.index(build_index(ws, model).index_id))
    assert sorted(updated.ids()) == sorted(built.ids())
    assert "3" not in updated.ids() and set(late) <= set(updated.ids())
    np.testing.assert_allclose(updated.vector("2"), built.vector("2"), atol=1e-6)
    assert record.n_vectors == len(built) == ws.catalog.documents.count()
    assert updated.search(built.vector("2")[None, :], 1)[0][0][0] == "2"  # at its new text
    assert set(late) <= _found(ws)
    assert coverage.lacking(ws, release_id) == 0


def test_publishing_a_release_behind_catches_it_up_by_an_update(
    ws: Workspace, tmp_path: Path
) -> None:
    """The catch-up before an alias moves (``coverage.update_release``) updates the release's
    index too: the late documents are added to it, nothing is built again."""
    _release(ws, "lsa-a", 32, published=True)
    behind = _release(ws, "lsa-b", 24, published=False)
    before = ws.catalog.releases.get(behind).index_id
    late = _arrive(ws, tmp_path, 5)
    publish(ws, behind, force=True)
    release = ws.catalog.releases.get(behind)
    assert release.index_id is not None
    assert ws.catalog.registry.index(release.index_id).params["updated_from"] == before
    assert set(late) <= set(load_index(ws, ws.catalog.registry.index(release.index_id)).ids())
    assert coverage.lacking(ws, behind) == 0


def test_more_changes_than_an_update_takes_build_the_index_again(
    ws: Workspace, tmp_path: Path
) -> None:
    release_id = _release(ws, "lsa-a", 32, published=True)
    before = ws.catalog.releases.get(release_id).index_id
    _arrive(ws, tmp_path, int(UPDATE_SHARE * ws.catalog.documents.count()) + 5)
    _embed_new(ws, "e1")
    after = ws.catalog.releases.get(release_id).index_id
    assert after is not None and after != before
    assert "updated_from" not in ws.catalog.registry.index(after).params
    assert coverage.lacking(ws, release_id) == 0


def test_the_changes_between_two_snapshots() -> None:
    then = [("A", "h1"), ("a", "h2"), ("b", "h3"), ("é", "h4")]  # sorted by code point
    now = [("0", "x"), ("A", "h1"), ("a", "changed"), ("c", "h5"), ("é", "h4"), ("日", "h6")]
    # "0", "c" and "日" arrived, "a" changed, "b" left
    assert coverage.changed(then, now, 100) == {"0", "a", "b", "c", "日"}
    assert coverage.changed(then, now, 4) is None  # more than the limit: stops counting
    assert coverage.changed(then, then, 0) == set()
    assert coverage.changed([], now, 100) == {d for d, _ in now}
