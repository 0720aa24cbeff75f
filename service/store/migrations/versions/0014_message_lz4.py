"""on PostgreSQL, messages are compressed with lz4 where the server has it

A digest's 25-30 KB of quoted-printable HTML and text is compressed as PostgreSQL stores it;
its default (pglz) costs about three times as long to write as lz4, for a similar size
(about 7 KB a digest). Servers before 14, or built without lz4, keep pglz. Nothing to do on
SQLite, which stores the bytes as they are. Rows already written keep their compression.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _compression("lz4")


def downgrade() -> None:
    _compression("pglz")


def _compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(
        sa.text(
            "SELECT current_setting('server_version_num')::int >= 140000"
            " AND EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression'"
            " AND :method = ANY(enumvals))"
        ),
        {"method": method},
    ).scalar_one()
    if available:
        op.execute(f"ALTER TABLE deliveries ALTER COLUMN message SET COMPRESSION {method}")
