"""history: every finished try of a task with why it ended (`task_try`), and a watcher's
health over time (`watcher_sample`)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "task_try",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_pk", _ID, nullable=False),
        sa.Column("task_id", sa.String(length=250), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("try_number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("hostname", sa.String(length=250), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["dag_run.id"], name=op.f("fk_task_try_run_pk_dag_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_try")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_task_try_run_pk_id"), "task_try", ["run_pk", "id"])
    op.create_table(
        "watcher_sample",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("watcher_id", _ID, nullable=False),
        sa.Column("sampled_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("lag", sa.BigInteger(), nullable=True),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["watcher_id"], ["watcher.id"], name=op.f("fk_watcher_sample_watcher_id_watcher"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watcher_sample")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_watcher_sample_watcher_id_sampled_at"), "watcher_sample", ["watcher_id", "sampled_at"])
    op.create_index(op.f("ix_watcher_sample_sampled_at"), "watcher_sample", ["sampled_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_watcher_sample_sampled_at"), table_name="watcher_sample")
    op.drop_index(op.f("ix_watcher_sample_watcher_id_sampled_at"), table_name="watcher_sample")
    op.drop_table("watcher_sample")
    op.drop_index(op.f("ix_task_try_run_pk_id"), table_name="task_try")
    op.drop_table("task_try")
