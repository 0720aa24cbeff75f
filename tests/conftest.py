"""Shared test fixtures: a non-UTC local time zone, ../shared, SQLite and PostgreSQL stores."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

# Everything inside is aware UTC; a local zone far from UTC shows any slip.
os.environ["TZ"] = "Pacific/Auckland"
time.tzset()

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PG_URL = os.environ.get("PAPERBOY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(path: Path, why: str) -> Path:
    """``path`` if it exists; else skip, or fail under CI where nothing may be skipped."""
    if path.exists():
        return path
    message = f"{path} is missing: {why}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def seeds() -> list[Path]:
    folder = need(SHARED / "seeds", "the listing seeds live in ../shared/seeds")
    return sorted(folder.glob("*.txt"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return need(SHARED / "fixtures", "third-party fixtures live in ../shared/fixtures")


def seed(seeds: list[Path], prefix: str) -> Path:
    return next(path for path in seeds if path.name.startswith(prefix))


# The seeds in capture order with their capture dates (see issue 2).
SEED_ORDER = [
    ("001", datetime(2025, 11, 20, tzinfo=UTC)),
    ("003", datetime(2025, 12, 9, tzinfo=UTC)),
    ("002", datetime(2025, 12, 15, tzinfo=UTC)),
    ("000", datetime(2025, 12, 26, tzinfo=UTC)),
    ("004", datetime(2026, 5, 8, tzinfo=UTC)),
]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The URL of the local PostgreSQL server; skip without one, fail under CI."""
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as db:
            db.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {PG_URL} is unreachable: {exc.orig}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return PG_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"paperboy_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        pg_server.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = pg_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'paperboy.db'}"
    return str(request.getfixturevalue("pg_url"))
