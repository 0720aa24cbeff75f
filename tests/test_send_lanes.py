"""Sending in lanes: several SMTP connections at once under one rate cap, maildir messages stored
in groups (written, flushed and linked together), and the warning when the cap makes a day's
digests take over an hour."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import ingest, listing, maildir_messages, make_app, send

from service.app import App
from service.clock import FixedClock
from service.deliver.maildir import MaildirSender, store_group
from service.errors import DeliveryError
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


def test_messages_handed_over_together_are_stored_together_each_told_how_it_went(
    tmp_path: Path,
) -> None:
    maildir = tmp_path / "outbox"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "tmp" / "taken-in-tmp").write_bytes(b"another writer's")
    (maildir / "new" / "taken-in-new").write_bytes(b"an earlier message")
    names = ["one", "taken-in-tmp", "two", "taken-in-new", "three"]
    errors = store_group(
        str(maildir / "tmp"), str(maildir / "new"), [(name, name.encode()) for name in names]
    )
    assert [type(e).__name__ if e else None for e in errors] == [
        None,
        "FileExistsError",
        None,
        "FileExistsError",
        None,
    ]
    assert {p.name: p.read_bytes() for p in (maildir / "new").iterdir()} == {
        "one": b"one",
        "two": b"two",
        "three": b"three",
        "taken-in-new": b"an earlier message",  # never written over
    }
    # Only its own files leave tmp/: the other writer's stays.
    assert [p.name for p in (maildir / "tmp").iterdir()] == ["taken-in-tmp"]


def test_the_maildir_sender_stores_concurrent_sends_once_each_across_event_loops(
    tmp_path: Path,
) -> None:
    sender = MaildirSender(tmp_path / "outbox")

    async def hand_over(first: int) -> list[str]:
        bodies = [f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in range(first, first + 50)]
        return await asyncio.gather(*(sender.send("a@x", ["b@x"], b) for b in bodies))

    said = asyncio.run(hand_over(0)) + asyncio.run(hand_over(50))  # a sender outlives a loop
    asyncio.run(sender.close())
    stored = sorted((tmp_path / "outbox" / "new").iterdir(), key=lambda p: p.name)
    assert sorted(s.removeprefix("stored as ") for s in said) == [p.name for p in stored]
    assert sorted(p.read_bytes() for p in stored) == sorted(
        f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in range(100)
    )
    assert not list((tmp_path / "outbox" / "tmp").iterdir())


def test_a_maildir_that_cannot_take_the_messages_fails_each_send_transiently(
    tmp_path: Path,
) -> None:
    sender = MaildirSender(tmp_path / "outbox")

    async def hand_over() -> list[BaseException | str]:
        await sender.send("a@x", ["b@x"], b"first\r\n")  # makes the folders
        for stored in (tmp_path / "outbox" / "new").iterdir():
            stored.unlink()
        (tmp_path / "outbox" / "new").rmdir()  # and now nothing can be linked into new/
        bodies = [f"message {n}\r\n".encode() for n in range(5)]
        return await asyncio.gather(
            *(sender.send("a@x", ["b@x"], b) for b in bodies), return_exceptions=True
        )

    outcomes = asyncio.run(hand_over())
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert isinstance(outcome, DeliveryError)
        assert outcome.transient
        assert str(tmp_path / "outbox") in str(outcome)
    assert not list((tmp_path / "outbox" / "tmp").iterdir())  # nothing half-stored left
