"""What `embedlake status` shows, read from a SQLite catalog with the standard library alone.

Opening a workspace imports SQLAlchemy and the repositories (~0.2 s of the command's ~0.55 s on
these machines, docs/benchmarks.md section 15), for four counts. On the embedded default this
module answers them through ``sqlite3``, read-only, and only when the schema is at the revision
this code knows; otherwise (no catalog, another revision, PostgreSQL) the caller opens the
workspace, whose checks say what is wrong. The queries mirror the repositories' (``count``,
``list_models``, ``count_embedded``, ``list_datasets``), and like them read the counts the database
keeps (migration 0006) rather than counting rows; tests/unit/test_status_peek.py compares
both on the same workspace.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from embedlake.catalog import migrate

BUSY_MS = 5000  # a writer holding the database (rare in WAL mode) is waited for this long


@dataclass(frozen=True)
class Counts:
    documents: int  # live ones
    # (name@version, documents embedded, of them cut), in registration order
    models: list[tuple[str, int, int]]
    datasets: list[str]  # sorted by name


def sqlite_counts(path: Path) -> Counts | None:
    """The counts of the SQLite catalog at ``path``, or None when this cannot answer."""
    if not path.is_file():
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_MS / 1000)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if row is None or row[0] != migrate.head():
                return None
            (documents,) = conn.execute(
                "SELECT coalesce(sum(value), 0) FROM counts WHERE name = 'documents'"
            ).fetchone()
            models = [
                (f"{name}@{version}", *_embedded(conn, model_id))
                for model_id, name, version in conn.execute(
                    "SELECT id, name, version FROM models ORDER BY id"
                ).fetchall()
            ]
            datasets = [r[0] for r in conn.execute("SELECT name FROM datasets ORDER BY name")]
    except sqlite3.Error:  # no schema yet, a damaged file: the full path explains
        return None
    return Counts(int(documents), models, datasets)


def _embedded(conn: sqlite3.Connection, model_id: int) -> tuple[int, int]:
    """(embedded, cut) documents of the model's newest chunking, from the kept counts."""
    newest = conn.execute(
        "SELECT chunker FROM embedding_runs WHERE model_id = ? ORDER BY id DESC LIMIT 1",
        (model_id,),
    ).fetchone()
    chunker = newest[0] if newest else ""
    names = count_name("embedded", model_id, chunker), count_name("cut", model_id, chunker)
    found = dict(
        conn.execute("SELECT name, value FROM counts WHERE name IN (?, ?)", names).fetchall()
    )
    gone, gone_cut = conn.execute(  # deleted documents' rows (as Registry.count_embedded)
        "SELECT count(*), coalesce(sum(cut > 0), 0) FROM embedded WHERE model_id = ? AND "
        "chunker = ? AND doc_id IN (SELECT id FROM documents WHERE deleted_at IS NOT NULL)",
        (model_id, chunker),
    ).fetchone()
    return int(found.get(names[0], 0)) - gone, int(found.get(names[1], 0)) - gone_cut


def count_name(kind: str, model_id: int, chunker: str) -> str:
    """The ``counts`` row of a model's ``embedded`` (or ``cut``) documents of a chunking, as
    migration 0006's triggers name it."""
    return f"{kind}:{model_id}:{chunker}"
