"""Suppressions are kept by a salted hash of the mailbox, never by the address.

The salt is 32 random bytes (hex) in the ``store_keys`` table, made by migration 0011 (or on
first use): the database carries its own, so a backup restored elsewhere, or a second process,
hashes alike. Erasing a subscriber then leaves nothing that names them, while a suppressed
address given again still hashes to its suppression. Without the salt a guessed address cannot
be checked against the table; with the whole database it can (as for any stored hash of an
address): the point is that the address itself is not kept.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.store.tables import store_keys, suppressions

SALT = "suppression"


def salt(db: sa.Connection) -> str:
    """The store's suppression salt, made now if it has none."""
    query = sa.select(store_keys.c.value).where(store_keys.c.name == SALT)
    found = db.execute(query).scalar_one_or_none()
    if found is not None:
        return str(found)
    insert = (postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert)(store_keys)
    db.execute(
        insert.values(name=SALT, value=secrets.token_hex(32)).on_conflict_do_nothing(
            index_elements=["name"]
        )
    )
    return str(db.execute(query).scalar_one())


def hashed(salt: str, email_key: str) -> str:
    """The suppression key of a mailbox (``identity.mailbox_key``)."""
    return hashlib.sha256(f"{salt}:{email_key}".encode()).hexdigest()


def suppressed(db: sa.Connection, email_keys: Iterable[str]) -> set[str]:
    """Which of these mailboxes (``identity.mailbox_key``) are suppressed."""
    keys = set(email_keys)
    if not keys:
        return set()
    pepper = salt(db)  # read once, not once a mailbox
    wanted = {hashed(pepper, key): key for key in keys}
    found = db.execute(
        sa.select(suppressions.c.mailbox).where(suppressions.c.mailbox.in_(list(wanted)))
    ).scalars()
    return {wanted[h] for h in found}
