"""The one orchestrator: every trigger (scheduler, CLI, web) calls these methods.

Polling a source fetches its snapshots, parses each, and hands the parsed papers with what the
store knows to the decider; the store applies the decider's plan in one transaction per
snapshot. A source that fails is recorded as failing and the run goes on with the others.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from service import diff, polling
from service.clock import Clock
from service.config import Settings, SourceSettings, parse_duration
from service.errors import FetchError, ParseError, SourceGone
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
from service.parse import parse
from service.store.repository import SnapshotRecord, Store

log = logging.getLogger(__name__)

# The source that ``paperboy ingest FILE`` uses when no --source is given.
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


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        fetcher: Fetcher | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.fetcher = fetcher
        self.rng = rng or random.Random()

    # -- entry points --------------------------------------------------------------------------

    def declare_sources(self) -> None:
        """Make the store know every declared source (and the one for ad-hoc files)."""
        declared = [
            (s.id, s.kind, self.settings.resolve(s.location)) for s in self.settings.sources
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
            result = self._prepare(snapshot, kind, options)
            (prepared if isinstance(result, _Prepared) else summaries).append(result)  # type: ignore[arg-type]
        summaries.extend(self._commit_in_order(prepared))
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
            state = replace(state, next_check_at=self._after_error(source, state.errors, None))
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
        result = self.fetcher.fetch(
            source.id,
            url,
            state,
            self.clock.now(),
            min_interval=parse_duration(host_interval) if host_interval else None,
        )
        state = replace(state, etag=result.etag, last_modified=result.last_modified)
        if isinstance(result, NotModified):
            summary = Summary(
                source_id=source.id,
                origin=url,
                captured_at=None,
                outcome=SnapshotOutcome.NOT_MODIFIED,
            )
            return [summary], state
        state = replace(state, body_hash=hashlib.sha256(result.body).hexdigest())
        prepared = self._prepare(result, source.kind, source.options)
        if isinstance(prepared, Summary):
            return [prepared], state
        return self._commit_in_order([prepared]), state

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
        for item in files:
            try:
                snapshot = read_file(source.id, item.path, max_bytes=max_bytes, fetched_at=now)
            except FetchError as exc:
                summaries.append(self._unreadable(source.id, item.path, exc, now, item.stamp))
                continue
            result = self._prepare(snapshot, source.kind, source.options, stamp=item.stamp)
            (prepared if isinstance(result, _Prepared) else summaries).append(result)  # type: ignore[arg-type]
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
        record = SnapshotRecord(source_id, str(path), now, None, "", size, stamp=stamp)
        log.warning("rejected %s", exc)
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
        """Parse a snapshot; a rejected one is recorded at once and changes nothing else."""
        record = SnapshotRecord(
            source_id=snapshot.source_id,
            origin=snapshot.origin,
            fetched_at=snapshot.fetched_at,
            captured_at=snapshot.captured_at,
            body_hash=hashlib.sha256(snapshot.body).hexdigest(),
            size=len(snapshot.body),
            stamp=stamp,
        )
        try:
            parsed = parse(snapshot, kind, options)
        except ParseError as exc:
            log.warning("rejected %s", exc)
            return self.store.record_rejected(record, str(exc))
        for note in parsed.notes:
            log.info("%s: %s", snapshot.origin, note)
        announce = frozenset(options.get("new_announce_types", ("new", "cross")))
        return _Prepared(
            snapshot, replace(record, captured_at=parsed.captured_at), parsed, announce
        )

    def _commit_in_order(self, prepared: Iterable[_Prepared]) -> list[Summary]:
        ordered = sorted(prepared, key=lambda p: (p.parsed.captured_at, p.snapshot.origin))
        return [self._commit(item) for item in ordered]

    def _commit(self, item: _Prepared) -> Summary:
        """Diff one parsed snapshot against the store and apply the plan, in one transaction."""
        record = item.record
        incoming = diff.identify(item.parsed.papers)
        with self.store.ingest(record.source_id) as tx:
            if tx.duplicate_of(record.body_hash) is not None:
                return tx.record(record, SnapshotOutcome.UNCHANGED)
            known = tx.known(key for paper in incoming for key in paper.keys)
            matches = diff.resolve(incoming, known)
            stored = tx.stored(diff.needs_compare(incoming, matches))
            latest = tx.last_captured_at()
            captured = item.parsed.captured_at
            plan = diff.decide(
                incoming,
                matches,
                stored,
                tx.present(),
                known_keys=known,
                stale=latest is not None and captured < latest,
                new_announce=item.new_announce,
            )
            for note in plan.notes:
                log.info("%s: %s", record.origin, note)
            return tx.apply(record, plan, len(incoming), self.clock.now())

    # -- health ---------------------------------------------------------------------------------

    def _failed_state(self, source: SourceSettings, state: SourceState, exc: FetchError) -> None:
        errors = state.errors + 1
        state = replace(state, errors=errors, last_error=str(exc))
        if isinstance(exc, SourceGone):
            state = replace(state, disabled=f"gone (HTTP 410) since {self.clock.now():%Y-%m-%d}")
        state = replace(state, next_check_at=self._after_error(source, errors, exc.retry_after))
        log.warning("source %s failed (%d in a row): %s", source.id, errors, exc)
        self.store.save_state(state)

    def _after_error(
        self, source: SourceSettings, errors: int, retry_after: float | None
    ) -> datetime:
        fetch = self.settings.fetch
        return polling.next_check_after_error(
            source,
            errors,
            self.clock.now(),
            retry_after,
            fetch.backoff_base,
            fetch.backoff_max,
            self.rng,
        )


def _failed(source_id: str, origin: str, exc: FetchError) -> Summary:
    return Summary(
        source_id=source_id,
        origin=origin,
        captured_at=None,
        outcome=SnapshotOutcome.FAILED,
        error=str(exc),
    )
