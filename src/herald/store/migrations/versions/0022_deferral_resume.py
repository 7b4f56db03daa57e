"""deferral resume: the method (and its arguments) an operator that deferred resumes in

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_instance") as batch:
        batch.add_column(sa.Column("next_method", sa.String(length=250), nullable=True))
        batch.add_column(sa.Column("next_kwargs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("task_instance") as batch:
        batch.drop_column("next_kwargs")
        batch.drop_column("next_method")
