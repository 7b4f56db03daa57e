"""lost workers: a try's requeues after its worker died or went silent, and the `lost` flag of a result;
retention: an index to find the events a DAG still waits for

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "task_requeue",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ti_id", _ID, nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("hostname", sa.String(length=250), nullable=True),
        sa.Column("requeued_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ti_id"], ["task_instance.id"], name=op.f("fk_task_requeue_ti_id_task_instance"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_requeue")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_task_requeue_ti_id_try_number"), "task_requeue", ["ti_id", "try_number"])
    with op.batch_alter_table("task_result") as batch:
        batch.add_column(sa.Column("lost", sa.Boolean(), nullable=True))
    op.create_index(op.f("ix_event_queue_event_id"), "event_queue", ["event_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_event_queue_event_id"), table_name="event_queue")
    with op.batch_alter_table("task_result") as batch:
        batch.drop_column("lost")
    op.drop_index(op.f("ix_task_requeue_ti_id_try_number"), table_name="task_requeue")
    op.drop_table("task_requeue")
