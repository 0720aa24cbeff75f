"""a delivery's bytes move to a table of their own (``messages``), compressed with lz4 on
PostgreSQL where the server has it; due deliveries are indexed in claim order

A delivery's status changes three or four times (claimed, sent); SQLite rewrites the whole
row for each change, 25-30 KB of message with it. Kept apart, those updates write a few
bytes. PostgreSQL compresses the bytes as it stores them: its default (pglz) takes about three
times as long to write as lz4, for a similar size (about 7 KB a digest); servers before 14,
or built without lz4, keep pglz.

A claim takes the earliest due deliveries of a status by (next_attempt_at, id); with the id in
the index it reads them in that order and stops at the claim's size, instead of sorting every
due row (23 ms a claim with 10,000 due on PostgreSQL, 0.5 ms with the index).

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
    op.create_table(
        "messages",
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("delivery_id"),
    )
    _compression("lz4")
    op.execute(
        "INSERT INTO messages (delivery_id, body)"
        " SELECT id, message FROM deliveries WHERE message IS NOT NULL"
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("message")
        batch_op.drop_index("ix_deliveries_status_next_attempt_at")
        batch_op.create_index(
            "ix_deliveries_status_next_attempt_at_id", ["status", "next_attempt_at", "id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message", sa.LargeBinary(), nullable=True))
        batch_op.drop_index("ix_deliveries_status_next_attempt_at_id")
        batch_op.create_index("ix_deliveries_status_next_attempt_at", ["status", "next_attempt_at"])
    op.execute(
        "UPDATE deliveries SET message ="
        " (SELECT body FROM messages WHERE messages.delivery_id = deliveries.id)"
    )
    op.drop_table("messages")


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
        op.execute(f"ALTER TABLE messages ALTER COLUMN body SET COMPRESSION {method}")
