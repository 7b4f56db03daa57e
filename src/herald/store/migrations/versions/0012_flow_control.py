"""flow control: a run's key, priority, the rule holding it and until when

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dag_run") as batch:
        batch.add_column(sa.Column("run_key", sa.String(250), nullable=True))
        batch.add_column(sa.Column("priority", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("held_by", sa.String(300), nullable=True))
        batch.add_column(sa.Column("held_until", UtcDateTime(), nullable=True))
    op.create_index(
        "ix_dag_run_dag_id_state_priority_id", "dag_run", ["dag_id", "state", sa.text("priority DESC"), "id"]
    )
    op.create_index("ix_dag_run_dag_id_run_key_state_id", "dag_run", ["dag_id", "run_key", "state", "id"])
    op.create_index("ix_dag_run_dag_id_run_key_started_at", "dag_run", ["dag_id", "run_key", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_dag_run_dag_id_run_key_started_at", "dag_run")
    op.drop_index("ix_dag_run_dag_id_run_key_state_id", "dag_run")
    op.drop_index("ix_dag_run_dag_id_state_priority_id", "dag_run")
    with op.batch_alter_table("dag_run") as batch:
        batch.drop_column("held_until")
        batch.drop_column("held_by")
        batch.drop_column("priority")
        batch.drop_column("run_key")
