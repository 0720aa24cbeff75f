"""Parser for kind ``hf-daily``: Hugging Face Daily Papers as JSON or as the papers page.

Two inputs carry the same items (``{"paper": {...}, "title": ..., "numComments": ...}``):

- the ``api/daily_papers`` JSON: a list of items; both the 2024 schema (``mediaUrl``, no
  ``submittedOnDailyAt``) and the 2025–26 one (organisations, GitHub stars, AI summaries);
- the huggingface.co/papers HTML page: the items are the ``dailyPapers`` list in the
  HTML-escaped JSON of the ``data-props`` attribute of the ``data-target="DailyPapers"`` element.

Titles and abstracts lose their hard wraps (the clean top-level ``title`` is preferred). Hidden
authors are left out of ``authors``; ``author_count`` then gives the full count. ``listed_at`` is
``submittedOnDailyAt`` and stays ``None`` in the 2024 schema, whose top-level ``publishedAt`` is
not the same moment in every version of the API. Anything else (a wrapper object, items that
are strings, a missing id or title) raises ``ParseError`` naming the item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from service.clock import as_utc
from service.errors import ParseError
from service.model import Organisation, PaperIn, Parsed, Snapshot

ITEMS_EXPECTED = "a JSON list of objects with a 'paper' object"
PAGE_TARGET = "DailyPapers"
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def parse(snapshot: Snapshot, options: Mapping[str, Any] | None = None) -> Parsed:
    """Parse a Daily Papers JSON reply or papers page; raise ``ParseError`` on anything else."""
    origin = snapshot.origin
    head = snapshot.body[:64].lstrip()
    for bom in _BOMS:
        head = head.removeprefix(bom).lstrip()
    if head.startswith((b"[", b"{")):
        items = _api_items(_load_json(snapshot.body, origin), origin)
    elif head.startswith(b"<"):
        items = _page_items(snapshot.body, origin)
    else:
        raise ParseError(
            source=origin,
            expected="Hugging Face Daily Papers JSON or the huggingface.co/papers page",
            found=snapshot.body[:60].decode("utf-8", "replace"),
            line=1,
        )
    papers = tuple(paper_from_item(item, index, origin) for index, item in enumerate(items))
    captured_at = snapshot.captured_at or snapshot.mtime or snapshot.fetched_at
    return Parsed(papers=papers, captured_at=as_utc(captured_at))


def paper_from_item(item: object, index: int, origin: str) -> PaperIn:
    """Turn one Daily Papers item (API or page) into a ``PaperIn``."""
    if not isinstance(item, dict):
        raise ParseError(
            source=origin,
            expected=f"{ITEMS_EXPECTED}; item {index} is not an object",
            found=f"item {index}: {_describe(item)}",
        )
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise ParseError(
            source=origin,
            expected=f"{ITEMS_EXPECTED}; item {index} has no 'paper' object",
            found=f"item {index} with keys {sorted(item)}",
        )
    fields = _Fields(paper, item, index, origin)
    arxiv_id = fields.text("id", required=True)
    title = unwrap(fields.text("title", top=True, required=True))
    authors = paper.get("authors", [])
    if not isinstance(authors, list) or not all(isinstance(a, dict) for a in authors):
        raise fields.wrong("authors", "a list of objects", authors)
    shown = [a for a in authors if not a.get("hidden")]
    names = tuple(unwrap(str(a.get("name", ""))) for a in shown if a.get("name"))
    links = {
        "abs": f"https://arxiv.org/abs/{arxiv_id}",
        "pdf": f"https://arxiv.org/pdf/{arxiv_id}",
        "hf": f"https://huggingface.co/papers/{arxiv_id}",
    }
    for role, key in (("code", "githubRepo"), ("project", "projectPage")):
        if url := fields.text(key):
            links[role] = url
    keywords = paper.get("ai_keywords") or ()
    if not isinstance(keywords, list | tuple) or not all(isinstance(k, str) for k in keywords):
        raise fields.wrong("ai_keywords", "a list of strings", keywords)
    published = fields.moment("publishedAt")
    return PaperIn(
        title=title,
        abstract=unwrap(fields.text("summary", top=True)),
        arxiv_id=arxiv_id,
        authors=names,
        author_count=len(authors) if len(shown) < len(authors) else None,
        organisation=fields.organisation(),
        published=published.date() if published else None,
        listed_at=fields.moment("submittedOnDailyAt"),
        upvotes=fields.count("upvotes"),
        comments=fields.count("numComments", top=True),
        stars=fields.count("githubStars"),
        links=links,
        keywords=tuple(unwrap(k) for k in keywords),
        summary=unwrap(fields.text("ai_summary")),
    )


def unwrap(text: str) -> str:
    """Join hard-wrapped lines and collapse runs of whitespace to single spaces."""
    return " ".join(text.split())


class _Fields:
    """Typed access to one item's fields; wrong types raise ``ParseError`` naming the item."""

    def __init__(self, paper: dict[str, Any], item: dict[str, Any], index: int, origin: str):
        self.paper, self.item, self.index, self.origin = paper, item, index, origin

    def _get(self, key: str, top: bool) -> Any:
        # The top-level copy is the clean one (no hard wraps) where the API provides both.
        value = self.item.get(key) if top else None
        return self.paper.get(key) if value in (None, "") else value

    def text(self, key: str, *, top: bool = False, required: bool = False) -> str:
        value = self._get(key, top)
        if value is None or value == "":
            if required:
                raise ParseError(
                    source=self.origin,
                    expected=f"item {self.index} to have paper.{key}",
                    found=f"item {self.index} without it (paper keys {sorted(self.paper)})",
                )
            return ""
        if not isinstance(value, str):
            raise self.wrong(key, "a string", value)
        return value

    def count(self, key: str, *, top: bool = False) -> int | None:
        value = self._get(key, top)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong(key, "an integer", value)
        return value

    def moment(self, key: str) -> datetime | None:
        text = self.text(key)
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise self.wrong(key, "an ISO 8601 time", text) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def organisation(self) -> Organisation | None:
        org = self._get("organization", top=False) or self.item.get("organization")
        if org is None:
            return None
        if not isinstance(org, dict) or not isinstance(org.get("name"), str):
            raise self.wrong("organization", "an object with a 'name'", org)
        fullname = org.get("fullname")
        name = fullname if isinstance(fullname, str) and fullname else org["name"]
        return Organisation(handle=org["name"], name=unwrap(name))

    def wrong(self, key: str, kind: str, value: object) -> ParseError:
        return ParseError(
            source=self.origin,
            expected=f"{key} in item {self.index} to be {kind}",
            found=_describe(value),
        )


def _load_json(body: bytes, origin: str) -> object:
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise ParseError(
            source=origin, expected="valid JSON", found=error.msg, line=error.lineno
        ) from None
    except UnicodeDecodeError as error:
        raise ParseError(
            source=origin, expected="JSON in UTF-8, UTF-16 or UTF-32", found=str(error)
        ) from None
    except (ValueError, RecursionError) as error:  # a number too long, nesting too deep
        raise ParseError(
            source=origin, expected="JSON Python can read", found=f"{type(error).__name__}: {error}"
        ) from error


def _api_items(data: object, origin: str) -> list[Any]:
    if not isinstance(data, list):
        found = f"an object with keys {sorted(data)}" if isinstance(data, dict) else _describe(data)
        raise ParseError(source=origin, expected=ITEMS_EXPECTED, found=found)
    return data


def _page_items(body: bytes, origin: str) -> list[Any]:
    try:
        props = _PropsFinder.find(body.decode("utf-8", "replace"))
    except Exception as error:  # Python's HTML parser fails on some "<![" with AssertionError
        raise ParseError(
            source=origin,
            expected="an HTML page Python's parser reads",
            found=f"{type(error).__name__}: {error}",
        ) from error
    if props is None:
        raise ParseError(
            source=origin,
            expected=f'the huggingface.co/papers page with a data-target="{PAGE_TARGET}" element',
            found="an HTML page without one",
        )
    try:
        data = json.loads(props)
    except json.JSONDecodeError as error:
        raise ParseError(
            source=origin,
            expected=f"JSON in the data-props of the {PAGE_TARGET} element",
            found=f"{error.msg} at character {error.pos}",
        ) from None
    except (ValueError, RecursionError) as error:  # a number too long, nesting too deep
        raise ParseError(
            source=origin,
            expected=f"JSON Python can read in the data-props of the {PAGE_TARGET} element",
            found=f"{type(error).__name__}: {error}",
        ) from error
    items = data.get("dailyPapers") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ParseError(
            source=origin,
            expected=f"a 'dailyPapers' list in the data-props of the {PAGE_TARGET} element",
            found=f"keys {sorted(data)}" if isinstance(data, dict) else _describe(data),
        )
    return items


class _PropsFinder(HTMLParser):
    """Finds the ``data-props`` of the DailyPapers element, reading no further than needed."""

    CHUNK = 1 << 16

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.props: str | None = None

    @classmethod
    def find(cls, page: str) -> str | None:
        finder = cls()
        for start in range(0, len(page), cls.CHUNK):
            finder.feed(page[start : start + cls.CHUNK])
            if finder.props is not None:
                break
        return finder.props

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.props is None:
            values = dict(attrs)
            if values.get("data-target") == PAGE_TARGET:
                self.props = values.get("data-props") or ""


def _describe(value: object) -> str:
    kind = {str: "a string", list: "a list", dict: "an object", type(None): "null"}.get(
        type(value), type(value).__name__
    )
    return f"{kind}: {value!r}" if isinstance(value, str) else f"{kind} {value!r}"
