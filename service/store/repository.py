"""Reads and writes of paperboy's state. Rows stay in here; model types go in and out."""

from __future__ import annotations

import json
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from itertools import chain, repeat
from typing import Any

import sqlalchemy as sa
from psycopg.types.json import Json

from service.model import (
    Known,
    NewPaper,
    Organisation,
    Paper,
    Plan,
    SnapshotOutcome,
    SourceState,
    Stored,
    Summary,
)
from service.store.tables import (
    events,
    paper_keys,
    paper_sources,
    papers,
    snapshots,
    sources,
)

CHUNK = 500  # keys per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
ROWS_PER_INSERT = 250  # rows in one INSERT statement on SQLite (within its variable limit)
INGEST_CACHE_KIB = 256 * 1024  # SQLite's page cache during an ingest (allocated as it fills)


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A snapshot as it is written: where it came from and what became of it."""

    source_id: str
    origin: str
    fetched_at: datetime
    captured_at: datetime | None
    body_hash: str
    size: int
    stamp: str | None = None


@dataclass(frozen=True)
class Members:
    """The papers present in a source, with the fingerprints they were shown with last, as of
    ``mark`` (the source's newest snapshot then, None before the first)."""

    mark: int | None
    rows: list[tuple[int, str]]  # (paper id, fingerprint)

    @cached_property
    def by_print(self) -> dict[str, int]:
        return {print_: paper_id for paper_id, print_ in self.rows}


@dataclass(frozen=True, slots=True)
class SourceRow:
    """A source as the store lists it: declared location and kind, plus its state."""

    id: str
    kind: str | None
    location: str
    state: SourceState
    last_captured_at: datetime | None
    papers: int


class Store:
    """paperboy's database. Every write happens in one transaction per call."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- sources -----------------------------------------------------------------------------

    def declare_sources(
        self, declared: Iterable[tuple[str, str | None, str]], now: datetime
    ) -> None:
        """Make sure a row exists for each (id, kind, location); update kind and location."""
        with self.engine.begin() as db:
            existing = {row.id: row for row in db.execute(sa.select(sources))}
            for source_id, kind, location in declared:
                row = existing.get(source_id)
                if row is None:
                    db.execute(
                        sources.insert().values(
                            id=source_id, kind=kind, location=location, created_at=now
                        )
                    )
                elif (row.kind, row.location) != (kind, location):
                    db.execute(
                        sources.update()
                        .where(sources.c.id == source_id)
                        .values(kind=kind, location=location)
                    )

    def source_state(self, source_id: str) -> SourceState:
        with self.engine.connect() as db:
            row = db.execute(sa.select(sources).where(sources.c.id == source_id)).one_or_none()
        return _state(row) if row is not None else SourceState(source_id)

    def save_state(self, state: SourceState) -> None:
        with self.engine.begin() as db:
            db.execute(
                sources.update()
                .where(sources.c.id == state.source_id)
                .values(
                    etag=state.etag,
                    last_modified=state.last_modified,
                    body_hash=state.body_hash,
                    last_attempt_at=state.last_attempt_at,
                    last_success_at=state.last_success_at,
                    next_check_at=state.next_check_at,
                    errors=state.errors,
                    last_error=state.last_error,
                    disabled=state.disabled,
                )
            )

    def list_sources(self) -> list[SourceRow]:
        counts = (
            sa.select(paper_sources.c.source_id, sa.func.count().label("n"))
            .where(paper_sources.c.present)
            .group_by(paper_sources.c.source_id)
            .subquery()
        )
        query = (
            sa.select(sources, sa.func.coalesce(counts.c.n, 0).label("papers"))
            .outerjoin(counts, counts.c.source_id == sources.c.id)
            .order_by(sources.c.id)
        )
        with self.engine.connect() as db:
            return [
                SourceRow(
                    id=row.id,
                    kind=row.kind,
                    location=row.location,
                    state=_state(row),
                    last_captured_at=row.last_captured_at,
                    papers=row.papers,
                )
                for row in db.execute(query)
            ]

    def seen_stamps(self, source_id: str) -> set[tuple[str, str]]:
        """(origin, stamp) of every file snapshot of a source, to find new files."""
        query = sa.select(snapshots.c.origin, snapshots.c.stamp).where(
            snapshots.c.source_id == source_id, snapshots.c.stamp.is_not(None)
        )
        with self.engine.connect() as db:
            return {(row.origin, row.stamp) for row in db.execute(query)}

    def members(self, source_id: str) -> Members:
        """The papers present in a source, read outside any ingest: a hint of which entries of
        its next snapshot the store knows already; the ingest reads them again only if another
        snapshot of the source came in meanwhile."""
        with self.engine.connect() as db:
            mark = _newest_snapshot(db, source_id)  # first: rows newer than it are re-read
            return Members(mark, _members(db, source_id))

    # -- ingesting ----------------------------------------------------------------------------

    @contextmanager
    def ingest(self, source_id: str) -> Iterator[Ingest]:
        """One transaction for one snapshot: read what the decider needs, apply its plan."""
        with self.engine.connect() as db:
            cache = None
            try:
                with db.begin():
                    if db.dialect.name == "postgresql":
                        # One writer per source at a time, across processes.
                        db.execute(
                            sa.select(sources.c.id)
                            .where(sources.c.id == source_id)
                            .with_for_update()
                        )
                    else:
                        # A big snapshot writes tens of MB in one transaction: in SQLite's
                        # default 2 MB page cache its pages spill to the WAL and are written
                        # again. A bigger cache for the while writes each page once, at commit.
                        cache = db.exec_driver_sql("PRAGMA cache_size").scalar_one()
                        db.exec_driver_sql(f"PRAGMA cache_size = -{INGEST_CACHE_KIB}")
                    yield Ingest(db, source_id)
            finally:
                if cache is not None and not db.invalidated:
                    # Back to the usual size: the pages above it are freed.
                    db.exec_driver_sql(f"PRAGMA cache_size = {int(cache)}")
                    db.rollback()

    def record_rejected(self, record: SnapshotRecord, error: str) -> Summary:
        """Keep a rejected snapshot for inspection; nothing else changes."""
        with self.engine.begin() as db:
            snapshot_id = _insert_snapshot(db, record, SnapshotOutcome.REJECTED, error=error)
        return Summary(
            source_id=record.source_id,
            origin=record.origin,
            captured_at=record.captured_at,
            outcome=SnapshotOutcome.REJECTED,
            error=error,
            snapshot_id=snapshot_id,
        )

    # -- papers -------------------------------------------------------------------------------

    def papers(
        self,
        *,
        since: datetime | None = None,
        search: str | None = None,
        source_id: str | None = None,
        limit: int | None = None,
        ids: Sequence[int] | None = None,
    ) -> list[Paper]:
        """Stored papers, newest first; ``search`` is a case-insensitive substring of the title
        or abstract."""
        query = sa.select(papers).order_by(papers.c.first_seen_at.desc(), papers.c.id.desc())
        if since is not None:
            query = query.where(papers.c.first_seen_at >= since)
        if search:
            pattern = f"%{_escape_like(search.lower())}%"
            query = query.where(
                sa.or_(
                    sa.func.lower(papers.c.title).like(pattern, escape="\\"),
                    sa.func.lower(papers.c.abstract).like(pattern, escape="\\"),
                )
            )
        if source_id is not None:
            query = query.where(
                papers.c.id.in_(
                    sa.select(paper_sources.c.paper_id).where(
                        paper_sources.c.source_id == source_id
                    )
                )
            )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as db:
            if ids is not None:
                rows: list[Any] = []
                for chunk in _chunks(sorted(set(ids))):
                    rows.extend(db.execute(query.where(papers.c.id.in_(chunk))).all())
            else:
                rows = list(db.execute(query).all())
            keys = _keys_of(db, [row.id for row in rows])
            where = _sources_of(db, [row.id for row in rows])
        return [_paper(row, keys.get(row.id, ""), where.get(row.id, ())) for row in rows]

    def all_papers(self, batch: int = 2000) -> Iterator[Paper]:
        """Every stored paper, in id order, read in batches."""
        last = 0
        while True:
            found = self.papers_after(last, batch)
            if not found:
                return
            yield from found
            last = found[-1].id

    def papers_after(self, last_id: int, limit: int) -> list[Paper]:
        query = sa.select(papers).where(papers.c.id > last_id).order_by(papers.c.id).limit(limit)
        with self.engine.connect() as db:
            rows = db.execute(query).all()
            keys = _keys_of(db, [row.id for row in rows])
            where = _sources_of(db, [row.id for row in rows])
        return [_paper(row, keys.get(row.id, ""), where.get(row.id, ())) for row in rows]

    def events(self, snapshot_id: int) -> list[tuple[str, int, Any]]:
        """(kind, paper id, changes) of one snapshot's events, in order."""
        query = (
            sa.select(events.c.kind, events.c.paper_id, events.c.changes)
            .where(events.c.snapshot_id == snapshot_id)
            .order_by(events.c.id)
        )
        with self.engine.connect() as db:
            return [(row.kind, row.paper_id, row.changes) for row in db.execute(query)]

    def touched_since(self, since: datetime, kinds: Iterable[str]) -> list[int]:
        """The papers with events of ``kinds`` from snapshots taken since ``since``, by id.

        When paperboy learnt of it counts, not the capture time: a capture of last month's
        listing ingested now brings its papers now (as its matches are made now).
        """
        taken = sa.select(snapshots.c.id).where(snapshots.c.fetched_at >= since)
        query = (
            sa.select(events.c.paper_id)
            .where(events.c.snapshot_id.in_(taken), events.c.kind.in_(list(kinds)))
            .distinct()
            .order_by(events.c.paper_id)
        )
        with self.engine.connect() as db:
            return list(db.execute(query).scalars())

    def last_event(self) -> int:
        """The id of the latest event (0: none): what a cache of papers compares to know
        whether anything changed since it looked."""
        with self.engine.connect() as db:
            return int(db.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0)

    def touched_after(self, event_id: int, kinds: Iterable[str]) -> list[int]:
        """The papers with events of ``kinds`` after the event ``event_id``, by id."""
        query = (
            sa.select(events.c.paper_id)
            .where(events.c.id > event_id, events.c.kind.in_(list(kinds)))
            .distinct()
            .order_by(events.c.paper_id)
        )
        with self.engine.connect() as db:
            return list(db.execute(query).scalars())

    def counts(self) -> dict[str, int]:
        """Row counts per table, for tests and the health page."""
        with self.engine.connect() as db:
            return {
                table.name: db.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in (sources, snapshots, papers, paper_keys, paper_sources, events)
            }


class Ingest:
    """The reads and the write of one snapshot's transaction."""

    def __init__(self, db: sa.Connection, source_id: str) -> None:
        self.db = db
        self.source_id = source_id

    def duplicate_of(self, body_hash: str) -> int | None:
        """The id of an earlier parsed snapshot of this source with the same bytes."""
        query = (
            sa.select(snapshots.c.id)
            .where(
                snapshots.c.source_id == self.source_id,
                snapshots.c.body_hash == body_hash,
                snapshots.c.outcome == SnapshotOutcome.PARSED.value,
            )
            .limit(1)
        )
        return self.db.execute(query).scalar_one_or_none()

    def last_captured_at(self) -> datetime | None:
        query = sa.select(sources.c.last_captured_at).where(sources.c.id == self.source_id)
        return self.db.execute(query).scalar_one_or_none()

    def known(self, keys: Iterable[str]) -> dict[str, Known]:
        """What the store knows of each key, with the paper's place in this source."""
        wanted = list(set(keys))
        if not wanted:
            return {}
        # One query for all the keys (an ingest may bring tens of thousands): the keys go in as
        # one JSON array on SQLite, whose rows lead the join (cheaper than an IN list, which
        # SQLite first sorts into a temporary index), and as one array on PostgreSQL.
        select = "SELECT k.key, k.paper_id, p.arxiv_id, s.fingerprint, s.present FROM "
        joins = (
            "JOIN papers AS p ON p.id = k.paper_id LEFT JOIN paper_sources AS s "
            "ON s.paper_id = k.paper_id AND s.source_id = {mark}"
        )
        if self.db.dialect.name == "sqlite":
            sql = (
                f"{select}json_each(?) AS j CROSS JOIN paper_keys AS k ON k.key = j.value "
                + joins.format(mark="?")
            )
            params: tuple[Any, ...] = (json.dumps(wanted, ensure_ascii=False), self.source_id)
        else:
            sql = f"{select}paper_keys AS k {joins.format(mark='%s')} WHERE k.key = ANY(%s)"
            params = (self.source_id, wanted)
        return {
            key: Known(paper_id, arxiv_id, fingerprint, bool(present))
            for key, paper_id, arxiv_id, fingerprint, present in _raw_rows(self.db, sql, params)
        }

    def stored(self, paper_ids: Iterable[int]) -> dict[int, Stored]:
        result: dict[int, Stored] = {}
        for chunk in _chunks(sorted(set(paper_ids))):
            for row in self.db.execute(sa.select(papers).where(papers.c.id.in_(chunk))):
                result[row.id] = _stored(row)
        return result

    def present(self) -> set[int]:
        query = sa.select(paper_sources.c.paper_id).where(
            paper_sources.c.source_id == self.source_id, paper_sources.c.present
        )
        return set(self.db.execute(query).scalars())

    def members(self, hint: Members | None = None) -> Members:
        """The papers present in this source: ``hint`` when no snapshot of the source came in
        since it was read (only an ingest of the source changes them), else read afresh."""
        mark = _newest_snapshot(self.db, self.source_id)
        if hint is not None and hint.mark == mark:
            return hint
        return Members(mark, _members(self.db, self.source_id))

    def record(self, record: SnapshotRecord, outcome: SnapshotOutcome) -> Summary:
        """Record a snapshot that changed nothing (unchanged bytes)."""
        snapshot_id = _insert_snapshot(self.db, record, outcome)
        return Summary(
            source_id=record.source_id,
            origin=record.origin,
            captured_at=record.captured_at,
            outcome=outcome,
            snapshot_id=snapshot_id,
        )

    def apply(self, record: SnapshotRecord, plan: Plan, total: int, now: datetime) -> Summary:
        """Write the plan, its events and the snapshot; return the counts."""
        db = self.db
        source_id = self.source_id
        value = _Values(db)
        at = record.captured_at or now
        seen_at = value.moment(at)
        told = [u for u in plan.updates if u.told]
        counts: dict[str, Any] = {
            "papers": total,
            "new": len(plan.new),
            "listed": len(plan.listed),
            "updated": len(told),
            "dropped": len(plan.dropped),
        }
        snapshot_id = _insert_snapshot(db, record, SnapshotOutcome.PARSED, **counts)
        new_ids = _new_ids(db, len(plan.new))
        if plan.new:
            _insert_rows(db, papers, PAPER_COLUMNS, _paper_rows(value, plan.new, new_ids, now))
            _insert_rows(
                db,
                paper_keys,
                ("key", "paper_id"),
                [
                    (key, paper_id)
                    for item, paper_id in zip(plan.new, new_ids, strict=True)
                    for key in item.keys
                ],
            )
        if plan.aliases:
            _insert_rows(db, paper_keys, ("key", "paper_id"), list(plan.aliases))
        for update in plan.updates:
            values = _columns(update.values)
            db.execute(
                papers.update()
                .where(papers.c.id == update.paper_id)
                .values(updated_at=now, **values)
            )
        present = value.flag(True)
        membership = [
            (paper_id, source_id, seen_at, seen_at, present, item.fingerprint)
            for item, paper_id in zip(plan.new, new_ids, strict=True)
        ]
        fingerprints = dict(plan.fingerprints)
        existing = self._memberships(plan.listed)
        for paper_id in plan.listed:
            if paper_id in existing:
                continue
            fingerprint = fingerprints.pop(paper_id, "")
            membership.append((paper_id, source_id, seen_at, seen_at, present, fingerprint))
        _insert_rows(db, paper_sources, MEMBERSHIP_COLUMNS, membership)
        relisted = [pid for pid in plan.listed if pid in existing]
        this_source = sa.and_(
            paper_sources.c.source_id == source_id,
            paper_sources.c.paper_id == sa.bindparam("pid"),
        )
        if relisted:
            db.execute(
                paper_sources.update().where(this_source).values(present=True),
                [{"pid": pid} for pid in relisted],
            )
        if fingerprints:
            db.execute(
                paper_sources.update().where(this_source).values(fingerprint=sa.bindparam("fp")),
                [{"pid": pid, "fp": fp} for pid, fp in fingerprints.items()],
            )
        if plan.dropped:
            db.execute(
                paper_sources.update().where(this_source).values(present=False),
                [{"pid": pid} for pid in plan.dropped],
            )
        latest = self.last_captured_at()
        if latest is None or at >= latest:
            # Rows already stamped ``at`` (those just added) are left alone.
            db.execute(
                paper_sources.update()
                .where(
                    paper_sources.c.source_id == source_id,
                    paper_sources.c.present,
                    paper_sources.c.last_seen_at != at,
                )
                .values(last_seen_at=at)
            )
            db.execute(
                sources.update().where(sources.c.id == source_id).values(last_captured_at=at)
            )
        event_rows: list[tuple[int, str, Any]] = [(pid, "new", None) for pid in new_ids]
        event_rows += [(pid, "listed", None) for pid in plan.listed]
        event_rows += [
            (
                u.paper_id,
                "updated",
                value.json([{"field": c.field, "old": c.old, "new": c.new} for c in u.changes]),
            )
            for u in told
        ]
        event_rows += [(pid, "dropped", None) for pid in plan.dropped]
        _insert_rows(
            db,
            events,
            ("paper_id", "kind", "changes", "source_id", "snapshot_id", "at"),
            [(*row, source_id, snapshot_id, seen_at) for row in event_rows],
        )
        return Summary(
            source_id=record.source_id,
            origin=record.origin,
            captured_at=record.captured_at,
            outcome=SnapshotOutcome.PARSED,
            snapshot_id=snapshot_id,
            **counts,
        )

    def _memberships(self, paper_ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        for chunk in _chunks(sorted(paper_ids)):
            query = sa.select(paper_sources.c.paper_id).where(
                paper_sources.c.source_id == self.source_id, paper_sources.c.paper_id.in_(chunk)
            )
            found.update(self.db.execute(query).scalars())
        return found


def _new_ids(db: sa.Connection, count: int) -> list[int]:
    """Ids for ``count`` new papers, taken inside the writing transaction."""
    if count == 0:
        return []
    if db.dialect.name == "postgresql":
        query = sa.text(
            "SELECT nextval(pg_get_serial_sequence('papers', 'id')) FROM generate_series(1, :n)"
        )
        return list(db.execute(query, {"n": count}).scalars())
    # SQLite has one writer at a time and this transaction already wrote its snapshot row.
    top = db.execute(sa.select(sa.func.coalesce(sa.func.max(papers.c.id), 0))).scalar_one()
    return list(range(top + 1, top + 1 + count))


PAPER_COLUMNS = (
    "id", "arxiv_id", "title", "abstract", "version", "doi", "authors", "author_count",
    "org_handle", "org_name", "published", "upvotes", "links", "categories", "keywords",
    "summary", "first_seen_at", "updated_at", "entry_id",
)  # fmt: skip
MEMBERSHIP_COLUMNS = (
    "paper_id",
    "source_id",
    "first_seen_at",
    "last_seen_at",
    "present",
    "fingerprint",
)


def _newest_snapshot(db: sa.Connection, source_id: str) -> int | None:
    query = sa.select(sa.func.max(snapshots.c.id)).where(snapshots.c.source_id == source_id)
    return db.execute(query).scalar()


def _members(db: sa.Connection, source_id: str) -> list[tuple[int, str]]:
    mark = "?" if db.dialect.name == "sqlite" else "%s"
    sql = f"SELECT paper_id, fingerprint FROM paper_sources WHERE source_id = {mark} AND present"
    return _raw_rows(db, sql, (source_id,))


def _raw_rows(db: sa.Connection, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The rows of a query as the driver gives them, in one fetch: for the bulk reads of an
    ingest, SQLAlchemy's per-row processing costs more than the query."""
    cursor = db.connection.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _insert_rows(
    db: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """A plain driver-level insert of rows of values as the driver takes them (see ``_Values``):
    for the bulk rows of an ingest, SQLAlchemy's per-value processing costs more than the
    database's work.

    On SQLite the rows go in a few hundred to a statement (running a statement costs about as
    much as writing its row), and a nullable column that is None in every row is written as
    NULL: Python's sqlite3 binds a None by way of its adapter protocol, at several times the
    cost of a string or a number."""
    if not rows:
        return
    quote = db.dialect.identifier_preparer.quote
    if db.dialect.name != "sqlite":
        db.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})",
            rows,
        )
        return
    kept = [
        index
        for index, name in enumerate(columns)
        if not table.c[name].nullable
        or any(map(operator.is_not, map(operator.itemgetter(index), rows), repeat(None)))
    ]
    if len(kept) < len(columns):
        pick = operator.itemgetter(*kept)
        rows = [(pick(row),) for row in rows] if len(kept) == 1 else list(map(pick, rows))
    names = ", ".join(quote(c) for c in columns)
    one = f"({', '.join('?' if i in kept else 'NULL' for i in range(len(columns)))})"
    cursor = db.connection.cursor()
    try:
        limit = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per = max(1, min(ROWS_PER_INSERT, limit // len(kept)))
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            cursor.execute(
                f"INSERT INTO {quote(table.name)} ({names}) VALUES {', '.join([one] * len(chunk))}",
                list(chain.from_iterable(chunk)),
            )
    finally:
        cursor.close()


class _Values:
    """Values as the driver takes them, made as SQLAlchemy's column types would bind them."""

    def __init__(self, db: sa.Connection) -> None:
        self.sqlite = db.dialect.name == "sqlite"
        self._days: dict[date, str] = {}

    def moment(self, value: datetime) -> Any:
        if not self.sqlite:
            return value
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")

    def day(self, value: date | None) -> Any:
        if value is None or not self.sqlite:
            return value
        text = self._days.get(value)
        if text is None:
            text = self._days[value] = value.isoformat()
        return text

    def flag(self, value: bool) -> Any:
        return int(value) if self.sqlite else value

    def json(self, value: Any) -> Any:
        if not self.sqlite:
            return Json(value)
        return json.dumps(value)


def _paper_rows(
    value: _Values, new: Sequence[NewPaper], ids: list[int], now: datetime
) -> list[tuple[Any, ...]]:
    """The ``PAPER_COLUMNS`` of new papers, as the driver takes them."""
    stamp = value.moment(now)
    no_list, no_map = value.json([]), value.json({})
    day = value.day
    rows = []
    for item, paper_id, entry_id in zip(new, ids, _entry_ids(len(ids)), strict=True):
        paper = item.paper
        org = paper.organisation
        rows.append(
            (
                paper_id,
                paper.arxiv_id,
                paper.title,
                paper.abstract,
                paper.version,
                paper.doi,
                value.json(list(paper.authors)) if paper.authors else no_list,
                paper.author_count,
                org.handle if org else None,
                org.name if org else None,
                day(paper.published),
                paper.upvotes,
                value.json(dict(paper.links)) if paper.links else no_map,
                value.json(list(paper.categories)) if paper.categories else no_list,
                value.json(list(paper.keywords)) if paper.keywords else no_list,
                paper.summary,
                stamp,
                stamp,
                entry_id,
            )
        )
    return rows


def _entry_ids(count: int) -> list[str]:
    """``count`` new random (version 4) UUIDs as URNs, from one read of the system's randomness
    (``uuid.uuid4()`` each costs a tenth of a big ingest)."""
    raw = os.urandom(16 * count).hex()
    return [
        f"urn:uuid:{raw[i : i + 8]}-{raw[i + 8 : i + 12]}-4{raw[i + 13 : i + 16]}-"
        f"{_VARIANT[raw[i + 16]]}{raw[i + 17 : i + 20]}-{raw[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}  # RFC 9562


def _columns(values: dict[str, Any] | Any) -> dict[str, Any]:
    """Model field values as column values."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name == "organisation":
            result["org_handle"] = value.handle
            result["org_name"] = value.name
        elif isinstance(value, tuple):
            result[name] = list(value)
        else:
            result[name] = value
    return result


def _stored(row: Any) -> Stored:
    org = Organisation(row.org_handle, row.org_name) if row.org_handle else None
    return Stored(
        title=row.title,
        abstract=row.abstract,
        arxiv_id=row.arxiv_id,
        version=row.version,
        doi=row.doi,
        authors=tuple(row.authors),
        author_count=row.author_count,
        organisation=org,
        published=row.published,
        upvotes=row.upvotes,
        links=dict(row.links),
        categories=tuple(row.categories),
        keywords=tuple(row.keywords),
        summary=row.summary,
    )


def _paper(row: Any, key: str, where: tuple[str, ...]) -> Paper:
    stored = _stored(row)
    return Paper(
        id=row.id,
        key=key,
        title=stored.title,
        abstract=stored.abstract,
        arxiv_id=stored.arxiv_id,
        version=stored.version,
        doi=stored.doi,
        authors=stored.authors,
        author_count=stored.author_count,
        organisation=stored.organisation,
        published=stored.published,
        upvotes=stored.upvotes or 0,
        links=stored.links,
        categories=stored.categories,
        keywords=stored.keywords,
        summary=stored.summary,
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
        sources=where,
        entry_id=row.entry_id,
    )


def _keys_of(db: sa.Connection, paper_ids: list[int]) -> dict[int, str]:
    """Each paper's main key: its arXiv key when it has one, else its title key."""
    result: dict[int, str] = {}
    for chunk in _chunks(paper_ids):
        query = sa.select(paper_keys.c.paper_id, paper_keys.c.key).where(
            paper_keys.c.paper_id.in_(chunk)
        )
        for paper_id, key in db.execute(query):
            if paper_id not in result or key.startswith("arxiv:"):
                result[paper_id] = key
    return result


def _sources_of(db: sa.Connection, paper_ids: list[int]) -> dict[int, tuple[str, ...]]:
    result: dict[int, list[str]] = {}
    for chunk in _chunks(paper_ids):
        query = (
            sa.select(paper_sources.c.paper_id, paper_sources.c.source_id)
            .where(paper_sources.c.paper_id.in_(chunk))
            .order_by(paper_sources.c.source_id)
        )
        for paper_id, source_id in db.execute(query):
            result.setdefault(paper_id, []).append(source_id)
    return {k: tuple(v) for k, v in result.items()}


def _insert_snapshot(
    db: sa.Connection, record: SnapshotRecord, outcome: SnapshotOutcome, **values: Any
) -> int:
    result = db.execute(
        snapshots.insert().returning(snapshots.c.id),
        {
            "source_id": record.source_id,
            "origin": record.origin,
            "stamp": record.stamp,
            "fetched_at": record.fetched_at,
            "captured_at": record.captured_at,
            "body_hash": record.body_hash,
            "size": record.size,
            "outcome": outcome.value,
            **values,
        },
    )
    return int(result.scalar_one())


def _state(row: Any) -> SourceState:
    return SourceState(
        source_id=row.id,
        etag=row.etag,
        last_modified=row.last_modified,
        body_hash=row.body_hash,
        last_attempt_at=row.last_attempt_at,
        last_success_at=row.last_success_at,
        next_check_at=row.next_check_at,
        errors=row.errors,
        last_error=row.last_error,
        disabled=row.disabled,
    )


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
