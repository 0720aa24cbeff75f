"""The migrations build exactly the schema that ``store.tables`` describes; bad URLs."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.errors import ConfigError
from service.store.database import create_engine, upgrade
from service.store.suppressions import Suppressions
from service.store.tables import metadata, papers


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


def test_the_identities_migration_mints_entry_ids_and_merges_one_mailbox(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    at = "2026-06-01 12:00:00"
    try:
        upgrade(engine, "0003")
        with engine.begin() as db:
            hostile = '{"abs": "https://x.org/1", "code": " JavaScript:alert(1)"}'
            for number, title, links in ((1, "One paper", "{}"), (2, "Ano\x1bther\x07", hostile)):
                db.execute(
                    sa.text(
                        "INSERT INTO papers (id, title, abstract, authors, links, categories,"
                        " keywords, summary, first_seen_at, updated_at) VALUES (:id, :title,"
                        " :abstract, :authors, :links, '[]', '[]', '', :at, :at)"
                    ),
                    {
                        "id": number,
                        "title": title,
                        "abstract": "Line\none\x07.",
                        "authors": '["Jane\\u001b Doe"]',
                        "links": links,
                        "at": at,
                    },
                )
            for number, email in enumerate(
                ("ann@example.org", "Ann@Example.org", "bob@example.org"), 1
            ):
                db.execute(
                    sa.text(
                        "INSERT INTO subscribers (id, email, timezone, schedule, status, declared,"
                        " token, created_at, updated_at) VALUES (:id, :email, 'UTC', 'instant',"
                        " 'active', :no, :token, :at, :at)"
                    ),
                    {"id": number, "email": email, "no": False, "token": f"t{number}", "at": at},
                )
            for profile, (owner, name) in enumerate(((1, "KV"), (2, "KV"), (2, "RAG")), 1):
                db.execute(
                    sa.text(
                        "INSERT INTO profiles (id, subscriber_id, name, query, min_upvotes,"
                        " max_items, send_when_empty, created_at, updated_at) VALUES (:id,"
                        " :owner, :name, 'kv', 0, 20, :no, :at, :at)"
                    ),
                    {"id": profile, "owner": owner, "name": name, "no": False, "at": at},
                )
            for delivery, (owner, window) in enumerate(((1, "w1"), (2, "w1"), (2, "w2")), 1):
                db.execute(
                    sa.text(
                        'INSERT INTO deliveries (id, subscriber_id, kind, "window", recipient,'
                        " subject, message_id, papers, status, attempts, next_attempt_at,"
                        " created_at) VALUES (:id, :owner, 'digest', :window, 'x', 's',"
                        " :mid, 1, 'sent', 1, :at, :at)"
                    ),
                    {
                        "id": delivery,
                        "owner": owner,
                        "window": window,
                        "mid": f"m{delivery}",
                        "at": at,
                    },
                )
            for owner, paper, delivery in ((1, 1, 1), (2, 1, 2), (2, 2, 2)):
                db.execute(
                    sa.text(
                        "INSERT INTO sent (subscriber_id, paper_id, delivery_id, at)"
                        " VALUES (:owner, :paper, :delivery, :at)"
                    ),
                    {"owner": owner, "paper": paper, "delivery": delivery, "at": at},
                )
        upgrade(engine)
        with engine.connect() as db:
            entry_ids = db.execute(sa.text("SELECT entry_id FROM papers")).scalars().all()
            cleaned = db.execute(
                sa.select(
                    papers.c.title, papers.c.abstract, papers.c.authors, papers.c.links
                ).order_by(papers.c.id)
            ).all()
            people = db.execute(
                sa.text("SELECT id, email, email_key FROM subscribers ORDER BY id")
            ).all()
            profiles = db.execute(
                sa.text("SELECT subscriber_id, name FROM profiles ORDER BY id")
            ).all()
            windows = db.execute(
                sa.text('SELECT subscriber_id, "window" FROM deliveries ORDER BY id')
            ).all()
            ledger = db.execute(
                sa.text("SELECT subscriber_id, paper_id, delivery_id FROM sent ORDER BY paper_id")
            ).all()
    finally:
        engine.dispose()
    assert len(set(entry_ids)) == 2
    assert [tuple(row) for row in cleaned] == [
        ("One paper", "Line\none.", ["Jane Doe"], {}),
        ("Another", "Line\none.", ["Jane Doe"], {"abs": "https://x.org/1"}),
    ]
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", e) for e in entry_ids)
    assert [tuple(p) for p in people] == [
        (1, "ann@example.org", "ann@example.org"),
        (3, "bob@example.org", "bob@example.org"),
    ]
    assert [tuple(p) for p in profiles] == [(1, "KV"), (1, "KV (2)"), (1, "RAG")]
    assert [tuple(w) for w in windows] == [(1, "w1"), (1, "w2")]
    assert [tuple(row) for row in ledger] == [(1, 1, 1), (1, 2, 1)]


def test_the_suppression_hash_migration_keeps_no_address_and_still_suppresses(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        upgrade(engine, "0010")
        with engine.begin() as db:
            db.execute(
                sa.text(
                    "INSERT INTO suppressions (mailbox, email, reason, detail, suppressed_at)"
                    " VALUES ('ann@example.org', 'Ann@Example.org', 'hard',"
                    " '5.1.1 550 5.1.1 <Ann@Example.org>: Recipient address rejected',"
                    " '2026-06-01 12:00:00')"
                )
            )
        upgrade(engine)
        with engine.connect() as db:
            rows = db.execute(sa.text("SELECT * FROM suppressions")).mappings().all()
        [row] = rows
        assert "email" not in row and "xample" not in str(dict(row))
        assert row["detail"] == "5.1.1 550 5.1.1 <<address>>: Recipient address rejected"
        held = Suppressions(engine)
        assert held.get("ANN@example.org") is not None and held.get("bob@example.org") is None
        assert list(held.all()) == [held.key("ann@example.org")]
    finally:
        engine.dispose()


def test_the_messages_migration_keeps_every_delivery_s_bytes(database_url: str) -> None:
    """Deliveries written before 0014 (bytes in their row, or none: to compose, forgotten)
    keep them in ``messages``; on PostgreSQL the bytes are compressed with lz4."""
    engine = create_engine(database_url)
    try:
        upgrade(engine, "0013")
        with engine.begin() as db:
            db.execute(
                sa.text(
                    "INSERT INTO subscribers (id, email, email_key, timezone, schedule, status,"
                    " declared, created_at, updated_at)"
                    " VALUES (1, 'ann@example.org', 'ann@example.org', 'UTC', 'daily 07:00',"
                    " 'active', false, :t, :t)"
                ),
                {"t": "2026-06-01 00:00:00"},
            )
            for n, body in enumerate([b"Subject: one\r\n\r\nbody\r\n", None], start=1):
                db.execute(
                    sa.text(
                        'INSERT INTO deliveries (id, subscriber_id, kind, "window", recipient,'
                        " subject, message_id, message, papers, status, attempts,"
                        " next_attempt_at, created_at)"
                        " VALUES (:n, 1, 'digest', :w, 'ann@example.org', '', '', :body, 0,"
                        " 'pending', 0, :t, :t)"
                    ),
                    {"n": n, "w": f"w{n}", "body": body, "t": "2026-06-01 00:00:00"},
                )
        upgrade(engine)
        with engine.connect() as db:
            kept = db.execute(sa.text("SELECT delivery_id, body FROM messages")).all()
            assert [(i, bytes(b)) for i, b in kept] == [(1, b"Subject: one\r\n\r\nbody\r\n")]
            if db.dialect.name == "postgresql":
                compression = sa.text(
                    "SELECT attcompression FROM pg_attribute"
                    " WHERE attrelid = 'messages'::regclass AND attname = 'body'"
                )
                assert db.execute(compression).scalar_one() == "l"
    finally:
        engine.dispose()
