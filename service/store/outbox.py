"""The outbox: digest windows, deliveries and the ledger of papers sent.

Digest windows are closed in batches, one transaction each, that write per window a delivery
"to compose" (status ``compose``, unique per subscriber, kind and window, with the window's
bounds) and move the subscriber's next window: a job that runs twice, or after a crash, finds
the window closed and does nothing. Senders claim due deliveries for a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so any number of processes share the work): one to compose is composed
and rendered by the sender that claims it, written back with its papers in the ledger in one
transaction per batch (an empty digest is dropped, never sent), then sent. A subscriber's
deliveries to compose are claimed one at a time, oldest first, so that each reads the ledger its
predecessor wrote. A claim that outlives its lease (the sender died) is taken again: one not yet
composed is composed afresh; a composed one is sent, which may repeat what was in flight (the
sender's batch whose outcomes were not yet written) and nothing else.

A claim names its claimer (host, pid namespace, pid, process start: ``store.claimer``). A
sender that crashed leaves its claims orphaned, and the next sender that can see its processes
(same host and pid namespace) takes them at once instead of after the lease: a service
restarted by systemd, or a second ``paperboy run`` beside it, sends on where it stopped. This
was chosen over claiming fewer rows at a time, which still leaves the message in flight waiting
out the lease and costs a transaction per message. Claims that cannot be checked (another host,
another container, a restarted container's) still wait out the lease, and a sender claims at
most ``CLAIM_BATCH`` rows at a time (``service.mailroom``) so that such a crash holds back
few messages.

``attempts`` counts attempts whose outcome is known (sent, refused, or failed for a passing
reason): it grows when an outcome is recorded, not when a row is claimed, so a claim lost to a
crash, or given back, is no attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from service.model import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Profile,
    SourceState,
    Subscriber,
    SubscriberStatus,
)
from service.store import mailboxes
from service.store.claimer import Claimer
from service.store.database import analyze
from service.store.tables import (
    UTCDateTime,
    deliveries,
    matches,
    messages,
    profiles,
    sent,
    sources,
    subscribers,
)
from service.windows import Window


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A rendered message to queue."""

    subscriber_id: int
    kind: DeliveryKind
    window: str
    recipient: str
    subject: str
    message_id: str
    message: bytes
    paper_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Closing:
    """A subscriber's digest window to close, and when the next one is due; its digest is
    composed later, by the sender that claims the delivery."""

    subscriber_id: int
    recipient: str
    window: Window
    next_window_at: datetime | None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a sender holds: its message, or None for a digest still to compose over
    ``window``."""

    delivery: Delivery
    message: bytes | None
    window: Window | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an attempt at a delivery: ``sent`` (``at``: when), ``pending`` (a passing
    failure; ``at``: the next attempt), ``failed`` or ``dead``."""

    delivery_id: int
    status: DeliveryStatus
    at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class WindowState:
    subscriber_id: int
    window_end: datetime
    next_window_at: datetime | None


@dataclass(frozen=True, slots=True)
class FeedSource:
    """What a subscriber's feeds are made of, and what tells whether they changed: per
    profile, when it was last saved and when it last matched (matches are only added, or
    replaced with a newer time; a changed query saves the profile)."""

    owner: Subscriber
    profiles: tuple[Profile, ...]
    saved: dict[int, datetime]  # profile id -> updated_at
    matched: dict[int, datetime]  # profile id -> newest matched_at (absent: no match)


@dataclass(frozen=True, slots=True)
class MatchRow:
    profile_id: int
    paper_id: int
    score: float
    reasons: str  # as stored: JSON text, decoded by the reader (many rows share one text)
    matched_at: datetime


class Outbox:
    def __init__(self, engine: sa.Engine, claimer: Claimer | None = None) -> None:
        self.engine = engine
        self.claimer = claimer or Claimer.current()  # who this process's claims name

    # -- windows --------------------------------------------------------------------------------

    def windows(self, subscriber_ids: Iterable[int] | None = None) -> dict[int, WindowState]:
        """Each active subscriber's window state."""
        query = sa.select(
            subscribers.c.id,
            subscribers.c.window_end,
            subscribers.c.created_at,
            subscribers.c.next_window_at,
        ).where(subscribers.c.status == "active")
        wanted = None if subscriber_ids is None else list(subscriber_ids)
        # Asked in chunks: PostgreSQL takes at most 65,535 parameters a statement.
        chunks = (
            [query]
            if wanted is None
            else [
                query.where(subscribers.c.id.in_(wanted[start : start + 10_000]))
                for start in range(0, len(wanted), 10_000)
            ]
        )
        with self.engine.connect() as db:
            return {
                row.id: WindowState(row.id, row.window_end or row.created_at, row.next_window_at)
                for chunk in chunks
                for row in db.execute(chunk)
            }

    def set_next_window(self, subscriber_id: int, at: datetime | None) -> None:
        with self.engine.begin() as db:
            db.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id)
                .values(next_window_at=at)
            )

    def candidates(self, subscriber_id: int, start: datetime, end: datetime) -> list[MatchRow]:
        """Matches of the subscriber's profiles made in ``[start, end]``, of papers not sent."""
        already = sa.select(sent.c.paper_id).where(sent.c.subscriber_id == subscriber_id)
        query = (
            sa.select(*_MATCH_COLUMNS)
            .join(profiles, profiles.c.id == matches.c.profile_id)
            .where(
                profiles.c.subscriber_id == subscriber_id,
                matches.c.matched_at >= start,  # the ledger keeps an edge match single
                matches.c.matched_at <= end,
                matches.c.paper_id.not_in(already),
            )
        )
        with self.engine.connect() as db:
            return [_match(row) for row in db.execute(query)]

    def candidates_of(
        self, spans: Mapping[int, tuple[datetime, datetime]]
    ) -> dict[int, list[MatchRow]]:
        """``candidates`` for many subscribers in one query: per subscriber id, the matches of
        its profiles made in its ``(start, end)``, of papers not sent to it."""
        if not spans:
            return {}
        already = sa.exists().where(
            sent.c.subscriber_id == profiles.c.subscriber_id, sent.c.paper_id == matches.c.paper_id
        )
        query = (
            sa.select(*_MATCH_COLUMNS, profiles.c.subscriber_id)
            .join(profiles, profiles.c.id == matches.c.profile_id)
            .where(
                profiles.c.subscriber_id.in_(list(spans)),
                matches.c.matched_at >= min(start for start, _ in spans.values()),
                matches.c.matched_at <= max(end for _, end in spans.values()),
                ~already,
            )
        )
        found: dict[int, list[MatchRow]] = {}
        with self.engine.connect() as db:
            for row in db.execute(query):
                start, end = spans[row.subscriber_id]
                if start <= row.matched_at <= end:  # the ledger keeps an edge match single
                    found.setdefault(row.subscriber_id, []).append(_match(row))
        return found

    def close_windows(self, closing: Sequence[Closing], now: datetime) -> dict[int, int | None]:
        """Close many digest windows in one transaction: a delivery to compose for each, and
        the moved windows, all or nothing. Returns, per subscriber id, the delivery id (None:
        closed already, by an earlier run or another process)."""
        if not closing:
            return {}
        try:
            with self.engine.begin() as db:
                if db.dialect.name == "postgresql":
                    opened = _open_to_compose(db, closing, now)
                else:
                    opened = _open_each(db, closing, now)
                moved = [c for c in closing if c.subscriber_id in opened]
                if moved:
                    db.execute(_move_window(), [_moved(c) for c in moved])
        except sa.exc.IntegrityError:
            # Another process closed one of these windows meanwhile: each on its own, then.
            return {c.subscriber_id: self._close_one(c, now) for c in closing}
        return {c.subscriber_id: opened.get(c.subscriber_id) for c in closing}

    def _close_one(self, closing: Closing, now: datetime) -> int | None:
        key = (closing.subscriber_id, DeliveryKind.DIGEST, closing.window.key)
        try:
            with self.engine.begin() as db:
                if db.execute(_window_delivery(*key)).first() is not None:
                    return None
                delivery_id: int = db.execute(
                    deliveries.insert()
                    .values(**_to_compose(closing, now))
                    .returning(deliveries.c.id)
                ).scalar_one()
                db.execute(_move_window(), [_moved(closing)])
        except sa.exc.IntegrityError:
            if self._closed(*key):
                return None
            raise
        return delivery_id

    def fill(
        self,
        composed: Sequence[tuple[int, NewDelivery]],
        empty: Sequence[int],
        now: datetime,
        *,
        release: bool,
    ) -> None:
        """Write composed digests into the deliveries claimed to compose them, their papers
        into the ledger, and drop the empty ones (nothing to send): one transaction. With
        ``release`` the claims are given back (any sender sends them), else they stay."""
        claim: dict[str, Any] = {}
        if release:
            claim = {
                "status": DeliveryStatus.PENDING.value,
                "claimed_until": None,
                "claimed_by": None,
            }
        with self.engine.begin() as db:
            if composed:
                db.execute(
                    deliveries.update()
                    .where(deliveries.c.id == sa.bindparam("did"))
                    .values(
                        recipient=sa.bindparam("to"),
                        subject=sa.bindparam("subject"),
                        message_id=sa.bindparam("mid"),
                        papers=sa.bindparam("count"),
                        **claim,
                    ),
                    [
                        {
                            "did": delivery_id,
                            "to": new.recipient,
                            "subject": new.subject,
                            "mid": new.message_id,
                            "count": len(new.paper_ids),
                        }
                        for delivery_id, new in composed
                    ],
                )
                db.execute(
                    messages.insert(),
                    [{"delivery_id": i, "body": new.message} for i, new in composed],
                )
                ledger = [
                    {
                        "subscriber_id": new.subscriber_id,
                        "paper_id": paper_id,
                        "delivery_id": delivery_id,
                        "at": now,
                    }
                    for delivery_id, new in composed
                    for paper_id in new.paper_ids
                ]
                if ledger:
                    # A paper an alert took meanwhile stays the alert's (the digest shows it
                    # once more, which is rarer than a race and kinder than losing the batch).
                    db.execute(_insert_new(db, sent), ledger)
            if empty:
                db.execute(deliveries.delete().where(deliveries.c.id.in_(list(empty))))

    def analyze(self) -> None:
        """Refresh PostgreSQL's statistics of the outbox after many rows changed at once (a
        day's windows closed, their digests composed): a claim's plan reads the due rows in
        index order only when the planner knows there are many (with a stale count of a few
        it sorts every due row instead, 50 times slower at 10,000)."""
        analyze(self.engine, "deliveries")

    def close_window(
        self,
        subscriber_id: int,
        kind: DeliveryKind,
        window: str,
        now: datetime,
        delivery: NewDelivery | None,
        *,
        window_end: datetime | None = None,
        next_window_at: datetime | None = None,
    ) -> int | None:
        """Queue ``delivery`` (if any), record its papers as sent and, for a digest, move the
        subscriber's window; all or nothing. Returns the delivery id, or None when there was
        nothing to queue or the window was closed already (the second run of a job)."""
        try:
            with self.engine.begin() as db:
                closed = db.execute(_window_delivery(subscriber_id, kind, window)).first()
                if closed is not None:
                    return None  # closed by an earlier run of the same job
                delivery_id = None
                if delivery is not None:
                    delivery_id = db.execute(
                        deliveries.insert()
                        .values(
                            subscriber_id=subscriber_id,
                            kind=kind.value,
                            window=window,
                            recipient=delivery.recipient,
                            subject=delivery.subject,
                            message_id=delivery.message_id,
                            papers=len(delivery.paper_ids),
                            status=DeliveryStatus.PENDING.value,
                            attempts=0,
                            next_attempt_at=now,
                            created_at=now,
                        )
                        .returning(deliveries.c.id)
                    ).scalar_one()
                    db.execute(
                        messages.insert().values(delivery_id=delivery_id, body=delivery.message)
                    )
                    if delivery.paper_ids:
                        db.execute(
                            sent.insert(),
                            [
                                {
                                    "subscriber_id": subscriber_id,
                                    "paper_id": paper_id,
                                    "delivery_id": delivery_id,
                                    "at": now,
                                }
                                for paper_id in delivery.paper_ids
                            ],
                        )
                if window_end is not None:
                    db.execute(
                        subscribers.update()
                        .where(subscribers.c.id == subscriber_id)
                        .values(window_end=window_end, next_window_at=next_window_at)
                    )
        except sa.exc.IntegrityError:
            # Another process closed the same window between the check and the insert.
            if self._closed(subscriber_id, kind, window):
                return None
            raise
        return delivery_id

    def _closed(self, subscriber_id: int, kind: DeliveryKind, window: str) -> bool:
        with self.engine.connect() as db:
            return db.execute(_window_delivery(subscriber_id, kind, window)).first() is not None

    def alerts_since(self, subscriber_id: int, since: datetime) -> int:
        query = sa.select(sa.func.count()).where(
            deliveries.c.subscriber_id == subscriber_id,
            deliveries.c.kind == DeliveryKind.ALERT.value,
            deliveries.c.created_at > since,
        )
        with self.engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def sent_papers(self, subscriber_id: int) -> set[int]:
        query = sa.select(sent.c.paper_id).where(sent.c.subscriber_id == subscriber_id)
        with self.engine.connect() as db:
            return set(db.execute(query).scalars())

    # -- sending --------------------------------------------------------------------------------

    def claim(
        self,
        now: datetime,
        lease: timedelta,
        limit: int,
        *,
        to_compose: Sequence[int] | None = None,
    ) -> list[Claimed]:
        """Take up to ``limit`` due deliveries for ``lease``: digests to compose, pending ones
        whose time has come, and claims whose lease ran out or whose claimer on this host is
        gone. ``to_compose``: only these deliveries, and only if they are still to compose."""
        # Each kind of due row is looked up on its own, in the order of the index on (status,
        # next_attempt_at): one OR with an ORDER BY would sort every pending row on each claim
        # (on SQLite reading past each row's message bytes), which makes draining quadratic.
        compose = sa.and_(
            deliveries.c.status == DeliveryStatus.COMPOSE.value,
            deliveries.c.next_attempt_at <= now,
            ~_earlier_to_compose(),
        )
        due = [
            compose,
            sa.and_(
                deliveries.c.status == DeliveryStatus.PENDING.value,
                deliveries.c.next_attempt_at <= now,
            ),
            sa.and_(
                deliveries.c.status == DeliveryStatus.SENDING.value,
                deliveries.c.claimed_until < now,
            ),
        ]
        if to_compose is not None:
            due = [sa.and_(compose, deliveries.c.id.in_(list(to_compose)))]
        with self.engine.begin() as db:
            orphaned = self._orphaned(db) if to_compose is None else []
            if orphaned:
                due.append(
                    sa.and_(
                        deliveries.c.status == DeliveryStatus.SENDING.value,
                        deliveries.c.claimed_by.in_(orphaned),
                    )
                )
            ids = _claimable(db, due, limit)
            if not ids:
                return []
            db.execute(
                deliveries.update()
                .where(deliveries.c.id.in_(ids))
                .values(
                    status=DeliveryStatus.SENDING.value,
                    claimed_until=now + lease,
                    claimed_by=str(self.claimer),
                )
            )
            rows = db.execute(
                sa.select(deliveries)
                .where(deliveries.c.id.in_(ids))
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            ).all()
            bodies = _bodies(db, ids)
        return [_claimed(row, bodies.get(row.id)) for row in rows]

    def _orphaned(self, db: sa.Connection) -> list[str]:
        """The ``claimed_by`` of live claims whose claimer, a process this one can see (same
        host and pid namespace), is gone."""
        holders = db.execute(
            sa.select(deliveries.c.claimed_by)
            .where(
                deliveries.c.status == DeliveryStatus.SENDING.value,
                deliveries.c.claimed_by.is_not(None),
                deliveries.c.claimed_by != str(self.claimer),
            )
            .distinct()
        ).scalars()
        gone = []
        for text in holders:
            holder = Claimer.parse(text)
            if holder is not None and self.claimer.sees(holder) and holder.is_gone():
                gone.append(text)
        return gone

    def due(self, now: datetime) -> int:
        """How many deliveries a sender could claim now (to compose, or to send)."""
        return self._count(now, DeliveryStatus.PENDING, DeliveryStatus.COMPOSE)

    def to_compose(self, now: datetime) -> int:
        """How many of those are digests still to compose."""
        return self._count(now, DeliveryStatus.COMPOSE)

    def _count(self, now: datetime, *statuses: DeliveryStatus) -> int:
        query = sa.select(sa.func.count()).where(
            deliveries.c.status.in_([s.value for s in statuses]),
            deliveries.c.next_attempt_at <= now,
        )
        with self.engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def record(self, outcomes: Sequence[Outcome]) -> None:
        """Record the outcomes of a batch of attempts in one transaction: one more attempt
        each, and their claims are over."""
        if not outcomes:
            return
        update = (
            deliveries.update()
            .where(deliveries.c.id == sa.bindparam("did"))
            .values(claimed_until=None, claimed_by=None, attempts=deliveries.c.attempts + 1)
        )
        sent_ = [o for o in outcomes if o.status is DeliveryStatus.SENT]
        retry = [o for o in outcomes if o.status is DeliveryStatus.PENDING]
        over = [o for o in outcomes if o.status in (DeliveryStatus.FAILED, DeliveryStatus.DEAD)]
        with self.engine.begin() as db:
            if sent_:
                db.execute(
                    update.values(
                        status=DeliveryStatus.SENT.value,
                        sent_at=sa.bindparam("at"),
                        last_error=None,
                    ),
                    [{"did": o.delivery_id, "at": o.at} for o in sent_],
                )
            if retry:
                db.execute(
                    update.values(
                        status=DeliveryStatus.PENDING.value,
                        next_attempt_at=sa.bindparam("at"),
                        last_error=sa.bindparam("error"),
                    ),
                    [{"did": o.delivery_id, "at": o.at, "error": o.error} for o in retry],
                )
            if over:
                db.execute(
                    update.values(status=sa.bindparam("state"), last_error=sa.bindparam("error")),
                    [
                        {"did": o.delivery_id, "state": o.status.value, "error": o.error}
                        for o in over
                    ],
                )

    def release(self, delivery_ids: Sequence[int], error: str | None = None) -> None:
        """Give back claims not tried (a graceful stop, a sender that cannot work): they were no
        attempt. ``error`` says why, when something stopped them."""
        if not delivery_ids:
            return
        values: dict[str, Any] = {"last_error": error} if error is not None else {}
        with self.engine.begin() as db:
            db.execute(
                deliveries.update()
                .where(
                    deliveries.c.id.in_(list(delivery_ids)),
                    deliveries.c.status == DeliveryStatus.SENDING.value,
                )
                .values(
                    # A digest not composed yet goes back to be composed.
                    status=sa.case(
                        (~_has_body(deliveries), DeliveryStatus.COMPOSE.value),
                        else_=DeliveryStatus.PENDING.value,
                    ),
                    claimed_until=None,
                    claimed_by=None,
                    **values,
                )
            )

    # -- reading and cleaning up ----------------------------------------------------------------

    def deliveries(
        self, status: DeliveryStatus | None = None, subscriber_id: int | None = None
    ) -> list[Delivery]:
        query = sa.select(deliveries).order_by(deliveries.c.created_at, deliveries.c.id)
        if status is not None:
            query = query.where(deliveries.c.status == status.value)
        if subscriber_id is not None:
            query = query.where(deliveries.c.subscriber_id == subscriber_id)
        with self.engine.connect() as db:
            return [_delivery(row) for row in db.execute(query)]

    def message(self, delivery_id: int) -> bytes | None:
        with self.engine.connect() as db:
            found = db.execute(
                sa.select(messages.c.body).where(messages.c.delivery_id == delivery_id)
            ).scalar_one_or_none()
        return bytes(found) if found is not None else None

    def counts(self) -> dict[str, int]:
        query = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        with self.engine.connect() as db:
            return {status: int(n) for status, n in db.execute(query)}

    def forget_sent_bodies(self, before: datetime) -> int:
        """Drop the bytes of messages sent before ``before``; the rows (and ledger) stay."""
        with self.engine.begin() as db:
            result = db.execute(
                messages.delete().where(
                    messages.c.delivery_id.in_(
                        sa.select(deliveries.c.id).where(
                            deliveries.c.status == DeliveryStatus.SENT.value,
                            deliveries.c.sent_at < before,
                        )
                    )
                )
            )
        return int(result.rowcount)

    def recent_matches(self, profile_ids: Sequence[int], limit: int) -> list[MatchRow]:
        """The latest ``limit`` matches of these profiles, newest first."""
        if not profile_ids:
            return []
        query = (
            sa.select(*_MATCH_COLUMNS)
            .where(matches.c.profile_id.in_(list(profile_ids)))
            .order_by(matches.c.matched_at.desc(), matches.c.score.desc(), matches.c.paper_id)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [_match(row) for row in db.execute(query)]

    def feed_source(self, subscriber_id: int) -> FeedSource | None:
        """A subscriber's profiles, each with its newest match time, in two small queries
        (the newest is read from the index on profile and time; no match row is read); None
        when there is no such subscriber."""
        from service.store.subscriptions import _profile, _subscriber

        newest = (
            sa.select(sa.func.max(matches.c.matched_at))
            .where(matches.c.profile_id == profiles.c.id)
            .scalar_subquery()
        )
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(subscribers).where(subscribers.c.id == subscriber_id)
            ).first()
            if row is None:
                return None
            rows = db.execute(
                sa.select(profiles, newest.label("newest"))
                .where(profiles.c.subscriber_id == subscriber_id)
                .order_by(profiles.c.name)
            ).all()
        return FeedSource(
            owner=_subscriber(row),
            profiles=tuple(_profile(r) for r in rows),
            saved={r.id: r.updated_at for r in rows},
            matched={r.id: r.newest for r in rows if r.newest is not None},
        )

    def source_health(self) -> list[tuple[SourceState, datetime]]:
        """Each source's health, with when it was declared."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(sources).order_by(sources.c.id)).all()
        return [
            (
                SourceState(
                    source_id=row.id,
                    last_success_at=row.last_success_at,
                    errors=row.errors,
                    last_error=row.last_error,
                    disabled=row.disabled,
                ),
                row.created_at,
            )
            for row in rows
        ]


WAITING = (DeliveryStatus.PENDING.value, DeliveryStatus.COMPOSE.value)
"""Deliveries not yet claimed: what an unsubscribe or a suppression cancels."""
NOTICES = (DeliveryKind.CONFIRMATION.value, DeliveryKind.MANAGE_LINK.value)
"""The kinds of mail a subscriber who is not active gets (a pending one, their confirmation)."""
ACTIVE = SubscriberStatus.ACTIVE.value


def _claimable(db: sa.Connection, due: Sequence[sa.ColumnElement[bool]], limit: int) -> list[int]:
    """Up to ``limit`` due deliveries (rows meeting any of ``due``), the earliest first, locked.
    A digest or an alert of a subscriber who is no longer active (unsubscribed or paused since
    it was queued: a race with planning), and anything at all to a suppressed mailbox, is
    cancelled here instead, so that none is ever sent."""
    while True:
        rows: list[Any] = []
        for condition in due:
            rows += db.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.kind,
                    deliveries.c.next_attempt_at,
                    subscribers.c.status,
                    subscribers.c.email_key,
                )
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(condition)
                .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=deliveries)
            ).all()
        unique = {r.id: r for r in rows}.values()
        chosen = sorted(unique, key=lambda r: (r.next_attempt_at, r.id))[:limit]
        held = mailboxes.suppressed(db, [r.email_key for r in chosen])
        stale = [
            r.id
            for r in chosen
            if (r.kind not in NOTICES and r.status != ACTIVE) or r.email_key in held
        ]
        if not stale:
            return [r.id for r in chosen]
        cancel(db, stale)


def cancel(db: sa.Connection, delivery_ids: Sequence[int]) -> None:
    """Cancel these deliveries: never sent, so their papers leave the ledger of papers sent."""
    if not delivery_ids:
        return
    db.execute(sent.delete().where(sent.c.delivery_id.in_(delivery_ids)))
    db.execute(
        deliveries.update()
        .where(deliveries.c.id.in_(delivery_ids))
        .values(status=DeliveryStatus.CANCELLED.value, claimed_until=None)
    )


def _window_delivery(subscriber_id: int, kind: DeliveryKind, window: str) -> sa.Select[Any]:
    """The delivery that closed a subscriber's window, if one did."""
    return sa.select(deliveries.c.id).where(
        deliveries.c.subscriber_id == subscriber_id,
        deliveries.c.kind == kind.value,
        deliveries.c.window == window,
    )


def _has_body(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """Whether the delivery (a row of ``table``, deliveries or an alias of it) has its bytes:
    composed, and not forgotten."""
    return sa.exists().where(messages.c.delivery_id == table.c.id)


def _earlier_to_compose() -> sa.ColumnElement[bool]:
    """Whether the subscriber has an older digest still to compose (or being composed)."""
    earlier = deliveries.alias("earlier")
    return sa.exists().where(
        earlier.c.subscriber_id == deliveries.c.subscriber_id,
        earlier.c.kind == DeliveryKind.DIGEST.value,
        earlier.c.id < deliveries.c.id,
        earlier.c.status.in_([DeliveryStatus.COMPOSE.value, DeliveryStatus.SENDING.value]),
        ~_has_body(earlier),
    )


def _open_each(db: sa.Connection, closing: Sequence[Closing], now: datetime) -> dict[int, int]:
    """Record a delivery to compose for each window not closed already: per subscriber whose
    window this closed, its delivery id."""
    kind = DeliveryKind.DIGEST.value
    closed = {
        (row.subscriber_id, row.window)
        for row in db.execute(
            sa.select(deliveries.c.subscriber_id, deliveries.c.window).where(
                sa.tuple_(deliveries.c.subscriber_id, deliveries.c.window).in_(
                    [(c.subscriber_id, c.window.key) for c in closing]
                ),
                deliveries.c.kind == kind,
            )
        )
    }
    todo = [c for c in closing if (c.subscriber_id, c.window.key) not in closed]
    if not todo:
        return {}
    ids = db.execute(
        deliveries.insert().returning(deliveries.c.id, sort_by_parameter_order=True),
        [_to_compose(c, now) for c in todo],
    ).scalars()
    return dict(zip((c.subscriber_id for c in todo), ids, strict=True))


def _open_to_compose(
    db: sa.Connection, closing: Sequence[Closing], now: datetime
) -> dict[int, int]:
    """``_open_each`` on PostgreSQL: one short statement over arrays (a column an array),
    the windows closed already skipped by their unique key. A statement with a parameter per
    value (thousands for a batch) is parsed afresh by the driver each time, which cost more
    than the insert."""
    rows = db.execute(
        sa.text(
            'INSERT INTO deliveries (subscriber_id, kind, "window", window_start, window_end,'
            " recipient, subject, message_id, papers, status, attempts, next_attempt_at,"
            " created_at)"
            " SELECT s, :kind, w, ws, we, r, '', '', 0, :status, 0, :now, :now"
            " FROM unnest(CAST(:s AS INTEGER[]), CAST(:w AS VARCHAR[]),"
            " CAST(:ws AS TIMESTAMPTZ[]), CAST(:we AS TIMESTAMPTZ[]), CAST(:r AS VARCHAR[]))"
            " AS v(s, w, ws, we, r)"
            ' ON CONFLICT (subscriber_id, kind, "window") DO NOTHING'
            " RETURNING subscriber_id, id"
        ).bindparams(sa.bindparam("now", type_=UTCDateTime())),
        {
            "kind": DeliveryKind.DIGEST.value,
            "status": DeliveryStatus.COMPOSE.value,
            "now": now,
            "s": [c.subscriber_id for c in closing],
            "w": [c.window.key for c in closing],
            "ws": [c.window.start for c in closing],
            "we": [c.window.end for c in closing],
            "r": [c.recipient for c in closing],
        },
    )
    return {row.subscriber_id: row.id for row in rows}


def _to_compose(closing: Closing, now: datetime) -> dict[str, Any]:
    """A delivery to compose: no subject, Message-ID or body until a sender composes it."""
    return {
        "subscriber_id": closing.subscriber_id,
        "kind": DeliveryKind.DIGEST.value,
        "window": closing.window.key,
        "window_start": closing.window.start,
        "window_end": closing.window.end,
        "recipient": closing.recipient,
        "subject": "",
        "message_id": "",
        "papers": 0,
        "status": DeliveryStatus.COMPOSE.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def _move_window() -> sa.Update:
    return (
        subscribers.update()
        .where(subscribers.c.id == sa.bindparam("sid"))
        .values(window_end=sa.bindparam("end"), next_window_at=sa.bindparam("next"))
    )


def _moved(closing: Closing) -> dict[str, Any]:
    return {"sid": closing.subscriber_id, "end": closing.window.end, "next": closing.next_window_at}


def _insert_new(db: sa.Connection, table: sa.Table) -> Any:
    """An INSERT that skips rows whose key is taken."""
    if db.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def _bodies(db: sa.Connection, delivery_ids: Sequence[int]) -> dict[int, bytes]:
    """The bytes of these deliveries (those that have them). On PostgreSQL they come in the
    binary format: in text, the server writes each byte as two hex digits and the driver reads
    them back, which cost as much as the rest of a claim."""
    if db.dialect.name != "postgresql":
        query = sa.select(messages.c.delivery_id, messages.c.body).where(
            messages.c.delivery_id.in_(list(delivery_ids))
        )
        return {i: bytes(body) for i, body in db.execute(query)}
    raw: Any = db.connection.driver_connection  # the psycopg connection, in this transaction
    with raw.cursor(binary=True) as cursor:
        cursor.execute(
            "SELECT delivery_id, body FROM messages WHERE delivery_id = ANY(%s)",
            [list(delivery_ids)],
        )
        return {i: bytes(body) for i, body in cursor.fetchall()}


def _claimed(row: Any, body: bytes | None) -> Claimed:
    window = None
    if body is None and row.window_start is not None and row.window_end is not None:
        window = Window(row.window_start, row.window_end)
    return Claimed(_delivery(row), None if window is not None else (body or b""), window)


_MATCH_COLUMNS = (
    matches.c.profile_id,
    matches.c.paper_id,
    matches.c.score,
    # The text as stored, not decoded per row: a match's reasons are often the same text for
    # many subscribers (the same phrase in the same paper), decoded once by the reader.
    sa.cast(matches.c.reasons, sa.Text).label("reasons"),
    matches.c.matched_at,
)


def _match(row: Any) -> MatchRow:
    return MatchRow(row.profile_id, row.paper_id, row.score, row.reasons, row.matched_at)


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.id,
        subscriber_id=row.subscriber_id,
        kind=DeliveryKind(row.kind),
        window=row.window,
        recipient=row.recipient,
        subject=row.subject,
        message_id=row.message_id,
        papers=row.papers,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        sent_at=row.sent_at,
        last_error=row.last_error,
    )
