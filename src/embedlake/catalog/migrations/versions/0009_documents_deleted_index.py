"""an index of the deleted documents' ids

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 11:40:00

The map asks which of its points were deleted since the release (``Documents.deleted_ids``):
without an index that is a scan of the whole documents table, texts included, for what is
usually no row at all. A partial index holds only the tombstones, so it answers from a few pages,
and an ingest does not write it (a new document is live; its cost to an ingest was not measured).
``deleted_at`` is in it so that SQLite answers from the index alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WHERE = sa.text("deleted_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_documents_deleted",
        "documents",
        ["id", "deleted_at"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_documents_deleted", table_name="documents")
