"""The catalog contract: the same behaviour on SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from embedlake import Workspace
from embedlake.catalog import Catalog, migrate, open_catalog
from embedlake.catalog.documents import Document
from embedlake.catalog.registry import Covered
from embedlake.catalog.schema import metadata
from embedlake.errors import ConfigError, Conflict, EmbedlakeError, NotFound


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty catalog database of each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    database: str = request.getfixturevalue("postgres").database()
    return database


@pytest.fixture
def ws(url: str, tmp_path: Path) -> Iterator[Workspace]:
    env = {"EMBEDLAKE_CATALOG__URL": url}
    with Workspace.init(tmp_path / "ws", environ=env) as workspace:
        assert workspace.catalog.engine.dialect.name == url.split(":")[0].split("+")[0]
        yield workspace


@pytest.fixture
def catalog(url: str) -> Iterator[Catalog]:
    opened = open_catalog(url)
    yield opened
    opened.close()


def test_migrations_build_exactly_the_declared_schema(catalog: Catalog) -> None:
    catalog.migrate()
    catalog.migrate()  # idempotent
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert migrate.current(catalog.engine) == migrate.head()


def test_counts_start_from_the_rows_a_catalog_already_holds(url: str) -> None:
    """Migration 0006 on a catalog with data: the kept counts start at its rows' counts, and the
    triggers follow the writes after it."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO documents (id, source, title, text, metadata, content_hash, "
                    "created_at, updated_at, deleted_at) VALUES "
                    "('a', 's', '', 't', '{}', 'h', :now, :now, NULL), "
                    "('b', 's', '', 't', '{}', 'h', :now, :now, :now), "
                    "('c', 's', '', 't', '{}', 'h', :now, :now, NULL)"
                ),
                {"now": "2026-12-05 00:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO models (id, name, version, kind, dim, content_hash, prefix, "
                    "manifest, created_at) VALUES (7, 'm', '1', 'lsa', 4, 'x', 'p', '{}', :now)"
                ),
                {"now": "2026-12-05 00:00:00"},
            )
            conn.execute(
                text(
                    "INSERT INTO embedded (model_id, chunker, doc_id, content_hash, shard_key, "
                    "passages, cut) VALUES (7, 'c', 'a', 'h', 's', 1, 0), (7, 'c', 'b', 'h', 's', "
                    "2, 9), (7, '', 'a', 'h', 's', 1, 0)"
                )
            )
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE documents SET deleted_at = NULL WHERE id = 'b'"))
        with engine.connect() as conn:
            kept = dict(conn.execute(text("SELECT name, value FROM counts")).all())
        assert kept == {"documents": 3, "embedded:7:c": 2, "embedded:7:": 1, "cut:7:c": 1}
    finally:
        engine.dispose()


def test_the_documents_version_keeps_its_value_through_migration_0010(url: str) -> None:
    """A release built before 0010 recorded the version as the aggregate over every row; after
    the migration the catalog gives the same value, so that release's BM25 is still known to be
    whole, and the next change still moves it."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "0009")
        catalog = open_catalog(url)
        try:
            docs = catalog.documents
            docs.upsert([_doc(str(i)) for i in range(30)])
            docs.upsert([_doc("4", "changed")])
            for doc_id in ("2", "9"):
                docs.delete(doc_id)
            before = docs.version()  # at 0009: the aggregate over every row
            migrate.upgrade(engine)
            assert docs.version() == before
            assert docs.deleted_ids() == {"2", "9"}
            docs.delete("11")
            assert docs.version() != before
        finally:
            catalog.close()
    finally:
        engine.dispose()


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    assert migrate.head() == ScriptDirectory.from_config(config).get_current_head()


def test_an_unmigrated_catalog_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="embedlake migrate"):
        catalog.check_schema()


def test_unknown_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no engine"):
        open_catalog("mysql://x@y/z")
    with pytest.raises(ConfigError, match="not a database URL"):
        open_catalog("::::")


def _doc(i: str, text: str = "some text", source: str = "s", **meta: object) -> Document:
    return Document(i, source, f"title {i}", text, dict(meta))


def test_the_deleted_ids_come_from_an_index_of_the_tombstones_alone(ws: Workspace) -> None:
    """What a release's map asks at ten million documents: the few deleted ones, read from the
    partial index (migration 0009), not by a scan of every row and its text."""
    docs = ws.catalog.documents
    docs.upsert([_doc(str(i)) for i in range(50)])
    for doc_id in ("7", "31"):
        docs.delete(doc_id)
    assert docs.deleted_ids() == {"7", "31"}
    docs.upsert([_doc("7", "back again")])  # a deleted document sent again is live
    assert docs.deleted_ids() == {"31"}
    with ws.catalog.engine.connect() as conn:
        plan = _plan(conn, "SELECT id FROM documents WHERE deleted_at IS NOT NULL", ())
    assert "ix_documents_deleted" in " ".join(plan), plan


def _plan(conn: Any, sql: str, params: Any) -> list[str]:
    """The query plan of ``sql``, a line a step; PostgreSQL's asked as for a large table (it
    plans a tiny one by a scan)."""
    if conn.dialect.name == "sqlite":
        return [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # this transaction only
    return [row[0].strip() for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params)]


def test_the_documents_version_follows_every_change_without_a_scan(ws: Workspace) -> None:
    """What a release's BM25 records and a server compares: it moves with every insert, change,
    deletion and revival, stays put for an identical batch, has the value of the aggregate over
    every row that it replaced (migration 0010: releases built before keep their BM25), and is
    read from indexes and the kept count, not from a scan of ten million rows and their texts."""
    from sqlalchemy import event, func, select

    from embedlake.catalog.schema import documents as table

    docs = ws.catalog.documents
    aggregate = select(func.count(), func.max(table.c.updated_at), func.max(table.c.deleted_at))

    def scanned() -> str:
        with ws.catalog.engine.connect() as conn:
            return "|".join(map(str, conn.execute(aggregate).one()))

    seen = [docs.version()]
    assert seen == [scanned()] and seen[0].startswith("0|")
    steps = [
        lambda: docs.upsert([_doc(str(i)) for i in range(20)]),
        lambda: docs.upsert([_doc("3", "new text")]),
        lambda: docs.upsert([_doc("4", label="x")]),  # metadata alone
        lambda: docs.delete("5"),
        lambda: docs.delete("6"),
        lambda: docs.upsert([_doc("5")]),  # revived
    ]
    for step in steps:
        step()
        seen.append(docs.version())
        assert seen[-1] == scanned()
    assert len(set(seen)) == len(seen), seen  # every change moved it
    docs.upsert([_doc("3", "new text")])  # identical: nothing changed
    assert docs.version() == seen[-1]

    statements: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    event.listen(ws.catalog.engine, "before_cursor_execute", keep)
    try:
        docs.version()
    finally:
        event.remove(ws.catalog.engine, "before_cursor_execute", keep)
    [(sql, params)] = [s for s in statements if "documents" in s[0]]
    with ws.catalog.engine.connect() as conn:
        plan = _plan(conn, sql, params)
    text = " ".join(plan)
    assert "ix_documents_updated" in text and "ix_documents_deleted" in text, plan
    # a step that reads the table itself: SQLite's bare "SCAN documents", PostgreSQL's seq scan
    assert not [p for p in plan if p == "SCAN documents" or "Seq Scan on documents" in p], plan


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


def test_new_documents_read_back_as_written(ws: Workspace) -> None:
    """New rows go in by the engine's bulk load (``executemany`` on SQLite, ``COPY`` on
    PostgreSQL), around SQLAlchemy's types: what reads back, and what filters see, is what an
    insert through them would have stored."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from embedlake.catalog.schema import documents as table

    meta = {"name": "Zürich ✓", "n": 3, "x": 0.1, "flag": False, "none": None, "list": [1, "ä"]}
    written = [Document("é-1", "s", "títle\ttab", "text ✓\nline", meta), _doc("2", "plain")]
    before = datetime.now(UTC)
    ws.catalog.documents.upsert(written)
    assert [ws.catalog.documents.get(d.id) for d in written] == written
    # what an embedding shard reads: the text and the hash the catalog keeps, no metadata
    contents = ws.catalog.documents.contents([d.id for d in written])
    assert [
        (c.id, c.title, c.text, c.full_text, c.content_hash)
        for c in (contents[d.id] for d in written)
    ] == [(d.id, d.title, d.text, d.full_text, d.content_hash) for d in written]
    with ws.catalog.connect() as conn:
        rows = conn.execute(select(table.c.created_at, table.c.updated_at, table.c.deleted_at))
        for created, updated, deleted in rows:
            created = created if created.tzinfo else created.replace(tzinfo=UTC)
            assert created == (updated if updated.tzinfo else updated.replace(tzinfo=UTC))
            assert before - timedelta(seconds=1) <= created <= datetime.now(UTC)
            assert deleted is None
    for where in ({"name": "Zürich ✓"}, {"n": 3}, {"x": 0.1}, {"flag": False}):
        assert ws.catalog.documents.ids_where(where) == {"é-1"}
    assert ws.catalog.documents.count() == 2
    again = ws.catalog.documents.upsert(written)
    assert again.unchanged == 2 and not again.inserted and not again.updated


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
    assert list(docs.contents(["1", "2", "missing"])) == ["2"]
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


def test_the_corpus_hash_is_the_hash_of_every_sorted_pair_in_both_dialects(
    ws: Workspace,
) -> None:
    # ids whose order differs between code points and a natural-language collation (the
    # catalog sorts by code points on PostgreSQL whatever its collation; this machine has no
    # natural-language locale and its PostgreSQL no ICU, so only the C order is exercised here)
    ids = ["b", "B", "a", "Z", "_x", "é", "e", "10", "9", "a b", "ä", "日本"]
    docs = ws.catalog.documents
    docs.upsert([_doc(i, f"text of {i}") for i in ids])
    docs.delete("e")
    expected = json.dumps(sorted(docs.iter_live_hashes())).encode()  # the definition
    assert docs.corpus_hash() == hashlib.sha256(expected).hexdigest()
    before = docs.corpus_hash()
    docs.upsert([_doc("9", "changed")])
    assert docs.corpus_hash() != before


def test_what_a_model_lacks_and_holds_is_asked_of_the_database(ws: Workspace) -> None:
    """The queries an embedding plan and a streamed index build make instead of loading every
    id: lacking (an anti-join in keyset pages), the current vectors by shard, and their count."""
    docs, reg = ws.catalog.documents, ws.catalog.registry
    docs.upsert([_doc(f"{i:02d}", text=f"text {i}") for i in range(12)])
    model = reg.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )
    hashes = {d.id: d.content_hash for d in docs.iter_live()}
    run = reg.start_run(model.id, 8, 2, "plan", "c1")
    shard_of = {f"{i:02d}": f"s{i % 2}" for i in range(8)}
    for shard in (0, 1):
        covered = [
            Covered(d, hashes[d], passages=3) for d, s in shard_of.items() if s == f"s{shard}"
        ]
        reg.finish_shard(run, shard, f"s{shard}", covered)
    docs.upsert([_doc("03", text="changed")])  # embedded at an older text
    docs.delete("04")  # embedded, then deleted
    lacking = list(reg.lacking(model.id, "c1", page=2))
    assert [d for d, _ in lacking] == ["03", "08", "09", "10", "11"]
    assert dict(lacking)["03"] == docs.get("03").content_hash
    assert [d for d, _ in reg.lacking(model.id, "other")] == [d.id for d in docs.iter_live()]
    assert reg.shard_keys(model.id, "c1") == ["s0", "s1"]
    assert sorted(reg.current(model.id, "c1", "s1")) == ["01", "05", "07"]  # 03 changed
    assert sorted(reg.current(model.id, "c1", "s0")) == ["00", "02", "06"]  # 04 deleted
    assert reg.count_current(model.id, "c1") == (18, 6)  # 3 passages each
    assert reg.current(model.id, "c1") == {
        d: hashes[d] for d in ("00", "01", "02", "05", "06", "07")
    }
    assert reg.count_current(model.id, "other") == (0, 0)
    assert reg.cut(model.id, "c1").describe()["passages"] == 24  # 8 documents, 3 passages each
    live = reg.cut(model.id, "c1", live=True)  # 04 deleted; 03 live, at an older text
    assert (live.documents, live.passages, live.cut_documents) == (7, 21, 0)


def test_the_kept_counts_follow_every_write(ws: Workspace) -> None:
    """Live documents and each model's embedded documents per chunking are counts the database
    keeps by triggers (migration 0006): after each kind of write they equal a count of the rows."""
    from sqlalchemy import func, select

    from embedlake.catalog.schema import documents, embedded

    docs, reg = ws.catalog.documents, ws.catalog.registry
    model = reg.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )

    def check() -> None:
        with ws.catalog.connect() as conn:
            live = conn.execute(
                select(func.count()).select_from(documents).where(documents.c.deleted_at.is_(None))
            ).scalar_one()
            rows = {
                (c, cut): conn.execute(
                    select(func.count())
                    .select_from(embedded)
                    .where(embedded.c.chunker == c, *([embedded.c.cut > 0] if cut else []))
                ).scalar_one()
                for c in ("", "c1")
                for cut in (False, True)
            }
        assert docs.count() == live
        for (c, cut), n in rows.items():
            assert reg.count_embedded(model.id, cut=cut, chunker=c) == n

    docs.upsert([_doc(f"{i}") for i in range(6)])
    check()
    docs.upsert([_doc("1", text="changed"), _doc("9")])  # an update and an insert in one
    docs.delete("2")
    docs.delete("3")
    docs.upsert([_doc("3")])  # revived
    check()
    run = reg.start_run(model.id, 4, 1, "plan", "c1")
    reg.finish_shard(run, 0, "s0", [Covered(d, "h", 2, cut=5 * (d == "0")) for d in "0145"])
    run2 = reg.start_run(model.id, 2, 1, "plan2", "")
    reg.finish_shard(run2, 0, "s1", [Covered("0", "h"), Covered("1", "h", 1, cut=3)])
    check()
    assert reg.count_embedded(model.id) == 2  # the newest run's chunking: ""
    assert reg.count_embedded(model.id, chunker="c1", cut=True) == 1
    assert reg.cut(model.id, "c1").describe() == {
        "documents": 4,
        "passages": 8,
        "cut_documents": 1,
        "cut_characters": 5,
    }
    run3 = reg.start_run(model.id, 2, 1, "plan3", "c1")  # "0" embedded again, no longer cut
    reg.finish_shard(run3, 0, "s2", [Covered("0", "h2", 2, cut=0), Covered("9", "h", 1, cut=1)])
    check()
    reg.forget_coverage(model.id, ["1", "4"])
    check()
    assert reg.count_embedded(model.id, chunker="c1") == 3  # 0, 5 and 9


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


def test_metadata_filters_match_values_and_lists(ws: Workspace) -> None:
    docs = ws.catalog.documents
    docs.upsert(
        [
            _doc("1", source="a", lang="en", year=2020, open=True),
            _doc("2", source="a", lang="de", year=2021, open=False),
            _doc("3", source="b", lang="en", year=2021),
        ]
    )
    assert docs.ids_where({"lang": "en"}) == {"1", "3"}
    assert docs.ids_where({"source": "a", "lang": ["en", "de"]}) == {"1", "2"}
    assert docs.ids_where({"year": 2021}) == {"2", "3"}
    assert docs.ids_where({"open": True}) == {"1"}
    assert docs.ids_where({"missing": "x"}) == set()
    # a field holding different JSON types in different documents: each filter matches its own
    docs.upsert([_doc("4", year="n/a", open="yes"), _doc("5", year=2021.0, open=1)])
    assert docs.ids_where({"year": 2021}) == {"2", "3", "5"}
    assert docs.ids_where({"year": "n/a"}) == {"4"}
    assert docs.ids_where({"open": True}) == {"1"}
    assert docs.ids_where({"open": False}) == {"2"}
    docs.delete("1")
    assert docs.ids_where({"lang": "en"}) == {"3"}


def test_a_filter_asked_among_some_ids_or_up_to_a_limit(ws: Workspace) -> None:
    docs = ws.catalog.documents
    docs.upsert([_doc(str(i), lang="en" if i % 2 else "de") for i in range(10)])
    docs.delete("3")
    # among: only those ids are looked at (a deleted one, or one not there, never comes back)
    assert docs.ids_where({"lang": "en"}, among={"1", "2", "3", "7", "nope"}) == {"1", "7"}
    assert docs.ids_where({"lang": "en"}, among=set()) == set()
    # limit: at most that many, all matching (a caller asks limit + 1 to learn there are more)
    some = docs.ids_where({"lang": "en"}, limit=2)
    assert len(some) == 2 and some <= {"1", "5", "7", "9"}
    assert docs.ids_where({"lang": "en"}, limit=10) == {"1", "5", "7", "9"}


def test_a_filter_of_many_values_is_one_condition_per_kind(ws: Workspace) -> None:
    """(issue 19) A list of ~1,000 values made SQLite refuse the query ("Expression tree is too
    large") after seconds of building it: one OR per value. Values are now matched with IN."""
    docs = ws.catalog.documents
    docs.upsert(
        [
            _doc("1", source="a", lang="en", year=2020, open=True),
            _doc("2", source="b", lang="de", year=2021, open=False),
            _doc("3", source="c", lang="fr", year="n/a"),
        ]
    )
    words = [f"w{n}" for n in range(5_000)]
    assert docs.ids_where({"lang": [*words, "en", "de"]}) == {"1", "2"}
    assert docs.ids_where({"source": [*words, "c"], "year": [*range(3_000), 2020, "n/a"]}) == {"3"}
    mixed: list[object] = [*range(1_000), 2021.0, *words[:1_000], "fr", True]
    assert docs.ids_where({"year": mixed, "open": [False, False, True]}) == {"2"}
    assert docs.ids_where({"lang": words}) == set()


def test_alias_moves_are_atomic_under_concurrent_publishers(ws: Workspace) -> None:
    """Two publishers that both saw the alias at A race to move it: exactly one wins."""
    reg, releases = ws.catalog.registry, ws.catalog.releases
    model = reg.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )
    for rid in ("A", "B", "C"):
        releases.create(rid, model.id, "test")
    releases.move("production", "A", kind="publish", actor="t", reason="first")
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def publish(target: str) -> None:
        barrier.wait()
        try:
            releases.move(
                "production", target, kind="publish", actor=target, reason="r", expect="A"
            )
            outcome[target] = "moved"
        except EmbedlakeError as exc:
            outcome[target] = exc

    threads = [threading.Thread(target=publish, args=(t,)) for t in ("B", "C")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [t for t, o in outcome.items() if o == "moved"]
    assert len(winners) == 1, outcome
    assert releases.alias("production") == winners[0]
    assert [m.to_release for m in releases.history("production")] == ["A", winners[0]]


def test_a_new_alias_is_created_once(ws: Workspace) -> None:
    model = ws.catalog.registry.add_model(
        name="m", version="1", kind="lsa", dim=4, content_hash="aa", prefix="p", manifest={}
    )
    releases = ws.catalog.releases
    releases.create("A", model.id, "test")
    releases.move("staging", "A", kind="publish", actor="t", reason="r")
    with pytest.raises(Conflict, match="moved"):
        releases.move("other", "A", kind="publish", actor="t", reason="r", expect="X")
    assert releases.alias("other") is None  # the refused move created nothing
    assert releases.aliases() == {"staging": "A"}


def test_a_pooled_connection_the_server_dropped_is_replaced_after_idling(
    postgres: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """catalog/postgres.py pings a pooled connection that idled over PING_AFTER before using it
    (a restart, a pooler's timeout): the request gets a new connection, not an error."""
    import psycopg
    from sqlalchemy import make_url, text

    from embedlake.catalog import postgres as catalog_postgres

    url = postgres.database()
    engine = catalog_postgres.connect(url)
    try:
        with engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain, autocommit=True) as admin:  # the server drops it in the pool
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        monkeypatch.setattr(catalog_postgres, "PING_AFTER", 0.0)  # "it idled long enough"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        engine.dispose()


def test_invocations_are_queued_at_once_and_claimed_by_a_named_worker(ws: Workspace) -> None:
    """The router queues a batch in one statement (new ids back, a repeated delivery left
    alone); a claim names its worker, and after a crash a worker finds only its own claims."""
    from embedlake.events import Event

    events = ws.catalog.events
    event = Event("t.x", "a")
    events.add(event)
    rows = [(f"{event.id}:f{i}", "f", event.id) for i in range(2500)]  # pages of insertmanyvalues
    assert events.invocations_queued(rows[:10]) == {r[0] for r in rows[:10]}
    assert events.invocations_queued(rows) == {r[0] for r in rows[10:]}
    assert events.invocations_queued(rows) == set()
    assert len(events.invocations(function="f")) == 2500

    started, claimed = events.claim_queued({"f": 3}, "worker-a")
    assert len(claimed) == 3 and all(e.id == event.id for _, _, e in claimed)
    _, more = events.claim_queued({"f": 2}, "worker-b")
    assert events.claim_queued({"f": 0}, "worker-a")[1] == []  # no free slot: nothing claimed
    mine = {run_id for run_id, _, _ in events.unfinished("worker-a")}
    assert mine == {run_id for run_id, _, _ in claimed}
    assert {run_id for run_id, _, _ in events.unfinished("worker-b")} == {r for r, _, _ in more}
    events.finish_invocation(claimed[0][0], "succeeded", None, started)
    done = events.invocation(claimed[0][0])
    assert done.status == "succeeded" and done.seconds is not None and done.seconds >= 0
    assert len(events.unfinished("worker-a")) == 2


def test_the_event_outbox_keeps_one_copy_and_orders_by_sequence(ws: Workspace) -> None:
    from embedlake.events import Event

    events = ws.catalog.events
    first = Event("t.x", "a", {"n": 1})
    assert events.add(first)
    assert not events.add(first)  # a redelivery
    events.add(Event("t.x", "b"))
    seqs = events.after(0)
    assert [e.subject for _, e in seqs] == ["a", "b"]
    assert seqs[0][0] < seqs[1][0] == events.latest_seq()
    assert events.get(first.id).data == {"n": 1}
    events.mark_seen("raw/x.jsonl", "etag1", 10)
    events.mark_seen("raw/x.jsonl", "etag2", 12)  # a rewrite replaces the record
    assert events.seen("raw/") == {"raw/x.jsonl": ("etag2", 12)}
    assert events.invocation_queued("e1:f", "f", first.id)
    assert not events.invocation_queued("e1:f", "f", first.id)  # a repeated delivery
    events.set_state("cursor", "7")
    events.set_state("cursor", "8")
    assert events.get_state("cursor") == "8"
