"""Sending in lanes: several SMTP connections at once under one rate cap, maildir writers in
threads, and the warning when the cap makes a day's digests take over an hour."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import ingest, listing, maildir_messages, make_app, send

from service.app import App
from service.clock import FixedClock
from service.model import DeliveryStatus, ProfileSpec

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
NAMES = ("ann", "bob", "cid", "dan", "eve", "fay")


def queue(app: App, tmp_path: Path, clock: FixedClock) -> None:
    for name in NAMES:
        app.pipeline.roster.save_subscriber(f"{name}@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(f"{name}@example.org", ProfileSpec("KV", '"kv cache"'))
    ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
    clock.at = NEXT_MORNING
    assert len(app.mailroom.plan()) == len(NAMES)


def test_digests_go_over_several_connections_at_once(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    # Each message is held a while at DATA, so the lanes overlap.
    with SmtpSink(then=Answer(delay=0.3)) as sink:
        smtp = sink.settings(connections=3, max_per_second=1000.0)
        url = f"sqlite:///{tmp_path / 'p.db'}"
        with make_app(tmp_path, url, clock, sender="smtp", smtp=smtp) as app:
            queue(app, tmp_path, clock)
            result = send(app)
            assert result.sent == len(NAMES)
            statuses = {d.status for d in app.mailroom.outbox.deliveries()}
            assert statuses == {DeliveryStatus.SENT}
        received = sink.messages
        assert sorted(m.recipients[0] for m in received) == [f"{n}@example.org" for n in NAMES]
        assert sink.connections == 3
        assert {m.connection for m in received} == {1, 2, 3}


def test_maildir_writers_store_every_digest_once_in_claim_order(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        queue(app, tmp_path, clock)
        order = [d.recipient for d in app.mailroom.outbox.deliveries()]
        assert send(app).sent == len(NAMES)
        stored = maildir_messages(app)
        assert [str(m["To"]) for m in stored] == order
        assert not list((app.settings.maildir() / "tmp").iterdir())


def test_a_rate_cap_that_makes_the_digests_take_over_an_hour_is_warned_of_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FixedClock(T0)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    slow = {"host": "127.0.0.1", "port": 2525, "security": "none", "max_per_second": 0.0005}
    with make_app(tmp_path, url, clock, sender="smtp", smtp=slow) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_subscriber("bob@example.org", "Europe/Berlin", "daily 07:30")
        with caplog.at_level(logging.WARNING):
            takes = app.mailroom.warn_of_slow_sending()
        assert takes is not None and takes.total_seconds() == 4000
        assert "mail.smtp.max_per_second = 0.0005" in caplog.text
        assert "2 subscribers" in caplog.text
    fast = {**slow, "max_per_second": 10.0}
    with make_app(tmp_path / "b", url, clock, sender="smtp", smtp=fast) as app:
        assert app.mailroom.warn_of_slow_sending() is None
