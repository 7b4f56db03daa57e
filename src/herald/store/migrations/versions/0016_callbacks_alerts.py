"""DAG callback requests and alert episodes

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dag_callback",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_pk", _ID, nullable=False),
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("log", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_pk"], ["dag_run.id"], name=op.f("fk_dag_callback_run_pk_dag_run"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dag_callback")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_dag_callback_state_id", "dag_callback", ["state", "id"])
    op.create_index("ix_dag_callback_run_pk", "dag_callback", ["run_pk"])
    op.create_table(
        "alert",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=500), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("fired_at", UtcDateTime(), nullable=True),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert")),
        sa.UniqueConstraint("key", "episode", name=op.f("uq_alert_key_episode")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alert_state", "alert", ["state"])


def downgrade() -> None:
    op.drop_index("ix_alert_state", table_name="alert")
    op.drop_table("alert")
    op.drop_index("ix_dag_callback_run_pk", table_name="dag_callback")
    op.drop_index("ix_dag_callback_state_id", table_name="dag_callback")
    op.drop_table("dag_callback")
