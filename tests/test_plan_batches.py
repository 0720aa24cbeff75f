"""Planning in batches, composing in the senders: a crash in the middle of a planning batch leaves
every window either closed with its delivery (to compose) or open, and the next run closes the
open ones, each once; a crash while a sender composes a batch gives its claims back, and the
next send composes and sends them; every digest goes out once, as planning alone would have
made it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mail import ingest, listing, maildir_messages, make_app, parse, parts, send

from service import mailroom
from service.app import App
from service.clock import FixedClock
from service.model import DeliveryKind, DeliveryStatus, ProfileSpec
from service.store.outbox import Closing
from service.windows import Window

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
NAMES = ("ann", "bob", "cid", "dan", "eve")


def shown(raw: bytes | None) -> tuple[str, str, str, str]:
    """What a message shows: subject, Message-ID, text and HTML, the subscriber's secret
    links masked (each database makes its own secrets)."""
    assert raw is not None
    message = parse(raw)
    text, html = parts(message)
    secret = re.compile(r"(unsubscribe|manage|feeds|feedback)(/|%20| )[A-Za-z0-9._-]+")
    return (
        str(message["Subject"]),
        str(message["Message-ID"]),
        secret.sub(r"\1/…", text),
        secret.sub(r"\1/…", html),
    )


class Crash(Exception):
    """The failure injected into planning."""


def subscribe(app: App, tmp_path: Path, clock: FixedClock) -> datetime:
    """Five subscribers due at 07:30 in Berlin with a matching paper each; the window's end."""
    for name in NAMES:
        app.pipeline.roster.save_subscriber(f"{name}@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(f"{name}@example.org", ProfileSpec("KV", '"kv cache"'))
    ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
    opened = app.mailroom.outbox.windows()
    clock.at = NEXT_MORNING
    return max(state.window_end for state in opened.values())


def closed_and_delivered(app: App, opened_at: datetime) -> dict[str, tuple[bool, bool]]:
    """Per subscriber: (window moved, digest delivery queued)."""
    states = app.mailroom.outbox.windows()
    queued = {
        d.subscriber_id for d in app.mailroom.outbox.deliveries() if d.kind is DeliveryKind.DIGEST
    }
    return {
        owner.email: (states[owner.id].window_end > opened_at, owner.id in queued)
        for owner in app.pipeline.subscriptions.subscribers()
    }


def crash_on(app: App, statement: str, nth: int, *, after: str = "") -> Callable[..., None]:
    """Raise ``Crash`` when the ``nth`` statement starting with ``statement`` runs (counted
    once a statement starting with ``after`` has run)."""
    seen = [0]
    counting = [not after]

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        text = sql.lstrip().upper()
        if counting[0] and text.startswith(statement):
            seen[0] += 1
            if seen[0] == nth:
                raise Crash(f"injected at {statement} number {nth}")
        if after and text.startswith(after):
            counting[0] = True

    sa.event.listen(app.store.engine, "before_cursor_execute", before)
    return before


def recipients(app: App) -> list[str]:
    return sorted(str(m["To"]) for m in maildir_messages(app))


EVERYONE = sorted(f"{n}@example.org" for n in NAMES)


@pytest.mark.parametrize(
    ("statement", "nth", "after"),
    [("INSERT INTO DELIVERIES", 1, "UPDATE SUBSCRIBERS"), ("UPDATE SUBSCRIBERS", 2, "")],
)
def test_a_crash_inside_a_batch_leaves_each_window_closed_with_its_delivery_or_open(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    statement: str,
    nth: int,
    after: str,
) -> None:
    monkeypatch.setattr(mailroom, "PLAN_BATCH", 2)
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        opened_at = subscribe(app, tmp_path, clock)
        # The second batch's write fails halfway.
        listener = crash_on(app, statement, nth, after=after)
        with pytest.raises(Crash):
            app.mailroom.close_windows()
        states = closed_and_delivered(app, opened_at)
        assert all(moved == queued for moved, queued in states.values()), states
        assert sorted(states.values()) == [(False, False)] * 3 + [(True, True)] * 2
        assert {d.status for d in app.mailroom.outbox.deliveries()} == {DeliveryStatus.COMPOSE}

        sa.event.remove(app.store.engine, "before_cursor_execute", listener)
        again = app.mailroom.close_windows()
        assert sorted(p.email for p in again) == sorted(
            f"{n}@example.org" for n in NAMES if not states[f"{n}@example.org"][0]
        )
        assert all(p.delivery_id is not None for p in again)
        assert set(closed_and_delivered(app, opened_at).values()) == {(True, True)}
        assert app.mailroom.close_windows() == []  # all closed: a third run does nothing
        assert send(app).sent == len(NAMES)
        assert send(app).sent == 0
        assert recipients(app) == EVERYONE
        digests = [d for d in app.mailroom.outbox.deliveries() if d.kind is DeliveryKind.DIGEST]
        assert sorted(d.recipient for d in digests) == EVERYONE
        assert {(d.status, d.papers) for d in digests} == {(DeliveryStatus.SENT, 1)}


def test_a_crash_while_a_sender_composes_gives_its_claims_back(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        opened_at = subscribe(app, tmp_path, clock)
        assert len(app.mailroom.close_windows()) == len(NAMES)
        rendered = app.mailroom.renderer.render
        calls = [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 4:  # the second digest of the second batch
                raise Crash("injected while rendering")
            return rendered(*args, **kwargs)

        monkeypatch.setattr(app.mailroom.renderer, "render", failing)
        with pytest.raises(Crash):
            asyncio.run(app.mailroom.send(limit=2))
        # The first batch went out; the second's claims are back, composed by nobody.
        assert len(recipients(app)) == 2
        rows = app.mailroom.outbox.deliveries()
        assert sorted(d.status for d in rows) == ["compose"] * 3 + ["sent"] * 2
        assert all(d.attempts == 0 for d in rows if d.status is DeliveryStatus.COMPOSE)
        assert set(closed_and_delivered(app, opened_at).values()) == {(True, True)}
        with app.store.engine.connect() as db:  # only what was sent is in the ledger
            ledger = db.execute(sa.text("SELECT count(*) FROM sent")).scalar()
        assert ledger == 2

        monkeypatch.setattr(app.mailroom.renderer, "render", rendered)
        assert send(app).sent == 3
        assert recipients(app) == EVERYONE


def test_an_empty_digest_is_dropped_by_the_sender_never_sent(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        for name in ("ann", "bob"):
            app.pipeline.roster.save_subscriber(
                f"{name}@example.org", "Europe/Berlin", "daily 07:30"
            )
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", '"kv cache"'))
        app.pipeline.roster.save_profile(
            "bob@example.org", ProfileSpec("KV", '"kv cache"', send_when_empty=True)
        )
        clock.at = NEXT_MORNING
        assert len(app.mailroom.close_windows()) == 2
        assert len(app.mailroom.outbox.deliveries(DeliveryStatus.COMPOSE)) == 2
        assert send(app).sent == 1
        [note] = maildir_messages(app)
        [kept] = app.mailroom.outbox.deliveries()
    assert (str(note["To"]), str(note["Subject"])) == ("bob@example.org", "No new papers")
    assert (kept.recipient, kept.status) == ("bob@example.org", DeliveryStatus.SENT)


@pytest.mark.parametrize("how", ["in processes", "by the sender"])
def test_digests_composed_elsewhere_are_the_ones_planning_composes_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    monkeypatch.setattr(mailroom, "PLAN_BATCH", 2)
    monkeypatch.setattr(mailroom, "POOL_MIN", 0)
    messages = {}
    for way in ("here", how):
        clock = FixedClock(T0)
        url = f"sqlite:///{tmp_path / f'{way}.db'}"
        processes = 2 if way == "in processes" else 1
        with make_app(tmp_path / way, url, clock, render_processes=processes) as app:
            subscribe(app, tmp_path, clock)
            if way == "by the sender":
                assert len(app.mailroom.close_windows()) == len(NAMES)
                clock.advance(minutes=5)  # composed later, but as of planning
                assert asyncio.run(app.mailroom.send(limit=2)).sent == len(NAMES)
            else:
                assert len(app.mailroom.plan()) == len(NAMES)
            messages[way] = {
                d.recipient: shown(app.mailroom.outbox.message(d.id))
                for d in app.mailroom.outbox.deliveries()
            }
    assert len(messages[how]) == len(NAMES)
    assert messages[how] == messages["here"]


def test_windows_another_planner_closed_meanwhile_are_left_to_it(
    tmp_path: Path, database_url: str
) -> None:
    """Two planners that found the same windows due: the second closes none of them again."""
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        subscribe(app, tmp_path, clock)
        outbox = app.mailroom.outbox
        states = outbox.windows()
        closing = [
            Closing(
                owner.id,
                owner.email,
                Window(states[owner.id].window_end, NEXT_MORNING),
                NEXT_MORNING + timedelta(days=1),
            )
            for owner in app.pipeline.subscriptions.subscribers()
        ]
        first = outbox.close_windows(closing, NEXT_MORNING)
        assert all(i is not None for i in first.values()) and len(set(first.values())) == 5
        assert outbox.close_windows(closing, NEXT_MORNING) == dict.fromkeys(first)
        assert sorted(d.id for d in outbox.deliveries()) == sorted(first.values())  # type: ignore[type-var]


@pytest.mark.postgres
def test_a_big_planning_run_refreshes_the_outbox_statistics(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After many windows close at once the planner knows how many rows are due (without it a
    claim sorts every due row); a few closed leave the statistics alone."""
    clock = FixedClock(T0)
    counted = sa.text("SELECT reltuples FROM pg_class WHERE relname = 'deliveries'")
    with make_app(tmp_path, pg_url, clock) as app:
        subscribe(app, tmp_path, clock)
        with app.store.engine.connect() as db:
            assert db.execute(counted).scalar_one() < 0  # never analysed
        monkeypatch.setattr(mailroom, "ANALYZE_AFTER", len(NAMES))
        assert len(app.mailroom.close_windows()) == len(NAMES)
        with app.store.engine.connect() as db:
            assert db.execute(counted).scalar_one() == len(NAMES)
