"""Backup and restore: a snapshot of an embedded workspace (SQLite + folder) restored onto the
production stack (PostgreSQL + S3) answers the same queries with the same results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedlake import Workspace
from embedlake.backup import export, import_
from embedlake.cli.releases import register_and_build as _build_now
from embedlake.errors import ConfigError, Conflict, InputError
from embedlake.ingest import ingest_path
from embedlake.search.searcher import Searcher
from embedlake.training.train import train
from tests.conftest import collection, production_environ
from tests.integration.test_runtime import FAST
from tests.servers import Postgres

QUERIES = ["kidney failure in children", "cancer cells in mice", "blood pressure"]


def _answers(ws: Workspace) -> list[list[tuple[str, float]]]:
    searcher = Searcher(ws)
    return [[(h.id, round(h.score, 5)) for h in searcher.search(q, 10)] for q in QUERIES]


def test_an_embedded_workspace_restored_on_postgres_and_s3_answers_the_same(
    tmp_path: Path, postgres: object, s3: object
) -> None:
    with Workspace.init(tmp_path / "ws", environ=FAST) as ws:
        ingest_path(ws, collection("med"))
        prefix, _ = train(ws, name="lsa-a", kind="lsa", components=64)
        released = _build_now(ws, prefix)["release"]
        ws.catalog.documents.delete(next(iter(ws.catalog.documents.iter_live())).id)
        before = _answers(ws)
        aliases = ws.catalog.releases.aliases()
        snap = export(ws, str(tmp_path / "snapshot"))
        with pytest.raises(Conflict, match="already holds a snapshot"):
            export(ws, str(tmp_path / "snapshot"))
    assert snap.tables["documents"] == 1033 and snap.objects > 10 and snap.lake_copied

    env = {**FAST, **production_environ(postgres, s3)}
    with Workspace.init(tmp_path / "restored", environ=env) as restored:
        assert restored.catalog.engine.dialect.name == "postgresql"
        assert restored.lake.url.startswith("s3://")
        done = import_(restored, str(tmp_path / "snapshot"))
        assert done.tables == snap.tables
        assert restored.catalog.releases.aliases() == aliases == {"production": released}
        assert restored.catalog.documents.count() == 1032
        assert _answers(restored) == before
        # ids keep counting after the restored ones (PostgreSQL sequences were advanced)
        again, _ = train(restored, name="lsa-b", kind="lsa", components=32)
        assert _build_now(restored, again)["release"] != released
        with pytest.raises(Conflict, match="not empty"):
            import_(restored, str(tmp_path / "snapshot"))  # nothing stored is overwritten


def test_a_damaged_snapshot_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", environ=FAST) as ws:
        ws.lake.put("raw/notes/a.txt", b"a note")
        export(ws, str(tmp_path / "snap"))
    target = next((tmp_path / "snap" / "lake").rglob("a.txt"))
    target.write_bytes(b"tampered")
    with Workspace.init(tmp_path / "new", environ=FAST) as fresh:
        with pytest.raises(InputError, match="content differs"):
            import_(fresh, str(tmp_path / "snap"))
        assert fresh.catalog.events.all() == []
        with pytest.raises(Exception, match="no snapshot"):
            import_(fresh, str(tmp_path / "nowhere"))
    manifest = tmp_path / "snap" / "manifest.json"
    for field, value, message in [
        ("format", "something-else/1", "not an embedlake snapshot"),
        ("schema", "0000", "exported at catalog schema 0000"),
    ]:
        data = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**data, field: value}))
        with Workspace.init(tmp_path / f"new-{field}", environ=FAST) as fresh:
            with pytest.raises(InputError, match=message):
                import_(fresh, str(tmp_path / "snap"))
            assert fresh.catalog.events.all() == []
        manifest.write_text(json.dumps(data))


def test_a_pgvector_workspace_round_trips_with_its_vectors(
    tmp_path: Path, postgres: Postgres, s3: object
) -> None:
    """pgvector keeps vectors in the database, not the lake: the snapshot carries them."""
    env = {**FAST, **production_environ(postgres, s3), "EMBEDLAKE_INDEX__ENGINE": "pgvector"}
    with Workspace.init(tmp_path / "ws", environ=env) as ws:
        ingest_path(ws, collection("med"))
        _build_now(ws, train(ws, name="lsa-a", kind="lsa", components=64)[0])
        index = Searcher(ws).index
        assert index.engine == "pgvector"
        before, vectors = _answers(ws), {i: index.vector(i) for i in index.ids()}
        snap = export(ws, str(tmp_path / "snap"), lake=False)
    assert not snap.lake_copied
    # the same bucket (the lake is its own backup: --no-lake), a new database
    again = {**env, "EMBEDLAKE_CATALOG__URL": postgres.database()}
    again["EMBEDLAKE_RUNTIME__SYSTEM_DATABASE"] = again["EMBEDLAKE_CATALOG__URL"]
    with Workspace.init(tmp_path / "restored", environ=again) as restored:
        import_(restored, str(tmp_path / "snap"))
        searcher = Searcher(restored)
        assert searcher.index.engine == "pgvector" and len(searcher.index) == 1033
        assert sorted(searcher.index.ids()) == sorted(vectors)
        assert all(np.array_equal(searcher.index.vector(i), v) for i, v in vectors.items())
        # the same effort over an HNSW graph built in one go, where the build added a tuning
        # sample to a built one: approximate answers may differ in a rank or two
        after = _answers(restored)
        assert after[0][0] == before[0][0]
        overlap = [
            len({d for d, _ in a} & {d for d, _ in b}) for a, b in zip(after, before, strict=True)
        ]
        assert sum(overlap) >= 0.9 * 10 * len(QUERIES)
    # a SQLite workspace cannot take pgvector indexes: refused before anything is written
    with Workspace.init(tmp_path / "sqlite", environ=FAST) as small:
        with pytest.raises(ConfigError, match="PostgreSQL"):
            import_(small, str(tmp_path / "snap"))
        assert small.catalog.documents.count() == 0


def test_a_snapshot_whose_rows_disagree_with_its_manifest_commits_nothing(tmp_path: Path) -> None:
    with Workspace.init(tmp_path / "ws", environ=FAST) as ws:
        ws.lake.put("raw/notes/a.txt", b"a note")
        export(ws, str(tmp_path / "snap"), lake=False)
    manifest = tmp_path / "snap" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["tables"]["events"] += 1  # a row lost from the events file
    manifest.write_text(json.dumps(data))
    with Workspace.init(tmp_path / "new", environ=FAST) as fresh:
        fresh_lake = tmp_path / "new" / "lake" / "raw" / "notes"
        fresh_lake.mkdir(parents=True)
        (fresh_lake / "a.txt").write_bytes(b"a note")  # the lake is its own backup (--no-lake)
        with pytest.raises(InputError, match="row counts"):
            import_(fresh, str(tmp_path / "snap"))
        assert fresh.catalog.events.all() == []  # the catalog transaction rolled back
        assert fresh.catalog.events.seen("raw/") == {}
