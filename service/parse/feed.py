"""Parser for kind ``feed``: any RSS or Atom document, read by feedparser from the bytes.

General feeds (journals, blogs): titles and descriptions become clean text (tags stripped,
entities unescaped, whitespace collapsed; script, style and frames dropped), a DOI comes from a
bare-DOI guid, a ``doi:`` identifier, ``prism:doi`` or a doi.org link, ``published`` from the
entry's published date or else its updated date, ``categories`` from its tags. A description
that repeats the title first (Nature's cards) loses that copy. ``links["abs"]`` is the entry's
page (relative links are resolved against ``xml:base`` or the snapshot's URL).

arXiv, in every shape it is published in:

- the RSS listing: the version-less id and version from the ``oai:arXiv.org:IDvN`` guid,
  ``arxiv:announce_type`` into ``announce``, the abstract cut out of "arXiv:ID Announce Type: X
  Abstract: ...", the comma-separated ``dc:creator`` split into names. The description is taken
  as plain text there, so a ``p<n`` in an abstract stays as it is;
- the export API Atom: ids from ``<id>http://arxiv.org/abs/IDvN``, authors, ``published``,
  ``arxiv:primary_category`` first in ``categories``, ``arxiv:doi``;
- the legacy RSS 1.0 listing: the "(arXiv:IDvN [cat] UPDATED)" title suffix is stripped and
  gives id, version and category; creators are HTML links, reduced to names without
  affiliations;
- a republished listing whose title is a translated TL;DR (cn-chat-arxiv): when the title holds
  CJK text and the description has a CJK-free paragraph right before the paragraph holding the
  entry's arXiv link, that paragraph is the English title and the feed's title goes to
  ``summary``; the abstract is the (truncated) English one after "Announce Type: X Abstract:",
  or in items of the older layout without it, the last CJK-free paragraph.

Old-style ids (``cs/0112017``) are understood everywhere. Every arXiv paper gets the canonical
``abs`` and ``pdf`` links, so the same paper has the same links in every source.

Option ``new_announce_types`` (default ``("new", "cross")``): the arXiv announce types that are
new papers. Entries of other types (``replace``, ``replace-cross``) are still returned, with
``announce`` set, because a replacement of a known paper is an update downstream; a note counts
them, and the diff decides what they mean.

Not a feed at all (feedparser marks it bozo and finds no entries, title or version) raises
``ParseError``; an ill-formed feed with usable entries is parsed, with a note. A valid feed with
no items (arXiv on weekends) gives zero papers. Entries without a title are skipped with a note.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import feedparser

from service.clock import as_utc
from service.errors import ConfigError, ParseError
from service.model import PaperIn, Parsed, Snapshot
from service.parse.markup import MarkupError, html_blocks, html_to_text

DEFAULT_NEW_ANNOUNCE_TYPES = ("new", "cross")

_ID = r"(?P<id>\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?(?!\d)"
ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/" + _ID)
ARXIV_GUID = re.compile(r"^oai:arXiv\.org:" + _ID + r"$", re.IGNORECASE)
LEGACY_SUFFIX = re.compile(
    r"\s*\(arXiv:" + _ID + r"(?:\s+\[(?P<category>[^\]]+)\])?(?:\s+[A-Z]+)*\)\s*$"
)
ANNOUNCEMENT = re.compile(
    r"arXiv:" + _ID + r"\s+Announce Type:\s*(?P<announce>[\w-]+)\s+Abstract:\s*(?P<abstract>.*)",
    re.DOTALL,
)
DOI = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(?P<doi>10\.\d{4,9}/\S+)$", re.I)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")


def parse(snapshot: Snapshot, options: Mapping[str, Any] | None = None) -> Parsed:
    """Parse an RSS/Atom snapshot; raise ``ParseError`` when the bytes are not a feed."""
    new_types = _new_announce_types(options or {})
    if not snapshot.body.strip():
        raise ParseError(source=snapshot.origin, expected="an RSS or Atom feed", found="nothing")
    headers = {}
    if snapshot.content_type:
        headers["content-type"] = snapshot.content_type
    if snapshot.origin.startswith(("http://", "https://")):
        headers["content-location"] = snapshot.origin
    # Text is all we keep, so feedparser's HTML rewriting only costs time and mangles "p<n".
    try:
        document = feedparser.parse(
            snapshot.body,
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # its innards' (a character reference past U+10FFFF: ValueError)
        raise ParseError(
            source=snapshot.origin,
            expected="an RSS or Atom feed feedparser can read",
            found=f"{type(exc).__name__}: {exc}",
        ) from exc
    entries = document.get("entries", [])
    is_feed = entries or document.get("version") or document.get("feed", {}).get("title")
    notes: list[str] = []
    if document.get("bozo"):
        problem = _problem(document.get("bozo_exception"))
        if not is_feed:
            start = " ".join(snapshot.body[:40].decode("utf-8", "replace").split())
            raise ParseError(
                source=snapshot.origin,
                expected="an RSS or Atom feed",
                found=f"{problem} in {start!r}",
            )
        notes.append(f"feed is not well-formed ({problem}); parsed what could be read")
    elif not is_feed:
        raise ParseError(
            source=snapshot.origin,
            expected="an RSS or Atom feed",
            found="an XML document with no RSS or Atom elements",
        )
    lines = _entry_lines(snapshot.body, len(entries))
    papers: list[PaperIn] = []
    for index, entry in enumerate(entries):
        try:
            paper = paper_from_entry(entry, line=lines[index])
        except MarkupError as exc:
            raise ParseError(
                source=snapshot.origin,
                line=lines[index],
                expected=f"HTML that Python's parser reads in entry {index + 1}",
                found=str(exc),
            ) from exc
        if paper is None:
            where = f"line {lines[index]}" if lines[index] else f"entry {index + 1}"
            has_ref = entry.get("link") or entry.get("id")
            notes.append(f"{where} skipped: no title" + ("" if has_ref else ", link or id"))
        else:
            papers.append(paper)
    other = Counter(p.announce for p in papers if p.announce and p.announce not in new_types)
    if other:
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(other.items()))
        total = other.total()
        are = "entry is" if total == 1 else "entries are"
        notes.append(f"{total} {are} not new announcements ({kinds})")
    captured_at = snapshot.captured_at or snapshot.mtime or snapshot.fetched_at
    return Parsed(papers=tuple(papers), captured_at=as_utc(captured_at), notes=tuple(notes))


def paper_from_entry(entry: Mapping[str, Any], *, line: int | None = None) -> PaperIn | None:
    """Turn one feedparser entry into a ``PaperIn``; ``None`` when it has no title."""
    title = _title(entry.get("title", ""), entry.get("title_detail"))
    blocks = _description_blocks(entry)
    link = str(entry.get("link", ""))
    ids = _ArxivIds()
    ids.add_guid(str(entry.get("id", "")))
    for url in (link, *(str(item.get("href", "")) for item in entry.get("links", []))):
        ids.add_url(url)

    abstract = " ".join(blocks)
    announce = entry.get("arxiv_announce_type")
    announcement = next(filter(None, map(ANNOUNCEMENT.search, blocks)), None)
    if announcement:
        ids.add(announcement["id"], announcement["version"])
        announce = announce or announcement["announce"]
        abstract = announcement["abstract"].strip()
    summary = ""
    if ids.arxiv_id and CJK.search(title):
        english = _english_title(blocks, ids.arxiv_id)
        if english is not None:
            title, summary = blocks[english], title
            if not announcement:
                abstract = next((b for b in blocks[:english:-1] if not CJK.search(b)), "")

    categories: list[str] = []
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping) and primary.get("term"):
        categories.append(str(primary["term"]))
    suffix = LEGACY_SUFFIX.search(title)
    if suffix:
        ids.add(suffix["id"], suffix["version"])
        # The legacy format wrote "Title. (arXiv:...)": the full stop is the separator's.
        title = title[: suffix.start()].rstrip()
        if title.endswith(".") and not title.endswith(".."):
            title = title[:-1]
        if suffix["category"]:
            categories.append(suffix["category"])
    categories += [str(tag["term"]) for tag in entry.get("tags", []) if tag.get("term")]
    if not title:
        return None
    if abstract.startswith(title):
        abstract = abstract[len(title) :].lstrip(" .:-–—")

    doi = _doi(entry)
    links: dict[str, str] = {}
    if ids.arxiv_id:
        links["abs"] = f"https://arxiv.org/abs/{ids.arxiv_id}"
        links["pdf"] = f"https://arxiv.org/pdf/{ids.arxiv_id}"
    elif link and not (doi and DOI.match(link)):
        links["abs"] = link
    if doi:
        links["doi"] = f"https://doi.org/{doi}"
    return PaperIn(
        title=title,
        abstract=abstract,
        arxiv_id=ids.arxiv_id,
        version=ids.version,
        doi=doi,
        authors=_authors(entry, split=bool(ids.arxiv_id)),
        published=_published(entry),
        links=links,
        categories=tuple(dict.fromkeys(categories)),
        summary=summary,
        announce=str(announce) if announce else None,
        line=line,
    )


def _description_blocks(entry: Mapping[str, Any]) -> list[str]:
    """The entry's description as paragraphs of clean text (one for a plain-text one)."""
    raw, detail = _description(entry)
    # arXiv's "arXiv:ID Announce Type: X Abstract: ..." is plain text even where typed HTML.
    if _is_html(detail) and not ANNOUNCEMENT.match(raw.strip()):
        return html_blocks(raw)
    text = " ".join(raw.split())
    return [text] if text else []


class _ArxivIds:
    """Collects the arXiv id and version from an entry's guid, title, description and links."""

    def __init__(self) -> None:
        self.arxiv_id: str | None = None
        self.version: int | None = None

    def add(self, arxiv_id: str, version: str | None) -> None:
        if self.arxiv_id is None:
            self.arxiv_id = arxiv_id
        if self.version is None and version and arxiv_id == self.arxiv_id:
            self.version = int(version)

    def add_guid(self, guid: str) -> None:
        found = ARXIV_GUID.match(guid.strip()) or ARXIV_URL.search(guid)
        if found:
            self.add(found["id"], found["version"])

    def add_url(self, url: str) -> None:
        found = ARXIV_URL.search(url)
        if found:
            self.add(found["id"], found["version"])


def _new_announce_types(options: Mapping[str, Any]) -> frozenset[str]:
    # Other keys belong to other stages (the fetcher's host_interval) and are not ours to judge.
    value = options.get("new_announce_types", DEFAULT_NEW_ANNOUNCE_TYPES)
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(
            f"expected a list of announce types, got {value!r}", where="new_announce_types"
        )
    types = frozenset(value)
    if not all(isinstance(kind, str) for kind in types):
        raise ConfigError(
            f"expected announce types as strings, got {value!r}", where="new_announce_types"
        )
    return types


def _is_html(detail: object) -> bool:
    return isinstance(detail, Mapping) and detail.get("type") in _HTML_TYPES


def _description(entry: Mapping[str, Any]) -> tuple[str, object]:
    """The entry's summary (RSS description), else its first content, with its detail."""
    if entry.get("summary_detail"):
        return str(entry.get("summary", "")), entry["summary_detail"]
    for content in entry.get("content", []):
        return str(content.get("value", "")), content
    return str(entry.get("summary", "")), None


def _title(value: object, detail: object) -> str:
    # Feeds put escaped HTML in titles typed as plain text too; "p<n" has no tag and stays.
    text = str(value or "")
    if _is_html(detail) or HTML_TAG.search(text):
        return html_to_text(text)
    return " ".join(text.split())


def _english_title(blocks: list[str], arxiv_id: str) -> int | None:
    """Index of the CJK-free paragraph just before the one that is the paper's arXiv link."""
    for index, block in enumerate(blocks[1:], 1):
        found = ARXIV_URL.search(block)
        if found and found["id"] == arxiv_id and len(block.split()) == 1:
            candidate = blocks[index - 1]
            if not CJK.search(candidate) and re.search(r"[A-Za-z]{2}", candidate):
                return index - 1
            return None
    return None


def _authors(entry: Mapping[str, Any], *, split: bool) -> tuple[str, ...]:
    names = [str(author.get("name", "")) for author in entry.get("authors", [])]
    names = [html_to_text(name) if "<" in name else " ".join(name.split()) for name in names]
    if split and len(names) == 1:
        names = split_names(names[0])
    return tuple(name for name in names if name)


def split_names(creators: str) -> list[str]:
    """Split an arXiv creator string ("A, B (MIT), C and D") into names, dropping affiliations."""
    names: list[str] = []
    depth = 0
    current: list[str] = []
    for char in creators + ",":
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif depth:
            continue
        elif char == ",":
            names.append(" ".join("".join(current).split()))
            current = []
        else:
            current.append(char)
    if names and " and " in names[-1]:
        names[-1:] = names[-1].split(" and ")
    return [name.strip() for name in names if name.strip()]


def _doi(entry: Mapping[str, Any]) -> str | None:
    candidates = [
        entry.get("arxiv_doi"),
        entry.get("prism_doi"),
        entry.get("dc_identifier"),
        entry.get("id"),
        entry.get("link"),
    ]
    for candidate in candidates:
        if isinstance(candidate, str):
            found = DOI.match(candidate.strip())
            if found:
                return found["doi"]
    return None


def _published(entry: Mapping[str, Any]) -> date | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    # feedparser's struct_time values are in UTC.
    return date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday) if parsed else None


def _entry_lines(body: bytes, count: int) -> list[int | None]:
    """Line where each entry starts, when the raw item/entry tags match feedparser's count."""
    starts = [match.start() for match in _ENTRY_START.finditer(body)]
    if len(starts) != count:
        return [None] * count
    lines: list[int | None] = []
    line, position = 1, 0
    for start in starts:
        line += body.count(b"\n", position, start)
        position = start
        lines.append(line)
    return lines


def _problem(error: object) -> str:
    """What feedparser's bozo exception says, without its "<unknown>:line:column:" prefix."""
    get_message = getattr(error, "getMessage", None)
    message = get_message() if callable(get_message) else None
    return str(message) if message else str(error or "not well-formed")
