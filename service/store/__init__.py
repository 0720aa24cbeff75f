"""The store adapter: SQLAlchemy Core over SQLite or PostgreSQL, migrated by Alembic."""
