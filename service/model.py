"""Domain types that cross module boundaries: frozen dataclasses, named by direction.

``PaperIn`` travels from a parser to the diff; ``Paper`` comes from the store; ``Event`` and
``SnapshotIn`` go to the store. ORM rows and pydantic settings never leave their modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, TypeVar

_T = TypeVar("_T")


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
    ``upvotes`` is ``None`` when the source does not count them (feeds, entries without meta).
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
    upvotes: int | None = None
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
    entry_id: str = ""  # minted once when stored ("urn:uuid:..."): feeds' entry id


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
    REJECTED = "rejected"  # the bytes were refused by the parser; kept for inspection
    FAILED = "failed"  # nothing could be fetched; no snapshot is recorded


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


# What the decider (service.diff) reads from and hands to the store.


@dataclass(frozen=True, slots=True)
class Known:
    """What the store knows of a key: its paper and that paper's place in this source."""

    paper_id: int
    arxiv_id: str | None
    fingerprint: str | None  # of the paper as this source showed it last; None: not in source
    present: bool  # in this source's latest snapshot


@dataclass(frozen=True, slots=True)
class Stored:
    """The tracked fields of a stored paper, for comparison."""

    title: str
    abstract: str = ""
    arxiv_id: str | None = None
    version: int | None = None
    doi: str | None = None
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organisation: Organisation | None = None
    published: date | None = None
    upvotes: int | None = None
    links: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A parsed paper with its identity worked out: keys and content fingerprint."""

    paper: PaperIn
    keys: tuple[str, ...]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class NewPaper:
    paper: PaperIn
    keys: tuple[str, ...]
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Update:
    """A known paper whose stored fields change; ``told`` says whether it is an event."""

    paper_id: int
    values: Mapping[str, Any]
    changes: tuple[Change, ...]
    told: bool


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one snapshot changes. Ids of new papers are assigned when it is applied."""

    new: tuple[NewPaper, ...] = ()
    listed: tuple[int, ...] = ()
    updates: tuple[Update, ...] = ()
    dropped: tuple[int, ...] = ()
    aliases: tuple[tuple[str, int], ...] = ()  # (key, paper id) to add
    fingerprints: tuple[tuple[int, str], ...] = ()  # (paper id, fingerprint) for this source
    notes: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.new or self.listed or self.updates or self.dropped or self.fingerprints)


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    INSTANT = "instant"


class DeliveryKind(StrEnum):
    DIGEST = "digest"
    ALERT = "alert"
    CONFIRMATION = "confirmation"  # double opt-in: the link that confirms a subscription
    MANAGE_LINK = "manage-link"  # a new manage link, asked for on the web


class DeliveryStatus(StrEnum):
    COMPOSE = "compose"  # a digest window closed: the sender that claims it composes it
    PENDING = "pending"  # waiting for its next attempt
    SENDING = "sending"  # claimed by a sender until claimed_until
    SENT = "sent"
    FAILED = "failed"  # refused for good (a 5xx reply)
    DEAD = "dead"  # gave up after mail.max_attempts transient failures
    CANCELLED = "cancelled"  # never sent: the subscriber left before it went out


class SubscriberStatus(StrEnum):
    PENDING = "pending"  # subscribed on the web, not yet confirmed: gets only the confirmation
    ACTIVE = "active"
    PAUSED = "paused"  # gets nothing until resumed; the window restarts on resume
    UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscriber's digest is due, in their time zone: daily or weekly at a time, or
    instant (each poll that finds something)."""

    cadence: Cadence
    at: time | None = None  # local time of day; None for instant
    weekday: int | None = None  # 0 = Monday, for weekly

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """``daily HH:MM``, ``weekly DAY HH:MM`` (mon..sun) or ``instant``; else ValueError."""
        words = text.lower().split()
        problem = "expected 'daily HH:MM', 'weekly DAY HH:MM' (DAY: mon..sun) or 'instant'"
        if words == ["instant"]:
            return cls(Cadence.INSTANT)
        if len(words) == 2 and words[0] == "daily":
            return cls(Cadence.DAILY, _clock(words[1], problem))
        if len(words) == 3 and words[0] == "weekly" and words[1][:3] in WEEKDAYS:
            day = WEEKDAYS.index(words[1][:3])
            if not WEEKDAY_NAMES[day].startswith(words[1]):
                raise ValueError(problem)
            return cls(Cadence.WEEKLY, _clock(words[2], problem), day)
        raise ValueError(problem)

    def __str__(self) -> str:
        if self.cadence is Cadence.INSTANT or self.at is None:
            return "instant"
        hhmm = self.at.strftime("%H:%M")
        if self.cadence is Cadence.WEEKLY and self.weekday is not None:
            return f"weekly {WEEKDAYS[self.weekday]} {hhmm}"
        return f"daily {hhmm}"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _clock(text: str, problem: str) -> time:
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2 and len(hours) <= 2):
        raise ValueError(problem)
    if int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"{text} is no time of day")
    return time(int(hours), int(minutes))


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    email: str
    timezone: str
    schedule: Schedule
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    declared: bool = False  # managed by config/profiles.toml
    token: str = ""  # secret behind the subscriber's unsubscribe and feed URLs
    manage_generation: int = 0  # a new manage link counts it up, revoking the one before
    confirmed_at: datetime | None = None  # when they confirmed on the web (double opt-in)


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    """A profile as declared or saved: what a subscriber wants, before it has an id."""

    name: str
    query: str
    min_upvotes: int = 0
    max_items: int = 20
    alert_threshold: float | None = None
    send_when_empty: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    subscriber_id: int
    spec: ProfileSpec


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message in the outbox."""

    id: int
    subscriber_id: int
    kind: DeliveryKind
    window: str
    recipient: str
    subject: str
    message_id: str
    papers: int
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None


def slots_maker(cls: type[_T], *given: str) -> Callable[..., _T]:
    """A maker of ``cls`` (a frozen dataclass with slots) from the ``given`` fields by position,
    the others at their defaults, at a fraction of the cost of calling the class: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, the maker sets the
    slots directly. It is made as dataclasses make ``__init__``, from the fields, so it follows
    the class. For objects made by the hundred thousand (listed papers, matches)."""
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = [f"def make({', '.join(given)}):", "    made = new(cls)"]
    for item in fields(cls):  # type: ignore[arg-type]
        name = item.name
        namespace[f"set_{name}"] = getattr(cls, name).__set__
        if name in given:
            value = name
        elif item.default_factory is not MISSING:
            namespace[f"make_{name}"] = item.default_factory
            value = f"make_{name}()"
        elif item.default is not MISSING:
            namespace[f"default_{name}"] = item.default
            value = f"default_{name}"
        else:
            raise TypeError(f"{cls.__name__}.{name} has no default: give it")
        body.append(f"    set_{name}(made, {value})")
    body.append("    return made")
    exec("\n".join(body), namespace)  # our own code, from the dataclass fields
    return namespace["make"]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address that gets nothing until an operator lifts it, and why (the address itself
    is not kept: see ``service.store.mailboxes``)."""

    reason: str  # hard, soft, complaint
    detail: str
    at: datetime
