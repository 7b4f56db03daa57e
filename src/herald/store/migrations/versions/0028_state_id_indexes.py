"""Queued tries and runs found by (state, id): claims and starts read the oldest queued rows in order

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07

`WHERE state = 'queued' ORDER BY id LIMIT n` (a worker's claim, the runs a pass
starts) had only an index on `state` (task_instance) or on `(state, dag_id)`
(dag_run): PostgreSQL walked the primary key from the oldest row, past every
finished try or run, to find the few queued ones at the end. An index on
`(state, id)` reads them in order, whatever the history. It replaces the
state-only index of task_instance, which it covers.
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_instance_state_id", "task_instance", ["state", "id"])
    op.drop_index("ix_task_instance_state", table_name="task_instance")
    op.create_index("ix_dag_run_state_id", "dag_run", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_dag_run_state_id", table_name="dag_run")
    op.create_index("ix_task_instance_state", "task_instance", ["state"])
    op.drop_index("ix_task_instance_state_id", table_name="task_instance")
