"""local:// publish inbox: how far the running Herald has moved each inbox file into local_queue_message

Revision ID: 0025
Revises: 0022
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "local_queue_inbox",
        sa.Column("inbox", sa.String(64), primary_key=True),
        sa.Column("moved_up_to", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("local_queue_inbox")
