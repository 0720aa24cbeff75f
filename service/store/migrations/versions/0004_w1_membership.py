"""membership: confirmation and status times, manage-link generation, last notice time

Revision ID: 0004_w1
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_w1"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("manage_generation", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("notice_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("notice_at")
        batch_op.drop_column("manage_generation")
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("confirmed_at")
