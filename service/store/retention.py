"""Forgetting old polls: the events and snapshots that nothing will read again.

What stays, whatever the settings: papers, their keys and their place in each source (what the
next poll's diff compares against), matches (feeds and digests), the sent ledger, and

- the events of snapshots taken since the oldest open digest window of an active subscriber
  began: back-filling a new or changed profile reads them (``Store.touched_since``);
- the events of the snapshot with the newest event, so that event ids only grow;
- the newest snapshot of each source and origin: an ingest compares the source's newest id to
  know whether its reads are still current, and a file's stamp (size and mtime) is how a file
  or folder source knows it took the file as it is now (one small row a file).

Events go one snapshot per transaction, so a first clean-up of a big store holds no long lock.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from service.store.tables import events, snapshots, subscribers


class Retention:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def forget_events(self, before: datetime) -> int:
        """Delete the events of snapshots fetched before ``before`` (or before the oldest open
        window, if earlier); how many."""
        with self.engine.connect() as db:
            oldest_window = db.execute(
                sa.select(
                    sa.func.min(
                        sa.func.coalesce(subscribers.c.window_end, subscribers.c.created_at)
                    )
                ).where(subscribers.c.status == "active")
            ).scalar()
            if oldest_window is not None:
                before = min(before, oldest_window)
            # The newest event stays: caches compare event ids (``Store.last_event``), and
            # SQLite would hand a deleted highest id out again.
            newest = db.execute(
                sa.select(events.c.snapshot_id).order_by(events.c.id.desc()).limit(1)
            ).scalar()
            old = list(
                db.execute(
                    sa.select(snapshots.c.id)
                    .where(
                        snapshots.c.fetched_at < before,
                        snapshots.c.id != (newest or 0),
                        sa.exists().where(events.c.snapshot_id == snapshots.c.id),
                    )
                    .order_by(snapshots.c.id)
                ).scalars()
            )
        gone = 0
        for snapshot_id in old:
            with self.engine.begin() as db:
                gone += db.execute(
                    events.delete().where(events.c.snapshot_id == snapshot_id)
                ).rowcount
        return gone

    def forget_snapshots(self, before: datetime) -> int:
        """Delete snapshots fetched before ``before`` that have no events left and are not the
        newest of their source and origin; how many."""
        other = snapshots.alias("newest")  # not correlated with the rows deleted
        newest = sa.select(sa.func.max(other.c.id)).group_by(other.c.source_id, other.c.origin)
        with self.engine.begin() as db:
            result = db.execute(
                snapshots.delete().where(
                    snapshots.c.fetched_at < before,
                    snapshots.c.id.not_in(newest),
                    ~sa.exists().where(events.c.snapshot_id == snapshots.c.id),
                )
            )
        return int(result.rowcount)
