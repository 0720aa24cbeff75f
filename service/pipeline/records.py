"""A subscriber's data, all of it: exported as one document, or erased.

Erasing removes the subscriber, their profiles, matches, the record of what was sent to them
and what came back; a suppression of their address stays (it is what keeps a refused address
from being mailed again) until ``unsuppress``, but it holds no address: only a salted hash of
the mailbox (``service.store.mailboxes``), which the address, given again, matches.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from enum import Enum
from typing import Any

from service import subscribers
from service.errors import InvalidValue
from service.mailroom import Mailroom
from service.pipeline.roster import Roster
from service.store.subscriptions import Subscriptions
from service.store.suppressions import Suppressions


class Records:
    def __init__(
        self,
        subscriptions: Subscriptions,
        mailroom: Mailroom,
        roster: Roster,
        suppressions: Suppressions,
    ) -> None:
        self.subscriptions = subscriptions
        self.mailroom = mailroom
        self.roster = roster
        self.suppressions = suppressions

    def export(self, email: str) -> dict[str, Any]:
        """Everything stored about ``email``: subscription, profiles, messages (not their
        bytes), bounces and complaints, suppression. Raises ``InvalidValue`` for an unknown
        address with nothing stored."""
        email = subscribers.check_email(email)
        owner = self.subscriptions.subscriber(email)
        held = self.suppressions.get(email)
        history = self.suppressions.history(email)
        if owner is None and held is None and not history:
            raise InvalidValue("nothing is stored about this address", field="email", value=email)
        out: dict[str, Any] = {"email": email, "subscriber": None, "profiles": [], "messages": []}
        if owner is not None:
            out["subscriber"] = {
                "email": owner.email,
                "timezone": owner.timezone,
                "schedule": str(owner.schedule),
                "status": owner.status.value,
                "declared": owner.declared,
                "confirmed_at": owner.confirmed_at,
            }
            out["profiles"] = [asdict(p.spec) for p in self.subscriptions.profiles(owner.id)]
            out["messages"] = [
                {
                    "kind": d.kind.value,
                    "subject": d.subject,
                    "recipient": d.recipient,
                    "status": d.status.value,
                    "papers": d.papers,
                    "created_at": d.created_at,
                    "sent_at": d.sent_at,
                }
                for d in self.mailroom.outbox.deliveries(subscriber_id=owner.id)
            ]
        out["returned"] = history
        out["suppressed"] = asdict(held) if held else None
        return out

    def erase(self, email: str) -> bool:
        """Remove the subscriber and everything about them but a suppression; whether there
        was anything."""
        email = subscribers.check_email(email)
        removed = self.subscriptions.subscriber(
            email
        ) is not None and self.roster.remove_subscriber(email)
        forgotten = self.suppressions.forget(email)
        return removed or forgotten > 0


def to_json(document: dict[str, Any]) -> str:
    """An export as the JSON text that ``subscriber export`` prints and the manage page gives."""
    return json.dumps(document, ensure_ascii=False, indent=2, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot export a {type(value).__name__}")
