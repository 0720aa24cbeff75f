"""suppressions keyed by a salted hash of the mailbox, the address no longer kept

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

A ``store_keys`` table holds the salt (32 random bytes, hex); each suppression's mailbox key
becomes sha256("<salt>:<mailbox key>") (service/store/mailboxes.py), the address column goes,
and addresses in the stored diagnostics are replaced by ``<address>``. The hash cannot be
undone: a downgrade keeps the hashed keys (with an empty address), and those suppressions no
longer match anyone until upgraded again.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ADDRESS = re.compile(r"[^\s<>()\[\]:;,\"']+@[^\s<>()\[\]:;,\"']+")


def upgrade() -> None:
    keys = op.create_table(
        "store_keys",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_keys")),
    )
    salt = secrets.token_hex(32)
    op.bulk_insert(keys, [{"name": "suppression", "value": salt}])
    db = op.get_bind()
    rows = db.execute(sa.text("SELECT mailbox, detail FROM suppressions")).all()
    for mailbox, detail in rows:
        db.execute(
            sa.text(
                "UPDATE suppressions SET mailbox = :new, detail = :detail WHERE mailbox = :old"
            ),
            {
                "new": hashlib.sha256(f"{salt}:{mailbox}".encode()).hexdigest(),
                "detail": _ADDRESS.sub("<address>", detail),
                "old": mailbox,
            },
        )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_column("email")


def downgrade() -> None:
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email", sa.String(length=320), nullable=False, server_default="")
        )
    op.drop_table("store_keys")
