"""documents without an index on content_hash

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:15:00

No query looks a document up by its content hash (coverage joins on the id and compares the hash
of the row it found), and the index cost every ingest: a random 64-character key a document,
a sixth of a batch's write time at 50,000 documents (bench/ingest.py), more as it outgrows the
page cache.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_documents_content_hash", table_name="documents")


def downgrade() -> None:
    op.create_index("ix_documents_content_hash", "documents", ["content_hash"])
