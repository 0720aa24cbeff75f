"""Matches as RSS 2.0 and Atom (RFC 4287) feeds, one per profile and one per subscriber."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal
from urllib.parse import urlsplit

import jinja2

from service.digest import Hit
from service.model import Paper
from service.render.papers import view

Format = Literal["rss", "atom"]
FORMATS: tuple[Format, ...] = ("rss", "atom")
MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml"}
ALL = "all"  # the slug of a subscriber's feed of every profile


@dataclass(frozen=True, slots=True)
class FeedEntry:
    paper: Paper
    hits: tuple[Hit, ...]  # best first
    at: datetime  # when the paper matched: the entry's date


@dataclass(frozen=True, slots=True)
class FeedMeta:
    title: str
    base_url: str
    path: str  # under base_url, without the extension: "feeds/<token>/kv-cache"
    description: str = ""


def guid(paper: Paper) -> str:
    """The entry's id: minted once when the paper was stored (a ``urn:uuid:`` IRI), the same
    in every feed and for good, whatever keys or links the paper gains later."""
    return paper.entry_id


def render_feed(
    env: jinja2.Environment,
    meta: FeedMeta,
    entries: Sequence[FeedEntry],
    fmt: Format,
    now: datetime,
) -> bytes:
    template = env.get_template(f"feeds/{fmt}.xml")
    updated = max((e.at for e in entries), default=now).astimezone(UTC)
    items = [
        {
            "view": view(entry.paper, entry.hits),
            "guid": guid(entry.paper),
            "categories": [hit.profile for hit in entry.hits],
            "rfc822": format_datetime(entry.at.astimezone(UTC), usegmt=True),
            "rfc3339": _rfc3339(entry.at),
            "published": (
                f"{entry.paper.published.isoformat()}T00:00:00Z" if entry.paper.published else None
            ),
        }
        for entry in entries
    ]
    text = template.render(
        meta=meta,
        self_url=f"{meta.base_url}/{meta.path}.{fmt}",
        feed_id=f"tag:{urlsplit(meta.base_url).hostname or 'localhost'},2026:{meta.path}",
        rfc822=format_datetime(updated, usegmt=True),
        rfc3339=_rfc3339(updated),
        items=items,
    )
    return text.encode()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Runs of anything but letters and digits (in any script) become one hyphen.
_NOT_WORD = re.compile(r"[\W_]+")


def slug(name: str) -> str:
    """A profile name as a file and URL name: accents dropped (``Ünïcode`` -> ``unicode``),
    letters of other scripts kept (``機械学習``), everything else folded to hyphens."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    text = _NOT_WORD.sub("-", unicodedata.normalize("NFC", bare).casefold()).strip("-")
    return text[:80].rstrip("-") or "profile"


def slugs(profiles: Iterable[tuple[int, str]]) -> dict[int, str]:
    """A unique slug per (profile id, name), stable as profiles come and go: the oldest
    profile (lowest id) keeps the plain slug, a later one with the same slug (or ``all``)
    gets its id appended."""
    taken = {ALL}
    out: dict[int, str] = {}
    for profile_id, name in sorted(profiles):
        chosen = slug(name)
        if chosen in taken:
            chosen = f"{chosen}-{profile_id}"
        taken.add(chosen)
        out[profile_id] = chosen
    return out
