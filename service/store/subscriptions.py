"""Subscribers, their profiles and the matches found for them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import chain
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from service import tokens, windows
from service.identity import mailbox_key
from service.model import Profile, ProfileSpec, Schedule, Subscriber, SubscriberStatus
from service.store.database import analyze
from service.store.tables import matches, profile_likes, profiles, subscribers

FIRST_WINDOW = timedelta(days=1)
"""How far back a new subscriber's first window opens: their first digest holds the last day's
matches (the papers that came in before they subscribed, back-filled when profiles are added)."""

PROFILE_COLUMNS = (
    profiles.c.id,
    profiles.c.subscriber_id,
    profiles.c.name,
    profiles.c.query,
    profiles.c.min_upvotes,
    profiles.c.max_items,
    profiles.c.alert_threshold,
    profiles.c.send_when_empty,
)
"""What a ``Profile`` holds: its timestamps are not read (100,000s of them at every ingest)."""


class ProfileQuery(NamedTuple):
    """A profile as matching a snapshot sees it."""

    id: int
    query: str
    alert_threshold: float | None


class Subscriptions:
    """Reads and writes of subscribers and profiles; each call is one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- subscribers ----------------------------------------------------------------------------

    def subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this mailbox (however its letters are cased)."""
        with self.engine.connect() as db:
            row = db.execute(
                sa.select(subscribers).where(subscribers.c.email_key == mailbox_key(email))
            ).first()
        return _subscriber(row) if row is not None else None

    def subscribers_of(self, emails: Sequence[str]) -> dict[str, Subscriber]:
        """The subscribers with these mailboxes, by ``mailbox_key``, in one query."""
        query = sa.select(subscribers).where(
            subscribers.c.email_key.in_([mailbox_key(email) for email in emails])
        )
        with self.engine.connect() as db:
            return {row.email_key: _subscriber(row) for row in db.execute(query)}

    def subscribers_by_id(self, ids: Sequence[int]) -> dict[int, Subscriber]:
        """The subscribers with these ids, by id, in one query."""
        query = sa.select(subscribers).where(subscribers.c.id.in_(list(ids)))
        with self.engine.connect() as db:
            return {row.id: _subscriber(row) for row in db.execute(query)}

    def subscribers(self) -> list[Subscriber]:
        with self.engine.connect() as db:
            rows = db.execute(sa.select(subscribers).order_by(subscribers.c.email)).all()
        return [_subscriber(row) for row in rows]

    def save_subscriber(
        self, email: str, timezone: str, schedule: str, now: datetime, *, declared: bool = False
    ) -> Subscriber:
        """Create or update a subscriber by mailbox (an update keeps the address as first
        given). A new one's window opens ``FIRST_WINDOW`` before ``now`` and first closes at the
        schedule's next boundary after ``now``."""
        values: dict[str, Any] = {"timezone": timezone, "schedule": schedule, "updated_at": now}
        with self.engine.begin() as db:
            found = db.execute(
                sa.select(subscribers.c.id, subscribers.c.timezone, subscribers.c.schedule).where(
                    subscribers.c.email_key == mailbox_key(email)
                )
            ).first()
            if found is None:
                db.execute(
                    subscribers.insert().values(
                        email=email,
                        email_key=mailbox_key(email),
                        status=SubscriberStatus.ACTIVE.value,
                        declared=declared,
                        created_at=now,
                        token=tokens.new_secret(),
                        window_end=now - FIRST_WINDOW,
                        next_window_at=windows.next_boundary(
                            Schedule.parse(schedule), ZoneInfo(timezone), now
                        ),
                        **values,
                    )
                )
            else:
                if (found.timezone, found.schedule) != (timezone, schedule):
                    values["next_window_at"] = None  # planned afresh by the new schedule
                db.execute(
                    subscribers.update()
                    .where(subscribers.c.id == found.id)
                    .values(declared=declared, **values)
                )
        saved = self.subscriber(email)
        assert saved is not None
        return saved

    def save_many(
        self,
        declared: Sequence[tuple[str, str, str, Sequence[ProfileSpec]]],
        now: datetime,
        *,
        declared_here: bool = False,
    ) -> tuple[list[int], list[Profile]]:
        """``save_subscriber`` and ``save_profile`` for many (email, timezone, schedule,
        profiles) at once, in one transaction, a few statements for the lot. Returns the
        subscribers' ids, in order, and the profiles whose query is new."""
        if not declared:
            return [], []
        keys = [mailbox_key(email) for email, *_ in declared]
        with self.engine.begin() as db:
            known = {
                row.email_key: row
                for row in db.execute(
                    sa.select(
                        subscribers.c.id,
                        subscribers.c.email_key,
                        subscribers.c.timezone,
                        subscribers.c.schedule,
                    ).where(subscribers.c.email_key.in_(keys))
                )
            }
            added, moved, kept = [], [], []
            for key, (email, timezone, schedule, _) in zip(keys, declared, strict=True):
                values = {"timezone": timezone, "schedule": schedule, "updated_at": now}
                found = known.get(key)
                if found is None:
                    added.append(
                        {
                            "email": email,
                            "email_key": key,
                            "status": SubscriberStatus.ACTIVE.value,
                            "declared": declared_here,
                            "created_at": now,
                            "token": tokens.new_secret(),
                            "window_end": now - FIRST_WINDOW,
                            "next_window_at": windows.next_boundary(
                                Schedule.parse(schedule), ZoneInfo(timezone), now
                            ),
                            **values,
                        }
                    )
                elif (found.timezone, found.schedule) != (timezone, schedule):
                    moved.append({"sid": found.id, **values})  # planned afresh
                else:
                    kept.append({"sid": found.id, **values})
            ids = {key: found.id for key, found in known.items()}
            ids |= {row["email_key"]: row["id"] for row in _given_ids(db, subscribers, added)}
            _insert(db, subscribers, added)
            for rows, extra in ((moved, {"next_window_at": None}), (kept, {})):
                if rows:
                    db.execute(
                        subscribers.update()
                        .where(subscribers.c.id == sa.bindparam("sid"))
                        .values(
                            timezone=sa.bindparam("timezone"),
                            schedule=sa.bindparam("schedule"),
                            updated_at=sa.bindparam("updated_at"),
                            declared=declared_here,
                            **extra,
                        ),
                        rows,
                    )
            unnumbered = [key for key in keys if key not in ids]
            if unnumbered:  # numbered by SQLite as inserted: read back
                query = sa.select(subscribers.c.email_key, subscribers.c.id)
                read = db.execute(query.where(subscribers.c.email_key.in_(unnumbered)))
                ids |= {row.email_key: row.id for row in read}
            owners = [ids[key] for key in keys]
            earlier = [found.id for found in known.values()]  # only they may have profiles
            specs = [d[3] for d in declared]
            fresh_specs, fresh_ids = self._save_profiles(db, owners, earlier, specs, now)
            if len(fresh_ids) < len(fresh_specs):  # as above
                query = sa.select(profiles.c.id, profiles.c.subscriber_id, profiles.c.name)
                read = db.execute(query.where(profiles.c.subscriber_id.in_(owners)))
                fresh_ids |= {(row.subscriber_id, row.name): row.id for row in read}
            # As saved: the ids, the rest as given.
            fresh = [Profile(fresh_ids[key], key[0], spec) for key, spec in fresh_specs.items()]
        return owners, fresh

    def _save_profiles(
        self,
        db: sa.Connection,
        owners: Sequence[int],
        earlier: Sequence[int],
        specs: Sequence[Sequence[ProfileSpec]],
        now: datetime,
    ) -> tuple[dict[tuple[int, str], ProfileSpec], dict[tuple[int, str], int]]:
        """Insert or update these subscribers' profiles (those of the ``earlier`` ones may be
        stored already). By (subscriber id, name): those whose query is new (their old matches
        are deleted), and the ids of those known (all but those SQLite numbers as inserted)."""
        known = (
            {
                (row.subscriber_id, row.name): row
                for row in db.execute(
                    sa.select(
                        profiles.c.id, profiles.c.subscriber_id, profiles.c.name, profiles.c.query
                    ).where(profiles.c.subscriber_id.in_(list(earlier)))
                )
            }
            if earlier
            else {}
        )
        added, changed, stale = [], [], []
        fresh: dict[tuple[int, str], ProfileSpec] = {}
        numbered: dict[tuple[int, str], int] = {}
        for owner, mine in zip(owners, specs, strict=True):
            for spec in mine:
                values = {
                    "query": spec.query,
                    "min_upvotes": spec.min_upvotes,
                    "max_items": spec.max_items,
                    "alert_threshold": spec.alert_threshold,
                    "send_when_empty": spec.send_when_empty,
                    "updated_at": now,
                }
                found = known.get((owner, spec.name))
                if found is None:
                    fresh[owner, spec.name] = spec
                    added.append(
                        {"subscriber_id": owner, "name": spec.name, "created_at": now, **values}
                    )
                    continue
                if found.query != spec.query:
                    fresh[owner, spec.name] = spec
                    numbered[owner, spec.name] = found.id
                    stale.append(found.id)
                changed.append({"pid": found.id, **values})
        for start in range(0, len(stale), 500):
            db.execute(matches.delete().where(matches.c.profile_id.in_(stale[start : start + 500])))
        for row in _given_ids(db, profiles, added):
            numbered[row["subscriber_id"], row["name"]] = row["id"]
        _insert(db, profiles, added)
        if changed:
            db.execute(
                profiles.update()
                .where(profiles.c.id == sa.bindparam("pid"))
                .values({name: sa.bindparam(name) for name in changed[0] if name != "pid"}),
                changed,
            )
        return fresh, numbered

    def remove_subscriber(self, email: str) -> bool:
        with self.engine.begin() as db:
            found = db.execute(
                sa.select(subscribers.c.id).where(subscribers.c.email_key == mailbox_key(email))
            ).scalar_one_or_none()
            if found is None:
                return False
            _delete_profiles(db, [found])
            db.execute(subscribers.delete().where(subscribers.c.id == found))
        return True

    # -- profiles -------------------------------------------------------------------------------

    def profiles(self, subscriber_id: int | None = None) -> list[Profile]:
        query = sa.select(*PROFILE_COLUMNS).order_by(profiles.c.subscriber_id, profiles.c.name)
        if subscriber_id is not None:
            query = query.where(profiles.c.subscriber_id == subscriber_id)
        with self.engine.connect() as db:
            return [_profile(row) for row in db.execute(query)]

    def queries(self) -> list[ProfileQuery]:
        """What matching a snapshot needs of every profile, read at every ingest (100,000s of
        them: as the driver gives them, not as whole profiles)."""
        with self.engine.connect() as db:
            rows = db.exec_driver_sql("SELECT id, query, alert_threshold FROM profiles").all()
        return [ProfileQuery(*row) for row in rows]

    def profiles_of(self, subscriber_ids: Sequence[int]) -> dict[int, list[Profile]]:
        """The profiles of many subscribers in one query, by subscriber id, in name order."""
        query = (
            sa.select(*PROFILE_COLUMNS)
            .where(profiles.c.subscriber_id.in_(list(subscriber_ids)))
            .order_by(profiles.c.subscriber_id, profiles.c.name)
        )
        found: dict[int, list[Profile]] = {}
        with self.engine.connect() as db:
            for row in db.execute(query):
                found.setdefault(row.subscriber_id, []).append(_profile(row))
        return found

    def profile(self, profile_id: int) -> Profile | None:
        with self.engine.connect() as db:
            row = db.execute(sa.select(*PROFILE_COLUMNS).where(profiles.c.id == profile_id)).first()
        return _profile(row) if row is not None else None

    def find_profiles(self, name: str) -> list[tuple[Subscriber, Profile]]:
        """Profiles called ``name``, with their subscribers."""
        query = (
            sa.select(profiles, subscribers.c.email)
            .join(subscribers, subscribers.c.id == profiles.c.subscriber_id)
            .where(profiles.c.name == name)
        )
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        result = []
        for row in rows:
            owner = self.subscriber(row.email)
            assert owner is not None
            result.append((owner, _profile(row)))
        return result

    def save_profile(
        self, subscriber_id: int, spec: ProfileSpec, now: datetime
    ) -> tuple[Profile, bool]:
        """Create or update a subscriber's profile by name; also whether its query is new (a
        new profile, or a changed query: the old query's matches are gone)."""
        values = {
            "query": spec.query,
            "min_upvotes": spec.min_upvotes,
            "max_items": spec.max_items,
            "alert_threshold": spec.alert_threshold,
            "send_when_empty": spec.send_when_empty,
            "updated_at": now,
        }
        mine = sa.and_(profiles.c.subscriber_id == subscriber_id, profiles.c.name == spec.name)
        with self.engine.begin() as db:
            found = db.execute(sa.select(profiles.c.id).where(mine)).scalar_one_or_none()
            fresh = True
            if found is None:
                db.execute(
                    profiles.insert().values(
                        subscriber_id=subscriber_id, name=spec.name, created_at=now, **values
                    )
                )
            else:
                old = db.execute(sa.select(profiles.c.query).where(profiles.c.id == found))
                fresh = old.scalar_one() != spec.query
                if fresh:
                    db.execute(matches.delete().where(matches.c.profile_id == found))
                db.execute(profiles.update().where(profiles.c.id == found).values(**values))
            row = db.execute(sa.select(*PROFILE_COLUMNS).where(mine)).one()
        return _profile(row), fresh

    def remove_profile(self, subscriber_id: int, name: str) -> int | None:
        """Remove a profile and its matches; its id, or None when there was none."""
        with self.engine.begin() as db:
            found = db.execute(
                sa.select(profiles.c.id).where(
                    profiles.c.subscriber_id == subscriber_id, profiles.c.name == name
                )
            ).scalar_one_or_none()
            if found is not None:
                db.execute(matches.delete().where(matches.c.profile_id == found))
                db.execute(profile_likes.delete().where(profile_likes.c.profile_id == found))
                db.execute(profiles.delete().where(profiles.c.id == found))
        return found

    # -- matches --------------------------------------------------------------------------------

    def save_matches(self, found: Iterable[tuple[int, int, float, Any]], now: datetime) -> int:
        """Record (profile id, paper id, score, reasons as JSON-able or as JSON text); newer
        replace older.

        Upserted at the driver's level (``_upsert_matches`` on SQLite, ``_copy_matches`` on
        PostgreSQL), its values made here (the reasons as JSON text, ``now`` as the store
        keeps it once for all): a day's matches at 100,000 subscribers are a million rows, and
        SQLAlchemy's per-row processing was most of it."""
        dialect = self.engine.dialect  # the dialect's own processor: SQLite's stored text
        stamp = matches.c.matched_at.type.dialect_impl(dialect).bind_processor(dialect)
        at = stamp(now) if stamp is not None else now
        dumps = json.dumps
        rows = [(p, d, s, r if isinstance(r, str) else dumps(r), at) for p, d, s, r in found]
        if not rows:
            return 0
        update = (
            "ON CONFLICT (profile_id, paper_id) DO UPDATE SET score = excluded.score, "
            "reasons = excluded.reasons, matched_at = excluded.matched_at"
        )
        with self.engine.begin() as db:
            if self.engine.dialect.name == "postgresql":
                _copy_matches(db, rows, update)
            else:
                _upsert_matches(db, rows, update)
        return len(rows)

    @contextmanager
    def matches_saver(self, now: datetime) -> Iterator[MatchesSaver]:
        """A ``MatchesSaver`` for slices of matches all found at ``now``; on leaving, the last
        slice is saved (or its error raised)."""
        database = self.engine.url.database
        if self.engine.dialect.name == "sqlite" and database in (None, "", ":memory:"):
            # Each thread would see a database of its own: saved here, one slice at a time.
            saver = MatchesSaver(self, now, None)
            yield saver
            saver.wait()
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="matches") as thread:
            saver = MatchesSaver(self, now, thread)
            yield saver
            saver.wait()

    def analyze_matches(self) -> None:
        """Refresh PostgreSQL's statistics of the matches after a big ingest, so that the
        planner knows how many there are."""
        analyze(self.engine, "matches")

    def matches(self, profile_id: int) -> list[tuple[int, float, Any]]:
        """(paper id, score, reasons) of a profile, best first."""
        query = (
            sa.select(matches.c.paper_id, matches.c.score, matches.c.reasons)
            .where(matches.c.profile_id == profile_id)
            .order_by(matches.c.score.desc(), matches.c.paper_id)
        )
        with self.engine.connect() as db:
            return [(row.paper_id, row.score, row.reasons) for row in db.execute(query)]


def _given_ids(
    db: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """On PostgreSQL, ``rows`` given the ids they are to have, from ``table``'s sequence, so
    that none need reading back (a query of 1,000 keys a batch, costly to parse); nothing
    (none given) on SQLite, where rows are numbered as inserted."""
    if db.dialect.name != "postgresql" or not rows:
        return []
    query = sa.text(
        f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, :n)"
    )
    for row, given in zip(rows, db.execute(query, {"n": len(rows)}).scalars(), strict=True):
        row["id"] = given
    return rows


def _insert(db: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same columns) at the driver's level, each value made as
    its column's type binds it, a column at a time: in a big import SQLAlchemy's per-row work
    cost more than the database's. PostgreSQL takes them by COPY (an INSERT run row by row
    costs a round trip each, a long one with many rows costs psycopg more to parse than the
    server to run)."""
    if not rows:
        return
    dialect = db.dialect
    names = list(rows[0])
    cells = []
    for name in names:
        bind = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        column = [row[name] for row in rows]
        cells.append(column if bind is None else list(map(bind, column)))
    values = list(zip(*cells, strict=True))
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(map(quote, names))
    if dialect.name != "postgresql":
        marks = ", ".join(["?"] * len(names))
        db.exec_driver_sql(f"INSERT INTO {quote(table.name)} ({columns}) VALUES ({marks})", values)
        return
    raw = db.connection.driver_connection
    assert raw is not None
    with (
        raw.cursor() as cursor,
        cursor.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN") as copy,
    ):
        for row in values:
            copy.write_row(row)


class MatchesSaver:
    """Saves slices of matches (as ``Subscriptions.save_matches``) on a thread of its own while
    the caller finds the next: the database's work (at 100,000 profiles, an upsert of some
    100,000 rows a slice) overlaps the matching's instead of following it. One slice at a
    time is in flight, so that at most two slices' rows live at once, and slices are saved in
    order, each in its transaction, as they were one by one. An error saving a slice is raised
    by the next call."""

    def __init__(
        self, subscriptions: Subscriptions, now: datetime, thread: ThreadPoolExecutor | None
    ) -> None:
        self._subscriptions = subscriptions
        self._now = now
        self._thread = thread
        self._pending: Future[int] | None = None
        self.saved = 0

    def save(self, found: Sequence[tuple[int, int, float, Any]]) -> None:
        """Save a slice once the one before is saved (at once without a thread)."""
        self.wait()
        if self._thread is None:
            self.saved += self._subscriptions.save_matches(found, self._now)
        else:
            self._pending = self._thread.submit(self._subscriptions.save_matches, found, self._now)

    def wait(self) -> int:
        """Wait for the slice in flight; the rows saved so far."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.saved += pending.result()
        return self.saved


MATCHES_PER_INSERT = 150
"""Matches in one INSERT statement on SQLite (750 values, within any SQLite's limit): running
a statement costs about as much as writing its row, so a million rows row by row took a fifth
longer."""


def _upsert_matches(db: sa.Connection, rows: Sequence[tuple[Any, ...]], update: str) -> None:
    """Upsert matches on SQLite, ``MATCHES_PER_INSERT`` to a statement; a pair given twice in
    one is upserted twice, the last winning, as row by row."""
    for start in range(0, len(rows), MATCHES_PER_INSERT):
        chunk = rows[start : start + MATCHES_PER_INSERT]
        db.exec_driver_sql(
            "INSERT INTO matches (profile_id, paper_id, score, reasons, matched_at) VALUES "
            f"{', '.join(['(?, ?, ?, ?, ?)'] * len(chunk))} {update}",
            tuple(chain.from_iterable(chunk)),
        )


def _copy_matches(db: sa.Connection, rows: Sequence[tuple[Any, ...]], update: str) -> None:
    """Upsert matches on PostgreSQL: COPY into a temporary table, then one INSERT ... SELECT
    (row by row, even pipelined, the client spent about 40 us a row). The last of a pair
    given twice wins, as it would row by row: kept here, so that the server need not sort
    the rows to find it (a quarter of its work)."""
    rows = list({(row[0], row[1]): row for row in rows}.values())
    db.exec_driver_sql(
        "CREATE TEMPORARY TABLE IF NOT EXISTS incoming_matches (profile_id integer, "
        "paper_id integer, score double precision, reasons text, matched_at timestamptz) "
        "ON COMMIT DELETE ROWS"
    )
    raw = db.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy("COPY incoming_matches FROM STDIN") as copy:
        for start in range(0, len(rows), COPY_LINES):
            copy.write(_copy_text(rows[start : start + COPY_LINES]))
    db.exec_driver_sql(
        "INSERT INTO matches (profile_id, paper_id, score, reasons, matched_at) "
        "SELECT profile_id, paper_id, score, reasons::json, matched_at FROM incoming_matches "
        f"{update}"
    )


COPY_LINES = 10_000
"""Rows of matches written to COPY at a time, as text."""


def _copy_text(rows: Sequence[tuple[Any, ...]]) -> str:
    """Rows of matches as the lines of COPY's text format. Written here rather than by
    psycopg row by row (a few microseconds a row, a million rows at 100,000 profiles): the
    many matches that share reasons or a time have them escaped once."""
    texts: dict[str, str] = {}
    times: dict[datetime, str] = {}
    lines = []
    for profile_id, paper_id, score, reasons, matched_at in rows:
        text = texts.get(reasons)
        if text is None:
            text = texts[reasons] = _copy_escaped(reasons)
        at = times.get(matched_at)
        if at is None:
            at = times[matched_at] = matched_at.isoformat()
        lines.append(f"{profile_id:d}\t{paper_id:d}\t{float(score)!r}\t{text}\t{at}\n")
    return "".join(lines)


def _copy_escaped(text: str) -> str:
    """``text`` as a value of COPY's text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _delete_profiles(db: sa.Connection, subscriber_ids: Sequence[int]) -> None:
    ids = sa.select(profiles.c.id).where(profiles.c.subscriber_id.in_(subscriber_ids))
    db.execute(matches.delete().where(matches.c.profile_id.in_(ids)))
    db.execute(profile_likes.delete().where(profile_likes.c.profile_id.in_(ids)))
    db.execute(profiles.delete().where(profiles.c.subscriber_id.in_(subscriber_ids)))


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        timezone=row.timezone,
        schedule=Schedule.parse(row.schedule),
        status=SubscriberStatus(row.status),
        declared=bool(row.declared),
        token=row.token or "",
        manage_generation=row.manage_generation,
        confirmed_at=row.confirmed_at,
    )


def _profile(row: Any) -> Profile:
    return Profile(
        id=row.id,
        subscriber_id=row.subscriber_id,
        spec=ProfileSpec(
            name=row.name,
            query=row.query,
            min_upvotes=row.min_upvotes,
            max_items=row.max_items,
            alert_threshold=row.alert_threshold,
            send_when_empty=bool(row.send_when_empty),
        ),
    )
