"""cancel_on: the queued events of a key that a cancel_on event consumed before any run took them

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cancelled_event",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("event_id", _ID, nullable=False),
        sa.Column("run_key", sa.String(length=250), nullable=True),
        sa.Column("queued_at", UtcDateTime(), nullable=False),
        sa.Column("cancelled_by_event", _ID, nullable=False),
        sa.Column("cancelled_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["asset_event.id"], name=op.f("fk_cancelled_event_event_id_asset_event"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cancelled_event")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_cancelled_event_dag_id_id"), "cancelled_event", ["dag_id", "id"])
    op.create_index(op.f("ix_cancelled_event_event_id"), "cancelled_event", ["event_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_cancelled_event_event_id"), table_name="cancelled_event")
    op.drop_index(op.f("ix_cancelled_event_dag_id_id"), table_name="cancelled_event")
    op.drop_table("cancelled_event")
