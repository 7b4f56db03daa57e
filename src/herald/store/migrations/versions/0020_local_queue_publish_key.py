"""local:// messages carry their publisher's key, so that a publish retried after a lost reply is one message

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("local_queue_message") as batch:
        batch.add_column(sa.Column("publish_key", sa.String(64)))
        batch.create_index("ux_local_queue_message_publish_key", ["publish_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("local_queue_message") as batch:
        batch.drop_index("ux_local_queue_message_publish_key")
        batch.drop_column("publish_key")
