"""The migrations build exactly the schema that ``store.tables`` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.store.database import create_engine, upgrade
from service.store.tables import metadata


def test_migrations_match_the_tables(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as db:
            context = MigrationContext.configure(db, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
