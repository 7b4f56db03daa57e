"""task_result.try_number; one dead letter per watcher and message

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("try_number", sa.Integer(), nullable=True))
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.create_unique_constraint(op.f("uq_dead_letter_watcher_id_dedupe_key"), ["watcher_id", "dedupe_key"])


def downgrade() -> None:
    with op.batch_alter_table("dead_letter", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_dead_letter_watcher_id_dedupe_key"), type_="unique")
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.drop_column("try_number")
