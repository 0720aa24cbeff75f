"""The migrations build exactly the schema that ``store.tables`` describes; bad URLs."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.errors import ConfigError
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


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://alice:s3cret@127.0.0.1:notaport/x", "notaport"),
        ("nosuchdb://alice:s3cret@127.0.0.1/x", "nosuchdb"),
        ("not a url at all", "not a url"),
    ],
)
def test_an_unusable_database_url_is_a_config_error_without_its_password(
    url: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        create_engine(url)
    message = str(caught.value)
    assert message.startswith("database_url: ")
    assert says in message
    assert "s3cret" not in message
