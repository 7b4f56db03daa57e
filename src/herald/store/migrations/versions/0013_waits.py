"""deferred tries wait in task_wait (and task_wait_cursor); absences remember their keys in asset_key_seen

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("task_result") as batch:
        batch.add_column(sa.Column("defer", sa.JSON(), nullable=True))
    op.create_table(
        "task_wait",
        sa.Column("ti_id", Id, nullable=False),
        sa.Column("asset_id", Id, nullable=True),
        sa.Column("match", sa.Text(), nullable=True),
        sa.Column("match_path", sa.String(500), nullable=True),
        sa.Column("match_value", sa.String(64), nullable=True),
        sa.Column("deadline", UtcDateTime(), nullable=True),
        sa.Column("since_event_id", sa.BigInteger(), nullable=False),
        sa.Column("caught_up", sa.Boolean(), nullable=False),
        sa.Column("timeout_reason", sa.Text(), nullable=True),
        sa.Column("soft_fail", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ti_id"], ["task_instance.id"], name="fk_task_wait_ti_id_task_instance", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["asset_id"], ["asset.id"], name="fk_task_wait_asset_id_asset", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ti_id", name="pk_task_wait"),
    )
    op.create_index(
        "ix_task_wait_asset_id_match_path_match_value", "task_wait", ["asset_id", "match_path", "match_value"]
    )
    op.create_index("ix_task_wait_asset_id_caught_up", "task_wait", ["asset_id", "caught_up"])
    op.create_index("ix_task_wait_deadline", "task_wait", ["deadline"])
    op.create_table(
        "task_wait_cursor",
        sa.Column("asset_id", Id, nullable=False),
        sa.Column("checked_through", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["asset.id"], name="fk_task_wait_cursor_asset_id_asset", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("asset_id", name="pk_task_wait_cursor"),
    )
    op.create_table(
        "asset_key_seen",
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("key", sa.String(500), nullable=False),
        sa.Column("last_seen", UtcDateTime(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["dag_id"], ["dag.dag_id"], name="fk_asset_key_seen_dag_id_dag", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dag_id", "key", name="pk_asset_key_seen"),
    )
    op.create_index("ix_asset_key_seen_alerted_last_seen", "asset_key_seen", ["alerted", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_asset_key_seen_alerted_last_seen", table_name="asset_key_seen")
    op.drop_table("asset_key_seen")
    op.drop_table("task_wait_cursor")
    op.drop_index("ix_task_wait_deadline", table_name="task_wait")
    op.drop_index("ix_task_wait_asset_id_caught_up", table_name="task_wait")
    op.drop_index("ix_task_wait_asset_id_match_path_match_value", table_name="task_wait")
    op.drop_table("task_wait")
    with op.batch_alter_table("task_result") as batch:
        batch.drop_column("defer")
