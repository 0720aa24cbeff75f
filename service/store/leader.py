"""One leader at a time for the jobs that must not run in two processes at once.

On PostgreSQL a job runs under a session-level advisory lock named after it: the process that
takes the lock leads for that run, the others skip it (``pg_try_advisory_lock`` never waits).
The lock is given back when the job ends, or by the server if the process dies, so leadership
moves to whichever process asks next. SQLite serves one process, which always leads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def lock_key(name: str) -> int:
    """The advisory-lock key for ``name``: a stable signed 64-bit number."""
    digest = hashlib.sha256(f"paperboy:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def leading(engine: sa.Engine, name: str) -> Iterator[bool]:
    """Whether this process leads job ``name`` for the duration of the block."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(name)
    with engine.connect() as db:
        taken = bool(
            db.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        )
        db.commit()
        try:
            yield taken
        finally:
            if taken:
                db.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                db.commit()
