"""counts: live documents and each model's embedded documents kept by triggers, not scanned

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 18:45:00

`embedlake status` and every "how many" counted rows (``count(*)`` over ten million documents
takes seconds). The database keeps the counts itself, so no write path can forget one:

- ``documents``: live documents (inserted live, tombstoned, revived, deleted);
- ``embedded:<model id>:<chunking>``: documents the model has vectors for with that chunking;
- ``cut:<model id>:<chunking>``: those of them longer than the chunking keeps.

Row triggers on SQLite (a database written by one process at a time). On PostgreSQL deferred
constraint triggers: the counters are bumped at commit, after the transaction's other locks, so
two ingests queue on the counter row only for the instant of their commits. A migration that
rebuilds ``documents`` or ``embedded`` (SQLite's batch mode copies a table) must create these
triggers again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BUMP = (
    "INSERT INTO counts (name, value) VALUES ({name}, {delta}) "
    "ON CONFLICT (name) DO UPDATE SET value = counts.value + excluded.value"
)
_EMBEDDED = "'embedded:' || CAST({row}.model_id AS TEXT) || ':' || {row}.chunker"
_CUT = "'cut:' || CAST({row}.model_id AS TEXT) || ':' || {row}.chunker"

# (trigger, table, event, condition, statements): the same counting on both dialects
_TRIGGERS = [
    ("count_documents_insert", "documents", "INSERT", "NEW.deleted_at IS NULL",
     [_BUMP.format(name="'documents'", delta="1")]),
    ("count_documents_update", "documents", "UPDATE",
     "(OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL)",
     [_BUMP.format(name="'documents'",
                   delta="CASE WHEN NEW.deleted_at IS NULL THEN 1 ELSE -1 END")]),
    ("count_documents_delete", "documents", "DELETE", "OLD.deleted_at IS NULL",
     [_BUMP.format(name="'documents'", delta="-1")]),
    ("count_embedded_insert", "embedded", "INSERT", "1 = 1",
     [_BUMP.format(name=_EMBEDDED.format(row="NEW"), delta="1"),
      _BUMP.format(name=_CUT.format(row="NEW"), delta="CASE WHEN NEW.cut > 0 THEN 1 ELSE 0 END")]),
    ("count_embedded_update", "embedded", "UPDATE", "1 = 1",
     [_BUMP.format(name=_EMBEDDED.format(row="OLD"), delta="-1"),
      _BUMP.format(name=_EMBEDDED.format(row="NEW"), delta="1"),
      _BUMP.format(name=_CUT.format(row="OLD"), delta="CASE WHEN OLD.cut > 0 THEN -1 ELSE 0 END"),
      _BUMP.format(name=_CUT.format(row="NEW"), delta="CASE WHEN NEW.cut > 0 THEN 1 ELSE 0 END")]),
    ("count_embedded_delete", "embedded", "DELETE", "1 = 1",
     [_BUMP.format(name=_EMBEDDED.format(row="OLD"), delta="-1"),
      _BUMP.format(name=_CUT.format(row="OLD"), delta="CASE WHEN OLD.cut > 0 THEN -1 ELSE 0 END")]),
]  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "counts",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        "INSERT INTO counts (name, value) "
        "SELECT 'documents', count(*) FROM documents WHERE deleted_at IS NULL"
    )
    for name, condition in (("embedded", "1 = 1"), ("cut", "cut > 0")):
        op.execute(
            f"INSERT INTO counts (name, value) SELECT '{name}:' || CAST(model_id AS TEXT) || ':' "
            f"|| chunker, count(*) FROM embedded WHERE {condition} GROUP BY model_id, chunker"
        )
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger, table, event, condition, statements in _TRIGGERS:
        if postgres:
            # bumps for the inserted row come first: a condition false makes the function a no-op
            body = "; ".join(statements)
            row = "OLD" if event == "DELETE" else "NEW"
            op.execute(
                f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF {condition} THEN {body}; END IF; RETURN {row}; END $$"
            )
            op.execute(
                f"CREATE CONSTRAINT TRIGGER {trigger} AFTER {event} ON {table} "
                f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            )
        else:
            body = "".join(f"{s}; " for s in statements)
            op.execute(
                f"CREATE TRIGGER {trigger} AFTER {event} ON {table} "
                f"FOR EACH ROW WHEN {condition} BEGIN {body}END"
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger, table, *_ in _TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION {trigger}()")
    op.drop_table("counts")
