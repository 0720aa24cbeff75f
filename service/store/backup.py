"""Backups of the database, and restoring one.

SQLite: SQLite's online backup API copies the database into ``FILE`` in one step, inside one
read transaction: with the WAL journal paperboy uses, writers go on meanwhile and the copy is
of one moment (a copy in several steps would start over at every write). Restore copies a backup
back the same way, after checking that it is a paperboy database; the schema is then upgraded
to this version's, so an older backup restores into a newer paperboy. Stop paperboy first:
what it writes during a restore is lost.

PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean``, when they are installed
(the PostgreSQL client tools); their versions must be at least the server's.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from service.errors import ConfigError

PAGES = -1
"""Pages copied per step: all, so that the copy is one snapshot (see the module docstring)."""


def backup(url: str, target: Path) -> str:
    """Write a consistent copy of the database at ``url`` to ``target``; how it was made."""
    parsed = make_url(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() == "sqlite":
        source = _sqlite_file(url)
        if not source.is_file():
            raise ConfigError("no database file to back up", where=str(source))
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        with (
            closing(sqlite3.connect(source, timeout=30)) as live,
            closing(sqlite3.connect(partial)) as copy,
        ):
            live.backup(copy, pages=PAGES)
        partial.replace(target)  # a crash mid-copy never leaves a half backup under the name
        return "SQLite online backup"
    if parsed.get_backend_name() == "postgresql":
        _run("pg_dump", "--format=custom", "--no-owner", f"--file={target}", _libpq(url))
        return "pg_dump (custom format)"
    raise ConfigError(
        f"cannot back up a {parsed.get_backend_name()} database", where="database_url"
    )


def restore(url: str, source: Path) -> str:
    """Replace the database at ``url`` by the backup ``source``; how it was done. Its schema
    is left as the backup's: the caller upgrades it."""
    if not source.is_file():
        raise ConfigError("no such backup file", where=str(source))
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_backup(source)
        target = _sqlite_file(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as saved,
            closing(sqlite3.connect(target, timeout=30)) as live,
        ):
            saved.backup(live, pages=PAGES)
        return "SQLite online backup, in reverse"
    if parsed.get_backend_name() == "postgresql":
        _run(
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            f"--dbname={_libpq(url)}",
            str(source),
        )
        return "pg_restore --clean"
    raise ConfigError(
        f"cannot restore a {parsed.get_backend_name()} database", where="database_url"
    )


def _check_sqlite_backup(path: Path) -> None:
    """A backup must be a sound SQLite database that paperboy made."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            (verdict,) = db.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"not a SQLite database: {exc}", where=str(path)) from None
    if verdict != "ok":
        raise ConfigError(f"the backup is damaged: {verdict}", where=str(path))
    if not {"alembic_version", "subscribers"} <= tables:
        raise ConfigError(
            "not a paperboy database (no alembic_version or subscribers table)", where=str(path)
        )


def _sqlite_file(url: str) -> Path:
    name = make_url(url).database
    if not name or name == ":memory:":
        raise ConfigError(
            "an in-memory SQLite database has nothing to back up", where="database_url"
        )
    return Path(name)


def _libpq(url: str) -> str:
    """The URL as libpq's tools take it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _run(tool: str, *arguments: str) -> None:
    found = shutil.which(tool)
    if found is None:
        raise ConfigError(
            f"{tool} is not installed: install the PostgreSQL client tools"
            " (Debian: postgresql-client) of the server's version or newer"
        )
    done = subprocess.run([found, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[:500]}")


def row_count(engine: sa.Engine, table: str) -> int:
    """Rows in ``table`` (for the CLI's summary of a backup or restore)."""
    with engine.connect() as db:
        return int(db.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())
