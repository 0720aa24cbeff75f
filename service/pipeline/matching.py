"""Matching: the profile index kept in step with the profiles, each snapshot's papers matched
against every profile at once, back-fill for new or changed profiles, and previews."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from service import subscribers
from service.clock import Clock
from service.config import Settings
from service.errors import InvalidValue
from service.identity import mailbox_key
from service.mailroom import Mailroom
from service.match.corpus import Corpus
from service.match.index import (
    Document,
    DocumentStats,
    PreparedDocument,
    ProfileIndex,
    document_from_paper,
    document_terms,
    match_query,
    prepare,
)
from service.match.query import Query, parse_query
from service.match.results import Match
from service.model import Paper, Profile, Summary
from service.store.repository import Store
from service.store.subscriptions import Subscriptions

# The events after which a paper is matched: it arrived, came back, or changed.
MATCHED_EVENTS = ("new", "listed", "updated")
# Previews over papers first seen this recently are served from memory.
PREVIEW_WINDOW = timedelta(days=30)
# Papers matched and stored at a time: a slice's matches live at once (at 100,000 profiles
# about 100,000 of them, some 300 MB), and each slice walks the profiles its words anchor.
MATCH_SLICE = 100
# After storing this many matches at once, the database's planner statistics are refreshed.
ANALYZE_AFTER = 10_000
# How often papers that aged out of the window are dropped from it.
AGE_CHECK = timedelta(minutes=10)


class Matching:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        subscriptions: Subscriptions,
        clock: Clock,
        mailroom: Mailroom,
    ) -> None:
        self.settings = settings
        self.store = store
        self.subscriptions = subscriptions
        self.clock = clock
        self.mailroom = mailroom
        self._index: ProfileIndex | None = None
        self._indexed: dict[int, str] = {}  # profile id -> the query text indexed
        self._df: dict[str, int] = {}
        self._documents = 0
        # The preview window, prepared: papers by id, and the latest event taken into it.
        self._lock = threading.Lock()
        self._counting = threading.RLock()  # document frequencies: counted by one thread
        self._corpus: Corpus | None = None
        self._kept: dict[int, Paper] = {}
        self._first_seen: dict[int, datetime] = {}
        self._seen_event = 0
        self._aged_at = datetime.min.replace(tzinfo=UTC)

    def preview(
        self, query: str | Query, *, since: datetime | None = None, limit: int = 20
    ) -> list[tuple[Paper, Match]]:
        """What a query matches among stored papers (first seen since ``since``), best first.

        Within ``PREVIEW_WINDOW`` the papers are kept prepared in memory (see
        ``match.corpus``), so a preview is only the query's own work; older ones are read
        and tokenised for the call.
        """
        parsed = parse_query(query) if isinstance(query, str) else query
        now = self.clock.now()
        if since is None or since < now - PREVIEW_WINDOW:
            stored = {p.id: p for p in self.store.papers(since=since)}
            found = self._match_query(parsed, (document_from_paper(p) for p in stored.values()))
            return [(stored[m.document_id], m) for m in found[:limit]]
        stats = self._stats()
        with self._lock:
            corpus = self._up_to_date(now)
            kept, first_seen = self._kept, self._first_seen

            def allowed(paper_id: int) -> bool:
                return first_seen[paper_id] >= since

            found = corpus.search(
                parsed, stats, upvote_boost=self.settings.matching.upvote_boost, allowed=allowed
            )
            return [(kept[m.document_id], m) for m in found[:limit]]

    def warm(self) -> None:
        """Count document frequencies and prepare the preview window now (a web process
        does it on start, so that the first preview is as quick as the next)."""
        self._stats()
        with self._lock:
            self._up_to_date(self.clock.now())

    def _up_to_date(self, now: datetime) -> Corpus:
        """The corpus of the papers first seen within ``PREVIEW_WINDOW``: built once, then
        brought up to date from the events since it last looked (call with the lock held)."""
        start = now - PREVIEW_WINDOW
        latest = self.store.last_event()
        if self._corpus is None:
            self._corpus, self._seen_event = Corpus(), latest
            self._kept, self._first_seen = {}, {}
            self._take(self.store.papers(since=start), start)
        elif latest > self._seen_event:
            touched = self.store.touched_after(self._seen_event, MATCHED_EVENTS)
            self._seen_event = latest
            self._take(self.store.papers(ids=touched), start)
        if now - self._aged_at >= AGE_CHECK:
            self._aged_at = now
            for paper_id in [i for i, at in self._first_seen.items() if at < start]:
                del self._kept[paper_id], self._first_seen[paper_id]
                self._corpus.discard(paper_id)
        return self._corpus

    def _take(self, papers: Iterable[Paper], start: datetime) -> None:
        assert self._corpus is not None
        for paper in papers:
            if paper.first_seen_at is not None and paper.first_seen_at >= start:
                self._kept[paper.id], self._first_seen[paper.id] = paper, paper.first_seen_at
                self._corpus.add(document_from_paper(paper))

    def search(
        self,
        query: str | Query,
        *,
        since: datetime | None = None,
        source_id: str | None = None,
        limit: int | None = None,
    ) -> list[Paper]:
        """The stored papers that a query matches (first seen since ``since``, seen in
        ``source_id``), newest first: ``paperboy papers --search``, by the profiles' rules."""
        parsed = parse_query(query) if isinstance(query, str) else query
        stored = self.store.papers(since=since, source_id=source_id)
        hits = {m.document_id for m in match_query(parsed, map(document_from_paper, stored))}
        return [p for p in stored if p.id in hits][:limit]

    def profile_query(self, name: str, email: str | None = None) -> Query:
        """The parsed query of the profile called ``name`` (of ``email`` when several are)."""
        found = self.subscriptions.find_profiles(name)
        if email is not None:
            key = mailbox_key(subscribers.check_email(email))
            found = [(o, p) for o, p in found if mailbox_key(o.email) == key]
        if not found:
            raise InvalidValue("no such profile", field="profile", value=name)
        if len(found) > 1:
            owners = ", ".join(o.email for o, _ in found)
            raise InvalidValue(
                f"several subscribers have it ({owners}); name one", field="profile", value=name
            )
        return parse_query(found[0][1].spec.query)

    def profiles_changed(self, fresh: Sequence[Profile] = ()) -> int:
        """Profiles were saved or removed: bring the index in use up to date and back-fill the
        ``fresh`` (new or changed) ones. Returns the matches back-filled."""
        self._refresh_index()
        return self._backfill(fresh)

    def _backfill(self, fresh: Sequence[Profile]) -> int:
        """Match new or changed profiles against the papers that arrived in their subscriber's
        open window, so that the next digest holds them as if the profile had been there.

        Earlier papers are left to ``preview``; back-filled matches never raise an alert.
        """
        if not fresh:
            return 0
        found: list[Match] = []
        windows = self.mailroom.outbox.windows({p.subscriber_id for p in fresh})
        touched: dict[datetime, list[int]] = {}
        papers: dict[int, PreparedDocument] = {}  # tokenised once for every profile
        for profile in fresh:
            state = windows.get(profile.subscriber_id)
            if state is None:  # not an active subscriber: no digest to fill
                continue
            since = state.window_end
            if since not in touched:
                touched[since] = self.store.touched_since(since, MATCHED_EVENTS)
            ids = touched[since]
            missing = [i for i in ids if i not in papers]
            if missing:
                papers.update(
                    (p.id, prepare(document_from_paper(p))) for p in self.store.papers(ids=missing)
                )
            if ids:
                query = parse_query(profile.spec.query)
                documents = [papers[i] for i in ids if i in papers]
                found += self._match_query(query, documents, profile_id=profile.id)
        return self.subscriptions.save_matches(
            ((m.profile_id, m.document_id, m.score, reasons_json(m)) for m in found),
            self.clock.now(),
        )

    def _match_query(
        self,
        query: Query,
        documents: Iterable[Document | PreparedDocument],
        profile_id: int = 0,
    ) -> list[Match]:
        """One query's matches among ``documents``, scored as the index scores them."""
        boost = self.settings.matching.upvote_boost
        return match_query(
            query, documents, self._stats(), profile_id=profile_id, upvote_boost=boost
        )

    def forget_stats(self) -> None:
        """Count document frequencies afresh when next needed (another process stored papers)."""
        with self._counting:
            self._documents, self._df = 0, {}

    def _stats(self) -> DocumentStats:
        """Document frequencies over every stored paper, kept up to date as papers arrive."""
        with self._counting:  # a web thread and the poller may both ask first
            if self._documents == 0:
                for paper in self.store.all_papers():
                    self._count(document_from_paper(paper))
            return DocumentStats(self._documents, self._df)

    def _count(self, document: Document) -> None:
        self._documents += 1
        df = self._df
        for key in document_terms(document):
            df[key] = df.get(key, 0) + 1

    def _refresh_index(self) -> None:
        """Bring an index in use up to date; a process that matches nothing builds none."""
        if self._index is not None:
            self._sync_index()

    def _sync_index(self) -> ProfileIndex:
        """The index over every profile, changed profile by profile (never rebuilt whole)."""
        if self._index is None:
            boost = self.settings.matching.upvote_boost
            self._index = ProfileIndex(stats=self._stats(), upvote_boost=boost)
            self._indexed = {}
        index = self._index
        current = {p.id: p.spec.query for p in self.subscriptions.profiles()}
        for profile_id in set(self._indexed) - set(current):
            index.remove(profile_id)
            del self._indexed[profile_id]
        for profile_id, text in current.items():
            if self._indexed.get(profile_id) == text:
                continue
            if profile_id in self._indexed:
                index.replace(profile_id, parse_query(text))
            else:
                index.add(profile_id, parse_query(text))
            self._indexed[profile_id] = text
        return index

    def match_snapshot(self, summary: Summary) -> None:
        """Match the snapshot's new and updated papers against every profile at once."""
        if summary.snapshot_id is None or not (summary.new or summary.updated or summary.listed):
            return
        if self._index is None and not self.subscriptions.profiles():
            self.forget_stats()  # nothing to match: count afresh when needed
            return
        events = self.store.events(summary.snapshot_id)
        fresh = {paper_id for kind, paper_id, _ in events if kind == "new"}
        touched = {paper_id for kind, paper_id, _ in events if kind in MATCHED_EVENTS}
        documents = [document_from_paper(p) for p in self.store.papers(ids=sorted(touched))]
        with self._counting:
            if self._documents:  # already counted: add the new papers (else counted lazily)
                for document in documents:
                    if document.id in fresh:
                        self._count(document)
        index = self._sync_index()
        if not len(index):
            return
        # Matched and stored a slice of papers at a time: a day's matches for many profiles
        # never all live as objects at once. Only those that may want an alert are kept.
        alerting = {
            p.id for p in self.subscriptions.profiles() if p.spec.alert_threshold is not None
        }
        stats, now = self._stats(), self.clock.now()
        kept: list[Match] = []
        stored = 0
        for start in range(0, len(documents), MATCH_SLICE):
            found = index.match(documents[start : start + MATCH_SLICE], stats=stats)
            stored += self.subscriptions.save_matches(
                ((m.profile_id, m.document_id, m.score, reasons_json(m)) for m in found), now
            )
            kept += (m for m in found if m.profile_id in alerting or _followed(m))
        if stored >= ANALYZE_AFTER:
            self.subscriptions.analyze_matches()
        self.mailroom.alert(kept)


def _followed(match: Match) -> bool:
    """A match through a followed author or group (worth an alert whatever its score)."""
    return any(reason.field in ("author", "org") for reason in match.reasons)


def reasons_json(match: Match) -> list[dict[str, Any]]:
    return [
        {"term": r.term, "field": r.field, "positions": [list(p) for p in r.positions]}
        for r in match.reasons
    ]
