"""the charts' reads (a watcher's events, a DAG's runs over time); a dead letter's replay outcome

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_asset_event_source_timestamp", "asset_event", ["source", "timestamp"])
    op.create_index("ix_dag_run_dag_id_queued_at", "dag_run", ["dag_id", "queued_at"])
    with op.batch_alter_table("dead_letter") as batch:
        batch.add_column(sa.Column("replayed_event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
        batch.add_column(sa.Column("replay_failed_at", UtcDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.drop_column("replay_failed_at")
        batch.drop_column("replayed_event_id")
    op.drop_index("ix_dag_run_dag_id_queued_at", table_name="dag_run")
    op.drop_index("ix_asset_event_source_timestamp", table_name="asset_event")
