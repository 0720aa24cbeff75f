"""What comes back: bounces, complaints and mailto unsubscribes, read from the bounce mailbox
and acted on.

- a hard bounce (5.x.x, failed) suppresses the address at once;
- soft bounces (4.x.x, or delayed) suppress it when the last ``bounces.soft_limit`` messages
  sent to it all bounced (one sent in between and not bounced resets the run);
- a complaint (ARF) unsubscribes the subscriber and suppresses the address;
- a mail to the List-Unsubscribe mailto carrying a valid token unsubscribes.

A bounce or complaint acts only on a delivery paperboy sent within ``mail.keep_sent``: one
whose Message-ID it returns, or whose VERP id it carries while naming the address that
delivery went to (``delivery_of``); what it does is done to that delivery's recipient, never to
an address the report merely names. Anything else (a forged report, a bounce of mail paperboy
never sent or sent long ago) is set aside in ``rejected`` with why.

A suppressed address gets nothing (planning, alerts and the outbox skip it), whatever its
subscriber's status, until ``unsuppress``. A message that cannot be read is moved to the
mailbox's ``rejected`` folder and reported; nothing it says is acted on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from service.clock import Clock
from service.config import Settings
from service.deliver.mailbox import PROCESSED, REJECTED, ReturnBox
from service.errors import ParseError
from service.identity import mailbox_key
from service.model import Suppression
from service.parse import bounces
from service.parse.bounces import Kind, Returned
from service.pipeline.membership import Membership
from service.store.subscriptions import Subscriptions
from service.store.suppressions import Sent, Suppressions

log = logging.getLogger(__name__)


@dataclass
class Handled:
    """What one pass over a mailbox did."""

    read: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0
    unsubscribed: int = 0
    suppressed: list[str] = field(default_factory=list)  # addresses newly suppressed
    unmatched: int = 0  # about no address paperboy knows (or a wrong token)
    rejected: list[str] = field(default_factory=list)  # why each unreadable one was set aside


class Returns:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        subscriptions: Subscriptions,
        membership: Membership,
        suppressions: Suppressions,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.subscriptions = subscriptions
        self.membership = membership
        self.store = suppressions

    def process(self, box: ReturnBox, name: str) -> Handled:
        """Read every message waiting in ``box`` (called ``name`` in reports), act on it, and
        move it to ``processed`` (or ``rejected``)."""
        handled = Handled()
        local_part = self.settings.bounces.local_part
        for key, raw in box.messages():
            handled.read += 1
            source = f"{name} message {key}"
            try:
                found = bounces.read(raw, source=source, local_part=local_part)
                refused = [why for r in found if (why := self.act(r, handled))]
            except ParseError as exc:
                log.warning("bounce mailbox: set aside in %r: %s", REJECTED, exc)
                handled.rejected.append(str(exc))
                box.file(key, REJECTED)
                continue
            if found and len(refused) == len(found):
                why = f"{source}: not acted on: {'; '.join(refused)}"
                log.warning("bounce mailbox: set aside in %r: %s", REJECTED, why)
                handled.rejected.append(why)
                box.file(key, REJECTED)
                continue
            for why in refused:
                log.warning("%s: one report not acted on: %s", source, why)
            box.file(key, PROCESSED)
        if handled.read:
            log.info(
                "bounces: %d read, %d hard, %d soft, %d complaints, %d unsubscribed,"
                " %d suppressed, %d unmatched, %d set aside",
                handled.read,
                handled.hard,
                handled.soft,
                handled.complaints,
                handled.unsubscribed,
                len(handled.suppressed),
                handled.unmatched,
                len(handled.rejected),
            )
        return handled

    def act(self, returned: Returned, handled: Handled) -> str | None:
        """Do what one ``Returned`` calls for (see the module docstring); why nothing was
        done when it matches no delivery we sent."""
        now = self.clock.now()
        if returned.kind is Kind.UNSUBSCRIBE:
            assert returned.token is not None
            owner = self.membership.subscriber(returned.token, "unsubscribe")
            if owner is None:
                log.info("unsubscribe mail from %s: the token is not valid", returned.recipient)
                handled.unmatched += 1
                return None
            self.membership.unsubscribe(owner.id)
            handled.unsubscribed += 1
            return None
        delivery = self.delivery_of(returned, now)
        if isinstance(delivery, str):
            return delivery
        email = delivery.recipient
        if returned.kind is Kind.COMPLAINT:
            handled.complaints += 1
            self.store.record_bounce(email, delivery.id, "complaint", None, returned.detail, now)
            owner = self.subscriptions.subscriber(email)
            if owner is None:
                handled.unmatched += 1
            else:
                self.membership.unsubscribe(owner.id)
                handled.unsubscribed += 1
            self._suppress(email, "complaint", f"feedback: {returned.detail}", handled)
            return None
        detail = f"{returned.status or ''} {returned.detail}".strip()
        self.store.record_bounce(
            email, delivery.id, returned.kind.value, returned.status, detail, now
        )
        if returned.kind is Kind.HARD:
            handled.hard += 1
            self._suppress(email, "hard", detail, handled)
        else:
            handled.soft += 1
            limit = self.settings.bounces.soft_limit
            if self.store.bounced_in_a_row(email, limit):
                self._suppress(
                    email, "soft", f"{limit} soft bounces in a row, last: {detail}", handled
                )
        return None

    def delivery_of(self, returned: Returned, now: datetime) -> Sent | str:
        """The delivery we sent that ``returned`` is about, or why there is none: it must
        carry the Message-ID of a delivery sent within ``mail.keep_sent``, or the VERP id of
        one and name the address it went to. Any other mail naming an address (a forgery,
        a bounce of something paperboy never sent) changes nothing."""
        by_id = self.store.delivery(returned.delivery_id, None) if returned.delivery_id else None
        by_message = self.store.delivery(None, returned.message_id) if returned.message_id else None
        if by_id is not None and by_message is not None and by_id.id != by_message.id:
            return (
                f"its VERP address names delivery {by_id.id} and its Message-ID delivery "
                f"{by_message.id}"
            )
        found = by_message or by_id
        if found is None:
            return "no message paperboy sent has its VERP address or Message-ID"
        if by_message is None:
            named = returned.recipient
            if not named or mailbox_key(named) != mailbox_key(found.recipient):
                return (
                    f"it names delivery {found.id} by its VERP address but not the address "
                    "that delivery went to, nor its Message-ID"
                )
        if found.sent_at is None or found.sent_at < now - self.settings.mail.keep_sent:
            return f"delivery {found.id} was sent longer ago than mail.keep_sent"
        return found

    def _suppress(self, email: str, reason: str, detail: str, handled: Handled) -> None:
        if self.store.suppress(email, reason, detail, self.clock.now()):
            log.warning("suppressed %s (%s): %s", email, reason, detail)
            handled.suppressed.append(email)

    def suppressions(self) -> dict[str, Suppression]:
        """Every suppression, by ``key``."""
        return self.store.all()

    def key(self, email: str) -> str:
        """What ``suppressions`` knows ``email``'s mailbox by (a salted hash)."""
        return self.store.key(email)

    def suppressed(self, email: str) -> Suppression | None:
        """``email``'s suppression, if it has one."""
        return self.store.get(email)

    def unsuppress(self, email: str) -> bool:
        """Lift ``email``'s suppression (an operator's decision); whether there was one."""
        lifted = self.store.lift(email)
        if lifted:
            log.info("suppression of %s lifted", email)
        return lifted
