"""Bounces, complaints and mailto unsubscribes read from a Maildir and acted on: VERP envelope
senders, suppression (hard at once, soft after several in a row), what a suppressed address
gets (nothing, even re-added), lifting it, and unreadable mail set aside."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from deliver.smtpd import SmtpSink
from mail import FROM, send

from service import tokens
from service.app import App, build
from service.clock import FixedClock
from service.config import BounceSettings, MailSettings, Settings
from service.model import DeliveryStatus, ProfileSpec, SubscriberStatus
from service.store.tables import metadata

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
HERE = Path(__file__).parent / "bounces"
ANN = "ann@example.org"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def make(tmp_path: Path, database_url: str, clock: FixedClock, **mail: Any) -> App:
    values: dict[str, Any] = {"from_address": FROM, "base_url": "https://papers.example.org"}
    values.update(mail)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sources=[],
        mail=MailSettings.model_validate(values),
        bounces=BounceSettings(local_part="bounces", maildir=Path("bounces"), soft_limit=3),
    )
    app = build(settings, clock=clock)
    box = settings.bounce_maildir()
    assert box is not None
    mailbox.Maildir(box, create=True)
    return app


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    with make(tmp_path, database_url, clock) as app:
        subscribe(app, ANN)
        yield app


def subscribe(app: App, email: str) -> None:
    app.pipeline.roster.save_subscriber(email, "UTC", "daily 07:30")
    app.pipeline.roster.save_profile(email, ProfileSpec("All", "cache", send_when_empty=True))


def deliver(app: App, clock: FixedClock, email: str = ANN) -> int:
    """Queue a digest for ``email`` now and send it; its delivery id."""
    clock.at += timedelta(hours=1)
    planned = app.mailroom.close_now(app.pipeline.roster.subscriber(email))
    assert planned.delivery_id is not None
    assert send(app).sent == 1
    return planned.delivery_id


def bounce(app: App, name: str, delivery_id: int, address: str = ANN) -> None:
    """The Postfix-shaped return ``name`` about ``delivery_id`` to ``address``."""
    raw = (HERE / f"{name}.eml").read_text()
    raw = raw.replace("bounces+42@", f"bounces+{delivery_id}@")
    drop(app, raw.replace("gone@example.net", address).encode())


def drop(app: App, raw: bytes) -> None:
    box = app.settings.bounce_maildir()
    assert box is not None
    mailbox.Maildir(box).add(raw)


def folder(app: App, name: str | None = None) -> int:
    box = app.settings.bounce_maildir()
    assert box is not None
    root = mailbox.Maildir(box)
    if name is None:
        return len(root)
    return len(root.get_folder(name)) if name in root.list_folders() else 0


def status_of(app: App, delivery_id: int) -> DeliveryStatus:
    return next(d.status for d in app.mailroom.outbox.deliveries() if d.id == delivery_id)


def test_each_message_leaves_with_its_own_verp_envelope_sender(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with (
        SmtpSink() as sink,
        make(tmp_path, database_url, clock, sender="smtp", smtp=sink.settings()) as app,
    ):
        subscribe(app, ANN)
        subscribe(app, "bob@example.org")
        first = deliver(app, clock, ANN)
        second = deliver(app, clock, "bob@example.org")
    assert [m.sender for m in sink.messages] == [
        f"bounces+{first}@papers.example.org",
        f"bounces+{second}@papers.example.org",
    ]
    assert all(b"Return-Path" not in m.content for m in sink.messages)  # the MTA adds it


def test_without_a_bounce_address_the_envelope_sender_is_the_from_address(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    settings = Settings(data_dir=tmp_path, sources=[], mail=MailSettings(from_address=FROM))
    with build(settings, clock=clock) as app:
        assert app.mailroom.envelope_sender(7, "digest@papers.example.org") == (
            "digest@papers.example.org"
        )


def test_a_hard_bounce_suppresses_at_once_and_nothing_more_is_sent(
    app: App, clock: FixedClock
) -> None:
    sent = deliver(app, clock)
    bounce(app, "postfix-hard", sent)
    [handled] = app.check_bounces()
    assert (handled.read, handled.hard, handled.suppressed) == (1, 1, [ANN])
    assert folder(app) == 0 and folder(app, "processed") == 1  # read once, kept
    suppression = app.pipeline.returns.suppressed(ANN)
    assert suppression.reason == "hard" and "5.1.1" in suppression.detail
    assert app.check_bounces()[0].read == 0  # not read twice

    # Planning skips it; a digest queued anyway (closed by hand) is cancelled at the claim.
    clock.at += timedelta(days=1)
    assert app.mailroom.plan() == []
    planned = app.mailroom.close_now(app.pipeline.roster.subscriber(ANN))
    assert planned.delivery_id is not None
    assert send(app).sent == 0
    assert status_of(app, planned.delivery_id) is DeliveryStatus.CANCELLED


def test_suppression_outlives_removing_and_re_adding_until_lifted(
    app: App, clock: FixedClock
) -> None:
    bounce(app, "postfix-hard", deliver(app, clock), address="Ann@Example.org")
    app.check_bounces()
    assert app.pipeline.roster.remove_subscriber(ANN)
    subscribe(app, "ANN@example.org")  # re-added from the CLI, in other capitals
    assert app.pipeline.returns.suppressed("ann@example.org") is not None
    planned = app.mailroom.close_now(app.pipeline.roster.subscriber(ANN))
    assert send(app).sent == 0
    assert planned.delivery_id is not None
    assert status_of(app, planned.delivery_id) is DeliveryStatus.CANCELLED

    assert app.pipeline.returns.unsuppress(ANN)
    assert not app.pipeline.returns.unsuppress(ANN)
    deliver(app, clock)  # goes out again


def test_soft_bounces_suppress_after_three_in_a_row_and_a_delivered_mail_resets(
    app: App, clock: FixedClock
) -> None:
    ids = [deliver(app, clock) for _ in range(2)]
    for delivery_id in ids:
        assert soft_by_id(app, delivery_id) == []
    deliver(app, clock)  # sent, and no bounce comes back for it: the run starts again
    later = [deliver(app, clock) for _ in range(3)]
    assert soft_by_id(app, later[0]) == []
    assert soft_by_id(app, later[1]) == []
    assert soft_by_id(app, later[1]) == []  # the same delivery twice counts once
    assert soft_by_id(app, later[2]) == [ANN]
    assert app.pipeline.returns.suppressed(ANN).reason == "soft"


def soft_by_id(app: App, delivery_id: int) -> list[str]:
    """An Exchange "mailbox full" (4.2.2, no VERP: matched by the returned Message-ID)."""
    message_id = next(d.message_id for d in app.mailroom.outbox.deliveries() if d.id == delivery_id)
    raw = (HERE / "exchange-mailbox-full.eml").read_text()
    raw = raw.replace("full.box@corp.example.com", ANN)
    raw = raw.replace("<digest.5.5555aaaa5555bbbb@papers.example.org>", message_id)
    drop(app, raw.encode())
    return app.check_bounces()[0].suppressed


def message_id_of(app: App, delivery_id: int) -> str:
    return next(d.message_id for d in app.mailroom.outbox.deliveries() if d.id == delivery_id)


def test_a_complaint_unsubscribes_and_suppresses(app: App, clock: FixedClock) -> None:
    sent = deliver(app, clock)
    raw = (HERE / "arf-yahoo.eml").read_text().replace("4242", str(sent))
    # Feedback loops often hide the recipient: the returned Message-ID names the delivery.
    raw = raw.replace("<digest.44.9999888877776666@papers.example.org>", message_id_of(app, sent))
    drop(app, raw.replace("annoyed@yahoo.com", "someone-else@yahoo.com").encode())
    [handled] = app.check_bounces()
    assert (handled.complaints, handled.unsubscribed, handled.suppressed) == (1, 1, [ANN])
    assert app.pipeline.roster.subscriber(ANN).status is SubscriberStatus.UNSUBSCRIBED
    assert app.pipeline.returns.suppressed(ANN).reason == "complaint"


def test_a_mailto_unsubscribe_with_its_token_unsubscribes(app: App, clock: FixedClock) -> None:
    owner = app.pipeline.roster.subscriber(ANN)
    pending = app.mailroom.close_now(owner).delivery_id
    token = tokens.for_subscriber(owner, "unsubscribe")
    drop(
        app,
        f"From: {ANN}\nTo: unsubscribe@papers.example.org\n"
        f"Subject: unsubscribe {token}\n\n".encode(),
    )
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    drop(app, f"From: x@evil.example\nSubject: unsubscribe {forged}\n\n".encode())
    [handled] = app.check_bounces()
    assert (handled.unsubscribed, handled.unmatched) == (1, 1)
    assert app.pipeline.roster.subscriber(ANN).status is SubscriberStatus.UNSUBSCRIBED
    assert pending is not None and status_of(app, pending) is DeliveryStatus.CANCELLED
    assert app.pipeline.returns.suppressions() == {}  # a person's choice: they may come back


def test_unreadable_mail_is_set_aside_and_reported_and_changes_nothing(
    app: App, clock: FixedClock
) -> None:
    for path in sorted((HERE / "unreadable").glob("*.eml")):
        drop(app, path.read_bytes())
    bounce(app, "postfix-hard", deliver(app, clock))
    [handled] = app.check_bounces()
    assert handled.read == 4 and len(handled.rejected) == 3
    assert all("expected" in why for why in handled.rejected)
    assert folder(app, "rejected") == 3 and folder(app, "processed") == 1 and folder(app) == 0
    assert list(app.pipeline.returns.suppressions()) == [
        app.pipeline.returns.key(ANN)
    ]  # the readable one still acted on


def test_subscribing_again_on_the_web_does_not_lift_a_suppression(
    app: App, clock: FixedClock
) -> None:
    bounce(app, "postfix-hard", deliver(app, clock))
    app.check_bounces()
    assert app.pipeline.roster.remove_subscriber(ANN)
    signup = app.pipeline.membership.subscribe(ANN, "UTC", "daily 07:30", None)
    assert signup is not None
    assert send(app).sent == 0  # not even the confirmation goes to a suppressed address
    [confirmation] = [d for d in app.mailroom.outbox.deliveries() if d.recipient == ANN][-1:]
    assert confirmation.status is DeliveryStatus.CANCELLED
    assert app.pipeline.returns.suppressed(ANN) is not None


def test_a_report_acts_only_on_a_delivery_paperboy_sent_to_that_address(
    app: App, clock: FixedClock
) -> None:
    """Forged or stray reports are set aside with why, and suppress no one."""
    subscribe(app, "bob@example.org")
    to_ann = deliver(app, clock)
    to_bob = deliver(app, clock, "bob@example.org")
    hard = (HERE / "postfix-hard.eml").read_text()
    forged = {
        # Naming Ann, with no VERP address or Message-ID of ours.
        "no delivery": hard.replace("bounces+42@", "bounces@").replace(
            "<digest.7.0a1b2c3d4e5f6071@papers.example.org>", "<x@elsewhere.example>"
        ),
        # Bob's delivery's VERP id, naming Ann.
        "another address": hard.replace("bounces+42@", f"bounces+{to_bob}@"),
        # Ann's VERP id and Bob's Message-ID.
        "disagree": hard.replace("bounces+42@", f"bounces+{to_ann}@").replace(
            "<digest.7.0a1b2c3d4e5f6071@papers.example.org>", message_id_of(app, to_bob)
        ),
        # A complaint with only the VERP id (the recipient hidden, the Message-ID not ours).
        "complaint": (HERE / "arf-yahoo.eml").read_text().replace("4242", str(to_ann)),
    }
    for raw in forged.values():
        drop(app, raw.replace("gone@example.net", ANN).encode())
    [handled] = app.check_bounces()
    assert handled.read == 4 and folder(app, "rejected") == 4 and folder(app, "processed") == 0
    reasons = " | ".join(handled.rejected)
    assert "no message paperboy sent has its VERP address or Message-ID" in reasons
    assert f"names delivery {to_bob} by its VERP address but not the address" in reasons
    assert f"its VERP address names delivery {to_ann} and its Message-ID delivery {to_bob}" in (
        reasons
    )
    assert (handled.hard, handled.complaints, handled.suppressed) == (0, 0, [])
    assert app.pipeline.returns.suppressions() == {}
    assert app.pipeline.roster.subscriber(ANN).status is SubscriberStatus.ACTIVE
    assert app.pipeline.records.export(ANN)["returned"] == []

    # The real bounce of Bob's mail, by its Message-ID alone (no VERP), acts.
    real = hard.replace("bounces+42@", "bounces@").replace(
        "<digest.7.0a1b2c3d4e5f6071@papers.example.org>", message_id_of(app, to_bob)
    )
    drop(app, real.replace("gone@example.net", "bob@example.org").encode())
    assert app.check_bounces()[0].suppressed == ["bob@example.org"]


def test_a_bounce_of_mail_sent_longer_ago_than_keep_sent_is_set_aside(
    app: App, clock: FixedClock
) -> None:
    sent = deliver(app, clock)
    clock.at += app.settings.mail.keep_sent + timedelta(hours=1)
    bounce(app, "postfix-hard", sent)
    [handled] = app.check_bounces()
    assert handled.suppressed == [] and folder(app, "rejected") == 1
    assert f"delivery {sent} was sent longer ago than mail.keep_sent" in handled.rejected[0]


def stored_text(app: App) -> str:
    """Every value of every table, as text."""
    with app.store.engine.connect() as db:
        return "\n".join(
            repr(tuple(row))
            for table in metadata.sorted_tables
            for row in db.execute(sa.select(table))
        )


def test_erasing_leaves_no_address_and_the_suppression_still_holds(
    app: App, clock: FixedClock
) -> None:
    bounce(app, "postfix-hard", deliver(app, clock), address="Ann@Example.org")
    app.check_bounces()
    held = app.pipeline.returns.suppressed(ANN)
    assert held is not None and "<address>" in held.detail and "xample" not in held.detail
    assert "ann@" in stored_text(app).lower()  # the subscriber, deliveries, bounces
    assert app.pipeline.records.erase(ANN)
    assert "ann" not in stored_text(app).lower()
    assert app.pipeline.returns.suppressed("ANN@example.org") is not None
    subscribe(app, ANN)  # re-added: still refused
    planned = app.mailroom.close_now(app.pipeline.roster.subscriber(ANN))
    assert send(app).sent == 0
    assert planned.delivery_id is not None
    assert status_of(app, planned.delivery_id) is DeliveryStatus.CANCELLED
