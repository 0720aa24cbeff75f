"""The orchestrator: every trigger (scheduler, CLI, web) calls the same methods of its parts.

- ``ingest`` (:class:`Ingest`): sources polled and files taken, snapshot by snapshot;
- ``roster`` (:class:`Roster`): subscribers and their profiles, and profiles files;
- ``matching`` (:class:`Matching`): the profile index, back-fill and previews;
- ``mailroom`` (:class:`~service.mailroom.Mailroom`): digests planned, rendered and sent;
- ``membership`` (:class:`Membership`): people joining, confirming and leaving on the web;
- ``tastes`` (:class:`Tastes`): papers profiles like or refused (by hand, library files, 👍/👎).
"""

from __future__ import annotations

import logging
import random
from typing import NamedTuple

from service.clock import Clock
from service.config import Settings
from service.mailroom import Mailroom, Sender
from service.pipeline.ingest import BAD_OUTCOMES, FILES_SOURCE, Fetcher, Ingest
from service.pipeline.matching import MATCHED_EVENTS, Matching, reasons_json
from service.pipeline.membership import Membership, Signup
from service.pipeline.records import Records
from service.pipeline.returns import Returns
from service.pipeline.roster import Roster
from service.pipeline.tastes import Tastes
from service.render.templates import environment
from service.store.likes import Likes
from service.store.repository import Store
from service.store.retention import Retention
from service.store.subscriptions import Subscriptions

log = logging.getLogger(__name__)

__all__ = [
    "BAD_OUTCOMES",
    "FILES_SOURCE",
    "MATCHED_EVENTS",
    "Fetcher",
    "Ingest",
    "Matching",
    "Membership",
    "Pipeline",
    "Roster",
    "Signup",
    "Tastes",
    "Tidied",
    "reasons_json",
]


class Pipeline:
    """The parts, wired once over one store, clock and sender."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        fetcher: Fetcher | None = None,
        rng: random.Random | None = None,
        subscriptions: Subscriptions | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.subscriptions = subscriptions or Subscriptions(store.engine)
        self.mailroom = Mailroom(
            settings,
            store,
            self.subscriptions,
            clock,
            environment(settings.templates_dir),
            sender,
            self.rng,
        )
        self.likes = Likes(store.engine)
        self.matching = Matching(
            settings, store, self.subscriptions, clock, self.mailroom, self.likes
        )
        self.roster = Roster(settings, self.subscriptions, clock, self.matching)
        self.ingest = Ingest(settings, store, clock, self.matching, self.rng, fetcher)
        self.tastes = Tastes(self.subscriptions, self.likes, clock, self.matching)
        self.membership = Membership(
            settings, self.subscriptions, clock, self.matching, self.roster, self.mailroom
        )
        self.returns = Returns(
            settings, clock, self.subscriptions, self.membership, self.mailroom.suppressions
        )
        self.retention = Retention(store.engine)
        self.records = Records(
            self.subscriptions, self.mailroom, self.roster, self.mailroom.suppressions
        )

    def cleanup(self) -> Tidied:
        """The hourly tidy-up: sent messages' bytes past ``mail.keep_sent`` forgotten, pending
        subscriptions past ``web.confirm_expiry`` removed, events and snapshots past
        ``retention`` deleted (see ``service.store.retention`` for what always stays)."""
        now = self.clock.now()
        keep = self.settings.retention
        tidied = Tidied(
            sent_bodies=self.mailroom.cleanup(),
            pending=self.membership.expire_pending(),
            events=self.retention.forget_events(now - keep.events) if keep.events else 0,
            snapshots=(
                self.retention.forget_snapshots(now - keep.snapshots) if keep.snapshots else 0
            ),
        )
        if any(tidied):
            log.info(
                "cleanup: %d sent bodies, %d pending subscriptions, %d events, %d snapshots",
                *tidied,
            )
        return tidied


class Tidied(NamedTuple):
    """What one clean-up removed."""

    sent_bodies: int
    pending: int
    events: int
    snapshots: int
