"""What the operator's endpoints read: whether the database answers, when the last poll and
send ran, and the counts that ``/metrics`` exports (read at scrape time, never kept)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from service.model import DeliveryStatus
from service.store.tables import deliveries, matches, papers, snapshots


@dataclass(frozen=True, slots=True)
class Activity:
    last_poll: datetime | None  # when the latest snapshot was fetched
    last_send: datetime | None  # when the latest message was sent


@dataclass(frozen=True, slots=True)
class Counts:
    polls: dict[tuple[str, str], int]  # (source, outcome) -> snapshots recorded
    papers: int
    matches: int
    deliveries: dict[tuple[str, str], int]  # (kind, status) -> deliveries
    oldest_due: datetime | None  # when the oldest pending, due delivery was queued


class Health:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def activity(self) -> Activity:
        """When the last poll and send ran; raises ``sqlalchemy.exc.OperationalError`` (or
        another DBAPI error) when the database does not answer."""
        with self.engine.connect() as db:
            last_poll = db.execute(sa.select(sa.func.max(snapshots.c.fetched_at))).scalar()
            last_send = db.execute(sa.select(sa.func.max(deliveries.c.sent_at))).scalar()
        return Activity(last_poll, last_send)

    def counts(self, now: datetime) -> Counts:
        with self.engine.connect() as db:
            polls = db.execute(
                sa.select(snapshots.c.source_id, snapshots.c.outcome, sa.func.count()).group_by(
                    snapshots.c.source_id, snapshots.c.outcome
                )
            ).all()
            paper_count = db.execute(sa.select(sa.func.count()).select_from(papers)).scalar()
            match_count = db.execute(sa.select(sa.func.count()).select_from(matches)).scalar()
            sent = db.execute(
                sa.select(deliveries.c.kind, deliveries.c.status, sa.func.count()).group_by(
                    deliveries.c.kind, deliveries.c.status
                )
            ).all()
            oldest = db.execute(
                sa.select(sa.func.min(deliveries.c.created_at)).where(
                    deliveries.c.status.in_(
                        [DeliveryStatus.PENDING.value, DeliveryStatus.COMPOSE.value]
                    ),
                    deliveries.c.next_attempt_at <= now,
                )
            ).scalar()
        return Counts(
            polls={(s, o): int(n) for s, o, n in polls},
            papers=int(paper_count or 0),
            matches=int(match_count or 0),
            deliveries={(k, s): int(n) for k, s, n in sent},
            oldest_due=oldest,
        )
