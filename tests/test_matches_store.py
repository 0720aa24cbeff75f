"""Matches saved in bulk (an upsert; COPY on PostgreSQL): newer replace older, the last of a
pair given twice wins, and the time reads back as any other stored time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from mail import ingest, listing, make_app

from service.clock import FixedClock
from service.model import ProfileSpec
from service.store.tables import matches

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_newer_matches_replace_older_and_the_last_of_a_pair_wins(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        profile = app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        subscriptions = app.pipeline.roster.subscriptions
        [(paper_id, _, _)] = subscriptions.matches(profile.id)
        later = T0 + timedelta(hours=1)
        saved = subscriptions.save_matches(
            [
                (profile.id, paper_id, 1.0, [{"term": "old", "field": "title", "positions": []}]),
                (profile.id, paper_id, 7.5, '[{"term": "kv", "field": "title", "positions": []}]'),
            ],
            later,
        )
        assert saved == 2
        assert subscriptions.matches(profile.id) == [
            (paper_id, 7.5, [{"term": "kv", "field": "title", "positions": []}])
        ]
        with app.store.engine.connect() as db:
            at = db.execute(sa.select(matches.c.matched_at)).scalar_one()
            # Stored as SQLAlchemy stores a time: compared in SQL with the same kind of value.
            found = db.execute(
                sa.select(sa.func.count()).where(matches.c.matched_at >= later)
            ).scalar_one()
        assert at == later
        assert found == 1


def test_reasons_with_characters_copy_escapes_read_back_as_saved(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        profile = app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        subscriptions = app.pipeline.roster.subscriptions
        [(paper_id, _, _)] = subscriptions.matches(profile.id)
        reasons = [{"term": 'tab\there\nline\\back "quoted" ü ∑ \r', "field": "title"}]
        subscriptions.save_matches([(profile.id, paper_id, 0.1 + 0.2, reasons)], T0)
        assert subscriptions.matches(profile.id) == [(paper_id, 0.1 + 0.2, reasons)]


def test_matches_saved_behind_keep_their_order_and_a_failed_slice_is_raised_next(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        profile = app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        subscriptions = app.pipeline.roster.subscriptions
        [(paper_id, _, _)] = subscriptions.matches(profile.id)
        later = T0 + timedelta(hours=1)
        with subscriptions.matches_saver(later) as saver:
            for score in (1.0, 2.0, 3.0):  # each slice replaces the one before
                saver.save([(profile.id, paper_id, score, "[]")])
        assert saver.saved == 3
        assert subscriptions.matches(profile.id) == [(paper_id, 3.0, [])]
        with (
            pytest.raises(sa.exc.IntegrityError),
            subscriptions.matches_saver(later) as saver,
        ):
            saver.save([(profile.id + 1000, paper_id, 4.0, "[]")])  # no such profile
            saver.save([(profile.id, paper_id, 5.0, "[]")])
        assert subscriptions.matches(profile.id) == [(paper_id, 3.0, [])]


def test_matches_saved_behind_in_a_database_in_memory_are_saved_in_line(tmp_path: Path) -> None:
    """Another thread would see an empty database of its own."""
    with make_app(tmp_path, "sqlite://", FixedClock(T0)) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        profile = app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        subscriptions = app.pipeline.roster.subscriptions
        [(paper_id, _, _)] = subscriptions.matches(profile.id)
        with subscriptions.matches_saver(T0) as saver:
            saver.save([(profile.id, paper_id, 9.0, "[]")])
            assert saver.saved == 1
        assert subscriptions.matches(profile.id) == [(paper_id, 9.0, [])]
