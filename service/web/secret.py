"""The web's own secret key: signs CSRF tokens and proof-of-work challenges.

Kept in ``<data_dir>/web-secret.key``, made on first start (32 random bytes, mode 0600, never
logged). Processes that share a data directory share the key; processes on other machines
need the same file, or a form served by one is refused by another.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from service.errors import ConfigError

FILENAME = "web-secret.key"
SIZE = 32


def load_key(data_dir: Path) -> bytes:
    """The key in ``data_dir``, made when there is none yet."""
    path = data_dir / FILENAME
    if not path.exists():
        _create(path)
    key = path.read_bytes()
    if len(key) != SIZE:
        raise ConfigError(f"expected {SIZE} bytes of key, found {len(key)}", where=str(path))
    return key


def _create(path: Path) -> None:
    """Write a fresh key beside ``path`` and link it into place: a process starting at the
    same moment either wins or reads the winner's key, never a half-written file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".web-secret.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp makes it 0600
            out.write(secrets.token_bytes(SIZE))
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
