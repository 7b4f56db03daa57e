"""trigger waits: a deferred try's Airflow-style trigger, the triggerer running it, and how it ended

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_wait") as batch:
        batch.add_column(sa.Column("trigger_classpath", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("trigger_kwargs", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("trigger_token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("fired", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("fired_at", UtcDateTime(), nullable=True))
    op.create_index("ix_task_wait_lease_expires_at", "task_wait", ["lease_expires_at"])
    op.create_index("ix_task_wait_lease_owner", "task_wait", ["lease_owner"])
    op.create_index("ix_task_wait_fired_at", "task_wait", ["fired_at"])


def downgrade() -> None:
    op.drop_index("ix_task_wait_fired_at", table_name="task_wait")
    op.drop_index("ix_task_wait_lease_owner", table_name="task_wait")
    op.drop_index("ix_task_wait_lease_expires_at", table_name="task_wait")
    with op.batch_alter_table("task_wait") as batch:
        for column in (
            "fired_at",
            "fired",
            "lease_expires_at",
            "lease_owner",
            "trigger_token",
            "trigger_kwargs",
            "trigger_classpath",
        ):
            batch.drop_column(column)
