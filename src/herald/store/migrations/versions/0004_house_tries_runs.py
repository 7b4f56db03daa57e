"""the house: XCom values on tries; skip, xcom and retry on stored results

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("xcom", sa.JSON(), nullable=True))
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skip", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("xcom", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("retry", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.drop_column("retry")
        batch_op.drop_column("xcom")
        batch_op.drop_column("skip")
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.drop_column("xcom")
