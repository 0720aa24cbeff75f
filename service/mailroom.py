"""Digests, alerts and feeds: plan due windows, queue rendered messages, drain the outbox.

The pipeline owns the mailroom and is the only way in; every method takes its ``now`` from the
clock and keeps its state in the database (see ``service.store.outbox``), so any job may run
twice, or after a crash, without a window sent twice or skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2

from service import __version__, identity, polling, tokens, windows
from service import digest as digests
from service.clock import Clock
from service.config import Settings
from service.deliver.dkim import DkimSigner
from service.digest import Candidate, Digest, Hit
from service.errors import DeliveryError, MailConfigError
from service.match.results import Match
from service.model import (
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Paper,
    Profile,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from service.render.email import EmailRenderer, Letterhead, Rendered
from service.render.feeds import ALL, FORMATS, FeedEntry, FeedMeta, Format, render_feed, slugs
from service.render.papers import reasons_from_text
from service.render.templates import environment
from service.store.database import create_engine
from service.store.outbox import (
    Claimed,
    Closing,
    FeedSource,
    MatchRow,
    NewDelivery,
    Outbox,
    Outcome,
)
from service.store.repository import Store
from service.store.subscriptions import Subscriptions
from service.store.suppressions import Suppressions
from service.windows import Window

log = logging.getLogger(__name__)

# Subscribers whose feeds are published (a paused one still reads them).
PUBLISHED = frozenset({SubscriberStatus.ACTIVE, SubscriberStatus.PAUSED})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The folders ``feeds export`` writes: one per feed token.
_TOKEN_FOLDER = re.compile(r"\d+\.[A-Za-z0-9_-]{24}")

PLAN_BATCH = 500
"""Subscribers planned together: read in a few queries and written in one transaction."""

POOL_MIN = 2000
"""Digests to compose from which ``compose`` spreads them over processes (fewer are quicker
in one: starting a process that imports paperboy takes about a second)."""

ANALYZE_AFTER = 1000
"""Windows closed or digests composed at once from which the outbox's statistics are
refreshed (``Outbox.analyze``)."""

LEASE = timedelta(minutes=10)
"""How long a sender holds a claimed delivery; a claim older than this is taken again."""

CLAIM_BATCH = 100
"""Deliveries a sender claims, and composes, at a time (their candidates, papers and ledger
read and written in a few statements): a claim that outlives a crash unseen (a restarted
container) holds back at most this many for ``LEASE`` (see ``service.store.outbox``)."""

SEND_SLICE = 20
"""Messages sent between two writes of their outcomes (one transaction): a sender that dies
may have sent at most these (or as many as the sender takes at once, if more: its SMTP
connections, or the maildir's group of 100) without a record, and they are sent again."""


class Sender(Protocol):
    """What the mailroom needs of a sender (``maildir`` or ``smtp``)."""

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Planned:
    """What planning did for one subscriber."""

    email: str
    kind: DeliveryKind
    window: Window
    papers: int | None  # None: not composed yet (``close_windows``)
    delivery_id: int | None  # None: nothing to send (or the window was closed already)


@dataclass(frozen=True, slots=True)
class Health:
    """What a digest says about the sources."""

    notes: tuple[str, ...]  # a line per source failing for a while
    healthy: bool  # every source's last check succeeded


@dataclass(frozen=True, slots=True)
class Feed:
    """One of a subscriber's feeds: its slug (the URL's file name), title and profiles."""

    slug: str
    title: str
    profiles: tuple[Profile, ...]


@dataclass(frozen=True, slots=True)
class FeedState:
    """A feed a URL names, and its validators: an entity tag that changes whenever the
    feed's bytes would, and when it last changed."""

    owner: Subscriber
    feed: Feed
    token: str
    etag: str
    modified: datetime


@dataclass(frozen=True, slots=True)
class Exported:
    written: list[Path]
    removed: list[Path]


@dataclass(frozen=True, slots=True)
class SendResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    dead: int = 0


class Mailroom:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        subscriptions: Subscriptions,
        clock: Clock,
        env: jinja2.Environment,
        sender: Sender | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.subscriptions = subscriptions
        self.outbox = Outbox(store.engine)
        self.suppressions = Suppressions(store.engine)
        dkim = settings.mail.dkim
        self.signer: DkimSigner | None = None
        if dkim.selector and dkim.domain and dkim.private_key:
            self.signer = DkimSigner(dkim.selector, dkim.domain, dkim.private_key)
        self.clock = clock
        self.env = env
        self.sender = sender
        self.rng = rng or random.Random()
        mail = settings.mail
        self.letterhead = Letterhead(
            from_address=mail.from_address,
            base_url=mail.base_url,
            reply_to=mail.reply_to,
            unsubscribe_mailto=mail.unsubscribe_mailto,
            list_id=mail.list_id,
        )
        self._renderer: EmailRenderer | None = None
        self.stopping = False
        # Called with ("sent" or "error", seconds) after each hand-over to the sender (the
        # web's metrics listen here; the mailroom knows nothing of them).
        self.send_listeners: list[Callable[[str, float], None]] = []

    @property
    def renderer(self) -> EmailRenderer:
        if self._renderer is None:
            self._renderer = EmailRenderer(self.env, self.letterhead)
        return self._renderer

    # -- planning -------------------------------------------------------------------------------

    def close_windows(self) -> list[Planned]:
        """Close every due window (the leader's job): per due subscriber, a delivery to compose
        (with the window's bounds) recorded and the window moved, ``PLAN_BATCH`` subscribers
        to a short transaction, so a crash leaves each window either closed with its delivery
        or open. The sender that claims a delivery composes, renders and sends it (``send``).
        The ``Planned`` show no papers: nothing is composed yet."""
        now = self.clock.now()
        done = [p for batch in self._close_batches(now, self._due(now)) for p in batch]
        if sum(1 for p in done if p.delivery_id is not None) >= ANALYZE_AFTER:
            self.outbox.analyze()
        return done

    def _close_batches(
        self, now: datetime, due: Sequence[tuple[Subscriber, Window]]
    ) -> Iterator[list[Planned]]:
        """Close these windows ``PLAN_BATCH`` to a transaction, each batch's outcome given as
        soon as it is written."""
        for start in range(0, len(due), PLAN_BATCH):
            batch = due[start : start + PLAN_BATCH]
            closing = [
                Closing(
                    owner.id,
                    owner.email,
                    window,
                    windows.next_boundary(owner.schedule, ZoneInfo(owner.timezone), now),
                )
                for owner, window in batch
            ]
            ids = self.outbox.close_windows(closing, now)
            count = sum(1 for i in ids.values() if i is not None)
            if count:
                log.info("closed %d digest window%s", count, "" if count == 1 else "s")
            yield [
                Planned(owner.email, DeliveryKind.DIGEST, window, None, ids[owner.id])
                for owner, window in batch
            ]

    def plan(self) -> list[Planned]:
        """Close every due window and compose its digest, ready to send: ``paperboy plan``.
        (``paperboy run`` only closes windows and leaves the rest to the senders.) When
        thousands are due, each batch of windows closed is handed at once to the composing
        processes (``compose``), started first, so that closing the next batches overlaps
        composing the first."""
        now = self.clock.now()
        due = self._due(now)
        processes = self._processes()
        closed: list[Planned] = []
        if processes < 2 or len(due) < POOL_MIN:
            closed = [p for batch in self._close_batches(now, due) for p in batch]
            shown = self.compose([p.delivery_id for p in closed if p.delivery_id is not None])
            return [_composed(planned, shown) for planned in closed]
        composed: dict[int, int | None] = {}
        with self._composers(processes) as pool:
            composing = []
            for batch in self._close_batches(now, due):
                closed += batch
                ids = [p.delivery_id for p in batch if p.delivery_id is not None]
                if ids:
                    composing.append(pool.submit(_compose_batch, ids))
            for done in composing:
                composed.update(done.result())
        if len(composed) >= ANALYZE_AFTER:
            self.outbox.analyze()
        return [_composed(planned, composed) for planned in closed]

    def _due(self, now: datetime) -> list[tuple[Subscriber, Window]]:
        """The subscribers whose digest window is due, with the window."""
        states = self.outbox.windows()
        suppressed = self.suppressions.all()
        due: list[tuple[Subscriber, Window]] = []
        for owner in self.subscriptions.subscribers():
            state = states.get(owner.id)
            if state is None or owner.status is not SubscriberStatus.ACTIVE:
                continue
            if suppressed and self.suppressions.key(owner.email) in suppressed:
                continue  # its window stays open: lifting the suppression sends what waits
            zone = ZoneInfo(owner.timezone)
            window = windows.due_window(
                owner.schedule, zone, state.window_end, state.next_window_at, now
            )
            if window is None:
                if state.next_window_at is None:
                    upcoming = windows.next_boundary(owner.schedule, zone, state.window_end)
                    if upcoming is not None:
                        self.outbox.set_next_window(owner.id, upcoming)
                continue
            due.append((owner, window))
        return due

    def compose(self, delivery_ids: Sequence[int]) -> dict[int, int | None]:
        """Compose and render these digests, ``PLAN_BATCH`` to a claim and a transaction, and
        leave them pending for any sender (those another sender holds are left to it): in
        ``mail.render_processes`` processes (0: one per core) when there are ``POOL_MIN`` or
        more, each composing whole batches with its own connection, else here. Per delivery
        composed: the papers it shows, or None for an empty digest, dropped."""
        chunks = [
            delivery_ids[start : start + PLAN_BATCH]
            for start in range(0, len(delivery_ids), PLAN_BATCH)
        ]
        shown: dict[int, int | None] = {}
        processes = self._processes()
        if processes < 2 or len(delivery_ids) < POOL_MIN:
            papers: dict[int, Paper] = {}
            for chunk in chunks:
                shown.update(self.compose_batch(chunk, papers))
        else:
            with self._composers(min(processes, len(chunks))) as pool:
                for done in pool.map(_compose_batch, chunks):
                    shown.update(done)
        if len(shown) >= ANALYZE_AFTER:
            self.outbox.analyze()
        return shown

    def _processes(self) -> int:
        return self.settings.mail.render_processes or os.cpu_count() or 1

    def _composers(self, processes: int) -> ProcessPoolExecutor:
        """Processes that compose batches (``_compose_batch``), each with its own connection
        to the database (spawned: nothing of this process's engine or threads is shared)."""
        return ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_composer,
            initargs=(self.settings, self.clock),
        )

    def compose_batch(
        self, delivery_ids: Sequence[int], papers: dict[int, Paper]
    ) -> dict[int, int | None]:
        """Claim these digests if they are still to compose, compose and render them here, and
        leave them pending (``compose``, one batch). ``papers``: those read so far."""
        claimed = self.outbox.claim(
            self.clock.now(), LEASE, len(delivery_ids), to_compose=delivery_ids
        )
        return self._compose_claimed(claimed, papers, release=True)[1]

    def _compose_claimed(
        self,
        claimed: Sequence[Claimed],
        papers: dict[int, Paper],
        *,
        release: bool,
    ) -> tuple[list[tuple[Delivery, bytes]], dict[int, int | None]]:
        """Compose and render the claimed digests still to compose (their candidates, papers
        and ledger read in bulk), and write them back in one transaction, empty ones dropped.
        Returns what is ready to send, in claim order, and per digest composed the papers it
        shows (None: empty). If anything fails, the claims are given back before it is
        raised: none was an attempt. ``papers`` are those read so far in this run (by id),
        kept across its batches: a day's digests show the same papers over and over, and a
        run composes as of its start."""
        try:
            return self._compose_all(claimed, papers, release=release)
        except BaseException:
            self.outbox.release([c.delivery.id for c in claimed])
            raise

    def _compose_all(
        self,
        claimed: Sequence[Claimed],
        papers: dict[int, Paper],
        *,
        release: bool,
    ) -> tuple[list[tuple[Delivery, bytes]], dict[int, int | None]]:
        spans: dict[int, Window] = {}
        todo, later = [], []
        for c in claimed:
            if c.window is None:
                continue
            if c.delivery.subscriber_id in spans:  # a subscriber's digests, oldest first
                later.append(c)
            else:
                spans[c.delivery.subscriber_id] = c.window
                todo.append(c)
        if later:
            self.outbox.release([c.delivery.id for c in later])
        if not todo:
            return [(c.delivery, c.message or b"") for c in claimed if c.window is None], {}
        now = self.clock.now()
        owners = self.subscriptions.subscribers_by_id(list(spans))
        profiles = self.subscriptions.profiles_of(list(spans))
        rows = self.outbox.candidates_of({i: (w.start, w.end) for i, w in spans.items()})
        wanted = {r.paper_id for found in rows.values() for r in found}
        if missing := sorted(wanted - papers.keys()):
            papers.update((p.id, p) for p in self.store.papers(ids=missing))
        health = self._health(now)
        composed: list[tuple[Claimed, Digest]] = []
        empty: list[int] = []
        for c in todo:
            owner = owners.get(c.delivery.subscriber_id)
            if owner is None:  # removed meanwhile, and its deliveries with it
                empty.append(c.delivery.id)
                continue
            mine = profiles.get(owner.id, [])
            digest = digests.compose(
                owner,
                DeliveryKind.DIGEST,
                spans[owner.id],
                _candidates(mine, rows.get(owner.id, ()), papers),
                notes=health.notes,
                healthy=health.healthy,
                send_when_empty=any(p.spec.send_when_empty for p in mine),
            )
            if digest is None:
                empty.append(c.delivery.id)
            else:
                composed.append((c, digest))
        # Rendered as of planning: the message is the one planning would have rendered.
        rendered = [self.renderer.render(d, c.delivery.created_at) for c, d in composed]
        filled = [
            (c.delivery.id, _new_delivery(d, r))
            for (c, d), r in zip(composed, rendered, strict=True)
        ]
        self.outbox.fill(filled, empty, now, release=release)
        for (c, d), (_, new) in zip(composed, filled, strict=True):
            log.info(
                "digest for %s: %d paper%s",
                new.recipient,
                len(new.paper_ids),
                "" if len(new.paper_ids) == 1 else "s",
                extra={"subscriber_id": d.subscriber.id, "delivery_id": c.delivery.id},
            )
        messages = dict(filled)
        ready = []
        for c in claimed:
            if c.window is None:
                ready.append((c.delivery, c.message or b""))
            elif c.delivery.id in messages:
                new = messages[c.delivery.id]
                delivery = replace(
                    c.delivery,
                    recipient=new.recipient,
                    subject=new.subject,
                    message_id=new.message_id,
                    papers=len(new.paper_ids),
                )
                ready.append((delivery, new.message))
        shown: dict[int, int | None] = dict.fromkeys(empty)
        shown.update((i, len(new.paper_ids)) for i, new in filled)
        return ready, shown

    def _health(self, now: datetime) -> Health:
        states = self.outbox.source_health()
        notes = digests.source_notes(states, now, self.settings.mail.source_failing_after)
        return Health(notes, digests.sources_healthy(states))

    def _close(
        self,
        owner: Subscriber,
        window: Window,
        now: datetime,
        health: Health,
        *,
        record: bool,
    ) -> Planned:
        profiles = self.subscriptions.profiles(owner.id)
        candidates = self._candidates(
            owner, profiles, self.outbox.candidates(owner.id, window.start, window.end)
        )
        composed = digests.compose(
            owner,
            DeliveryKind.DIGEST,
            window,
            candidates,
            notes=health.notes,
            healthy=health.healthy,
            send_when_empty=any(p.spec.send_when_empty for p in profiles),
        )
        queued = self._queue(composed, now) if composed is not None else None
        upcoming = windows.next_boundary(owner.schedule, ZoneInfo(owner.timezone), now)
        delivery_id = None
        if record:
            delivery_id = self.outbox.close_window(
                owner.id,
                DeliveryKind.DIGEST,
                composed.key if composed is not None else window.key,
                now,
                queued,
                window_end=window.end,
                next_window_at=upcoming,
            )
            if delivery_id is not None:
                shown = len(queued.paper_ids) if queued else 0
                log.info(
                    "digest for %s: %d paper%s",
                    owner.email,
                    shown,
                    "" if shown == 1 else "s",
                    extra={"subscriber_id": owner.id, "delivery_id": delivery_id},
                )
        return Planned(
            owner.email,
            DeliveryKind.DIGEST,
            window,
            len(composed.paper_ids) if composed else 0,
            delivery_id,
        )

    def _candidates(
        self, owner: Subscriber, profiles: Sequence[Profile], rows: Sequence[MatchRow]
    ) -> list[Candidate]:
        papers = {p.id: p for p in self.store.papers(ids=sorted({r.paper_id for r in rows}))}
        return _candidates(profiles, rows, papers)

    def _queue(self, composed: Digest, now: datetime) -> NewDelivery:
        rendered = self.renderer.render(composed, now)
        return _new_delivery(composed, rendered)

    def render_now(self, owner: Subscriber) -> tuple[Digest | None, Rendered | None]:
        """The digest ``owner`` would get if their window closed now, rendered; nothing is
        recorded (``paperboy digest --dry-run``)."""
        now = self.clock.now()
        state = self.outbox.windows([owner.id]).get(owner.id)
        start = state.window_end if state else now
        window = Window(start, now)
        profiles = self.subscriptions.profiles(owner.id)
        candidates = self._candidates(
            owner, profiles, self.outbox.candidates(owner.id, window.start, window.end)
        )
        health = self._health(now)
        composed = digests.compose(
            owner,
            DeliveryKind.DIGEST,
            window,
            candidates,
            notes=health.notes,
            healthy=health.healthy,
            send_when_empty=True,
        )
        if composed is None:
            return None, None
        return composed, self.renderer.render(composed, now)

    def close_now(self, owner: Subscriber) -> Planned:
        """Close ``owner``'s window now (``paperboy digest``); the schedule goes on as before."""
        now = self.clock.now()
        state = self.outbox.windows([owner.id]).get(owner.id)
        start = state.window_end if state else now
        planned = self._close(owner, Window(start, now), now, self._health(now), record=True)
        if state is not None and state.next_window_at is not None:
            self.outbox.set_next_window(owner.id, state.next_window_at)
        return planned

    # -- alerts ---------------------------------------------------------------------------------

    def alert(self, found: Iterable[Match]) -> list[Planned]:
        """Queue alerts for the fresh matches that want one.

        One short message per subscriber per poll, at most ``mail.alerts_per_hour`` messages
        an hour; what is over the limit waits for the digest.
        """
        rows = list(found)
        if not rows:
            return []
        now = self.clock.now()
        profiles = {p.id: p for p in self.subscriptions.profiles()}
        owners = {s.id: s for s in self.subscriptions.subscribers()}
        papers = {p.id: p for p in self.store.papers(ids=sorted({m.document_id for m in rows}))}
        wanted: dict[int, list[Candidate]] = {}
        suppressed: dict[str, Suppression] | None = None  # read once, when a match wants it
        for match in rows:
            profile = profiles.get(match.profile_id)
            paper = papers.get(match.document_id)
            if profile is None or paper is None:
                continue
            owner = owners[profile.subscriber_id]
            if owner.status is not SubscriberStatus.ACTIVE:
                continue
            if suppressed is None:
                suppressed = self.suppressions.all()
            if suppressed and self.suppressions.key(owner.email) in suppressed:
                continue
            candidate = Candidate(profile, paper, match.score, match.reasons)
            if digests.wants_alert(candidate):
                wanted.setdefault(owner.id, []).append(candidate)
        planned = []
        limit = self.settings.mail.alerts_per_hour
        for owner_id, candidates in wanted.items():
            owner = owners[owner_id]
            if self.outbox.alerts_since(owner_id, now - timedelta(hours=1)) >= limit:
                log.info(
                    "alerts for %s are over %d an hour: to the digest",
                    owner.email,
                    limit,
                    extra={"subscriber_id": owner_id},
                )
                continue
            done = self.outbox.sent_papers(owner_id)
            fresh = [c for c in candidates if c.paper.id not in done]
            window = Window(now, now)
            composed = digests.compose(owner, DeliveryKind.ALERT, window, fresh)
            if composed is None:
                continue
            queued = self._queue(composed, now)
            delivery_id = self.outbox.close_window(
                owner_id, DeliveryKind.ALERT, composed.key, now, queued
            )
            planned.append(
                Planned(owner.email, DeliveryKind.ALERT, window, len(queued.paper_ids), delivery_id)
            )
        return planned

    # -- sending --------------------------------------------------------------------------------

    async def send(self, *, limit: int = CLAIM_BATCH) -> SendResult:
        """Send what is due, a claimed batch at a time, until nothing is due or ``stop()``:
        digests still to compose are composed and rendered first (``_compose_claimed``), then
        the batch is sent ``SEND_SLICE`` messages at a time, each slice's outcomes written in
        one transaction once its messages are done.

        Raises ``MailConfigError`` when the sender cannot work as configured (the mail server
        refuses the connection, TLS or the login): the claimed messages are given back, with
        no attempt counted, and wait for the settings or the server to change.
        """
        if self.sender is None:
            raise DeliveryError("no sender is configured", transient=True)
        totals = SendResult()
        from_address = _addr_spec(self.settings.mail.from_address)
        lanes = asyncio.Semaphore(max(1, getattr(self.sender, "concurrency", 1)))
        papers: dict[int, Paper] = {}  # read so far in this run

        def take() -> list[tuple[Delivery, bytes]] | None:
            """The next batch, claimed and composed; None when nothing is due."""
            claimed = self.outbox.claim(self.clock.now(), LEASE, limit)
            if not claimed:
                return None
            return self._compose_claimed(claimed, papers, release=False)[0]

        # The next batch is claimed and composed (in a thread) while this one is sent, so that
        # composing does not keep the relay waiting.
        ahead: asyncio.Task[list[tuple[Delivery, bytes]] | None] | None
        ahead = asyncio.create_task(asyncio.to_thread(take))
        try:
            while not self.stopping:
                ready = await ahead
                ahead = None
                if ready is None:
                    break
                ahead = asyncio.create_task(asyncio.to_thread(take))
                totals = await self._send_slices(ready, from_address, lanes, totals)
        finally:
            if ahead is not None:  # stopped, or failed: the batch ahead was no attempt
                left = await ahead
                self.outbox.release([d.id for d, _ in left or ()])
        return totals

    async def _send_slices(
        self,
        ready: Sequence[tuple[Delivery, bytes]],
        from_address: str,
        lanes: asyncio.Semaphore,
        totals: SendResult,
    ) -> SendResult:
        """Send a composed batch ``SEND_SLICE`` messages at a time."""
        step = max(SEND_SLICE, getattr(self.sender, "concurrency", 1))
        for start in range(0, len(ready), step):
            try:
                batch = await self._send_batch(ready[start : start + step], from_address, lanes)
            except MailConfigError as exc:  # the rest were no attempt either
                self.outbox.release([d.id for d, _ in ready[start + step :]], error=str(exc))
                raise
            _log_batch(batch)
            totals = _add(totals, **asdict(batch))
        return totals

    async def _send_batch(
        self,
        claimed: Sequence[tuple[Delivery, bytes]],
        from_address: str,
        lanes: asyncio.Semaphore,
    ) -> SendResult:
        """Send a claimed batch, as many at once as the sender has lanes (SMTP connections,
        maildir writers), in claim order, and record the outcomes together. Claims not tried
        (a stop, a sender that cannot work) are given back; a ``MailConfigError`` is raised
        once the messages in flight are done."""
        outcomes: list[Outcome] = []
        tried: set[int] = set()
        failure: list[MailConfigError] = []

        async def one(delivery: Delivery, message: bytes) -> None:
            async with lanes:
                if self.stopping or failure:
                    return
                tried.add(delivery.id)
                try:
                    outcomes.append(
                        await self._send_one(
                            delivery.id,
                            delivery.attempts + 1,
                            delivery.recipient,
                            self.envelope_sender(delivery.id, from_address),
                            message,
                        )
                    )
                except MailConfigError as exc:
                    tried.discard(delivery.id)  # no attempt: given back below
                    failure.append(exc)

        try:
            await asyncio.gather(*(one(d, m) for d, m in claimed))
        finally:
            # Written even when something unforeseen is raised: what went out is not repeated.
            self.outbox.record(outcomes)
        batch = SendResult(
            sent=sum(1 for o in outcomes if o.status is DeliveryStatus.SENT),
            retried=sum(1 for o in outcomes if o.status is DeliveryStatus.PENDING),
            failed=sum(1 for o in outcomes if o.status is DeliveryStatus.FAILED),
            dead=sum(1 for o in outcomes if o.status is DeliveryStatus.DEAD),
        )
        untried = [d.id for d, _ in claimed if d.id not in tried]
        if failure:
            self.outbox.release(untried, error=str(failure[0]))
            _log_batch(batch)
            raise failure[0]
        self.outbox.release(untried)
        return batch

    def warn_of_slow_sending(self) -> timedelta | None:
        """At start: when the SMTP rate cap (``mail.smtp.max_per_second``) makes a day's
        digests for every active subscriber take longer than an hour, say so (the cap is the
        operator's choice: what the relay allows). Returns that time, or None."""
        mail = self.settings.mail
        if mail.sender != "smtp":
            return None
        subscribers = len(self.outbox.windows())
        takes = timedelta(seconds=subscribers / mail.smtp.max_per_second)
        if takes > timedelta(hours=1):
            log.warning(
                "mail.smtp.max_per_second = %g: a digest for each of %d subscribers takes %s"
                " to send; raise it if the relay allows more",
                mail.smtp.max_per_second,
                subscribers,
                _rounded(takes),
            )
            return takes
        return None

    def envelope_sender(self, delivery_id: int, from_address: str) -> str:
        """The envelope sender (the Return-Path the receiving MTA adds) of one delivery: its
        VERP address when ``bounces.local_part`` is set, else the From address."""
        bounces = self.settings.bounces
        if bounces.local_part is None:
            return from_address
        domain = bounces.domain or from_address.rpartition("@")[2] or "localhost"
        return identity.verp_address(bounces.local_part, domain, delivery_id)

    async def _send_one(
        self, delivery_id: int, attempt: int, recipient: str, envelope_from: str, message: bytes
    ) -> Outcome:
        """Make attempt number ``attempt`` (counting from 1) at one delivery."""
        assert self.sender is not None
        started = time.perf_counter()
        if self.signer is not None:  # signed as it leaves: a retry signs afresh
            message = self.signer.sign(message)
        try:
            await self.sender.send(envelope_from, [recipient], message)
        except MailConfigError:
            raise
        except DeliveryError as exc:
            self._timed("error", time.perf_counter() - started)
            now = self.clock.now()
            if not exc.transient:
                log.warning(
                    "delivery %d to %s failed: %s",
                    delivery_id,
                    recipient,
                    exc,
                    extra={"delivery_id": delivery_id},
                )
                return Outcome(delivery_id, DeliveryStatus.FAILED, error=str(exc))
            if attempt >= self.settings.mail.max_attempts:
                log.warning(
                    "delivery %d to %s is dead after %d attempts: %s",
                    delivery_id,
                    recipient,
                    attempt,
                    exc,
                    extra={"delivery_id": delivery_id},
                )
                return Outcome(delivery_id, DeliveryStatus.DEAD, error=str(exc))
            mail = self.settings.mail
            wait = polling.backoff(attempt, mail.retry_base, mail.retry_max, self.rng)
            log.warning(
                "delivery %d to %s: attempt %d of %d failed, next in %s: %s",
                delivery_id,
                recipient,
                attempt,
                mail.max_attempts,
                _rounded(wait),
                exc,
                extra={"delivery_id": delivery_id},
            )
            return Outcome(delivery_id, DeliveryStatus.PENDING, now + wait, str(exc))
        self._timed("sent", time.perf_counter() - started)
        return Outcome(delivery_id, DeliveryStatus.SENT, self.clock.now())

    def _timed(self, outcome: str, seconds: float) -> None:
        for listener in self.send_listeners:
            listener(outcome, seconds)

    def stop(self) -> None:
        """Finish the message in flight, then stop sending."""
        self.stopping = True

    # -- feeds ----------------------------------------------------------------------------------

    def feed_list(self, source: FeedSource) -> list[Feed]:
        """A subscriber's feeds: ``all`` (every profile), then one per profile by its slug."""
        owner, profiles = source.owner, source.profiles
        named = slugs((p.id, p.spec.name) for p in profiles)
        feeds = [Feed(ALL, f"paperboy: papers for {owner.email}", profiles)]
        feeds += [Feed(named[p.id], f"paperboy: {p.spec.name}", (p,)) for p in profiles]
        return feeds

    def feed_state(self, token: str, slug: str) -> FeedState | None:
        """The feed a URL names, with its validators, from a few small queries (nothing is
        rendered); None for a wrong token, a subscriber who left, or an unknown slug."""
        subscriber_id = tokens.subscriber_of(token)
        if subscriber_id is None:
            return None
        source = self.outbox.feed_source(subscriber_id)
        if source is None or source.owner.status not in PUBLISHED:
            return None
        if not tokens.verify(token, source.owner.token, "feeds"):
            return None
        feed = next((f for f in self.feed_list(source) if f.slug == slug), None)
        if feed is None:
            return None
        return self._state(source, feed, token)

    def _state(self, source: FeedSource, feed: Feed, token: str) -> FeedState:
        ids = [p.id for p in feed.profiles]
        newest = [source.matched[i] for i in ids if i in source.matched]
        moments = newest + [source.saved[i] for i in ids]
        modified = max(moments, default=EPOCH).replace(microsecond=0)
        seed = "|".join(
            [
                __version__,
                self.settings.mail.base_url,
                str(self.settings.feeds.items),
                token,
                feed.slug,
                feed.title,
                *(f"{i}:{source.saved[i].isoformat()}" for i in ids),
                *(f"{i}@{source.matched[i].isoformat()}" for i in ids if i in source.matched),
            ]
        )
        tag = hashlib.blake2b(seed.encode(), digest_size=12).hexdigest()
        return FeedState(source.owner, feed, token, tag, modified)

    def render_feed(self, state: FeedState, fmt: Format) -> bytes:
        """One feed as RSS 2.0 or Atom: the latest ``feeds.items`` matches, newest first."""
        limit = self.settings.feeds.items
        entries = self._feed_entries(state.owner, state.feed.profiles, limit)
        meta = FeedMeta(
            title=state.feed.title,
            base_url=self.settings.mail.base_url,
            path=f"feeds/{state.token}/{quote(state.feed.slug)}",
        )
        # With no entries the feed dates from its last change, so equal validators mean
        # equal bytes.
        return render_feed(self.env, meta, entries, fmt, state.modified)

    def feeds(self, owner: Subscriber) -> dict[str, bytes]:
        """Every feed of a subscriber: ``all.rss|.atom`` and ``<slug>.rss|.atom`` per
        profile."""
        source = self.outbox.feed_source(owner.id)
        if source is None:
            return {}
        token = tokens.make(owner.id, source.owner.token, "feeds")
        out: dict[str, bytes] = {}
        for feed in self.feed_list(source):
            state = self._state(source, feed, token)
            for fmt in FORMATS:
                out[f"{feed.slug}.{fmt}"] = self.render_feed(state, fmt)
        return out

    def _feed_entries(
        self, owner: Subscriber, profiles: Sequence[Profile], limit: int
    ) -> list[FeedEntry]:
        rows = self.outbox.recent_matches([p.id for p in profiles], limit * max(1, len(profiles)))
        names = {p.id: p.spec.name for p in profiles}
        papers = {p.id: p for p in self.store.papers(ids=sorted({r.paper_id for r in rows}))}
        grouped: dict[int, list[MatchRow]] = {}
        for row in rows:
            grouped.setdefault(row.paper_id, []).append(row)
        entries = []
        for paper_id, found in grouped.items():
            paper: Paper | None = papers.get(paper_id)
            if paper is None:
                continue
            found.sort(key=lambda r: -r.score)
            hits = tuple(
                Hit(names[r.profile_id], r.score, reasons_from_text(r.reasons)) for r in found
            )
            entries.append(FeedEntry(paper, hits, max(r.matched_at for r in found)))
        entries.sort(key=lambda e: (e.at, e.hits[0].score), reverse=True)
        return entries[:limit]

    def export_feeds(self, directory: Path) -> Exported:
        """Write every published feed under ``directory/<feed token>/``, each atomically, and
        remove the feeds no longer published (of subscribers and profiles that are gone)."""
        written: list[Path] = []
        folders = set()
        for owner in self.subscriptions.subscribers():
            if owner.status not in PUBLISHED:
                continue
            folder = directory / tokens.make(owner.id, owner.token, "feeds")
            folder.mkdir(parents=True, exist_ok=True)
            folders.add(folder.name)
            for name, body in self.feeds(owner).items():
                written.append(_write_atomically(folder / name, body))
        return Exported(written, _prune(directory, folders, {p.resolve() for p in written}))

    # -- cleanup --------------------------------------------------------------------------------

    def cleanup(self) -> int:
        """Forget the bytes of messages sent longer ago than ``mail.keep_sent``."""
        return self.outbox.forget_sent_bodies(self.clock.now() - self.settings.mail.keep_sent)


def _candidates(
    profiles: Sequence[Profile], rows: Sequence[MatchRow], papers: Mapping[int, Paper]
) -> list[Candidate]:
    """The match rows of these profiles as candidates, with their papers."""
    by_id = {p.id: p for p in profiles}
    return [
        Candidate(by_id[r.profile_id], papers[r.paper_id], r.score, reasons_from_text(r.reasons))
        for r in rows
        if r.profile_id in by_id and r.paper_id in papers
    ]


_COMPOSER: list[Mailroom] = []  # a composing process's own mailroom
_PAPERS: dict[int, Paper] = {}  # the papers it has read


def _start_composer(settings: Settings, clock: Clock) -> None:
    """Set up a composing process: its own connection to the database, its templates."""
    engine = create_engine(settings.database())
    store = Store(engine)
    _COMPOSER.append(
        Mailroom(settings, store, Subscriptions(engine), clock, environment(settings.templates_dir))
    )


def _compose_batch(delivery_ids: Sequence[int]) -> dict[int, int | None]:
    """``Mailroom.compose_batch`` in a composing process."""
    return _COMPOSER[0].compose_batch(delivery_ids, _PAPERS)


def _composed(planned: Planned, shown: Mapping[int, int | None]) -> Planned:
    """``planned`` once its digest is composed: its papers, and no delivery if it was empty."""
    if planned.delivery_id is None or planned.delivery_id not in shown:
        return planned  # closed already, or being composed by another sender
    papers = shown[planned.delivery_id]
    if papers is None:
        return replace(planned, papers=0, delivery_id=None)
    return replace(planned, papers=papers)


def _new_delivery(composed: Digest, rendered: Rendered) -> NewDelivery:
    return NewDelivery(
        subscriber_id=composed.subscriber.id,
        kind=composed.kind,
        window=composed.key,
        recipient=composed.subscriber.email,
        subject=rendered.subject,
        message_id=rendered.message_id,
        message=rendered.message,
        paper_ids=composed.paper_ids,
    )


def _add(totals: SendResult, **more: int) -> SendResult:
    return SendResult(
        sent=totals.sent + more.get("sent", 0),
        retried=totals.retried + more.get("retried", 0),
        failed=totals.failed + more.get("failed", 0),
        dead=totals.dead + more.get("dead", 0),
    )


def _log_batch(batch: SendResult) -> None:
    if batch != SendResult():
        log.info(
            "sent %d, to retry %d, failed %d, dead %d",
            batch.sent,
            batch.retried,
            batch.failed,
            batch.dead,
        )


def _rounded(wait: timedelta) -> timedelta:
    return timedelta(seconds=round(wait.total_seconds()))


def _addr_spec(address: str) -> str:
    from email.utils import parseaddr

    return parseaddr(address)[1]


def _prune(directory: Path, folders: set[str], kept: set[Path]) -> list[Path]:
    """Remove the feed files under ``directory`` that were not just written, and the token
    folders left empty; only names paperboy makes are touched."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for folder in directory.iterdir():
        if not folder.is_dir() or not _TOKEN_FOLDER.fullmatch(folder.name):
            continue
        for path in folder.iterdir():
            if path.suffix in (".rss", ".atom") and path.is_file() and path.resolve() not in kept:
                path.unlink()
                removed.append(path)
        if folder.name not in folders and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _write_atomically(path: Path, body: bytes) -> Path:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
