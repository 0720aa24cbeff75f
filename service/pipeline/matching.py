"""Matching: the profile index kept in step with the profiles, each snapshot's papers matched
against every profile at once, back-fill for new or changed profiles, and previews."""

from __future__ import annotations

import gc
import json
import random
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

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
from service.match.results import Match, new_match
from service.model import Paper, Profile, Summary
from service.store.likes import Likes
from service.store.repository import Store
from service.store.similarity import SimilarityStore, StoredFeatures, StoredModel
from service.store.subscriptions import ProfileQuery, Subscriptions

if TYPE_CHECKING:  # scikit-learn is imported only once somebody likes a paper (it is slow)
    from service.match import similar

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
# Kept prepared: the window and a margin, so that a window asked for a moment ago (or until
# the next age check) is still whole.
KEPT = PREVIEW_WINDOW + AGE_CHECK
# Stored papers sampled as the background every similarity model is trained against.
BACKGROUND = 1000
# The tf-idf vocabulary is refitted when the papers stored since the last fit reach this share
# of those it was fitted on (and at least REFIT_MIN of them).
REFIT_SHARE = 0.25
REFIT_MIN = 1000
# Feature rows kept of the papers matched lately (~30 days of 1,000 papers; ~40 MB), for a
# click's back-fill of the open window.
KEPT_ROWS = 30_000


class Matching:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        subscriptions: Subscriptions,
        clock: Clock,
        mailroom: Mailroom,
        likes: Likes | None = None,
        models: SimilarityStore | None = None,
    ) -> None:
        self.settings = settings
        self.likes = likes or Likes(store.engine)
        self.models = models or SimilarityStore(store.engine)
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
        # Similarity profiles: features fitted on the stored papers, one model per profile
        # with liked papers, trained on (liked, refused) as recorded in ``_trained``.
        self._similar_lock = threading.RLock()
        self._features: similar.Features | None = None
        self._fitted_on = 0
        self._arrived = 0  # papers stored since the fit
        self._background_ids: list[int] = []
        self._background: Any = None
        self._background_generic: Any = None
        self._like_terms: dict[int, Any] = {}  # liked paper id -> its main terms
        self._paper_rows: dict[int, Any] = {}  # paper id -> its feature row, oldest first
        self._similar: similar.SimilarityIndex | None = None
        self._trained: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._titles: dict[int, str] = {}
        self._refused: dict[int, frozenset[int]] = {}
        # The preview window as feature rows, for previews of liked papers (see _window_rows).
        self._preview_rows: tuple[Any, int, dict[int, int], Any] | None = None

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
        if since is None or since < now - KEPT:
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
                parsed,
                stats,
                upvote_boost=self.settings.matching.upvote_boost,
                allowed=allowed,
                limit=limit,
            )
            return [(kept[m.document_id], m) for m in found[:limit]]

    def warm(self) -> None:
        """Count document frequencies and prepare the preview window now (a web process
        does it on start, so that the first preview is as quick as the next)."""
        self._stats()
        with self._lock:
            self._up_to_date(self.clock.now())
        # What was just built lives as long as the process: out of the cyclic collector's
        # way, whose full passes would otherwise walk millions of objects at every preview.
        gc.collect()
        gc.freeze()

    def _up_to_date(self, now: datetime) -> Corpus:
        """The corpus of the papers first seen within ``KEPT``: built once, then
        brought up to date from the events since it last looked (call with the lock held)."""
        start = now - KEPT
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
        if not found[0][1].spec.query.strip():
            raise InvalidValue(
                "this profile has no query (it ranks by liked papers)", field="profile", value=name
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
        if not fresh or not self.store.last_event():  # no paper event: nothing to fill with
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
            if ids and profile.spec.query.strip():
                query = parse_query(profile.spec.query)
                documents = [papers[i] for i in ids if i in papers]
                found += self._match_query(query, documents, profile_id=profile.id)
        saved = self.subscriptions.save_matches(
            ((m.profile_id, m.document_id, m.score, reasons_json(m)) for m in found),
            self.clock.now(),
        )
        # Only a profile with votes scores otherwise than its query did just above (likes
        # rank, refusals hide): the others are not matched twice.
        self._sync_similar()
        voted = self._trained.keys() | self._refused.keys()
        return saved + self._backfill_similar([p for p in fresh if p.id in voted])

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

    def _sync_index(self, queries: Sequence[ProfileQuery] | None = None) -> ProfileIndex:
        """The index over every profile (``queries``, when the caller has just read them),
        changed profile by profile (never rebuilt whole)."""
        if self._index is None:
            boost = self.settings.matching.upvote_boost
            self._index = ProfileIndex(stats=self._stats(), upvote_boost=boost)
            self._indexed = {}
        index = self._index
        if queries is None:
            queries = self.subscriptions.queries()
        current = {p.id: p.query for p in queries if p.query.strip()}
        for profile_id in set(self._indexed) - set(current):
            index.remove(profile_id)
            del self._indexed[profile_id]
        parsed: dict[str, Query] = {}  # many profiles share a query: each is parsed once
        added: dict[int, str] = {}
        for profile_id, text in current.items():
            if self._indexed.get(profile_id) == text:
                continue
            if text not in parsed:
                parsed[text] = parse_query(text)
            if profile_id in index:
                index.remove(profile_id)
                self._indexed.pop(profile_id, None)
            added[profile_id] = text
        index.add_many((profile_id, parsed[text]) for profile_id, text in added.items())
        self._indexed.update(added)
        return index

    # -- similarity profiles ----------------------------------------------------------------

    def likes_changed(self, changed: Sequence[Profile] = ()) -> int:
        """Liked or refused papers of ``changed`` profiles were saved: retrain their models (only
        theirs) and score their subscriber's open window again. Returns the matches saved."""
        return self._backfill_similar(changed)

    def _sync_similar(
        self, only: Collection[int] | None = None
    ) -> tuple[similar.Features, similar.SimilarityIndex] | None:
        """The similarity index brought up to date with the likes (``None``: nobody has any).

        Models are retrained only for profiles whose likes changed (``only``: the likes of
        just these profiles are read, as after a click); the features and models are loaded
        from the store when this process has none, and refitted (every model retrained) when
        enough papers arrived since the last fit. Retrained models are stored.
        """
        with self._similar_lock:
            if only is None:
                self.likes.join()
            liked: dict[int, set[int]] = {}
            refused: dict[int, set[int]] = {}
            for like in self.likes.of(None if only is None else sorted(only)):
                if like.paper_id is None:
                    continue
                chosen = liked if like.vote == "up" else refused
                chosen.setdefault(like.profile_id, set()).add(like.paper_id)
            now_refused = {p: frozenset(ids) for p, ids in refused.items()}
            if only is None:
                self._refused = now_refused
            else:
                self._refused = {
                    p: ids for p, ids in self._refused.items() if p not in only
                } | now_refused
            if not liked and (only is None or self._similar is None):
                if only is None:
                    self._similar, self._trained = None, {}
                return None
            from service.match import similar

            if self._features is None or self._similar is None:
                self._load()
            elif self._arrived >= max(REFIT_MIN, REFIT_SHARE * self._fitted_on):
                self._fit()
            assert self._features is not None and self._similar is not None
            features, index = self._features, self._similar
            wanted = {
                p: (tuple(sorted(ids)), tuple(sorted(refused.get(p, set()) - ids)))
                for p, ids in liked.items()
            }
            gone = sorted(
                p
                for p in (self._trained if only is None else only)
                if p in self._trained and p not in wanted
            )
            for profile_id in gone:
                index.remove(profile_id)
                del self._trained[profile_id]
            self.models.drop_models(gone)
            stale = {p: w for p, w in wanted.items() if self._trained.get(p) != w}
            if stale:
                needed = sorted({i for up, down in stale.values() for i in up + down})
                stored = {p.id: p for p in self.store.papers(ids=needed)}
                rows_of = dict(
                    zip(
                        stored,
                        features.transform([similar.text_from_paper(p) for p in stored.values()]),
                        strict=True,
                    )
                )
                models, saved = [], []
                for profile_id, (wanted_up, wanted_down) in stale.items():
                    up = tuple(i for i in wanted_up if i in stored)
                    down = tuple(i for i in wanted_down if i in stored)
                    if not up:
                        continue
                    for i in up:
                        self._titles[i] = stored[i].title
                    named = set(up + down)
                    keep = [n for n, i in enumerate(self._background_ids) if i not in named]
                    model = similar.train(
                        profile_id,
                        up,
                        _stack([rows_of[i] for i in up], features.width),
                        _stack([rows_of[i] for i in down], features.width),
                        self._background[keep],
                        self._background_generic[keep],
                        rate=self.settings.matching.similar_rate,
                    )
                    models.append(model)
                    saved.append(
                        StoredModel(
                            profile_id, features.version, up, down, similar.model_to_bytes(model)
                        )
                    )
                    self._trained[profile_id] = (up, down)
                if len(models) > 1:
                    index.put_many(models)
                else:
                    for model in models:
                        index.put(model)
                self.models.save_models(saved, self.clock.now())
            return features, index

    def _load(self) -> None:
        """The features and models another process stored (lock held); fitted afresh when
        there are none."""
        from service.match import similar

        stored = self.models.features()
        if stored is None:
            self._fit()
            return
        features = similar.Features.from_bytes(stored.data)
        background = self.store.papers(ids=list(stored.background))
        self._set_features(features, background, self.store.counts()["papers"])
        assert self._similar is not None
        models = []
        for saved in self.models.models(stored.version):
            models.append(similar.model_from_bytes(saved.profile_id, saved.data))
            self._trained[saved.profile_id] = (saved.liked, saved.refused)
        self._similar.put_many(models)

    def _fit(self) -> None:
        """Fit the features on every stored paper, sample the background, store both (lock
        held); every model is then retrained."""
        from service.match import similar

        stored = list(self.store.all_papers())
        features = similar.Features.fit([similar.text_from_paper(p) for p in stored])
        sample = random.Random(len(stored)).sample(range(len(stored)), min(BACKGROUND, len(stored)))
        background = [stored[n] for n in sample]
        self._set_features(features, background, len(stored))
        self.models.save_features(
            StoredFeatures(
                features.version,
                features.fitted_on,
                tuple(p.id for p in background),
                features.to_bytes(),
            ),
            self.clock.now(),
        )

    def _set_features(
        self, features: similar.Features, background: Sequence[Paper], papers: int
    ) -> None:
        from service.match import similar

        self._features = features
        self._background_ids = [p.id for p in background]
        self._background = features.transform([similar.text_from_paper(p) for p in background])
        self._background_generic = features.generic(self._background)
        self._fitted_on, self._arrived = features.fitted_on, max(0, papers - features.fitted_on)
        self._similar = similar.SimilarityIndex(features.width)
        self._trained = {}
        self._like_terms = {}
        self._paper_rows = {}

    def _liked_rows(self, models: Sequence[similar.ProfileModel]) -> dict[int, Any]:
        """The liked papers' main terms for each of ``models`` (read and cached per paper),
        to name the liked paper a match is closest to."""
        from service.match import similar

        assert self._features is not None
        missing = sorted({i for m in models for i in m.liked if i not in self._like_terms})
        if missing:
            stored = self.store.papers(ids=missing)
            rows = similar.top_terms(
                self._features.transform([similar.text_from_paper(p) for p in stored])
            )
            for n, paper in enumerate(stored):
                self._like_terms[paper.id] = rows[n]
                self._titles[paper.id] = paper.title
        width = self._features.width
        return {
            m.profile_id: _stack(
                [self._like_terms[i] for i in m.liked if i in self._like_terms], width
            )
            for m in models
        }

    def _rows(
        self,
        features: similar.Features,
        papers: Sequence[Paper],
        texts: Sequence[similar.Text],
        *,
        fresh: bool,
    ) -> Any:
        """The papers' feature rows (lock held). Rows of the papers matched lately are kept,
        so that a click's back-fill of the open window does not transform them again;
        ``fresh``: the papers were just stored or changed (a snapshot), so transform them."""

        kept = self._paper_rows
        missing = [n for n, p in enumerate(papers) if fresh or p.id not in kept]
        if missing:
            made = features.transform([texts[n] for n in missing])
            for at, n in enumerate(missing):
                kept.pop(papers[n].id, None)
                kept[papers[n].id] = made[at]
            while len(kept) > KEPT_ROWS:
                del kept[next(iter(kept))]  # the oldest first
            if fresh:
                return made
        return _stack([kept[p.id] for p in papers], features.width)

    def _with_similarity(
        self,
        found: list[Match],
        papers: Sequence[Paper],
        synced: tuple[similar.Features, similar.SimilarityIndex] | Literal[False] | None = False,
        with_query: Collection[int] | None = None,
        profiles: Collection[int] | None = None,
    ) -> list[Match]:
        """Query matches merged with similarity matches of the same papers (one per profile
        and paper), without papers a profile refused. ``synced`` (the index as
        ``_sync_similar`` left it) and ``with_query`` (the profiles with a query) are read
        here unless a caller that merges slice by slice read them once; ``profiles`` limits
        the similarity matches to those profiles (a back-fill)."""
        if synced is False:
            synced = self._sync_similar()
        refused, trained = self._refused, self._trained
        if synced is None and not refused and not trained:
            return found  # nothing to merge or leave out (a million matches a day at 100k)
        merged = {(m.profile_id, m.document_id): m for m in found}
        if synced is not None and papers:
            from service.match import similar

            features, index = synced
            if with_query is None:
                with_query = {p.id for p in self.subscriptions.profiles() if p.spec.query.strip()}
            only = {
                profile_id: frozenset(d for p, d in merged if p == profile_id)
                for profile_id in (self._trained if profiles is None else profiles)
                if profile_id in with_query and profile_id in self._trained
            }
            texts = [similar.text_from_paper(p) for p in papers]
            with self._similar_lock:
                if profiles is not None:
                    index = _subset(index, profiles)
                rows = self._rows(features, papers, texts, fresh=profiles is None)
                sim = similar.matches(
                    index, features, texts, self._titles, self._liked_rows, only=only, rows=rows
                )
            for match in sim:
                key = (match.profile_id, match.document_id)
                query = merged.get(key)
                reasons = (query.reasons if query else ()) + match.reasons
                # With a query the likes rank what it matched: the similarity score orders.
                merged[key] = new_match(match.profile_id, match.document_id, match.score, reasons)
        # Not shown: what the profile refused, and what it named as liked (it has them).
        return [
            m
            for m in merged.values()
            if m.document_id not in refused.get(m.profile_id, ())
            and m.document_id not in trained.get(m.profile_id, ((), ()))[0]
        ]

    def _backfill_similar(self, changed: Sequence[Profile]) -> int:
        """Score the open window of ``changed`` profiles again (their likes changed): their
        models alone are retrained and scored."""
        if not changed:
            return 0
        ids = {p.id for p in changed}
        synced = self._sync_similar(only=ids)
        with_query = {p.id for p in changed if p.spec.query.strip()}
        windows = self.mailroom.outbox.windows({p.subscriber_id for p in changed})
        touched: dict[datetime, list[Paper]] = {}  # the papers of a window, read once
        found: list[Match] = []
        for profile in changed:
            state = windows.get(profile.subscriber_id)
            if state is None:
                continue
            since = state.window_end
            if since not in touched:
                seen = self.store.touched_since(since, MATCHED_EVENTS)
                touched[since] = self.store.papers(ids=seen) if seen else []
            papers = touched[since]
            query: list[Match] = []
            if papers and profile.spec.query.strip():
                query = self._match_query(
                    parse_query(profile.spec.query),
                    map(document_from_paper, papers),
                    profile_id=profile.id,
                )
            merged = self._with_similarity(query, papers, synced, with_query, {profile.id})
            found += [m for m in merged if m.profile_id == profile.id]
        return self.subscriptions.save_matches(
            ((m.profile_id, m.document_id, m.score, reasons_json(m)) for m in found),
            self.clock.now(),
        )

    def match_snapshot(self, summary: Summary) -> None:
        """Match the snapshot's new and updated papers against every profile at once."""
        if summary.snapshot_id is None or not (summary.new or summary.updated or summary.listed):
            return
        profiles = self.subscriptions.queries()  # read once for all that follows
        if self._index is None and not profiles:
            self.forget_stats()  # nothing to match: count afresh when needed
            return
        events = self.store.events(summary.snapshot_id)
        fresh = {paper_id for kind, paper_id, _ in events if kind == "new"}
        touched = {paper_id for kind, paper_id, _ in events if kind in MATCHED_EVENTS}
        by_id = {p.id: p for p in self.store.papers(ids=sorted(touched))}
        documents = [document_from_paper(p) for p in by_id.values()]
        with self._counting:
            if self._documents:  # already counted: add the new papers (else counted lazily)
                for document in documents:
                    if document.id in fresh:
                        self._count(document)
        with self._similar_lock:
            self._arrived += len(fresh)
        index = self._sync_index(profiles)
        # Matched and stored a slice of papers at a time: a day's matches for many profiles
        # never all live as objects at once. Only those that may want an alert are kept.
        alerting = {p.id for p in profiles if p.alert_threshold is not None}
        with_query = {p.id for p in profiles if p.query.strip()}
        synced = self._sync_similar()  # once for every slice
        stats, now = self._stats(), self.clock.now()
        kept: list[Match] = []
        # Each slice is saved while the next is matched.
        with self.subscriptions.matches_saver(now) as saver:
            for start in range(0, len(documents), MATCH_SLICE):
                part = documents[start : start + MATCH_SLICE]
                found = index.match(part, stats=stats) if len(index) else []
                papers = [by_id[d.id] for d in part]
                found = self._with_similarity(found, papers, synced, with_query)
                saver.save(_rows(found))
                kept += _may_alert(found, alerting)
        if saver.saved >= ANALYZE_AFTER:
            self.subscriptions.analyze_matches()
        self.mailroom.alert(kept)

    def preview_similar(
        self,
        liked: Sequence[int],
        refused: Sequence[int] = (),
        query: str | Query | None = None,
        *,
        since: datetime,
        limit: int = 20,
    ) -> list[tuple[Paper, Match]]:
        """What a profile liking the stored papers ``liked`` (and refusing ``refused``) would
        get among the papers first seen since ``since`` (at most ``KEPT`` ago), best first:
        the example digest of a profile before it is saved. With ``query`` the query decides
        what can match and the likes rank it, as in a digest. One liked paper is enough."""
        import numpy as np

        from service.match import similar

        parsed = parse_query(query) if isinstance(query, str) else query
        with self._similar_lock:
            if self._features is None:
                self._fit()
            assert self._features is not None
            features, background, background_generic, background_ids = (
                self._features,
                self._background,
                self._background_generic,
                self._background_ids,
            )
        named = set(liked) | set(refused)
        stored = {p.id: p for p in self.store.papers(ids=sorted(named))}
        up = tuple(i for i in dict.fromkeys(liked) if i in stored)
        down = tuple(i for i in dict.fromkeys(refused) if i in stored and i not in up)
        if not up:
            return []
        rows = features.transform([similar.text_from_paper(stored[i]) for i in up + down])
        keep = [n for n, i in enumerate(background_ids) if i not in named]
        model = similar.train(
            0,
            up,
            rows[: len(up)],
            rows[len(up) :],
            background[keep],
            background_generic[keep],
            rate=self.settings.matching.similar_rate,
        )
        liked_terms = similar.top_terms(rows[: len(up)])
        now = self.clock.now()
        with self._lock:
            self._up_to_date(now)
            kept, first_seen = self._kept, self._first_seen
            window = [
                paper_id
                for paper_id in kept
                if first_seen[paper_id] >= since and paper_id not in named
            ]
            papers = {paper_id: kept[paper_id] for paper_id in window}
            rows = self._window_rows(features)
        allowed: set[int] | None = None
        if parsed is not None:
            documents = map(document_from_paper, papers.values())
            allowed = {m.document_id for m in self._match_query(parsed, documents)}
            window = [paper_id for paper_id in window if paper_id in allowed]
        if not window:
            return []
        positions, matrix = rows
        chosen = matrix[[positions[paper_id] for paper_id in window]]
        scores = model.scaled(model.raw(chosen, features.generic(chosen)))
        # Likes alone: a paper must pass the profile's cut (1 on the similarity scale), as in a
        # digest; with a query, the query decides and every paper it matched is ranked.
        order = [
            n for n in np.argsort(-scores, kind="stable") if allowed is not None or scores[n] > 1.0
        ]
        titles = {i: stored[i].title for i in up}
        found = []
        for n in order[:limit]:
            paper = papers[window[n]]
            reasons = similar.explain(
                features, model, liked_terms, chosen[n], similar.text_from_paper(paper), titles
            )
            found.append((paper, new_match(0, paper.id, float(scores[n]), reasons)))
        return found

    def _window_rows(self, features: similar.Features) -> tuple[dict[int, int], Any]:
        """The preview window's papers as feature rows (paper id -> row), made once per
        vocabulary and window (call with the preview lock held): a likes preview then costs
        one product, not the window's tf-idf."""
        from service.match import similar

        cached = self._preview_rows
        if cached is not None and cached[0] is features and cached[1] == self._seen_event:
            return cached[2], cached[3]
        ids = list(self._kept)
        matrix = features.transform([similar.text_from_paper(self._kept[i]) for i in ids])
        positions = {paper_id: n for n, paper_id in enumerate(ids)}
        self._preview_rows = (features, self._seen_event, positions, matrix)
        return positions, matrix


def _rows(found: Sequence[Match]) -> list[tuple[int, int, float, str]]:
    """Matches as the store saves them. Profiles of one query share their matches' reasons:
    each is written out once."""
    texts: dict[int, str] = {}  # by id(): the reasons live as long as ``found``
    rows = []
    for m in found:
        text = texts.get(id(m.reasons))
        if text is None:
            text = texts[id(m.reasons)] = json.dumps(reasons_json(m))
        rows.append((m.profile_id, m.document_id, m.score, text))
    return rows


def _may_alert(found: Sequence[Match], alerting: Collection[int]) -> Iterator[Match]:
    """The matches that may want an alert: those of a profile with a threshold, and those
    through a followed author or group (the reasons that many matches share looked at once).
    """
    followed: dict[int, bool] = {}  # by id(): the reasons live as long as ``found``
    for m in found:
        if m.profile_id in alerting:
            yield m
            continue
        hit = followed.get(id(m.reasons))
        if hit is None:
            hit = followed[id(m.reasons)] = _followed(m)
        if hit:
            yield m


def _followed(match: Match) -> bool:
    """A match through a followed author or group (worth an alert whatever its score)."""
    return any(reason.field in ("author", "org") for reason in match.reasons)


def reasons_json(match: Match) -> list[dict[str, Any]]:
    return [
        {"term": r.term, "field": r.field, "positions": [list(p) for p in r.positions]}
        for r in match.reasons
    ]


def _stack(rows: Sequence[Any], width: int) -> Any:
    """Sparse rows stacked into one matrix (an empty one of ``width`` columns for none)."""
    import scipy.sparse as sp

    if not rows:
        return sp.csr_matrix((0, width), dtype="float32")
    return sp.vstack(rows, format="csr")


def _subset(index: similar.SimilarityIndex, profiles: Collection[int]) -> similar.SimilarityIndex:
    """An index of only ``profiles``' models (scoring a back-fill touches no other profile)."""
    from service.match import similar

    subset = similar.SimilarityIndex(index.width)
    subset.put_many(index.model(p) for p in profiles if p in index)
    return subset
