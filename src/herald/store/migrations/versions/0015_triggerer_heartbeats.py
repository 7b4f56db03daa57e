"""triggerer heartbeats: who is alive to share the watchers' leases, and what each consumes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import herald.store.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triggerer",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", herald.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", herald.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("consuming", sa.JSON(), nullable=False),
        sa.Column("received", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_triggerer")),
    )


def downgrade() -> None:
    op.drop_table("triggerer")
