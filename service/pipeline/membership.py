"""Membership: how people join and leave on the web (double opt-in, manage links, pause,
unsubscribe), as the CLI's roster is how an operator adds them.

INTERFACE ONLY (being filled in on branch ``w1``): the web calls exactly these methods.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.model import ProfileSpec, Subscriber


@dataclass(frozen=True, slots=True)
class Signup:
    """What ``subscribe`` did, for logs and tests; the web answers the same whatever it is."""

    action: str  # "created", "resent", "manage-link", "throttled"
    subscriber_id: int


class Membership:
    """Join, confirm, manage and leave. Tokens: see ``service.tokens``."""

    def subscribe(
        self, email: str, timezone: str, schedule: str, profile: ProfileSpec | None
    ) -> Signup:
        """Ask for a subscription; every field is checked first (``InvalidValue``,
        ``QueryError``). A new address becomes ``pending`` with ``profile`` saved, and a
        confirmation mail is queued in the outbox. An address that is pending or unsubscribed
        gets a confirmation again, an active or paused one a manage link, each at most once per
        ``web.resend_after``. Nothing about the address's earlier state is revealed."""
        raise NotImplementedError

    def subscriber(self, token: str, purpose: str) -> Subscriber | None:
        """The subscriber a URL token names for ``purpose`` ("confirm", "manage",
        "unsubscribe", "feeds"), checked in constant time; None for a wrong or revoked one."""
        raise NotImplementedError

    def confirm(self, subscriber_id: int) -> Subscriber:
        """Pending -> active (idempotent). The first digest covers the last day's matches."""
        raise NotImplementedError

    def unsubscribe(self, subscriber_id: int) -> Subscriber:
        """-> unsubscribed; every pending delivery is cancelled, the record of what was sent
        kept (idempotent)."""
        raise NotImplementedError

    def resubscribe(self, subscriber_id: int) -> Subscriber:
        """Undo an unsubscribe from the page: -> active, the window starting now."""
        raise NotImplementedError

    def pause(self, subscriber_id: int) -> Subscriber:
        raise NotImplementedError

    def resume(self, subscriber_id: int) -> Subscriber:
        """-> active; the window starts now (no backlog of the paused time)."""
        raise NotImplementedError

    def update(self, subscriber_id: int, timezone: str, schedule: str) -> Subscriber:
        """Change time zone and schedule (checked as ``Roster.save_subscriber`` does)."""
        raise NotImplementedError

    def send_manage_link(self, email: str) -> None:
        """Revoke the current manage link and mail a new one (if the address is subscribed;
        silently nothing otherwise), at most once per ``web.resend_after``."""
        raise NotImplementedError

    def expire_pending(self) -> int:
        """Remove pending subscriptions older than ``web.confirm_expiry``; how many."""
        raise NotImplementedError
