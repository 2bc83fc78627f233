"""invocation executor: the worker that claimed an invocation

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 00:20:00

A first attempt runs directly, with no workflow recorded in DBOS (docs/decisions/0028). After a
crash, a worker starts again the invocations it had claimed and not finished; with several
workers on one catalog it must know which of the running invocations were its own, or it would
run a live neighbour's a second time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invocations", sa.Column("executor", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invocations") as batch:
        batch.drop_column("executor")
