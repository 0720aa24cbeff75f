"""Membership in the store: subscribers who joined on the web, their status changes, the
confirmation and manage-link mails they are sent (one per interval) and the expiry of
subscriptions never confirmed. Each call is one transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from service import tokens
from service.identity import mailbox_key
from service.model import DeliveryKind, DeliveryStatus, Subscriber, SubscriberStatus
from service.store.outbox import WAITING, NewDelivery, cancel
from service.store.subscriptions import _subscriber
from service.store.tables import deliveries, messages, subscribers


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change: from which statuses it applies, and what else it does."""

    to: SubscriberStatus
    since: Collection[SubscriberStatus]
    window_end: datetime | None = None  # the open digest window starts here (None: unchanged)
    next_window_at: datetime | None = None  # and closes then (None: at the next boundary)
    confirmed: bool = False  # stamp confirmed_at
    cancel: Collection[DeliveryKind] = ()  # pending deliveries of these kinds are cancelled


class Members:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def by_id(self, subscriber_id: int) -> Subscriber | None:
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(subscribers).where(subscribers.c.id == subscriber_id)
            ).first()
        return _subscriber(row) if row is not None else None

    def create_pending(
        self, email: str, timezone: str, schedule: str, now: datetime
    ) -> Subscriber | None:
        """A new pending subscriber; None when the address is taken (by a concurrent request)."""
        try:
            with self.engine.begin() as db:
                subscriber_id = db.execute(
                    subscribers.insert()
                    .values(
                        email=email,
                        email_key=mailbox_key(email),
                        timezone=timezone,
                        schedule=schedule,
                        status=SubscriberStatus.PENDING.value,
                        declared=False,
                        token=tokens.new_secret(),
                        window_end=now,
                        created_at=now,
                        updated_at=now,
                        status_changed_at=now,
                    )
                    .returning(subscribers.c.id)
                ).scalar_one()
        except sa.exc.IntegrityError:
            return None
        return self.by_id(subscriber_id)

    def set_request(
        self,
        subscriber_id: int,
        timezone: str,
        schedule: str,
        now: datetime,
        since: Collection[SubscriberStatus],
    ) -> bool:
        """Take the time zone and schedule of a new request, while the status is in ``since``."""
        with self.engine.begin() as db:
            result = db.execute(
                subscribers.update()
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status.in_([s.value for s in since]),
                )
                .values(timezone=timezone, schedule=schedule, next_window_at=None, updated_at=now)
            )
        return bool(result.rowcount)

    def queue_notice(
        self,
        subscriber_id: int,
        delivery: NewDelivery,
        now: datetime,
        resend_after: timedelta,
        *,
        generation: int | None = None,
    ) -> bool:
        """Queue a confirmation or manage-link mail unless one went to this subscriber less
        than ``resend_after`` ago. With ``generation``, the manage generation moves from it to
        the next (the mail holds the new link), unless it moved meanwhile. Whether queued."""
        since = sa.or_(
            subscribers.c.notice_at.is_(None), subscribers.c.notice_at <= now - resend_after
        )
        values: dict[str, Any] = {"notice_at": now}
        conditions = [subscribers.c.id == subscriber_id, since]
        if generation is not None:
            conditions.append(subscribers.c.manage_generation == generation)
            values["manage_generation"] = generation + 1
        with self.engine.begin() as db:
            # The stamp first: of two requests at once, one updates the row, the other finds
            # it stamped (or waits for the first and then finds it so).
            claimed = db.execute(subscribers.update().where(*conditions).values(**values))
            if not claimed.rowcount:
                return False
            delivery_id = db.execute(
                deliveries.insert()
                .values(
                    subscriber_id=subscriber_id,
                    kind=delivery.kind.value,
                    window=delivery.window,
                    recipient=delivery.recipient,
                    subject=delivery.subject,
                    message_id=delivery.message_id,
                    papers=0,
                    status=DeliveryStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
                .returning(deliveries.c.id)
            ).scalar_one()
            db.execute(messages.insert().values(delivery_id=delivery_id, body=delivery.message))
        return True

    def transition(self, subscriber_id: int, change: Transition, now: datetime) -> bool:
        """Apply ``change`` if the subscriber's status is one it applies to; whether it did."""
        values: dict[str, Any] = {
            "status": change.to.value,
            "status_changed_at": now,
            "updated_at": now,
        }
        if change.window_end is not None:
            values.update(window_end=change.window_end, next_window_at=change.next_window_at)
        if change.confirmed:
            values["confirmed_at"] = now
        with self.engine.begin() as db:
            result = db.execute(
                subscribers.update()
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status.in_([s.value for s in change.since]),
                )
                .values(**values)
            )
            if not result.rowcount:
                return False
            if change.cancel:
                cancelled = db.execute(
                    sa.select(deliveries.c.id).where(
                        deliveries.c.subscriber_id == subscriber_id,
                        deliveries.c.status.in_(WAITING),
                        deliveries.c.kind.in_([k.value for k in change.cancel]),
                    )
                ).scalars()
                cancel(db, list(cancelled))
        return True

    def confirmed_at(self, subscriber_id: int) -> tuple[datetime | None, datetime | None]:
        """When the subscriber confirmed, and where their open digest window starts."""
        query = sa.select(subscribers.c.confirmed_at, subscribers.c.window_end).where(
            subscribers.c.id == subscriber_id
        )
        with self.engine.connect() as db:
            row = db.execute(query).first()
        return (row.confirmed_at, row.window_end) if row is not None else (None, None)

    def expire(self, before: datetime) -> list[str]:
        """Remove the pending subscribers last asked for before ``before``, with everything of
        theirs; their addresses."""
        asked = sa.func.coalesce(subscribers.c.notice_at, subscribers.c.created_at)
        with self.engine.begin() as db:
            # Only while still pending: a confirmation that came in meanwhile keeps its
            # subscriber. Profiles, matches and deliveries go with it (the foreign keys cascade).
            gone = db.execute(
                subscribers.delete()
                .where(subscribers.c.status == SubscriberStatus.PENDING.value, asked < before)
                .returning(subscribers.c.id, subscribers.c.email)
            ).all()
        return sorted(row.email for row in gone)
