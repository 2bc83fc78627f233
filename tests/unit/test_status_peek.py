"""`embedlake status` on a SQLite catalog reads it without SQLAlchemy (catalog/peek.py): the same
answer as the opened workspace's repositories, and none (so the command opens the workspace,
whose checks explain) where it cannot be sure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from embedlake.catalog.peek import sqlite_counts
from embedlake.cli.commands import _status_opened, _status_peeked
from embedlake.config import Settings
from embedlake.embeddings.batch import embed
from embedlake.ingest import ingest_path
from embedlake.models import artifacts
from embedlake.models.resolve import resolve_model
from embedlake.workspace import Workspace
from tests.conftest import collection, write_jsonl


def test_the_peeked_status_is_the_opened_one(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.init(root) as ws:
        ingest_path(ws, collection("med"))  # registers med as a dataset too
        rows = [{"_id": f"x{n}", "text": f"an extra note {n}"} for n in range(4)]
        ingest_path(ws, write_jsonl(tmp_path / "x.jsonl", rows), source="extra")
        ws.catalog.documents.delete("x0")  # tombstoned: not counted
        model = resolve_model(ws, "lsa")
        embed(ws, model, artifacts.load_encoder(ws, model))
        ws.catalog.documents.delete("x1")  # embedded, then deleted: not counted either
        ws.catalog.benchmarks.put_dataset("zeta", "datasets/zeta", 3, 9)
        ws.catalog.benchmarks.put_dataset("alpha", "datasets/alpha", 2, 4)
    settings = Settings.load(root)
    peeked = _status_peeked(settings)
    assert peeked == _status_opened(settings)
    assert peeked is not None
    assert peeked["documents"] == 1033 + 2 and peeked["datasets"] == ["alpha", "med", "zeta"]
    assert peeked["models"] == [{"model": model.ref, "embedded": 1033 + 2, "cut": 0}]


def test_no_peek_where_it_cannot_be_sure(tmp_path: Path) -> None:
    assert sqlite_counts(tmp_path / "missing.db") is None
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert sqlite_counts(empty) is None  # no schema: opening says the catalog is lost or new
    root = tmp_path / "ws"
    Workspace.init(root).close()
    catalog = root / "catalog.db"
    with sqlite3.connect(catalog) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    assert sqlite_counts(catalog) is None  # another revision: opening asks for `migrate`
    postgres = Settings.load(root, {"EMBEDLAKE_CATALOG__URL": "postgresql://u@h/db"})
    assert _status_peeked(postgres) is None
