"""similarity models: the fitted features and each profile's model, so a restart or another
worker loads them instead of retraining

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "similarity_features",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("fitted_on", sa.Integer(), nullable=False),
        sa.Column("background", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_similarity_features")),
    )
    op.create_table(
        "similarity_models",
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("trained_on", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name=op.f("fk_similarity_models_profile_id_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("profile_id", name=op.f("pk_similarity_models")),
    )


def downgrade() -> None:
    op.drop_table("similarity_models")
    op.drop_table("similarity_features")
