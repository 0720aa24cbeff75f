"""What a digest or an alert holds: pure functions from matches to a ``Digest``.

A digest is one message per subscriber and window. It has a section per profile; a paper that
matches several profiles appears once, in the section of its best match, with every reason.
Papers are best first, each section is capped at its profile's ``max_items`` ("and N more"),
and a paper below a profile's ``min_upvotes`` waits (an update that lifts it past the minimum
brings it in then). Papers already sent are not candidates: the store leaves them out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.latex import to_text
from service.match.results import Reason
from service.model import DeliveryKind, Paper, Profile, SourceState, Subscriber
from service.windows import Window


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored match not yet sent to the profile's subscriber."""

    profile: Profile
    paper: Paper
    score: float
    reasons: tuple[Reason, ...]


@dataclass(frozen=True, slots=True)
class Hit:
    """One profile's reason to show a paper."""

    profile: str
    score: float
    reasons: tuple[Reason, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """The matched query terms, each once, in the order the reasons give."""
        return tuple(dict.fromkeys(r.term for r in self.reasons if r.field != "upvotes"))


@dataclass(frozen=True, slots=True)
class Item:
    paper: Paper
    score: float
    hits: tuple[Hit, ...]  # best first; the first names the section


@dataclass(frozen=True, slots=True)
class Section:
    profile: str
    items: tuple[Item, ...]
    more: int = 0  # matches left out by the profile's max_items
    profile_id: int = 0  # which profile (0: unknown), for the papers' 👍/👎 links

    @property
    def total(self) -> int:
        return len(self.items) + self.more


@dataclass(frozen=True, slots=True)
class Digest:
    kind: DeliveryKind
    subscriber: Subscriber
    window: Window
    sections: tuple[Section, ...]
    notes: tuple[str, ...] = ()  # about the sources: the ones failing for a while
    healthy: bool = False  # every source's last check succeeded: an empty digest may say so

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(item for section in self.sections for item in section.items)

    @property
    def paper_ids(self) -> tuple[int, ...]:
        """The papers shown: the ones recorded as sent."""
        return tuple(item.paper.id for item in self.items)

    @property
    def key(self) -> str:
        """What tells this message apart from every other of its subscriber and kind: the
        outbox holds one delivery per key, and the Message-ID is made from it. A digest is one
        per window; alerts of one moment (two polls in a second) differ by their first paper,
        which no other alert sends again."""
        if self.kind is DeliveryKind.ALERT and self.items:
            return f"{self.window.key}#{min(self.paper_ids)}"
        return self.window.key

    @property
    def total(self) -> int:
        return sum(section.total for section in self.sections)

    @property
    def subject(self) -> str:
        return subject(self)


def compose(
    subscriber: Subscriber,
    kind: DeliveryKind,
    window: Window,
    candidates: Iterable[Candidate],
    *,
    notes: Sequence[str] = (),
    healthy: bool = False,
    send_when_empty: bool = False,
) -> Digest | None:
    """The digest of ``candidates``, or None when there is nothing to send."""
    by_paper: dict[int, list[Candidate]] = {}
    for candidate in candidates:
        if candidate.paper.upvotes < candidate.profile.spec.min_upvotes:
            continue
        by_paper.setdefault(candidate.paper.id, []).append(candidate)
    caps: dict[str, int] = {}
    ids: dict[str, int] = {}
    grouped: dict[str, list[Item]] = {}
    for found in by_paper.values():
        found.sort(key=lambda c: (-c.score, c.profile.spec.name))
        best = found[0]
        hits = tuple(Hit(c.profile.spec.name, c.score, c.reasons) for c in found)
        name = best.profile.spec.name
        caps[name] = best.profile.spec.max_items
        ids[name] = best.profile.id
        grouped.setdefault(name, []).append(Item(best.paper, best.score, hits))
    sections = []
    for name, items in grouped.items():
        items.sort(key=lambda i: (-i.score, -i.paper.upvotes, i.paper.id))
        cap = caps[name]
        sections.append(Section(name, tuple(items[:cap]), max(0, len(items) - cap), ids[name]))
    sections.sort(key=lambda s: (-s.total, -s.items[0].score, s.profile))
    if not sections and not send_when_empty:
        return None
    return Digest(kind, subscriber, window, tuple(sections), tuple(notes), healthy)


def wants_alert(candidate: Candidate) -> bool:
    """A match worth an alert: over the profile's threshold, or a followed author or group."""
    threshold = candidate.profile.spec.alert_threshold
    if threshold is not None and candidate.score >= threshold:
        return True
    return any(reason.field in ("author", "org") for reason in candidate.reasons)


def source_notes(
    states: Iterable[tuple[SourceState, datetime]], now: datetime, after: timedelta
) -> tuple[str, ...]:
    """A line per source failing for longer than ``after`` (state, and when the source was
    declared, for one that never succeeded)."""
    notes = []
    for state, created in states:
        if state.disabled:
            notes.append(f"Source {state.source_id} is disabled: {state.disabled}.")
            continue
        if not state.errors:
            continue
        since = state.last_success_at or created
        if now - since > after:
            days = (now - since).days
            span = f"{days} day{'s' if days != 1 else ''}" if days else "a day"
            error = f": {_one_line(state.last_error)}" if state.last_error else ""
            notes.append(f"Source {state.source_id} has been failing for {span}{error}.")
    return tuple(notes)


def sources_healthy(states: Iterable[tuple[SourceState, datetime]]) -> bool:
    """Whether every source is enabled and its last check succeeded (what "All sources are
    healthy" claims); a source failing for less than ``source_notes``' span is not healthy."""
    return all(not state.disabled and not state.errors for state, _ in states)


def _one_line(text: str, limit: int = 200) -> str:
    """Text fit for one line (and a header): whitespace, CR and LF collapsed, length capped."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def subject(digest: Digest) -> str:
    """``7 new papers: KV cache (4), privacy (3)``; one line, whatever the names hold."""
    total = digest.total
    if digest.kind is DeliveryKind.ALERT and len(digest.items) == 1:
        return _one_line(f"Alert: {to_text(digest.items[0].paper.title)}", 160)
    if not total:
        return "No new papers" + (" (a source is failing)" if digest.notes else "")
    noun = "paper" if total == 1 else "papers"
    lead = "Alert" if digest.kind is DeliveryKind.ALERT else "new"
    head = f"Alert: {total} {noun}" if lead == "Alert" else f"{total} new {noun}"
    parts = ", ".join(f"{_one_line(s.profile, 60)} ({s.total})" for s in digest.sections)
    return _one_line(f"{head}: {parts}", 160)
