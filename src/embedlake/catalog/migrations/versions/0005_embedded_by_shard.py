"""embedded by shard: an index build reads a model's vectors a shard at a time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 18:10:00

A streamed index build asks, for each shard of a model's chunking, which of its documents are
live with the hash embedded; without this index each such question scans the model's rows.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_embedded_shard", "embedded", ["model_id", "chunker", "shard_key"])


def downgrade() -> None:
    op.drop_index("ix_embedded_shard", table_name="embedded")
