"""profile likes: papers a profile likes or refused, named by id, DOI, title or a click

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profile_likes",
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("lookup", sa.JSON(), nullable=False),
        sa.Column("paper_id", sa.Integer(), nullable=True),
        sa.Column("vote", sa.String(length=8), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["paper_id"], ["papers.id"], name=op.f("fk_profile_likes_paper_id_papers")
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name=op.f("fk_profile_likes_profile_id_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", "ref", name=op.f("pk_profile_likes")),
    )
    with op.batch_alter_table("profile_likes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profile_likes_paper_id"), ["paper_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("profile_likes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_likes_paper_id"))
    op.drop_table("profile_likes")
