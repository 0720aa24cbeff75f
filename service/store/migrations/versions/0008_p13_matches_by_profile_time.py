"""matches by profile and time: a batch of subscribers' matches in their windows are found
without reading each profile's older matches

Revision ID: 0008_p13
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008_p13"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_matches_profile_id_matched_at"), ["profile_id", "matched_at"]
        )


def downgrade() -> None:
    with op.batch_alter_table("matches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_matches_profile_id_matched_at"))
