"""Membership: how people join and leave on the web (double opt-in, manage links, pause,
unsubscribe), as the CLI's roster is how an operator adds them.

The statuses and what moves between them::

    (new)         subscribe       -> pending        a confirmation mail
    pending       confirm         -> active         the first digest covers the last day
    pending       expire_pending  -> (removed)      after web.confirm_expiry
    active        pause           -> paused         resume -> active
    any           unsubscribe     -> unsubscribed   resubscribe (or asking again and
                                                    confirming) -> active

Only an active subscriber gets digests and alerts; a pending one gets only confirmations.
Confirmation and manage-link mails go through the outbox like any other, at most one per
``web.resend_after`` per address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from service import subscribers, tokens, windows
from service.clock import Clock
from service.config import Settings
from service.errors import InvalidValue
from service.mailroom import Mailroom
from service.match.query import parse_query
from service.model import DeliveryKind, ProfileSpec, Subscriber, SubscriberStatus
from service.pipeline.matching import Matching
from service.pipeline.roster import Roster
from service.render.notices import Notice, NoticeRenderer
from service.store.members import Members, Transition
from service.store.outbox import NewDelivery
from service.store.subscriptions import Subscriptions

log = logging.getLogger(__name__)

PENDING = SubscriberStatus.PENDING
ACTIVE = SubscriberStatus.ACTIVE
PAUSED = SubscriberStatus.PAUSED
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED

FIRST_DIGEST_COVERS = timedelta(days=1)
"""A confirmed subscriber's first digest holds the matching papers of this long before."""

CONFIRM_GRACE = timedelta(minutes=10)
"""How long a confirm link still names its subscriber after it (or another) confirmed."""


@dataclass(frozen=True, slots=True)
class Signup:
    """What ``subscribe`` did, for logs and tests; the web answers the same whatever it is."""

    action: str  # "created", "resent", "manage-link", "throttled"
    subscriber_id: int


class Membership:
    """Join, confirm, manage and leave. Tokens: see ``service.tokens``."""

    def __init__(
        self,
        settings: Settings,
        subscriptions: Subscriptions,
        clock: Clock,
        matching: Matching,
        roster: Roster,
        mailroom: Mailroom,
    ) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self.members = Members(subscriptions.engine)
        self.clock = clock
        self.matching = matching
        self.roster = roster
        self.mailroom = mailroom
        self._renderer: NoticeRenderer | None = None

    @property
    def renderer(self) -> NoticeRenderer:
        if self._renderer is None:
            self._renderer = NoticeRenderer(self.mailroom.env, self.mailroom.letterhead)
        return self._renderer

    # -- joining --------------------------------------------------------------------------------

    def subscribe(
        self, email: str, timezone: str, schedule: str, profile: ProfileSpec | None
    ) -> Signup:
        """Ask for a subscription; every field is checked first (``InvalidValue``,
        ``QueryError``). A new address becomes ``pending`` with ``profile`` saved, and a
        confirmation mail is queued in the outbox. An address that is pending or unsubscribed
        gets a confirmation again, an active or paused one a manage link, each at most once per
        ``web.resend_after``. Nothing about the address's earlier state is revealed.

        A request for a pending or unsubscribed address takes its time zone, schedule and
        profile (they count only once the mailbox's owner confirms); one for an active or
        paused address changes nothing but mails its owner the manage link."""
        email = subscribers.check_email(email)
        timezone = subscribers.check_timezone(timezone)
        plan = str(subscribers.parse_schedule(schedule))
        if profile is not None:
            profile = subscribers.check_profile(profile)
            parse_query(profile.query)
        now = self.clock.now()
        created = False
        owner = self.subscriptions.subscriber(email)
        if owner is None:
            owner = self.members.create_pending(email, timezone, plan, now)
            created = owner is not None
            if owner is None:  # a request for the same address got in first
                owner = self.subscriptions.subscriber(email)
                if owner is None:  # and was expired at once: nothing to answer for
                    raise InvalidValue("changed meanwhile; try again", field="email", value=email)
        if owner.status in (PENDING, UNSUBSCRIBED):
            requested = (PENDING, UNSUBSCRIBED)
            if created or self.members.set_request(owner.id, timezone, plan, now, requested):
                self._save_profile(owner, profile, now)
            queued = self._notify(owner, DeliveryKind.CONFIRMATION, now)
            action = "created" if created else "resent"
        else:
            queued = self._notify(owner, DeliveryKind.MANAGE_LINK, now)
            action = "manage-link"
        signup = Signup(action if queued else "throttled", owner.id)
        log.info("subscribe %s: %s", email, signup.action)
        return signup

    def _save_profile(self, owner: Subscriber, spec: ProfileSpec | None, now: datetime) -> None:
        if spec is None:
            return
        profile, fresh = self.subscriptions.save_profile(owner.id, spec, now)
        self.matching.profiles_changed([profile] if fresh else [])

    def subscriber(self, token: str, purpose: str) -> Subscriber | None:
        """The subscriber a URL token names for ``purpose`` ("confirm", "manage",
        "unsubscribe", "feeds"), checked in constant time; None for a wrong or revoked one,
        and for a confirm token older than ``web.confirm_expiry`` or spent (the subscription
        was confirmed over ``CONFIRM_GRACE`` ago). Whatever the status otherwise: the caller
        decides what each status may do (an unsubscribed person may come back)."""
        if purpose not in tokens.PURPOSES:
            raise ValueError(
                f"unknown token purpose {purpose!r}; expected one of {tokens.PURPOSES}"
            )
        subscriber_id = tokens.subscriber_of(token)
        if subscriber_id is None:
            return None
        owner = self.members.by_id(subscriber_id)
        if owner is None:
            return None
        generation = owner.manage_generation if purpose == "manage" else 0
        if not tokens.verify(token, owner.token, purpose, generation=generation):
            return None
        if purpose == "confirm":
            issued = tokens.issued_at(token)
            assert issued is not None  # verify refuses a confirm token without its time
            now = self.clock.now()
            if now - issued > self.settings.web.confirm_expiry:
                return None
            # Once confirmed, the link is spent (it must not stand in for a revoked manage
            # link), but for a moment: a double click or a reload finds it still good.
            spent = owner.status not in (PENDING, UNSUBSCRIBED) and (
                owner.confirmed_at is None or now - owner.confirmed_at > CONFIRM_GRACE
            )
            if spent:
                return None
        return owner

    def token(self, owner: Subscriber, purpose: str) -> str:
        """``owner``'s current token for ``purpose`` (a confirm token is issued now)."""
        issued = self.clock.now() if purpose == "confirm" else None
        return tokens.for_subscriber(owner, purpose, issued=issued)

    def confirm(self, subscriber_id: int) -> Subscriber:
        """Pending (or unsubscribed, asked again) -> active; active or paused: unchanged
        (idempotent). The first digest, at the schedule's next time, covers the last day's
        matches: the open window starts a day back and the profiles are matched against the
        papers since then."""
        now = self.clock.now()
        owner = self._get(subscriber_id)
        # The window opens a day back and closes at the schedule's next time, not at once:
        # the first boundary after its start may well be past already.
        closes = windows.next_boundary(owner.schedule, ZoneInfo(owner.timezone), now)
        change = Transition(
            ACTIVE,
            (PENDING, UNSUBSCRIBED),
            window_end=now - FIRST_DIGEST_COVERS,
            next_window_at=closes,
            confirmed=True,
        )
        if self.members.transition(subscriber_id, change, now):
            log.info(
                "subscriber %d confirmed", subscriber_id, extra={"subscriber_id": subscriber_id}
            )
            self._backfill(subscriber_id)
        else:
            # A second confirm (a double click, or a retry after a crash between the change
            # and the back-fill) completes the back-fill while the window it opened is open.
            confirmed_at, window_end = self.members.confirmed_at(subscriber_id)
            if confirmed_at is not None and window_end == confirmed_at - FIRST_DIGEST_COVERS:
                self._backfill(subscriber_id)
        return self._get(subscriber_id)

    def _backfill(self, subscriber_id: int) -> None:
        self.matching.profiles_changed(self.subscriptions.profiles(subscriber_id))

    # -- leaving and coming back ----------------------------------------------------------------

    def unsubscribe(self, subscriber_id: int) -> Subscriber:
        """-> unsubscribed; every pending delivery is cancelled, the record of what was sent
        kept (idempotent). A message a sender holds at this moment may still go out."""
        change = Transition(UNSUBSCRIBED, (PENDING, ACTIVE, PAUSED), cancel=tuple(DeliveryKind))
        if self.members.transition(subscriber_id, change, self.clock.now()):
            log.info(
                "subscriber %d unsubscribed", subscriber_id, extra={"subscriber_id": subscriber_id}
            )
        return self._get(subscriber_id)

    def resubscribe(self, subscriber_id: int) -> Subscriber:
        """Undo an unsubscribe from the page: -> active, the window starting now. An active
        subscriber is unchanged; a pending one confirms by the confirmation mail only."""
        return self._activate(subscriber_id, (UNSUBSCRIBED, PAUSED), "resubscribe")

    def pause(self, subscriber_id: int) -> Subscriber:
        """Active -> paused (idempotent): no digest or alert until resumed; those queued and not
        sent yet are cancelled."""
        now = self.clock.now()
        change = Transition(PAUSED, (ACTIVE,), cancel=(DeliveryKind.DIGEST, DeliveryKind.ALERT))
        if not self.members.transition(subscriber_id, change, now):
            self._refuse_unless(subscriber_id, (PAUSED,), "pause")
        return self._get(subscriber_id)

    def resume(self, subscriber_id: int) -> Subscriber:
        """-> active; the window starts now (no backlog of the paused time)."""
        return self._activate(subscriber_id, (PAUSED,), "resume")

    def _activate(
        self, subscriber_id: int, since: tuple[SubscriberStatus, ...], verb: str
    ) -> Subscriber:
        now = self.clock.now()
        if not self.members.transition(
            subscriber_id, Transition(ACTIVE, since, window_end=now), now
        ):
            self._refuse_unless(subscriber_id, (ACTIVE,), verb)
        return self._get(subscriber_id)

    def _refuse_unless(
        self, subscriber_id: int, fine: tuple[SubscriberStatus, ...], verb: str
    ) -> None:
        """Nothing changed: fine if the status is one of ``fine`` (done already), else refused."""
        owner = self._get(subscriber_id)
        if owner.status not in fine:
            raise InvalidValue(
                f"cannot {verb} a subscription that is {owner.status}",
                field="status",
                value=owner.status.value,
            )

    # -- managing -------------------------------------------------------------------------------

    def update(self, subscriber_id: int, timezone: str, schedule: str) -> Subscriber:
        """Change time zone and schedule (checked as ``Roster.save_subscriber`` does, which
        refuses a subscriber the profiles file declares)."""
        owner = self._get(subscriber_id)
        self.roster.save_subscriber(owner.email, timezone, schedule)
        return self._get(subscriber_id)

    def send_manage_link(self, email: str) -> None:
        """Revoke the current manage link and mail a new one (if the address is subscribed;
        silently nothing otherwise), at most once per ``web.resend_after``."""
        owner = self.subscriptions.subscriber(subscribers.check_email(email))
        if owner is None or owner.status is PENDING:
            log.info("manage link for %s: no subscription", email)
            return
        queued = self._notify(owner, DeliveryKind.MANAGE_LINK, self.clock.now(), renew=True)
        log.info("manage link for %s: %s", email, "queued" if queued else "throttled")

    def expire_pending(self) -> int:
        """Remove pending subscriptions older than ``web.confirm_expiry`` (counted from the
        last confirmation asked for); how many."""
        gone = self.members.expire(self.clock.now() - self.settings.web.confirm_expiry)
        if gone:
            self.matching.profiles_changed()
            log.info("expired %d unconfirmed subscriptions", len(gone))
        return len(gone)

    # -- mail -----------------------------------------------------------------------------------

    def _notify(
        self, owner: Subscriber, kind: DeliveryKind, now: datetime, *, renew: bool = False
    ) -> bool:
        """Queue a confirmation or a manage link for ``owner`` unless one went out less than
        ``web.resend_after`` ago; a ``renew``ed manage link revokes the one before."""
        web = self.settings.web
        expires: timedelta | None = None
        if kind is DeliveryKind.CONFIRMATION:
            token, expires = self.token(owner, "confirm"), web.confirm_expiry
        elif renew:
            token = tokens.make(
                owner.id, owner.token, "manage", generation=owner.manage_generation + 1
            )
        else:
            token = self.token(owner, "manage")
        window = now.isoformat()  # the request time: unique per subscriber and kind
        notice = Notice(kind, owner.id, owner.email, token, window, expires, renew)
        rendered = self.renderer.render(notice, now)
        delivery = NewDelivery(
            subscriber_id=owner.id,
            kind=kind,
            window=window,
            recipient=owner.email,
            subject=rendered.subject,
            message_id=rendered.message_id,
            message=rendered.message,
            paper_ids=(),
        )
        generation = owner.manage_generation if renew else None
        return self.members.queue_notice(
            owner.id, delivery, now, web.resend_after, generation=generation
        )

    def _get(self, subscriber_id: int) -> Subscriber:
        owner = self.members.by_id(subscriber_id)
        if owner is None:
            raise InvalidValue("no such subscriber", field="subscriber", value=subscriber_id)
        return owner
