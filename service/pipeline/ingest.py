"""Ingest: polling sources and taking files, snapshot by snapshot.

Polling a source fetches its snapshots, parses each, and hands the parsed papers with what the
store knows to the decider; the store applies the decider's plan in one transaction per
snapshot, and the new and changed papers go to matching. A source that fails is recorded as
failing and the run goes on with the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from service import diff, polling
from service.clock import Clock
from service.config import Settings, SourceSettings, parse_duration
from service.errors import FetchError, ParseError, SourceGone, redact
from service.fetch.http import body_hash
from service.fetch.local import entry, new_files, read_file
from service.model import (
    NotModified,
    Parsed,
    Snapshot,
    SnapshotOutcome,
    SourceKind,
    SourceState,
    Summary,
)
from service.parse import listing, parse, sniff
from service.parse.listing import Capture, collector_paused
from service.pipeline.matching import Matching
from service.store.repository import Members, SnapshotRecord, Store

log = logging.getLogger(__name__)

# The source that ``paperboy ingest FILE`` uses when no --source is given. Files given by hand
# are not snapshots of one listing: a paper one file leaves out has not left anything, so
# their snapshots are never whole (see ``diff.decide``) and drop nothing.
FILES_SOURCE = "files"


class Fetcher(Protocol):
    """What the pipeline needs of an HTTP fetcher."""

    def fetch(
        self,
        source_id: str,
        url: str,
        state: SourceState,
        now: datetime,
        min_interval: timedelta | None = None,
    ) -> Snapshot | NotModified: ...


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A parsed snapshot waiting for its turn (folders apply theirs in capture order)."""

    snapshot: Snapshot
    record: SnapshotRecord
    parsed: Parsed
    new_announce: frozenset[str] = frozenset({"new", "cross"})
    members: Members | None = None  # a listing's: the source's papers when it was parsed


class Ingest:
    """Sources in, papers stored: ``poll`` (the scheduler's job and ``paperboy poll``) and
    ``ingest_files`` (``paperboy ingest``); each snapshot's papers are then matched."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        matching: Matching,
        rng: random.Random,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.matching = matching
        self.rng = rng
        self.fetcher = fetcher

    # -- entry points --------------------------------------------------------------------------

    def declare_sources(self) -> None:
        """Make the store know every declared source (and the one for ad-hoc files)."""
        declared = [
            (s.id, s.kind, redact(self.settings.resolve(s.location))) for s in self.settings.sources
        ]
        declared.append((FILES_SOURCE, None, "(files given to paperboy ingest)"))
        self.store.declare_sources(declared, self.clock.now())

    def ingest_files(
        self,
        paths: Sequence[Path],
        *,
        source_id: str | None = None,
        kind: SourceKind | None = None,
        captured_at: datetime | None = None,
    ) -> list[Summary]:
        """Ingest files as snapshots of one source, in capture order."""
        if source_id is not None:
            source = self.settings.source(source_id)
            kind = kind or source.kind
            options: Mapping[str, Any] = source.options
        else:
            source_id, options = FILES_SOURCE, {}
        now = self.clock.now()
        summaries: list[Summary] = []
        prepared: list[_Prepared] = []
        with collector_paused():  # see _commit_in_order
            for path in paths:
                try:
                    snapshot = read_file(
                        source_id,
                        path,
                        max_bytes=self.settings.fetch.max_bytes,
                        fetched_at=now,
                        captured_at=captured_at,
                    )
                except FetchError as exc:
                    summaries.append(self._unreadable(source_id, path, exc, now))
                    continue
                _sort_out(self._prepare(snapshot, kind, options), prepared, summaries)
            summaries.extend(self._commit_in_order(prepared))
        taken = [s for s in summaries if s.outcome not in BAD_OUTCOMES]
        if source_id == FILES_SOURCE and taken:
            # Nothing polls the files "source": its health says when files were last taken.
            state = self.store.source_state(FILES_SOURCE)
            self.store.save_state(replace(state, last_attempt_at=now, last_success_at=now))
        return summaries

    def poll(self, source_id: str | None = None, *, force: bool = False) -> list[Summary]:
        """Poll every due source (or the one named, due or not with ``force``)."""
        sources = (
            [self.settings.source(source_id)]
            if source_id is not None
            else [s for s in self.settings.sources if s.enabled]
        )
        summaries: list[Summary] = []
        for source in sources:
            state = self.store.source_state(source.id)
            if not (force or source_id is not None) and not polling.is_due(
                state, source, self.clock.now()
            ):
                continue
            summaries.extend(self._poll_source(source, state))
        return summaries

    # -- one source ------------------------------------------------------------------------------

    def _poll_source(self, source: SourceSettings, state: SourceState) -> list[Summary]:
        now = self.clock.now()
        location = self.settings.resolve(source.location)
        state = replace(state, last_attempt_at=now)
        try:
            if source.is_http:
                summaries, state = self._poll_http(source, location, state)
            else:
                summaries = self._poll_path(source, Path(location))
        except FetchError as exc:
            self._failed_state(source, state, exc)
            return [_failed(source.id, location, exc)]
        rejected = [s for s in summaries if s.outcome is SnapshotOutcome.REJECTED]
        if summaries and len(rejected) == len(summaries):
            error = rejected[-1].error or "rejected"
            state = replace(state, errors=state.errors + 1, last_error=error)
            state = replace(state, next_check_at=self._after_error(state.errors, None))
        else:
            state = replace(
                state,
                errors=0,
                last_success_at=now,
                last_error=rejected[-1].error if rejected else None,
                next_check_at=polling.next_check_after_success(source, now, self.rng),
            )
        self.store.save_state(state)
        return summaries

    def _poll_http(
        self, source: SourceSettings, url: str, state: SourceState
    ) -> tuple[list[Summary], SourceState]:
        if self.fetcher is None:
            raise FetchError("no HTTP fetcher is configured", source=url)
        params = source.options.get("params")
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        host_interval = source.options.get("host_interval")
        min_interval = parse_duration(host_interval) if host_interval else None
        result = self.fetcher.fetch(
            source.id, url, state, self.clock.now(), min_interval=min_interval
        )
        state = replace(state, etag=result.etag, last_modified=result.last_modified)
        if isinstance(result, NotModified):
            log.debug("%s: not modified", source.id)
            summary = Summary(
                source_id=source.id,
                origin=url,
                captured_at=None,
                outcome=SnapshotOutcome.NOT_MODIFIED,
            )
            return [summary], state
        state = replace(state, body_hash=body_hash(result.body))
        pages = int(source.options.get("pages", 1))
        if pages > 1:
            result = self._more_pages(source, url, result, pages, min_interval)
        summaries: list[Summary] = []
        prepared: list[_Prepared] = []
        with collector_paused():  # see _commit_in_order
            _sort_out(self._prepare(result, source.kind, source.options), prepared, summaries)
            summaries.extend(self._commit_in_order(prepared))
        return summaries, state

    def _more_pages(
        self,
        source: SourceSettings,
        url: str,
        first: Snapshot,
        pages: int,
        min_interval: timedelta | None,
    ) -> Snapshot:
        """Follow a JSON list API's ``p`` pages (the HF API) while pages come back full.

        The pages are joined into one JSON list, one snapshot: a poll sees the whole listing.
        """
        assert self.fetcher is not None
        limit = int(source.options.get("params", {}).get("limit", 50))
        items = _json_list(first)
        if items is None:
            return first
        joined = list(items)
        page = 1
        while len(items) >= limit and page < pages:
            paged = f"{url}{'&' if '?' in url else '?'}{urlencode({'p': page})}"
            fetched = self.fetcher.fetch(
                source.id, paged, SourceState(source.id), self.clock.now(), min_interval
            )
            if not isinstance(fetched, Snapshot):
                break
            items = _json_list(fetched) or []
            joined.extend(items)
            page += 1
        return replace(first, body=json.dumps(joined).encode())

    def _poll_path(self, source: SourceSettings, path: Path) -> list[Summary]:
        now = self.clock.now()
        max_bytes = self.settings.fetch.max_bytes
        if path.is_dir() or (not path.exists() and not path.suffix):
            path.mkdir(parents=True, exist_ok=True)
            files = new_files(path, self.store.seen_stamps(source.id))
        else:
            if not path.exists():
                raise FetchError("no such file", source=str(path))
            item = entry(path)
            seen = self.store.seen_stamps(source.id)
            files = [item] if (str(item.path), item.stamp) not in seen else []
        summaries: list[Summary] = []
        prepared: list[_Prepared] = []
        with collector_paused():  # see _commit_in_order
            for item in files:
                try:
                    snapshot = read_file(source.id, item.path, max_bytes=max_bytes, fetched_at=now)
                except FetchError as exc:
                    summaries.append(self._unreadable(source.id, item.path, exc, now, item.stamp))
                    continue
                _sort_out(
                    self._prepare(snapshot, source.kind, source.options, stamp=item.stamp),
                    prepared,
                    summaries,
                )
            summaries.extend(self._commit_in_order(prepared))
        return summaries

    def _unreadable(
        self, source_id: str, path: Path, exc: FetchError, now: datetime, stamp: str | None = None
    ) -> Summary:
        """A file that exists but cannot be taken (too large, unreadable) is a rejected snapshot."""
        try:
            size = path.stat().st_size
        except OSError:
            return _failed(source_id, str(path), exc)
        try:  # a file too large to take is still hashed, read in pieces, to record it
            with path.open("rb") as file:
                digest = hashlib.file_digest(file, "sha256").hexdigest()
        except OSError:
            digest = ""  # unreadable
        record = SnapshotRecord(source_id, str(path), now, None, digest, size, stamp=stamp)
        log.warning("rejected %s", exc, extra={"source": source_id})
        return self.store.record_rejected(record, str(exc))

    # -- one snapshot ---------------------------------------------------------------------------

    def _prepare(
        self,
        snapshot: Snapshot,
        kind: SourceKind | None,
        options: Mapping[str, Any],
        *,
        stamp: str | None = None,
    ) -> _Prepared | Summary:
        """Parse a snapshot; a rejected one is recorded at once and changes nothing else.

        A listing is cut into blocks first, and the blocks that show a paper present in the
        source byte for byte as it was shown last time are left unparsed (see ``_commit``).
        """
        body = snapshot.body
        # A big body is hashed on another thread (hashlib lets go of the GIL) while it is parsed.
        hashing = _HASHER.submit(body_hash, body) if len(body) >= _HASH_BESIDE else None
        try:
            kind = kind or sniff.detect(body, origin=snapshot.origin)
            members = None
            if kind is SourceKind.LISTING:
                blocks = listing.scan(snapshot)
                members = self.store.members(snapshot.source_id) if blocks else None
                parsed = listing.read(snapshot, blocks, members.by_print if members else {})
            else:
                parsed = parse(snapshot, kind, options)
        except ParseError as exc:
            log.warning("rejected %s", exc, extra={"source": snapshot.source_id})
            record = _record(snapshot, hashing, stamp)
            return self.store.record_rejected(record, str(exc))
        record = _record(snapshot, hashing, stamp)
        for note in parsed.notes:
            log.info("%s: %s", snapshot.origin, note, extra={"source": snapshot.source_id})
        announce = frozenset(options.get("new_announce_types", ("new", "cross")))
        return _Prepared(
            snapshot, replace(record, captured_at=parsed.captured_at), parsed, announce, members
        )

    def _commit_in_order(self, prepared: list[_Prepared]) -> list[Summary]:
        """Commit the ``prepared`` snapshots in capture order, letting go of each (and of the
        list's hold on them) once it is done.

        The callers pause the cyclic collector from before the first parse to after this: the
        papers, rows and events of a big snapshot would cost it a pass over them all each time
        it resumed while they were alive, as they are not by the time it does.
        """
        ordered = sorted(prepared, key=lambda p: (p.parsed.captured_at, p.snapshot.origin))
        prepared.clear()
        ordered.reverse()
        summaries = []
        while ordered:
            summaries.append(self._commit(ordered.pop()))
            _log_taken(summaries[-1])
        return summaries

    def _commit(self, item: _Prepared) -> Summary:
        """Diff one parsed snapshot against the store and apply the plan, in one transaction.

        A listing's blocks are matched to the papers present in the source by fingerprint
        first: a block that shows one exactly as last time is only counted as seen, unparsed.
        """
        record = item.record
        parsed = item.parsed
        blocks = parsed.blocks if isinstance(parsed, Capture) else None
        # An ingest makes many objects that live on a while (papers, rows, events): the cyclic
        # collector's passes over them all would cost more than the rest of the work.
        with collector_paused(), self.store.ingest(record.source_id) as tx:
            if tx.duplicate_of(record.body_hash) is not None:
                return tx.record(record, SnapshotOutcome.UNCHANGED)
            unparsed = None
            if blocks is None:
                incoming: list[diff.Item] = list(diff.identify(parsed.papers))
                present: Iterable[int] = tx.present()
            else:
                members = tx.members(item.members)
                present = [paper_id for paper_id, _ in members.rows]
                incoming, unparsed = diff.identify_blocks(
                    blocks.known(members.by_print),
                    blocks.entries,
                    blocks.describe,
                )
            known = tx.known(diff.keys_of(incoming))
            matches = diff.resolve(incoming, known)
            stored = tx.stored(diff.needs_compare(incoming, matches))
            latest = tx.last_captured_at()
            captured = parsed.captured_at
            plan = diff.decide(
                incoming,
                matches,
                stored,
                present,
                known_keys=known,
                stale=latest is not None and captured < latest,
                whole=record.source_id != FILES_SOURCE,
                new_announce=item.new_announce,
                unparsed=unparsed,
            )
            if plan.notes:  # one record: a big listing may repeat thousands of entries
                log.info(
                    "%s: %s",
                    record.origin,
                    "\n  ".join(plan.notes),
                    extra={"source": record.source_id},
                )
            summary = tx.apply(record, plan, len(incoming), self.clock.now())
        with collector_paused():
            self.matching.match_snapshot(summary)
        return summary

    # -- health ---------------------------------------------------------------------------------

    def _failed_state(self, source: SourceSettings, state: SourceState, exc: FetchError) -> None:
        errors = state.errors + 1
        state = replace(state, errors=errors, last_error=str(exc))
        if isinstance(exc, SourceGone):
            state = replace(state, disabled=f"gone (HTTP 410) since {self.clock.now():%Y-%m-%d}")
        state = replace(state, next_check_at=self._after_error(errors, exc.retry_after))
        log.warning(
            "source %s failed (%d in a row): %s",
            source.id,
            errors,
            exc,
            extra={"source": source.id},
        )
        self.store.save_state(state)

    def _after_error(self, errors: int, retry_after: float | None) -> datetime:
        fetch = self.settings.fetch
        return polling.next_check_after_error(
            errors,
            self.clock.now(),
            retry_after,
            fetch.backoff_base,
            fetch.backoff_max,
            self.rng,
        )


_HASH_BESIDE = 1 << 20  # bytes from which a snapshot is hashed on the side
_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paperboy-hash")


def _record(snapshot: Snapshot, hashing: Future[str] | None, stamp: str | None) -> SnapshotRecord:
    return SnapshotRecord(
        source_id=snapshot.source_id,
        origin=snapshot.origin,
        fetched_at=snapshot.fetched_at,
        captured_at=snapshot.captured_at,
        body_hash=hashing.result() if hashing is not None else body_hash(snapshot.body),
        size=len(snapshot.body),
        stamp=stamp,
    )


def _log_taken(summary: Summary) -> None:
    """One line per snapshot taken: what it held and what changed."""
    if summary.outcome is SnapshotOutcome.UNCHANGED:
        log.info(
            "%s: %s: unchanged",
            summary.source_id,
            summary.origin,
            extra={"source": summary.source_id},
        )
        return
    log.info(
        "%s: %s: %d %s, %d new, %d listed, %d updated, %d dropped",
        summary.source_id,
        summary.origin,
        summary.papers,
        "paper" if summary.papers == 1 else "papers",
        summary.new,
        summary.listed,
        summary.updated,
        summary.dropped,
        extra={"source": summary.source_id},
    )


def _sort_out(result: _Prepared | Summary, prepared: list[_Prepared], done: list[Summary]) -> None:
    """A parsed snapshot waits for its turn; a rejected one is done already."""
    if isinstance(result, _Prepared):
        prepared.append(result)
    else:
        done.append(result)


def _json_list(snapshot: Snapshot) -> list[Any] | None:
    """The items of a JSON list body, or None when the body is not one (the parser says why)."""
    try:
        data = json.loads(snapshot.body)
    except ValueError:
        return None
    return data if isinstance(data, list) else None


# Outcomes of snapshots that were not taken: a command that shows them exits with status 1.
BAD_OUTCOMES = frozenset({SnapshotOutcome.REJECTED, SnapshotOutcome.FAILED})


def _failed(source_id: str, origin: str, exc: FetchError) -> Summary:
    return Summary(
        source_id=source_id,
        origin=redact(origin),
        captured_at=None,
        outcome=SnapshotOutcome.FAILED,
        error=str(exc),
    )
