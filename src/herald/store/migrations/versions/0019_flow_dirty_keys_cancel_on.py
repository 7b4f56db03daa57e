"""flow control: the keys whose admission must be looked at again; the event that cancelled a run

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_dirty_key",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_key", sa.String(250), nullable=False),
        sa.Column("touched", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("dag_id", "run_key", name=op.f("pk_flow_dirty_key")),
    )
    with op.batch_alter_table("dag_run") as batch:
        batch.add_column(sa.Column("cancelled_by_event", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
    op.create_index("ix_dag_run_dag_id_held_until", "dag_run", ["dag_id", "held_until"])


def downgrade() -> None:
    op.drop_index("ix_dag_run_dag_id_held_until", table_name="dag_run")
    with op.batch_alter_table("dag_run") as batch:
        batch.drop_column("cancelled_by_event")
    op.drop_table("flow_dirty_key")
