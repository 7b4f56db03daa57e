"""dead letters keep the head of their body: its original size and whether it was truncated

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.add_column(sa.Column("body_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("body_truncated", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.drop_column("body_truncated")
        batch.drop_column("body_size")
