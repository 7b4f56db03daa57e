"""Airflow assets: an asset's group and extra; names as long as Airflow's

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(length=200), type_=sa.String(length=1500))
        batch_op.add_column(sa.Column("group", sa.String(length=1500), nullable=False, server_default="asset"))
        batch_op.add_column(sa.Column("extra", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_column("extra")
        batch_op.drop_column("group")
        batch_op.alter_column("name", existing_type=sa.String(length=1500), type_=sa.String(length=200))
