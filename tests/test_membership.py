"""Joining and leaving as the web does it (``pipeline.membership``), on SQLite and PostgreSQL:
double opt-in through the outbox and a maildir, tokens and their revocation, unsubscribe,
pause, expiry of unconfirmed subscriptions, and bad input that stores nothing."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from mail import BASE, ingest, listing, maildir_messages, make_app, parts, send

from service import tokens
from service.app import App, build
from service.cli import main
from service.clock import FixedClock
from service.config import Settings
from service.errors import InvalidValue, PaperboyError, QueryError
from service.model import (
    DeliveryKind,
    DeliveryStatus,
    ProfileSpec,
    Subscriber,
    SubscriberStatus,
)
from service.pipeline.membership import Membership
from service.store.database import create_engine, upgrade
from service.store.members import Transition
from service.store.tables import deliveries, sent, subscribers

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)  # 14:00 in Berlin
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
ANN = "ann@example.org"
KV = ProfileSpec("KV cache", '"kv cache"', alert_threshold=0.01)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    with make_app(tmp_path, database_url, clock) as built:
        yield built


def members(app: App) -> Membership:
    return app.pipeline.membership


def kv_paper(n: int, day: str = "Jun 1") -> str:
    return listing(day, (f"Paging the kv cache, part {n}", "A kv cache for serving.", "May 30 3"))


def notices(app: App, kind: DeliveryKind) -> list[str]:
    """The statuses of the deliveries of ``kind``, oldest first."""
    return [d.status.value for d in app.mailroom.outbox.deliveries() if d.kind is kind]


def link_in(message: EmailMessage, path: str) -> str:
    """The token of the one ``BASE/path/<token>`` link in both parts of ``message``."""
    text, html = parts(message)
    found = set(re.findall(rf"{re.escape(BASE)}/{path}/([A-Za-z0-9._=-]+)", text))
    assert len(found) == 1, text
    (token,) = found
    assert f'href="{BASE}/{path}/{token}"' in html
    return token


def confirmed(app: App, email: str = ANN, profile: ProfileSpec | None = KV) -> Subscriber:
    """A subscriber who joined on the web and confirmed."""
    signup = members(app).subscribe(email, "Europe/Berlin", "daily 07:30", profile)
    return members(app).confirm(signup.subscriber_id)


def digests_for(app: App, email: str) -> list[tuple[str, int]]:
    return [
        (d.status.value, d.papers)
        for d in app.mailroom.outbox.deliveries()
        if d.kind is DeliveryKind.DIGEST and d.recipient == email
    ]


# -- double opt-in ------------------------------------------------------------------------------


def test_subscribe_confirm_and_the_first_digest_holds_the_last_day(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    clock.at = T0 - timedelta(days=2)
    ingest(app, tmp_path, "old.txt", kv_paper(0, "May 30"))  # before the last day: not sent
    clock.at = T0 - timedelta(hours=6)
    ingest(app, tmp_path, "morning.txt", kv_paper(1))  # earlier today, before subscribing
    clock.at = T0

    signup = members(app).subscribe(ANN, "Europe/Berlin", "daily 07:30", KV)
    assert signup.action == "created"
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None and owner.status is SubscriberStatus.PENDING
    assert [p.spec for p in app.pipeline.subscriptions.profiles(owner.id)] == [KV]
    assert notices(app, DeliveryKind.CONFIRMATION) == ["pending"]

    # While pending: papers arrive, the profile matches, but no alert and no digest.
    clock.advance(minutes=10)
    ingest(app, tmp_path, "noon.txt", kv_paper(2))
    clock.at = NEXT_MORNING - timedelta(days=1) + timedelta(hours=23, minutes=59)
    assert app.mailroom.plan() == []
    assert [d.kind for d in app.mailroom.outbox.deliveries()] == [DeliveryKind.CONFIRMATION]

    assert send(app).sent == 1
    [message] = maildir_messages(app)
    assert message["To"] == ANN
    assert message["Subject"] == "Confirm your paperboy subscription"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe"] is None and message["List-Id"] is None
    [delivery] = app.mailroom.outbox.deliveries()
    assert message["Message-ID"] == delivery.message_id
    assert re.fullmatch(
        r"<confirmation\.\d+\.[0-9a-f]{16}@papers\.example\.org>", delivery.message_id
    )
    text, _ = parts(message)
    assert "7 days" in text and "ignore this mail" in text
    token = link_in(message, "confirm")
    assert members(app).subscriber(token, "confirm") == owner
    assert members(app).subscriber(token, "manage") is None

    assert members(app).confirm(owner.id).status is SubscriberStatus.ACTIVE
    assert app.mailroom.plan() == []  # the first digest comes at 07:30, not at once
    clock.at = NEXT_MORNING
    [planned] = app.mailroom.plan()
    assert (planned.email, planned.papers) == (ANN, 2)  # today's two, not the old one
    assert send(app).sent == 1
    digest = maildir_messages(app)[-1]
    text, _ = parts(digest)
    assert "part 1" in text and "part 2" in text and "part 0" not in text
    assert members(app).subscriber(link_in(digest, "manage"), "manage") == members(app).confirm(
        owner.id
    )


def test_an_instant_subscriber_gets_the_last_day_right_after_confirming(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    clock.at = T0 - timedelta(hours=20)
    ingest(app, tmp_path, "a.txt", kv_paper(1))
    clock.at = T0
    signup = members(app).subscribe(ANN, "UTC", "instant", ProfileSpec("KV", '"kv cache"'))
    assert app.mailroom.plan() == []
    members(app).confirm(signup.subscriber_id)
    [planned] = app.mailroom.plan()
    assert (planned.email, planned.papers) == (ANN, 1)


def test_an_unconfirmed_subscriber_gets_nothing_but_confirmations(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    members(app).subscribe(ANN, "UTC", "instant", KV)
    for hours in range(3):
        clock.at = T0 + timedelta(hours=hours, minutes=5)
        ingest(app, tmp_path, f"p{hours}.txt", kv_paper(hours))
        app.mailroom.plan()
    # A digest forced by an operator is not sent to a pending subscriber either.
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None
    app.mailroom.close_now(owner)
    assert send(app).sent == 1
    assert [m["Subject"] for m in maildir_messages(app)] == ["Confirm your paperboy subscription"]
    assert {d.kind for d in app.mailroom.outbox.deliveries() if d.status.value != "cancelled"} == {
        DeliveryKind.CONFIRMATION
    }


def test_confirming_twice_or_after_a_crash_is_harmless(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    ingest(app, tmp_path, "a.txt", kv_paper(1))
    clock.advance(hours=1)
    signup = members(app).subscribe(ANN, "Europe/Berlin", "daily 07:30", KV)
    # A crash between the status change and the back-fill: the change is in, the matches not.
    start = clock.now() - timedelta(days=1)
    change = Transition(
        SubscriberStatus.ACTIVE, (SubscriberStatus.PENDING,), window_end=start, confirmed=True
    )
    assert members(app).members.transition(signup.subscriber_id, change, clock.now())
    assert app.mailroom.outbox.candidates(signup.subscriber_id, start, clock.now()) == []
    # The person presses the button again: nothing changes but the back-fill completes.
    again = members(app).confirm(signup.subscriber_id)
    assert again.status is SubscriberStatus.ACTIVE
    assert members(app).confirm(signup.subscriber_id) == again
    clock.at = NEXT_MORNING
    [planned] = app.mailroom.plan()
    assert planned.papers == 1


def test_resending_is_throttled_per_address(app: App, clock: FixedClock) -> None:
    web = app.settings.web
    assert web.resend_after == timedelta(hours=1)
    first = members(app).subscribe(ANN, "UTC", "daily 07:00", None)
    assert first.action == "created"
    clock.advance(minutes=59)
    assert members(app).subscribe(ANN, "UTC", "daily 07:00", None).action == "throttled"
    clock.advance(minutes=1)
    assert members(app).subscribe(ANN, "UTC", "daily 08:00", KV).action == "resent"
    assert notices(app, DeliveryKind.CONFIRMATION) == ["pending", "pending"]
    # The pending request took the latest time and profile; both links confirm it.
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None and str(owner.schedule) == "daily 08:00"
    assert [p.spec for p in app.pipeline.subscriptions.profiles(owner.id)] == [KV]
    assert send(app).sent == 2
    links = [link_in(m, "confirm") for m in maildir_messages(app)]
    assert links[0] != links[1]
    assert len({m["Message-ID"] for m in maildir_messages(app)}) == 2
    assert all(members(app).subscriber(link, "confirm") == owner for link in links)

    # Active: a manage link instead, at most one an hour too; nothing else changes.
    members(app).confirm(owner.id)
    clock.advance(minutes=30)
    assert members(app).subscribe(ANN, "UTC", "instant", None).action == "throttled"
    clock.advance(minutes=30)
    assert members(app).subscribe(ANN, "UTC", "instant", None).action == "manage-link"
    assert members(app).subscribe(ANN, "UTC", "instant", None).action == "throttled"
    members(app).send_manage_link(ANN)  # throttled as well
    assert notices(app, DeliveryKind.MANAGE_LINK) == ["pending"]
    assert send(app).sent == 1
    manage = maildir_messages(app)[-1]
    assert manage["Subject"] == "Your paperboy manage link"
    assert "already" in parts(manage)[0]
    assert members(app).subscriber(link_in(manage, "manage"), "manage") == members(app).confirm(
        owner.id
    )
    after = app.pipeline.subscriptions.subscriber(ANN)
    assert after is not None and str(after.schedule) == "daily 08:00"

    # Throttling is per address: another address is not held back.
    assert members(app).subscribe("bob@example.org", "UTC", "instant", None).action == "created"


def test_a_new_manage_link_revokes_the_old_one_but_not_feeds_or_unsubscribe(
    app: App, clock: FixedClock
) -> None:
    owner = confirmed(app)
    old_manage = tokens.for_subscriber(owner, "manage")
    feeds = tokens.for_subscriber(owner, "feeds")
    unsubscribe = tokens.for_subscriber(owner, "unsubscribe")
    clock.advance(hours=2)
    members(app).send_manage_link("ann@EXAMPLE.org")  # the domain's case does not matter
    members(app).send_manage_link("nobody@example.org")  # unknown: silently nothing
    assert notices(app, DeliveryKind.MANAGE_LINK) == ["pending"]
    assert send(app).sent == 2  # the confirmation, then the manage link
    message = maildir_messages(app)[-1]
    assert "no longer work" in parts(message)[0]
    new_manage = link_in(message, "manage")

    assert members(app).subscriber(old_manage, "manage") is None
    now = members(app).subscriber(new_manage, "manage")
    assert now is not None and now.id == owner.id and now.manage_generation == 1
    assert members(app).subscriber(feeds, "feeds") == now
    assert members(app).subscriber(unsubscribe, "unsubscribe") == now
    # Digests rendered from now on carry the new manage link.
    links = app.mailroom.renderer.links
    from service.digest import compose
    from service.windows import Window

    digest = compose(now, DeliveryKind.DIGEST, Window(T0, clock.now()), [], send_when_empty=True)
    assert digest is not None
    assert links(digest)["manage"] == f"{BASE}/manage/{new_manage}"


def test_tokens_that_are_wrong_revoked_expired_or_for_another_purpose_name_nobody(
    app: App, clock: FixedClock
) -> None:
    ann = confirmed(app)
    bob = confirmed(app, "bob@example.org")
    good = tokens.for_subscriber(ann, "unsubscribe")
    assert members(app).subscriber(good, "unsubscribe") == ann
    head, _, signature = good.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for wrong in [
        "",
        "x",
        ".",
        f"{head}.",
        f"{head}.{flipped}",
        f"{bob.id}.{signature}",  # Ann's signature on Bob's id
        f"999.{signature}",
        f"{head}.{signature}x",
        "1" * 40 + "." + signature,
        f"{head}.é{signature[1:]}",
        f"{head}.1780315200.{signature}",
    ]:
        assert members(app).subscriber(wrong, "unsubscribe") is None, wrong
    for purpose in ("manage", "feeds", "confirm"):
        assert members(app).subscriber(good, purpose) is None, purpose
    with pytest.raises(ValueError, match="unknown token purpose"):
        members(app).subscriber(good, "admin")

    # Once confirmed, a confirm link is spent after a grace of a few minutes (double clicks).
    carol = members(app).subscribe("carol@example.org", "UTC", "instant", None)
    send(app)
    spent = link_in(maildir_messages(app)[-1], "confirm")
    members(app).confirm(carol.subscriber_id)
    clock.advance(minutes=10)
    assert members(app).subscriber(spent, "confirm") is not None
    clock.advance(seconds=1)
    assert members(app).subscriber(spent, "confirm") is None

    # A confirm link works for web.confirm_expiry after it was issued, then no more.
    members(app).unsubscribe(ann.id)
    clock.advance(hours=2)
    members(app).subscribe(ANN, "UTC", "instant", None)
    send(app)
    link = link_in(maildir_messages(app)[-1], "confirm")
    assert tokens.issued_at(link) == clock.now()
    clock.advance(days=7)
    assert members(app).subscriber(link, "confirm") is not None
    clock.advance(seconds=1)
    assert members(app).subscriber(link, "confirm") is None


def test_a_manage_token_from_before_generations_still_works() -> None:
    """Links in mail sent before this version signed (purpose, id) only: generation 0."""
    import base64
    import hashlib
    import hmac

    mac = hmac.new(b"s3cret", b"manage:7", hashlib.sha256).digest()[:18]
    before = f"7.{base64.urlsafe_b64encode(mac).decode()}"
    assert tokens.make(7, "s3cret", "manage") == before
    assert tokens.verify(before, "s3cret", "manage")
    assert not tokens.verify(before, "s3cret", "manage", generation=1)
    assert len(before.split(".")[1]) * 6 >= 128  # at least 128 bits of signature


# -- leaving and coming back --------------------------------------------------------------------


def test_unsubscribe_cancels_what_is_pending_and_keeps_what_was_sent(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    owner = confirmed(app, profile=ProfileSpec("KV cache", '"kv cache"'))
    ingest(app, tmp_path, "a.txt", kv_paper(1))
    clock.at = NEXT_MORNING
    app.mailroom.plan()
    assert send(app).sent == 2  # the confirmation and the first digest
    sent_before = app.mailroom.outbox.sent_papers(owner.id)
    assert len(sent_before) == 1
    clock.at = NEXT_MORNING + timedelta(days=1)
    ingest(app, tmp_path, "c.txt", listing("Jun 3", ("KV cache day three", "kv cache", None)))
    app.mailroom.plan()
    members(app).send_manage_link(ANN)
    pending = app.mailroom.outbox.deliveries(DeliveryStatus.PENDING, owner.id)
    assert {d.kind for d in pending} == {DeliveryKind.DIGEST, DeliveryKind.MANAGE_LINK}

    left = members(app).unsubscribe(owner.id)
    assert left.status is SubscriberStatus.UNSUBSCRIBED
    assert members(app).unsubscribe(owner.id) == left  # idempotent
    assert app.mailroom.outbox.deliveries(DeliveryStatus.PENDING, owner.id) == []
    cancelled = app.mailroom.outbox.deliveries(DeliveryStatus.CANCELLED, owner.id)
    assert {d.id for d in cancelled} == {d.id for d in pending}
    assert send(app).sent == 0
    # What was sent is kept: the deliveries and the ledger (no paper sent twice on return).
    assert len(app.mailroom.outbox.deliveries(DeliveryStatus.SENT, owner.id)) == 2
    assert app.mailroom.outbox.sent_papers(owner.id) == sent_before  # not the cancelled ones
    clock.advance(days=1)
    ingest(app, tmp_path, "d.txt", listing("Jun 4", ("KV cache day four", "kv cache", None)))
    assert app.mailroom.plan() == []
    assert send(app).sent == 0

    # Undone from the page: active again, the window starting now.
    clock.advance(minutes=1)
    back = members(app).resubscribe(owner.id)
    assert back.status is SubscriberStatus.ACTIVE
    assert members(app).resubscribe(owner.id) == back
    clock.advance(minutes=5)
    ingest(app, tmp_path, "e.txt", listing("Jun 4", ("KV cache day four b", "kv cache", None)))
    clock.at = NEXT_MORNING + timedelta(days=3)
    [planned] = app.mailroom.plan()
    assert planned.papers == 1  # what came while unsubscribed is not sent


def test_the_claim_never_hands_out_a_digest_of_someone_no_longer_active(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    """Planning and an unsubscribe racing: the digest is queued after the status changed."""
    owner = confirmed(app, profile=ProfileSpec("KV cache", '"kv cache"'))
    members(app).subscribe("new@example.org", "UTC", "instant", None)  # pending: confirmation
    ingest(app, tmp_path, "a.txt", kv_paper(1))
    clock.at = NEXT_MORNING
    app.mailroom.plan()
    assert digests_for(app, ANN) == [("pending", 1)]
    with app.store.engine.begin() as db:  # as if the unsubscribe had slipped in meanwhile
        db.execute(
            subscribers.update().where(subscribers.c.id == owner.id).values(status="unsubscribed")
        )
    assert send(app).sent == 2  # the two confirmations
    assert {m["To"] for m in maildir_messages(app)} == {ANN, "new@example.org"}
    assert digests_for(app, ANN) == [("cancelled", 1)]


def test_pause_and_resume(app: App, tmp_path: Path, clock: FixedClock) -> None:
    owner = confirmed(app, profile=ProfileSpec("KV cache", '"kv cache"'))
    ingest(app, tmp_path, "a.txt", kv_paper(1))
    clock.at = NEXT_MORNING
    app.mailroom.plan()
    paused = members(app).pause(owner.id)
    assert paused.status is SubscriberStatus.PAUSED
    assert members(app).pause(owner.id) == paused
    assert digests_for(app, ANN) == [("cancelled", 1)]
    assert notices(app, DeliveryKind.CONFIRMATION) == ["pending"]  # a notice is not cancelled
    clock.advance(hours=2)
    ingest(app, tmp_path, "b.txt", kv_paper(2, "Jun 2"))
    clock.advance(days=1)
    assert app.mailroom.plan() == []
    # Asking to subscribe while paused mails the manage link (where "resume" is).
    assert members(app).subscribe(ANN, "UTC", "instant", None).action == "manage-link"

    resumed = members(app).resume(owner.id)
    assert resumed.status is SubscriberStatus.ACTIVE
    assert members(app).resume(owner.id) == resumed
    clock.advance(minutes=5)
    ingest(app, tmp_path, "c.txt", listing("Jun 3", ("KV cache again", "kv cache", None)))
    clock.at = NEXT_MORNING + timedelta(days=2)
    [planned] = app.mailroom.plan()
    assert planned.papers == 1  # the paused time is not caught up

    members(app).unsubscribe(owner.id)
    with pytest.raises(InvalidValue, match="cannot pause a subscription that is unsubscribed"):
        members(app).pause(owner.id)
    with pytest.raises(InvalidValue, match="cannot resume"):
        members(app).resume(owner.id)
    pending = members(app).subscribe("new@example.org", "UTC", "instant", None)
    with pytest.raises(InvalidValue, match="cannot resubscribe a subscription that is pending"):
        members(app).resubscribe(pending.subscriber_id)
    with pytest.raises(InvalidValue, match="no such subscriber"):
        members(app).pause(9999)


def test_an_unsubscribed_address_that_asks_again_confirms_again(
    app: App, clock: FixedClock
) -> None:
    owner = confirmed(app)
    members(app).unsubscribe(owner.id)
    clock.advance(hours=1)
    signup = members(app).subscribe(ANN, "America/New_York", "instant", ProfileSpec("LLM", "llm"))
    assert signup == signup.__class__("resent", owner.id)
    still = app.pipeline.subscriptions.subscriber(ANN)
    assert still is not None and still.status is SubscriberStatus.UNSUBSCRIBED
    assert still.timezone == "America/New_York"
    assert notices(app, DeliveryKind.CONFIRMATION) == ["cancelled", "pending"]
    send(app)
    back = members(app).subscriber(link_in(maildir_messages(app)[-1], "confirm"), "confirm")
    assert back is not None
    assert members(app).confirm(back.id).status is SubscriberStatus.ACTIVE
    names = {p.spec.name for p in app.pipeline.subscriptions.profiles(owner.id)}
    assert names == {"KV cache", "LLM"}


# -- managing -----------------------------------------------------------------------------------


def test_update_checks_like_the_roster_and_refuses_a_declared_subscriber(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    declared = tmp_path / "profiles.toml"
    declared.write_text(
        '[[subscribers]]\nemail = "jane@example.org"\ntimezone = "UTC"\nschedule = "instant"\n'
    )
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, sources=[], profiles_file=declared
    )
    with build(settings, clock=clock) as app:
        owner = confirmed(app)
        changed = members(app).update(owner.id, "Asia/Tokyo", "weekly fri 18:00")
        assert (changed.timezone, str(changed.schedule)) == ("Asia/Tokyo", "weekly fri 18:00")
        with pytest.raises(InvalidValue) as caught:
            members(app).update(owner.id, "Mars/Olympus", "instant")
        assert caught.value.field == "timezone"
        with pytest.raises(InvalidValue) as caught:
            members(app).update(owner.id, "UTC", "hourly")
        assert caught.value.field == "schedule"
        assert members(app).subscriber(tokens.for_subscriber(owner, "feeds"), "feeds") == changed
        jane = app.pipeline.subscriptions.subscriber("jane@example.org")
        assert jane is not None
        with pytest.raises(PaperboyError, match="declared in"):
            members(app).update(jane.id, "UTC", "daily 07:00")
        # Leaving always works, declared or not (RFC 8058).
        assert members(app).unsubscribe(jane.id).status is SubscriberStatus.UNSUBSCRIBED


def test_bad_input_raises_and_stores_nothing(app: App) -> None:
    for email, zone, schedule, profile, field in [
        ("not-an-address", "UTC", "instant", KV, "email"),
        (ANN, "Mars/Olympus", "instant", KV, "timezone"),
        (ANN, "UTC", "every minute", KV, "schedule"),
        (ANN, "UTC", "instant", ProfileSpec("", "kv"), "name"),
        (ANN, "UTC", "instant", ProfileSpec("KV", "kv", max_items=0), "max_items"),
    ]:
        with pytest.raises(InvalidValue) as caught:
            members(app).subscribe(email, zone, schedule, profile)
        assert caught.value.field == field
    with pytest.raises(QueryError) as query:
        members(app).subscribe(ANN, "UTC", "instant", ProfileSpec("broken", 'kv "cache'))
    assert query.value.position == 3
    assert app.pipeline.subscriptions.subscribers() == []
    assert app.pipeline.subscriptions.profiles() == []
    assert app.mailroom.outbox.deliveries() == []
    members(app).send_manage_link("nobody@example.org")
    with pytest.raises(InvalidValue):
        members(app).send_manage_link("not-an-address")
    assert app.mailroom.outbox.deliveries() == []


# -- expiry -------------------------------------------------------------------------------------


def test_expire_pending_removes_only_old_unconfirmed_subscriptions(
    app: App, tmp_path: Path, clock: FixedClock
) -> None:
    old = members(app).subscribe("old@example.org", "UTC", "instant", KV).subscriber_id
    gone_active = confirmed(app, "active@example.org")
    quitter = confirmed(app, "quitter@example.org")
    members(app).unsubscribe(quitter.id)
    clock.advance(days=3)
    asked_again = members(app).subscribe("again@example.org", "UTC", "instant", None)
    clock.advance(days=3)
    members(app).subscribe("again@example.org", "UTC", "instant", None)  # the expiry restarts
    ingest(app, tmp_path, "a.txt", kv_paper(1))  # the old pending profile matches it
    clock.advance(days=1, seconds=1)  # 7 days and a second after "old" asked
    assert app.pipeline.cleanup().pending == 1
    emails = {s.email: s.status.value for s in app.pipeline.subscriptions.subscribers()}
    assert emails == {
        "active@example.org": "active",
        "quitter@example.org": "unsubscribed",
        "again@example.org": "pending",
    }
    with app.store.engine.connect() as db:
        left = db.execute(sa.select(deliveries.c.subscriber_id)).scalars().all()
        assert old not in left
        assert db.execute(sa.select(sent).where(sent.c.subscriber_id == old)).all() == []
    assert all(p.subscriber_id != old for p in app.pipeline.subscriptions.profiles())
    clock.advance(days=5, hours=23)  # 6 days and 23 hours since "again" asked again
    assert members(app).expire_pending() == 0
    clock.advance(hours=1)
    assert members(app).expire_pending() == 1
    assert members(app).members.by_id(asked_again.subscriber_id) is None
    assert members(app).members.by_id(gone_active.id) is not None


def test_subscriber_list_shows_each_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/profiles.toml but the test's own (none)
    monkeypatch.delenv("PAPERBOY_CONFIG", raising=False)
    settings = Settings(data_dir=tmp_path / "data", sources=[])
    with build(settings, clock=FixedClock(T0)) as app:
        members(app).subscribe("new@example.org", "UTC", "instant", None)
        paused = confirmed(app, "paused@example.org")
        members(app).pause(paused.id)
    assert main(["--data-dir", str(tmp_path / "data"), "subscriber", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["email"], r["status"]) for r in rows] == [
        ("new@example.org", "pending"),
        ("paused@example.org", "paused"),
    ]
    assert main(["--data-dir", str(tmp_path / "data"), "subscriber", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["new@example.org", "pending"]
    assert lines[1].split()[:2] == ["paused@example.org", "paused"]


def test_requests_for_one_address_at_once_queue_one_confirmation(app: App) -> None:
    """Several processes or threads taking the same address at the same moment."""
    start = threading.Barrier(4)

    def ask() -> str:
        start.wait()
        return members(app).subscribe(ANN, "UTC", "instant", None).action

    with ThreadPoolExecutor(4) as pool:
        actions = list(pool.map(lambda _: ask(), range(4)))
    assert actions.count("throttled") == 3, actions
    assert [s.email for s in app.pipeline.subscriptions.subscribers()] == [ANN]
    assert notices(app, DeliveryKind.CONFIRMATION) == ["pending"]


def test_links_in_mail_sent_before_the_migration_keep_working(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    """A subscriber from before 0004_w1: their manage, feed and unsubscribe links still work."""
    engine = create_engine(database_url)
    try:
        upgrade(engine, "0003")
        with engine.begin() as db:
            db.execute(
                sa.text(
                    "INSERT INTO subscribers (email, timezone, schedule, status, declared, token,"
                    " created_at, updated_at) VALUES ('old@example.org', 'UTC', 'instant',"
                    " 'active', false, 's3cret-of-old', :now, :now)"
                ),
                {"now": T0.replace(tzinfo=None)},
            )
    finally:
        engine.dispose()
    with make_app(tmp_path, database_url, clock) as app:
        owner = app.pipeline.subscriptions.subscriber("old@example.org")
        assert owner is not None and owner.manage_generation == 0
        for purpose in ("manage", "feeds", "unsubscribe"):
            sent_before = tokens.make(owner.id, "s3cret-of-old", purpose)  # as 0003 signed them
            assert members(app).subscriber(sent_before, purpose) == owner
