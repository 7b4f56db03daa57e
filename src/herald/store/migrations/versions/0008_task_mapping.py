"""Airflow authoring: mapped tasks (map_index) and DAG run limits

A task instance is one map index of a task (`map_index`, -1 for an unmapped
task, as in Airflow): a run holds one try per task and map index. A run keeps
its logical date and data interval (cron runs; None for event-driven runs).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_RUN_COLUMNS = ("logical_date", "data_interval_start", "data_interval_end")


def upgrade() -> None:
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("map_index", sa.Integer(), nullable=False, server_default="-1"))
        batch_op.drop_constraint(op.f("uq_task_instance_run_pk_task_id"), type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_task_instance_run_pk_task_id_map_index"), ["run_pk", "task_id", "map_index"]
        )
    with op.batch_alter_table("dag_run", schema=None) as batch_op:
        for name in _RUN_COLUMNS:
            batch_op.add_column(sa.Column(name, UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dag_run", schema=None) as batch_op:
        for name in reversed(_RUN_COLUMNS):
            batch_op.drop_column(name)
    # The expanded tries of mapped tasks have no place in the old schema: keep each task's first.
    op.execute("DELETE FROM task_instance WHERE map_index > 0")
    with op.batch_alter_table("task_instance", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_task_instance_run_pk_task_id_map_index"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_task_instance_run_pk_task_id"), ["run_pk", "task_id"])
        batch_op.drop_column("map_index")
