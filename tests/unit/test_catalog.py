from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from embedlake import Workspace
from embedlake.catalog import migrate, open_catalog
from embedlake.catalog.documents import Document
from embedlake.catalog.schema import metadata
from embedlake.errors import ConfigError, Conflict, NotFound


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    catalog.migrate()  # idempotent
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert migrate.current(catalog.engine) == migrate.head()


def test_an_unmigrated_catalog_is_refused(tmp_path: Path) -> None:
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ConfigError, match="embedlake migrate"):
        catalog.check_schema()


def test_unknown_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no engine"):
        open_catalog("mysql://x@y/z")
    with pytest.raises(ConfigError, match="not a database URL"):
        open_catalog("::::")


def _doc(i: str, text: str = "some text", source: str = "s", **meta: object) -> Document:
    return Document(i, source, f"title {i}", text, dict(meta))


def test_upsert_classifies_new_changed_and_unchanged(ws: Workspace) -> None:
    docs = ws.catalog.documents
    first = docs.upsert([_doc("1"), _doc("2")])
    assert [d.id for d in first.inserted] == ["1", "2"] and first.unchanged == 0
    again = docs.upsert([_doc("1"), _doc("2", "new text"), _doc("3")])
    assert again.unchanged == 1
    assert [d.id for d in again.updated] == ["2"]
    assert [d.id for d in again.inserted] == ["3"]
    assert docs.get("2").text == "new text"
    meta = docs.upsert([_doc("1", label="x")])  # metadata change without text change
    assert [d.id for d in meta.updated] == ["1"]
    assert docs.get("1").metadata == {"label": "x"}


def test_an_id_of_another_source_is_not_overwritten(ws: Workspace) -> None:
    docs = ws.catalog.documents
    docs.upsert([_doc("1", "original", source="a")])
    result = docs.upsert([_doc("1", "intruder", source="b")])
    assert [(d.id, owner) for d, owner in result.conflicts] == [("1", "a")]
    assert docs.get("1").text == "original"


def test_tombstones_hide_documents_and_revive_on_reingest(ws: Workspace) -> None:
    docs = ws.catalog.documents
    docs.upsert([_doc("1"), _doc("2")])
    docs.delete("1")
    assert docs.count() == 1
    assert [d.id for d in docs.iter_live()] == ["2"]
    assert "1" not in docs.get_many(["1", "2"])
    with pytest.raises(NotFound):
        docs.get("1")
    assert docs.get("1", include_deleted=True).id == "1"
    with pytest.raises(NotFound):
        docs.delete("1")
    revived = docs.upsert([_doc("1")])
    assert [d.id for d in revived.updated] == ["1"]
    assert docs.count() == 2


def test_iter_live_pages_through_everything_in_order(ws: Workspace) -> None:
    ws.catalog.documents.upsert([_doc(f"{i:04d}") for i in range(2500)])
    ids = [d.id for d in ws.catalog.documents.iter_live(batch=300)]
    assert ids == [f"{i:04d}" for i in range(2500)]


def test_a_failure_inside_upsert_commits_nothing(ws: Workspace) -> None:
    docs = ws.catalog.documents

    def boom(_: object) -> None:
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        docs.upsert([_doc("1")], before_commit=boom)
    assert docs.count() == 0


def test_writes_inside_a_transaction_join_it(ws: Workspace) -> None:
    """The lake's event log is an outbox: an event recorded mid-transaction rolls back with it."""
    with pytest.raises(RuntimeError), ws.catalog.begin():
        ws.lake.put("x/y.txt", b"1")
        raise RuntimeError("abort")
    assert all(e.subject != "x/y.txt" for e in ws.catalog.events.all())
    ws.lake.put("x/z.txt", b"1")
    assert any(e.subject == "x/z.txt" for e in ws.catalog.events.all())


def test_model_versions_are_immutable(ws: Workspace) -> None:
    reg = ws.catalog.registry
    a = reg.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )
    same = reg.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )
    assert same.id == a.id
    with pytest.raises(Conflict, match="immutable"):
        reg.add_model(
            name="m", version="1", kind="lsa", dim=4, content_hash="bb", prefix="p", manifest={}
        )
    assert reg.model("m").content_hash == "aa"
    with pytest.raises(NotFound, match="not registered"):
        reg.model("m@2")
