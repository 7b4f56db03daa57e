"""Fewer index entries per run version: dag_run's flow-control indexes hold only the runs they serve

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07

Every state change of a run writes a new row version and, since `state` is
indexed, an entry in every index of dag_run: ten per version, three versions per
run. The indexes of flow control (`(dag_id, run_key, state, id)`,
`(dag_id, run_key, started_at)`, `(dag_id, held_until)`) now hold only the runs
with a key or a hold (every query through them asks for `run_key = ...` or a
`held_until` bound, which imply NOT NULL); `(state, dag_id)` goes: `(state, id)`
and `(dag_id, state, priority DESC, id)` serve its queries (a state's runs; a
DAG's runs in a state).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

_KEYED = sa.text("run_key IS NOT NULL")
_HELD = sa.text("held_until IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_dag_run_state_dag_id", table_name="dag_run")
    op.drop_index("ix_dag_run_dag_id_run_key_state_id", table_name="dag_run")
    op.drop_index("ix_dag_run_dag_id_run_key_started_at", table_name="dag_run")
    op.drop_index("ix_dag_run_dag_id_held_until", table_name="dag_run")
    op.create_index(
        "ix_dag_run_dag_id_run_key_state_id",
        "dag_run",
        ["dag_id", "run_key", "state", "id"],
        postgresql_where=_KEYED,
        sqlite_where=_KEYED,
    )
    op.create_index(
        "ix_dag_run_dag_id_run_key_started_at",
        "dag_run",
        ["dag_id", "run_key", "started_at"],
        postgresql_where=_KEYED,
        sqlite_where=_KEYED,
    )
    op.create_index(
        "ix_dag_run_dag_id_held_until", "dag_run", ["dag_id", "held_until"], postgresql_where=_HELD, sqlite_where=_HELD
    )


def downgrade() -> None:
    op.drop_index("ix_dag_run_dag_id_held_until", table_name="dag_run")
    op.drop_index("ix_dag_run_dag_id_run_key_started_at", table_name="dag_run")
    op.drop_index("ix_dag_run_dag_id_run_key_state_id", table_name="dag_run")
    op.create_index("ix_dag_run_dag_id_held_until", "dag_run", ["dag_id", "held_until"])
    op.create_index("ix_dag_run_dag_id_run_key_started_at", "dag_run", ["dag_id", "run_key", "started_at"])
    op.create_index("ix_dag_run_dag_id_run_key_state_id", "dag_run", ["dag_id", "run_key", "state", "id"])
    op.create_index("ix_dag_run_state_dag_id", "dag_run", ["state", "dag_id"])
