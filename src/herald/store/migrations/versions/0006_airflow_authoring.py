"""Airflow authoring: the DAG arguments the scheduler honours, and the DAG's warnings

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from herald.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("start_date", UtcDateTime),
    ("end_date", UtcDateTime),
    ("catchup", sa.Boolean),
    ("max_active_tasks", sa.Integer),
    ("dagrun_timeout", sa.Float),
    ("owner", sa.Text),
    ("tags", sa.JSON),
    ("doc_md", sa.Text),
    ("params", sa.JSON),
    ("warnings", sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("dag", schema=None) as batch_op:
        for name, type_ in _COLUMNS:
            batch_op.add_column(sa.Column(name, type_(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dag", schema=None) as batch_op:
        for name, _type in reversed(_COLUMNS):
            batch_op.drop_column(name)
