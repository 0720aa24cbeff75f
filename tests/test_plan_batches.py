"""Planning in batches: a crash in the middle of a batch leaves every window either closed with
its delivery or open, and the next run closes the open ones, each once."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mail import ingest, listing, make_app, parse, parts

from service import mailroom
from service.app import App
from service.clock import FixedClock
from service.model import DeliveryKind, ProfileSpec

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


def crash_on(app: App, statement: str, nth: int) -> Callable[..., None]:
    """Raise ``Crash`` when the ``nth`` statement starting with ``statement`` runs."""
    seen = [0]

    def before(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith(statement):
            seen[0] += 1
            if seen[0] == nth:
                raise Crash(f"injected at {statement} number {nth}")

    sa.event.listen(app.store.engine, "before_cursor_execute", before)
    return before


@pytest.mark.parametrize("statement", ["INSERT INTO SENT", "UPDATE SUBSCRIBERS"])
def test_a_crash_inside_a_batch_leaves_each_window_closed_with_its_delivery_or_open(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, statement: str
) -> None:
    monkeypatch.setattr(mailroom, "PLAN_BATCH", 2)
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        opened_at = subscribe(app, tmp_path, clock)
        listener = crash_on(app, statement, 2)  # the second batch's write fails halfway
        with pytest.raises(Crash):
            app.mailroom.plan()
        states = closed_and_delivered(app, opened_at)
        assert all(moved == queued for moved, queued in states.values()), states
        assert sorted(states.values()) == [(False, False)] * 3 + [(True, True)] * 2

        sa.event.remove(app.store.engine, "before_cursor_execute", listener)
        again = app.mailroom.plan()
        assert sorted(p.email for p in again) == sorted(
            f"{n}@example.org" for n in NAMES if not states[f"{n}@example.org"][0]
        )
        assert all(p.delivery_id is not None for p in again)
        assert set(closed_and_delivered(app, opened_at).values()) == {(True, True)}
        digests = [d for d in app.mailroom.outbox.deliveries() if d.kind is DeliveryKind.DIGEST]
        assert sorted(d.recipient for d in digests) == sorted(f"{n}@example.org" for n in NAMES)


def test_a_crash_while_composing_a_batch_leaves_its_windows_open(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailroom, "PLAN_BATCH", 2)
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        opened_at = subscribe(app, tmp_path, clock)
        rendered = app.mailroom.renderer.render
        calls = [0]

        def failing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 4:  # the second digest of the second batch
                raise Crash("injected while rendering")
            return rendered(*args, **kwargs)

        monkeypatch.setattr(app.mailroom.renderer, "render", failing)
        with pytest.raises(Crash):
            app.mailroom.plan()
        states = closed_and_delivered(app, opened_at)
        assert sorted(states.values()) == [(False, False)] * 3 + [(True, True)] * 2
        monkeypatch.setattr(app.mailroom.renderer, "render", rendered)
        assert len(app.mailroom.plan()) == 3
        assert set(closed_and_delivered(app, opened_at).values()) == {(True, True)}


def test_digests_rendered_in_processes_are_the_ones_rendered_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailroom, "PLAN_BATCH", 2)
    messages = {}
    for processes in (1, 2):
        monkeypatch.setattr(mailroom, "POOL_MIN", 0)
        clock = FixedClock(T0)
        url = f"sqlite:///{tmp_path / f'{processes}.db'}"
        with make_app(tmp_path / str(processes), url, clock, render_processes=processes) as app:
            subscribe(app, tmp_path, clock)
            assert len(app.mailroom.plan()) == len(NAMES)
            messages[processes] = {
                d.recipient: shown(app.mailroom.outbox.message(d.id))
                for d in app.mailroom.outbox.deliveries()
            }
    assert len(messages[2]) == len(NAMES)
    assert messages[2] == messages[1]
