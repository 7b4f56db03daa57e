"""stream checkpoints committed with the events (Kinesis)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stream_checkpoint",
        sa.Column("watcher_id", _ID, nullable=False),
        sa.Column("position_key", sa.String(length=250), nullable=False),
        sa.Column("position", sa.String(length=250), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["watcher_id"],
            ["watcher.id"],
            name=op.f("fk_stream_checkpoint_watcher_id_watcher"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("watcher_id", "position_key", name=op.f("pk_stream_checkpoint")),
    )


def downgrade() -> None:
    op.drop_table("stream_checkpoint")
