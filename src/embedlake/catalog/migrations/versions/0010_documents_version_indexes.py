"""the documents' version read from indexes, not a scan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 13:40:00

``Documents.version()`` (what a release's BM25 records, and a server compares when it loads that
BM25) is the number of rows, the latest update and the latest deletion: an aggregate over the whole
documents table, texts included. With an index on ``updated_at`` and the tombstones' partial index
ordered by ``deleted_at`` first, each part is a few pages: the live count is kept (0006), the
tombstones are counted in their index, and each latest is the end of an index. The version's value
does not change, so the BM25 of a release built before this migration is still known to be whole.
The index on ``updated_at`` is one more write a document at ingest (bench/catalog_triggers.py
``--anchor no-updated-index``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_WHERE = sa.text("deleted_at IS NOT NULL")


def _deleted(columns: list[str]) -> None:
    op.drop_index("ix_documents_deleted", table_name="documents")
    op.create_index(
        "ix_documents_deleted",
        "documents",
        columns,
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def upgrade() -> None:
    op.create_index("ix_documents_updated", "documents", ["updated_at"])
    _deleted(["deleted_at", "id"])


def downgrade() -> None:
    _deleted(["id", "deleted_at"])
    op.drop_index("ix_documents_updated", table_name="documents")
