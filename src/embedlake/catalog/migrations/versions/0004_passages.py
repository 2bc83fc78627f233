"""passages: a model's vectors are per chunking; coverage counts passages and what was cut

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 23:50:00

Existing vectors were made of whole documents cut at the encoder's window: chunking ``""``.
The coverage table gets the chunking in its primary key, which SQLite cannot alter in place: the
table is rebuilt (the same statements on both dialects) and its rows copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("embedding_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chunker", sa.String(length=64), nullable=False, server_default="")
        )
    op.create_table(
        "embedded_next",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("chunker", sa.String(length=64), nullable=False),
        sa.Column("doc_id", sa.String(length=512), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("shard_key", sa.Text(), nullable=False),
        sa.Column("passages", sa.Integer(), nullable=False),
        sa.Column("cut", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "chunker", "doc_id"),
    )
    op.execute(
        "INSERT INTO embedded_next (model_id, chunker, doc_id, content_hash, shard_key, passages,"
        " cut) SELECT model_id, '', doc_id, content_hash, shard_key, 1, 0 FROM embedded"
    )
    op.drop_table("embedded")
    op.rename_table("embedded_next", "embedded")


def downgrade() -> None:
    op.create_table(
        "embedded_prev",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("doc_id", sa.String(length=512), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("shard_key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "doc_id"),
    )
    op.execute(
        "INSERT INTO embedded_prev (model_id, doc_id, content_hash, shard_key) "
        "SELECT model_id, doc_id, content_hash, shard_key FROM embedded WHERE chunker = ''"
    )
    op.drop_table("embedded")
    op.rename_table("embedded_prev", "embedded")
    with op.batch_alter_table("embedding_runs", schema=None) as batch_op:
        batch_op.drop_column("chunker")
