"""Domain types that cross module boundaries: frozen dataclasses, named by direction.

``PaperIn`` travels from a parser to the diff; ``Paper`` comes from the store; ``Event`` and
``SnapshotIn`` go to the store. ORM rows and pydantic settings never leave their modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any



class SourceKind(StrEnum):
    LISTING = "listing"
    HF_DAILY = "hf-daily"
    FEED = "feed"


@dataclass(frozen=True, slots=True)
class Organisation:
    """A Hugging Face organisation: its handle (``ByteDance-Seed``) and display name."""

    handle: str
    name: str


@dataclass(frozen=True, slots=True)
class PaperIn:
    """One paper as a source shows it, before identity and diffing.

    ``arxiv_id`` is version-less (``2410.21465``); ``version`` is the arXiv version when the
    source names one. ``authors`` holds names when the source lists them; ``author_count`` is
    set when only a count is shown (listing captures) or names are partly hidden. ``links``
    maps a role (``abs``, ``pdf``, ``code``, ``project``, ``hf``, ``doi``) to a URL.
    ``listed_at`` is when the source listed the paper (HF's ``submittedOnDailyAt``).
    ``line`` is where the entry starts in the snapshot, for messages.
    """

    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organisation: Organisation | None = None
    published: date | None = None
    listed_at: datetime | None = None
    upvotes: int = 0
    comments: int | None = None
    stars: int | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    summary: str = ""
    announce: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a parser made of one snapshot.

    ``captured_at`` is the capture time the parser settled on (the listing format needs it for
    years); ``notes`` are harmless oddities worth logging (skipped items and why).
    """

    papers: tuple[PaperIn, ...]
    captured_at: datetime
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The bytes of one fetch, with what is known about when they were captured.

    ``captured_at`` is authoritative when set (fetch time over HTTP, ``--captured-at``).
    ``mtime`` is a weaker hint (a file's modification time): a parser may overrule it when the
    content contradicts it. ``origin`` names the file or URL in messages.
    """

    source_id: str
    origin: str
    body: bytes
    fetched_at: datetime
    captured_at: datetime | None = None
    mtime: datetime | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class NotModified:
    """A fetch that found nothing new (HTTP 304, an unchanged body, no new files)."""

    source_id: str
    origin: str
    etag: str | None = None
    last_modified: str | None = None


class EventKind(StrEnum):
    NEW = "new"  # never seen anywhere
    LISTED = "listed"  # known paper, new to this source
    UPDATED = "updated"  # a tracked field changed
    DROPPED = "dropped"  # was in this source's previous snapshot, not in this one


@dataclass(frozen=True, slots=True)
class Change:
    """One field that changed: its name and the values before and after (JSON-able)."""

    field: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class Paper:
    """A paper as the store knows it."""

    id: int
    key: str
    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organisation: Organisation | None = None
    published: date | None = None
    upvotes: int = 0
    links: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    summary: str = ""
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a paper in a source, as found by the diff."""

    kind: EventKind
    paper_id: int
    source_id: str
    at: datetime
    changes: tuple[Change, ...] = ()


class SnapshotOutcome(StrEnum):
    PARSED = "parsed"
    UNCHANGED = "unchanged"  # same bytes as the last snapshot of this source
    NOT_MODIFIED = "not-modified"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Summary:
    """What ingesting one snapshot did: counts per event kind, or why it was rejected."""

    source_id: str
    origin: str
    captured_at: datetime | None
    outcome: SnapshotOutcome
    papers: int = 0
    new: int = 0
    listed: int = 0
    updated: int = 0
    dropped: int = 0
    error: str | None = None
    snapshot_id: int | None = None


@dataclass(frozen=True, slots=True)
class SourceState:
    """A source's polling state and health, as kept in the store.

    ``errors`` counts consecutive failures; ``disabled`` holds the reason when polling stopped
    on its own (HTTP 410), until an operator re-enables the source.
    """

    source_id: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    next_check_at: datetime | None = None
    errors: int = 0
    last_error: str | None = None
    disabled: str | None = None
