"""Suppressed addresses and what came back for each delivery (bounces, complaints).

A suppression is keyed by the mailbox (``identity.mailbox_key``), salted and hashed
(``service.store.mailboxes``), not by subscriber, so it outlives removing the subscriber and
adding the address again; only ``lift`` ends it; and it keeps no address (its detail has any
address in it replaced), so erasing a subscriber leaves nothing that names them. Every pending
delivery to a suppressed mailbox is cancelled when it is suppressed, and the outbox cancels
any queued later instead of sending it (``service.store.outbox``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from service.identity import mailbox_key
from service.model import DeliveryStatus, Suppression
from service.store.mailboxes import hashed, salt
from service.store.outbox import WAITING, cancel
from service.store.tables import bounces, deliveries, subscribers, suppressions


@dataclass(frozen=True, slots=True)
class Sent:
    """A delivery a bounce may be about."""

    id: int
    subscriber_id: int
    recipient: str
    message_id: str
    sent_at: datetime | None  # None: never handed to a server


# Anything shaped like an address, in a diagnostic: "<ann@example.org>: user unknown".
_ADDRESS = re.compile(r"[^\s<>()\[\]:;,\"']+@[^\s<>()\[\]:;,\"']+")


def without_addresses(text: str) -> str:
    """``text`` with every address in it replaced by ``<address>``."""
    return _ADDRESS.sub("<address>", text)


class Suppressions:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._salt: str | None = None  # read once: it never changes

    def key(self, email: str) -> str:
        """The suppression key of ``email``'s mailbox (what ``all`` is keyed by)."""
        if self._salt is None:
            with self.engine.begin() as db:
                self._salt = salt(db)
        return hashed(self._salt, mailbox_key(email))

    def suppress(self, email: str, reason: str, detail: str, now: datetime) -> bool:
        """Suppress ``email`` (idempotent: the first reason stays); whether it is new. Its
        pending deliveries are cancelled."""
        key = self.key(email)
        with self.engine.begin() as db:
            known = db.execute(
                sa.select(suppressions.c.mailbox).where(suppressions.c.mailbox == key)
            ).first()
            if known is None:
                db.execute(
                    suppressions.insert().values(
                        mailbox=key,
                        reason=reason,
                        detail=without_addresses(detail),
                        suppressed_at=now,
                    )
                )
            pending = db.execute(
                sa.select(deliveries.c.id)
                .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                .where(
                    subscribers.c.email_key == mailbox_key(email),
                    deliveries.c.status.in_(WAITING),
                )
            ).scalars()
            cancel(db, list(pending))
        return known is None

    def lift(self, email: str) -> bool:
        """End ``email``'s suppression; whether there was one. Its soft bounces are forgotten
        too, so that the count starts again."""
        with self.engine.begin() as db:
            gone = db.execute(
                suppressions.delete().where(suppressions.c.mailbox == self.key(email))
            )
            db.execute(bounces.delete().where(bounces.c.mailbox == mailbox_key(email)))
        return bool(gone.rowcount)

    def get(self, email: str) -> Suppression | None:
        return self.all().get(self.key(email))

    def all(self) -> dict[str, Suppression]:
        """Every suppression, by ``key``."""
        with self.engine.connect() as db:
            rows = db.execute(sa.select(suppressions).order_by(suppressions.c.mailbox)).all()
        return {r.mailbox: Suppression(r.reason, r.detail, r.suppressed_at) for r in rows}

    def delivery(self, delivery_id: int | None, message_id: str | None) -> Sent | None:
        """The delivery a bounce names, by id (VERP) or else by Message-ID."""
        if delivery_id is None and not message_id:
            return None
        where = (
            deliveries.c.id == delivery_id
            if delivery_id is not None
            else deliveries.c.message_id == message_id
        )
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(
                    deliveries.c.id,
                    deliveries.c.subscriber_id,
                    deliveries.c.recipient,
                    deliveries.c.message_id,
                    deliveries.c.sent_at,
                )
                .where(where, deliveries.c.status == DeliveryStatus.SENT.value)
                .order_by(deliveries.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            return None
        return Sent(row.id, row.subscriber_id, row.recipient, row.message_id, row.sent_at)

    def record_bounce(
        self,
        email: str,
        delivery_id: int | None,
        kind: str,
        status: str | None,
        detail: str,
        now: datetime,
    ) -> bool:
        """Remember what came back; whether it is new (a second report of one kind for one
        delivery, e.g. "delayed" then "failed" soft, counts once)."""
        key = mailbox_key(email)
        with self.engine.begin() as db:
            if delivery_id is not None:
                seen = db.execute(
                    sa.select(bounces.c.id).where(
                        bounces.c.delivery_id == delivery_id, bounces.c.kind == kind
                    )
                ).first()
                if seen is not None:
                    return False
            db.execute(
                bounces.insert().values(
                    mailbox=key,
                    delivery_id=delivery_id,
                    kind=kind,
                    status=status,
                    detail=detail[:2000],
                    received_at=now,
                )
            )
        return True

    def bounced_in_a_row(self, email: str, limit: int) -> bool:
        """Whether the last ``limit`` messages sent to ``email`` all bounced: a message sent
        and not bounced in between (delivered, as far as anyone can tell) breaks the run."""
        key = mailbox_key(email)
        with self.engine.connect() as db:
            last = (
                db.execute(
                    sa.select(deliveries.c.id)
                    .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                    .where(
                        subscribers.c.email_key == key,
                        deliveries.c.status == DeliveryStatus.SENT.value,
                    )
                    .order_by(deliveries.c.id.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            if len(last) < limit:
                return False
            bounced = set(
                db.execute(
                    sa.select(bounces.c.delivery_id).where(
                        bounces.c.mailbox == key, bounces.c.delivery_id.in_(last)
                    )
                ).scalars()
            )
        return bounced >= set(last)

    def history(self, email: str) -> list[dict[str, object]]:
        """What came back for ``email``, oldest first (for a subscriber's export)."""
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(bounces)
                .where(bounces.c.mailbox == mailbox_key(email))
                .order_by(bounces.c.received_at, bounces.c.id)
            ).all()
        return [
            {
                "kind": r.kind,
                "delivery_id": r.delivery_id,
                "status": r.status,
                "detail": r.detail,
                "received_at": r.received_at,
            }
            for r in rows
        ]

    def forget(self, email: str) -> int:
        """Erase what came back for ``email`` (the suppression, if any, stays); how many."""
        with self.engine.begin() as db:
            gone = db.execute(bounces.delete().where(bounces.c.mailbox == mailbox_key(email)))
        return int(gone.rowcount)
