"""The lake is the source of truth: a workspace whose catalog was lost is rebuilt from its lake by
`embedlake recover` (documents, models, runs, indexes, releases, aliases, datasets), and
`embedlake migrate` refuses to start an empty catalog over a lake that holds data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from embedlake import Workspace
from embedlake.catalog.schema import documents
from embedlake.cli.app import app
from embedlake.cli.releases import build_now, register_and_build
from embedlake.errors import ConfigError, Conflict
from embedlake.ingest import delete_document, ingest_path
from embedlake.recover import recover
from embedlake.releases.publish import publish, rollback
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection, write_jsonl
from tests.integration.test_runtime import FAST
from tests.servers import Postgres

QUERIES = ["kidney failure in children", "cancer cells in mice", "blood pressure"]


@pytest.fixture
def environ(backend: dict[str, str]) -> Iterator[dict[str, str]]:
    yield {**FAST, **backend}


def _lose_catalog(ws: Workspace, request: pytest.FixtureRequest) -> None:
    """SQLite: the file is gone; PostgreSQL: the database is dropped and made again, empty."""
    url = ws.catalog.engine.url
    ws.close()
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        Path(url.database).unlink()
        return
    import psycopg

    postgres: Postgres = request.getfixturevalue("postgres")
    with psycopg.connect(
        f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
    postgres.database(url.database)


def _state(ws: Workspace) -> dict[str, Any]:
    """What a recovered catalog must give back: documents (with tombstones), models, releases,
    aliases and their history, datasets, and search results through the alias and a release."""
    with ws.catalog.connect() as conn:
        docs = sorted(
            (r.id, r.source, r.title, r.text, r.content_hash, r.deleted_at is not None)
            for r in conn.execute(select(documents))
        )
    releases = ws.catalog.releases
    searches = {}
    for release in releases.all():
        if release.index_id is not None:
            searcher = Searcher(ws, release=release.id)
            searches[release.id] = [
                [(h.id, round(h.score, 5)) for h in searcher.search(q, 10)] for q in QUERIES
            ]
    production = Searcher(ws)
    return {
        "documents": docs,
        "models": [
            (m.ref, m.kind, m.dim, m.content_hash) for m in ws.catalog.registry.list_models()
        ],
        "releases": [
            (r.id, r.status, r.index_id, r.report, r.snapshot, r.reason, r.created_at)
            for r in releases.all()
        ],
        "aliases": releases.aliases(),
        "history": [
            (m.alias, m.from_release, m.to_release, m.kind, m.actor, m.reason, m.at)
            for m in releases.history()
        ],
        "stack": releases.stack("production"),
        "datasets": ws.catalog.benchmarks.list_datasets(),
        "embedded": {
            m.ref: ws.catalog.registry.count_embedded(m.id)
            for m in ws.catalog.registry.list_models()
        },
        "production": [
            [(h.id, round(h.score, 5)) for h in production.search(q, 10)] for q in QUERIES
        ],
        "searches": searches,
    }


def _build_workspace(path: Path, environ: dict[str, str]) -> Workspace:
    ws = Workspace.init(path, environ=environ)
    ingest_path(ws, collection("med"))  # registers its benchmark dataset too
    live = sorted(d for d, _ in ws.catalog.documents.iter_live_hashes())
    delete_document(ws, live[0])
    changed = ws.catalog.documents.get(live[1])
    update = write_jsonl(
        path.parent / "update.jsonl",
        [{"_id": changed.id, "title": changed.title, "text": changed.text + " and kidneys"}],
    )
    [report] = ingest_path(ws, update, source="med")
    assert report.updated == 1
    first = register_and_build(ws, train(ws, name="lsa-a", kind="lsa", components=64)[0])
    assert first["status"] == "published"
    second_model, _ = train(ws, name="lsa-b", kind="lsa", components=32)
    from embedlake.models import artifacts

    record, _ = artifacts.register_from_lake(ws, second_model)
    second = build_now(ws, record.ref, "a second model", publish=False)["release"]
    publish(ws, second, "production", force=True, reason="try the second")
    rollback(ws, "production", reason="back to the first")
    ws.catalog.keys.create(["search"], "a key")
    return ws


def test_recover_rebuilds_a_lost_catalog_from_the_lake(
    tmp_path: Path, environ: dict[str, str], request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "ws"
    ws = _build_workspace(path, environ)
    before = _state(ws)
    assert before["aliases"] == {"production": before["releases"][0][0]}
    assert [m[3] for m in before["history"]] == ["publish", "publish", "rollback"]
    _lose_catalog(ws, request)

    # the advice on opening names recover; migrate refuses without --force
    with pytest.raises(ConfigError, match="embedlake recover"):
        Workspace.open(path, environ=environ)
    runner = CliRunner(env=environ)
    refused = runner.invoke(app, ["migrate", str(path)])
    assert isinstance(refused.exception, Conflict), refused.output
    assert "embedlake recover" in str(refused.exception)
    assert "curated/" in str(refused.exception) and "--force" in str(refused.exception)

    done = runner.invoke(app, ["recover", str(path), "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["recovered"]["documents"] == len(before["documents"])
    assert report["recovered"]["releases"] == 2 and report["recovered"]["models"] == 2
    assert any("API key" in line for line in report["not_recovered"])

    with Workspace.open(path, environ=environ) as again:
        after = _state(again)
        for part in before:
            assert after[part] == before[part], part
        assert again.catalog.keys.all() == []
        # ids keep counting after the recovered ones, and the history goes on
        moved = publish(again, before["releases"][1][0], "production", force=True)
        assert again.catalog.releases.history()[-1].to_release == moved.to_release
        assert len(again.catalog.releases.history()) == len(before["history"]) + 1
        stack = again.catalog.releases.stack("production")
        assert stack[-2:] == [before["stack"][-1], moved.to_release]
        # a second recover over the recovered catalog is refused
        with pytest.raises(Conflict, match="not empty"):
            recover(again)


def test_recover_over_a_damaged_catalog_needs_force_and_keeps_the_keys(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    with Workspace.init(tmp_path / "ws", environ=environ) as ws:
        ingest_path(ws, write_jsonl(tmp_path / "a.jsonl", [{"_id": "1", "text": "one"}]))
        ws.catalog.keys.create(["search"], "kept")
        ws.catalog.documents.delete("1")  # catalog only: the lake does not know
        with pytest.raises(Conflict, match="--force"):
            recover(ws)
        report = recover(ws, force=True)
        assert report.recovered["documents"] == 1
        assert ws.catalog.documents.get("1").text == "one"  # the lake's word wins
        assert [k.name for k in ws.catalog.keys.all()] == ["kept"]


def test_migrate_over_an_empty_lake_starts_a_catalog(tmp_path: Path) -> None:
    runner = CliRunner(env=FAST)
    path = tmp_path / "ws"
    Workspace.init(path, environ=FAST).close()
    (path / "catalog.db").unlink()
    assert runner.invoke(app, ["migrate", str(path)]).exit_code == 0
    with Workspace.open(path, environ=FAST) as ws:
        assert ws.catalog.documents.count() == 0
