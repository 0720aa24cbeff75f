"""Engines and migrations: SQLite by default (WAL, foreign keys), PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from service.errors import ConfigError, StoreError, redact

MIGRATIONS = Path(__file__).with_name("migrations")


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``; a SQLite file's folder is created, its pragmas set per connection."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ValueError, ImportError) as exc:
        # A malformed URL, an unknown dialect or driver: say so without the password.
        raise ConfigError(
            f"{redact(url)} is not a usable database URL ({redact(str(exc))}); expected e.g."
            " sqlite:///data/paperboy.db or postgresql://user@host:5432/paperboy",
            where="database_url",
        ) from None
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # Pages of 16 KiB for a new file (an existing one keeps its size): rows are mostly
            # abstracts of 1-2 KB, which fill 4 KiB pages badly; a big ingest then writes fewer,
            # fuller pages (a quarter as many WAL frames), in about a tenth less time.
            cursor.execute("PRAGMA page_size=16384")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

    return engine


def analyze(engine: sa.Engine, table: str) -> None:
    """Refresh PostgreSQL's planner statistics of ``table`` after many of its rows changed at
    once (SQLite plans by its indexes without them)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as db:
            db.execute(sa.text(f"ANALYZE {table}"))


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest migration this version knows."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; refuse a database newer than this version."""
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite alters a table by copying it and dropping the old one; with foreign
                # keys enforced that drop would cascade to the rows that refer to it (a
                # subscriber's profiles). Its documented way: keys off, outside a transaction,
                # and checked before the changes are committed.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            try:
                with connection.begin():
                    _migrate(connection, revision)
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                        if broken is not None:
                            raise StoreError(f"a migration broke a foreign key: {tuple(broken)}")
            finally:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()
    except sa.exc.OperationalError as exc:
        raise StoreError(f"cannot open the database: {exc.orig}") from exc


def _migrate(connection: sa.Connection, revision: str) -> None:
    now = MigrationContext.configure(connection).get_current_revision()
    script = ScriptDirectory.from_config(_config())
    if now is not None and script.get_revision(now) is None:
        raise StoreError(
            f"the database is at migration {now}, which this paperboy does not know: "
            "it was made by a newer version"
        )
    command.upgrade(_config(connection), revision)
