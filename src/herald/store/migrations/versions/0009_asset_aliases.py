"""Airflow assets: aliases and the source of task-made events

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("asset_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_dag_id", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("source_task_id", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("source_run_id", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("source_map_index", sa.Integer(), nullable=True))
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outlet_alias_events", sa.JSON(), nullable=True))
    op.create_table(
        "asset_alias",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=1500), nullable=False),
        sa.Column("group", sa.String(length=1500), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_asset_alias")),
        sa.UniqueConstraint("name", name=op.f("uq_asset_alias_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "asset_alias_asset",
        sa.Column("alias_id", Id, nullable=False),
        sa.Column("asset_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["alias_id"], ["asset_alias.id"], name=op.f("fk_asset_alias_asset_alias_id_asset_alias"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["asset.id"], name=op.f("fk_asset_alias_asset_asset_id_asset"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alias_id", "asset_id", name=op.f("pk_asset_alias_asset")),
    )
    op.create_index("ix_asset_alias_asset_asset_id", "asset_alias_asset", ["asset_id"])
    op.create_table(
        "asset_alias_event",
        sa.Column("alias_id", Id, nullable=False),
        sa.Column("event_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["alias_id"], ["asset_alias.id"], name=op.f("fk_asset_alias_event_alias_id_asset_alias"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["asset_event.id"], name=op.f("fk_asset_alias_event_event_id_asset_event"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("alias_id", "event_id", name=op.f("pk_asset_alias_event")),
    )
    op.create_index("ix_asset_alias_event_event_id", "asset_alias_event", ["event_id"])
    op.create_table(
        "dag_schedule_alias",
        sa.Column("dag_id", sa.String(length=250), nullable=False),
        sa.Column("alias_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["dag_id"], ["dag.dag_id"], name=op.f("fk_dag_schedule_alias_dag_id_dag"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["alias_id"],
            ["asset_alias.id"],
            name=op.f("fk_dag_schedule_alias_alias_id_asset_alias"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dag_id", "alias_id", name=op.f("pk_dag_schedule_alias")),
    )


def downgrade() -> None:
    op.drop_table("dag_schedule_alias")
    op.drop_index("ix_asset_alias_event_event_id", table_name="asset_alias_event")
    op.drop_table("asset_alias_event")
    op.drop_index("ix_asset_alias_asset_asset_id", table_name="asset_alias_asset")
    op.drop_table("asset_alias_asset")
    op.drop_table("asset_alias")
    with op.batch_alter_table("task_result", schema=None) as batch_op:
        batch_op.drop_column("outlet_alias_events")
    with op.batch_alter_table("asset_event", schema=None) as batch_op:
        batch_op.drop_column("source_map_index")
        batch_op.drop_column("source_run_id")
        batch_op.drop_column("source_task_id")
        batch_op.drop_column("source_dag_id")
