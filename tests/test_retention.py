"""Retention: the cleanup job forgets old events, snapshots and sent bodies, and never what the
next poll's diff, the feeds, the sent ledger or an open digest window needs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.app import App, build
from service.clock import FixedClock
from service.config import RetentionSettings, Settings, SourceSettings
from service.model import ProfileSpec, SourceKind
from service.store.tables import (
    deliveries,
    events,
    matches,
    messages,
    papers,
    profiles,
    sent,
    snapshots,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
ANN = "ann@example.org"


def listing(day: int) -> bytes:
    """A day's listing: a paper listed every day, and three of the day's own."""
    titles = ["Evergreen graph kernels for cache design"]
    titles += [f"Cache study number {day}-{n}" for n in range(3)]
    head = (
        "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        "byAK and the research community\n\nMar 2\n\n"
    )
    body = "".join(
        f"{title}\n\nWe look at the cache of {title.lower()}.\n\n  • 3 authors\n·\nMar 2\n\n"
        for title in titles
    )
    return (head + body).encode()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    (tmp_path / "l.txt").write_bytes(b"")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        profiles_file=tmp_path / "none.toml",
        sources=[
            SourceSettings(id="daily", kind=SourceKind.LISTING, location=str(tmp_path / "l.txt"))
        ],
        retention=RetentionSettings(events="10d", snapshots="20d"),
    )
    with build(settings, clock=clock) as app:
        app.pipeline.roster.save_subscriber(ANN, "UTC", "daily 07:00")
        app.pipeline.roster.save_profile(ANN, ProfileSpec("Cache", "cache", send_when_empty=True))
        yield app


def poll_days(app: App, clock: FixedClock, days: range, *, digests: bool) -> None:
    path = Path(app.settings.sources[0].location)
    for day in days:
        clock.at = T0 + timedelta(days=day)
        path.write_bytes(listing(day))
        (summary,) = app.pipeline.ingest.poll("daily")
        assert summary.new == (4 if day == 0 else 3), summary
        if digests:
            clock.at += timedelta(hours=2)
            app.mailroom.plan()
            asyncio.run(app.mailroom.send())


def count(app: App, table: sa.Table) -> int:
    with app.store.engine.connect() as db:
        return int(db.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def oldest_event(app: App) -> datetime:
    with app.store.engine.connect() as db:
        at = db.execute(
            sa.select(sa.func.min(snapshots.c.fetched_at)).where(
                snapshots.c.id.in_(sa.select(events.c.snapshot_id))
            )
        ).scalar_one()
    assert at is not None
    return at.astimezone(UTC)


def test_cleanup_forgets_old_events_and_snapshots_and_keeps_what_is_needed(
    app: App, clock: FixedClock
) -> None:
    poll_days(app, clock, range(30), digests=True)
    stored, ledger = count(app, papers), count(app, sent)
    assert stored == 91 and ledger == 91
    assert count(app, snapshots) == 30 and oldest_event(app) == T0

    tidied = app.pipeline.cleanup()
    # Events of snapshots fetched more than 10 days ago (before day 19, 08:00) went: days 0-19.
    assert tidied.events > 0 and tidied.snapshots > 0
    assert oldest_event(app) == T0 + timedelta(days=20)
    # Snapshots older than 20 days with no events left: days 0-9.
    assert count(app, snapshots) == 20
    assert count(app, papers) == stored and count(app, sent) == ledger
    assert app.pipeline.cleanup() == (0, 0, 0, 0)  # nothing more to do

    # The next poll's diff still knows every paper: the evergreen one is not new again.
    clock.at = T0 + timedelta(days=30)
    Path(app.settings.sources[0].location).write_bytes(listing(30))
    (summary,) = app.pipeline.ingest.poll("daily")
    assert summary.new == 3 and summary.listed == 0
    # The feed still lists the latest matches.
    feed = app.mailroom.feeds(app.pipeline.roster.subscriber(ANN))
    assert feed and all(b"Cache study number 30-2" in body for body in feed.values())


def test_an_open_window_keeps_its_events_whatever_the_setting(app: App, clock: FixedClock) -> None:
    poll_days(app, clock, range(30), digests=False)  # Ann's window has been open 30 days
    tidied = app.pipeline.cleanup()
    assert tidied.events == 0 and oldest_event(app) == T0
    assert tidied.snapshots == 0 and count(app, snapshots) == 30

    # A profile added now is back-filled over the whole open window, from its first day's
    # events: the paper listed every day arrived then.
    app.pipeline.roster.save_profile(ANN, ProfileSpec("Evergreen", "evergreen"))
    with app.store.engine.connect() as db:
        found = db.execute(
            sa.select(sa.func.count())
            .select_from(matches.join(profiles))
            .where(profiles.c.name == "Evergreen")
        ).scalar_one()
    assert found == 1
    clock.at += timedelta(hours=2)
    assert app.mailroom.plan()

    # The window closed: now the old events go.
    assert app.pipeline.cleanup().events > 0
    assert oldest_event(app) >= clock.now() - timedelta(days=10)


def test_zero_keeps_everything(tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    (tmp_path / "l").write_bytes(b"")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        profiles_file=tmp_path / "none.toml",
        sources=[SourceSettings(id="daily", kind=SourceKind.LISTING, location=str(tmp_path / "l"))],
        retention=RetentionSettings(events=0, snapshots="0"),
    )
    with build(settings, clock=clock) as app:
        poll_days(app, clock, range(5), digests=False)
        clock.at += timedelta(days=400)
        assert app.pipeline.cleanup() == (0, 0, 0, 0)
        assert count(app, snapshots) == 5


def test_sent_bodies_are_dropped_after_keep_sent_and_the_record_stays(
    app: App, clock: FixedClock
) -> None:
    poll_days(app, clock, range(3), digests=True)
    with app.store.engine.connect() as db:
        bodies = db.execute(
            sa.select(deliveries.c.sent_at, messages.c.body.is_not(None))
            .select_from(deliveries)
            .outerjoin(messages)
            .order_by(deliveries.c.id)
        ).all()
    assert [kept for _, kept in bodies] == [True, True, True]
    clock.at = bodies[0].sent_at + app.settings.mail.keep_sent + timedelta(minutes=1)
    assert app.pipeline.cleanup().sent_bodies == 1
    with app.store.engine.connect() as db:
        left = db.execute(
            sa.select(messages.c.body.is_not(None))
            .select_from(deliveries)
            .outerjoin(messages)
            .order_by(deliveries.c.id)
        ).scalars()
        assert list(left) == [False, True, True]
    assert count(app, deliveries) == 3 and count(app, sent) == 10


def test_retention_settings_are_durations_and_not_negative() -> None:
    assert RetentionSettings(events="2w").events == timedelta(days=14)
    with pytest.raises(ValueError, match="0 \\(keep for ever\\) or more"):
        RetentionSettings(snapshots=-5)


def test_the_newest_event_stays_so_event_ids_only_grow(app: App, clock: FixedClock) -> None:
    poll_days(app, clock, range(3), digests=True)
    last = app.store.last_event()
    clock.at += timedelta(days=400)  # nothing polled for a year: every event is old
    app.mailroom.plan()
    app.pipeline.cleanup()
    assert app.store.last_event() == last and count(app, events) == 6  # day 2: 3 new, 3 left
