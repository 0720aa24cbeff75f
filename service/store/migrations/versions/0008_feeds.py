"""feeds: matches indexed by profile and time (a feed's newest matches, and its validators)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_matches_profile_id_matched_at"), "matches", ["profile_id", "matched_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_matches_profile_id_matched_at"), table_name="matches")
