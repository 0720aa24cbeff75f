"""Parser for kind ``listing``: the text capture of a Hugging Face papers listing.

The format (see DESIGN.md): a header ending in the page's date (``Dec 26``, no year), then one
block per paper, blank lines between lines::

    Title
    Abstract (one long line)
      • 7 authors                  or an organisation line "<handle> <display name>"
    ·
    Jan 15 2                       "Mon D" [", YYYY"] [" <upvotes>"]

The three meta lines may be missing; the next title then follows the abstract. A date without a
year is in the capture year, which is not in the file: it is the snapshot's ``captured_at``, else
its ``mtime`` when the content agrees with it, else inferred (it is later than every year printed).

Two readers share the format. The fast one works on the bytes: it cuts the text after the header
into blocks at the ends of the date lines (each '·' line and the date after it), so a block is
the blank lines before a paper, the paper and its meta lines; papers without meta lines ride in
the block of the next paper with them, and the bytes after the last date line form a last block.
A block is read only when it has exactly the layout Hugging Face prints. Anything else goes the
slow, line-by-line way, which also names the line of a problem; the two agree wherever the fast
one reads a capture (the tests hold them to that).

For ingesting, ``scan`` cuts a capture into blocks without reading them and hashes each one:
a paper's fingerprint is made of its block's hash and the capture year, which is all that its
fields depend on. ``read`` then leaves unread the blocks whose papers the store has with those
fingerprints (a re-poll reads only what changed), and reads them later only if asked.
"""

from __future__ import annotations

import gc
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import xxhash

from service.errors import ParseError
from service.model import Organisation, PaperIn, Parsed, Snapshot, slots_maker

HEADER = (
    "new",
    "Get trending papers in your email inbox!",
    "Subscribe",
    "Daily Papers",
    "byAK and the research community",
)
MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
DATE_LINE = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?"
)
AUTHORS_LINE = re.compile(r"• (\d+) authors?")
DATE_EXAMPLES = "a date line such as 'Jan 15', 'Jan 15 2', 'Mar 31, 2023' or 'Aug 2, 2024 4'"
HEAD = 4096  # the header fits well within this many characters
# A capture may be written a little after the page's date (time zones, a late save).
CAPTURE_SLACK = timedelta(days=2)

# -- the fast reader's patterns, on UTF-8 bytes --------------------------------------------------
BOM = b"\xef\xbb\xbf"
_MONTHS = {name.encode(): number for name, number in MONTHS.items()}
_AUTHORS = re.compile(rb"  \xe2\x80\xa2 (\d+) authors?")
_AUTHORS_PREFIX = b"  \xe2\x80\xa2 "
_DATE = re.compile(rb"([A-Z][a-z]{2}) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?")
# One paper as Hugging Face prints it (for blocks that hold several papers).
_PAPER = re.compile(
    rb"\n*([^\s][^\n]*)\n\n([^\n]+)"
    rb"(?:\n\n(?:  \xe2\x80\xa2 (\d+) authors?|([^\s][^\n]*))\n\xc2\xb7\n"
    rb"([A-Z][a-z]{2}) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?(?=\n|\Z))?"
)
_PRINTED_YEAR = re.compile(rb"\n\xc2\xb7\n[A-Z][a-z]{2} \d{1,2}, (\d{4})")
_LEAP_DAY = re.compile(rb"\n\xc2\xb7\nFeb 29(?: |\n|\Z)")
_SPACE = frozenset(b" \t\n\r\f\v")
_NEWLINE = 10
_V = TypeVar("_V")
# Fingerprints, 32 characters as the store keeps them: a letter for how the block's bytes were
# read (change the letters when that changes), the capture year, and 108 bits of the bytes'
# XXH3-128 (earlier builds took SHA-256: prints stored by them are never equal to these, so the
# first ingest after an upgrade reads every block once and stores the new prints):
# "L" for the one paper of a block of one paper; "S" for paper j of the k of a block of several
# (papers without meta lines before one with them, or the last block), with j and k at the end.
# Fingerprints of other parsers are plain hex: never equal to these.
ONE_PAPER, OF_SEVERAL, BY_SPAN = "L", "S", "P"
_MOST = 255  # papers of a block that "S" fingerprints can number; beyond, "P": each paper's bytes
_OF_SEVERAL = operator.methodcaller("startswith", OF_SEVERAL)

# (line, title, abstract, author_count, organisation, month, day, year, upvotes, date line)
_Entry = tuple[
    int, str, str, int | None, Organisation | None, int, int, int | None, int | None, int
]


def parse(snapshot: Snapshot, options: Mapping[str, Any] | None = None) -> Parsed:
    """Parse a listing capture; raise ``ParseError`` naming the line at the first problem."""
    with collector_paused():
        blocks = _cut(snapshot)
        if blocks is not None:
            blocks.captured_at = _scanned_capture_time(snapshot, blocks)
            papers = blocks.read()
            if papers is not None:
                return Parsed(papers=tuple(papers), captured_at=blocks.captured_at)
        return _parse_lines(snapshot)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for a while (it runs again afterwards if it ran
    before). A parse makes an object per paper that lives on, and as they pile up the collector
    walks the whole heap again and again: a quarter of a big parse's time. They hold no cycles;
    reference counting frees them as ever."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Capture(Parsed):
    """A listing parsed for ingesting: ``Parsed`` plus its ``blocks``.

    ``papers`` holds the papers of the blocks that were read, in order: blocks the store knew
    (see ``read``) were left unread, and ``blocks`` still has every block.
    """

    blocks: Blocks | None = field(default=None, compare=False, repr=False)


def scan(snapshot: Snapshot) -> Blocks | None:
    """Cut a listing capture into hashed blocks without reading them.

    None when the fast reader cannot take the capture (an odd header, say): ``read`` then
    reads it line by line, or says what is wrong.
    """
    blocks = _cut(snapshot)
    if blocks is not None:
        blocks.captured_at = _scanned_capture_time(snapshot, blocks)
        blocks.hash()
    return blocks


def read(
    snapshot: Snapshot, blocks: Blocks | None, seen: Mapping[str, object] | None = None
) -> Parsed:
    """Parse a capture that ``scan`` cut into ``blocks``, but for the blocks whose papers all
    have their fingerprints in ``seen``: those are byte for byte blocks read before under the
    same capture year, so they read as they did then (valid, to the same papers).

    A ``Capture`` when the fast reader took the capture, else ``Parsed`` by the line-by-line
    reader; ``ParseError`` names the first problem.
    """
    with collector_paused():
        papers = blocks.read(blocks.known(seen or {})) if blocks is not None else None
        if blocks is None or papers is None:
            return _parse_lines(snapshot)
    assert blocks.captured_at is not None
    return Capture(papers=tuple(papers), captured_at=blocks.captured_at, blocks=blocks)


class Blocks:
    """A listing capture cut into blocks: block ``i`` is ``body[starts[i]:ends[i]]``, its '·'
    line starts at ``dots[i]`` (-1 for a last block of papers without meta lines). Blocks are
    read on demand, and their papers kept with their fingerprints."""

    __slots__ = (
        "_dates",
        "_known",
        "_metas",
        "_papers",
        "body",
        "captured_at",
        "dots",
        "ends",
        "first_line",
        "lines",
        "origin",
        "page",
        "prints",
        "starts",
    )

    def __init__(
        self,
        body: bytes,
        origin: str,
        page: tuple[int, int, int],
        first_line: int,
        starts: list[int],
        dots: list[int],
        ends: list[int],
    ) -> None:
        self.body = body
        self.origin = origin
        self.page = page
        self.first_line = first_line  # the line number at starts[0]
        self.starts = starts
        self.dots = dots
        self.ends = ends
        self.captured_at: datetime | None = None
        self.prints: list[str] = []  # per block: see ``hash``
        self.lines: list[int] = []  # per block: the line number at its start, once read
        # Per block once read: its papers with their fingerprints.
        self._papers: list[list[tuple[PaperIn, str]] | None] = [None] * len(starts)
        self._metas: dict[bytes, tuple[int | None, Organisation | None] | None] = {}
        self._dates: dict[bytes, tuple[date, int] | None] = {}
        self._known: tuple[Mapping[str, Any], list[Any]] | None = None  # the last ``known``

    def __len__(self) -> int:
        return len(self.starts)

    def hash(self) -> None:
        """Hash every block's bytes into ``prints``: the fingerprint of its paper if it holds
        one paper, and where the fingerprints of its papers come from if it holds several."""
        view = memoryview(self.body)
        digest = xxhash.xxh3_128_hexdigest  # 4-5x sha256's speed on blocks of 1-2 KB
        prefix = ONE_PAPER + self._year()
        self.prints = [
            prefix + digest(view[start:end])[:27]
            for start, end in zip(self.starts, self.ends, strict=True)
        ]

    def known(self, present: Mapping[str, _V]) -> list[list[_V] | None]:
        """Per block, what ``present`` maps the fingerprints of its papers to, when it has them
        all (the block shows its papers exactly as when they got them); else None.

        An ingest asks twice, before its transaction and in it, mostly of equal mappings: the
        answer to the last one is kept."""
        if not present or not self.prints:
            return [None] * len(self.starts)
        if self._known is not None and self._known[0] == present:
            return self._known[1]
        get = present.get
        result = [None if (found := get(print_)) is None else [found] for print_ in self.prints]
        several: dict[str, dict[tuple[int, int], _V]] = {}
        for print_ in filter(_OF_SEVERAL, present):  # a few among many: filtered in C
            if len(print_) == 32:
                try:
                    place = int(print_[28:30], 16), int(print_[30:], 16)
                except ValueError:  # not one of ours after all
                    continue
                several.setdefault(print_[1:28], {})[place] = present[print_]
        if several:
            for index, print_ in enumerate(self.prints):
                papers = several.get(print_[1:28]) if result[index] is None else None
                if not papers:
                    continue
                count = max(papers)[1]
                if count and all((j, count) in papers for j in range(count)):
                    result[index] = [papers[j, count] for j in range(count)]
        self._known = dict(present), result
        return result

    def entries(self, index: int) -> list[tuple[PaperIn, str]]:
        """The papers of block ``index`` with their fingerprints, read now if need be (only for
        blocks of a capture ``read`` took, which are all valid)."""
        found = self._papers[index]
        if found is None:
            if self.read(only=index) is None:
                raise ParseError(source=self.origin, expected="a block read before", found="")
            found = self._papers[index]
            assert found is not None
        return found

    def describe(self, index: int, paper: int = 0) -> tuple[int | None, str]:
        """The line and title of a paper of block ``index``, without reading the block for the
        first one (only for blocks of a capture ``read`` took)."""
        found = self._papers[index]
        if found is not None or paper:
            first = self.entries(index)[paper][0]
            return first.line, first.title
        body, start = self.body, self.starts[index]
        title_at = start
        while body[title_at] == _NEWLINE:
            title_at += 1
        title = body[title_at : body.find(b"\n", title_at)].decode().strip()
        return self.lines[index] + title_at - start, title

    def read(
        self, known: Sequence[Sequence[object] | None] = (), only: int | None = None
    ) -> list[PaperIn] | None:
        """Read every block but the ``known`` ones (or, later, block ``only``); return their
        papers in order, or None when a block is not laid out as Hugging Face prints it (or
        names a day that does not exist: the slow reader says which)."""
        body = self.body
        starts, dots, ends = self.starts, self.dots, self.ends
        kept = self._papers
        metas, dates = self._metas, self._dates
        year = self.captured_at.year if self.captured_at else 0
        prints = self.prints
        found = body.find
        papers: list[PaperIn] = []
        lines = self.lines
        if only is None:
            lines.clear()
            indices: Iterable[int] = range(len(starts))
            line = self.first_line
        else:
            indices = (only,)
            line = lines[only]
        try:
            for index in indices:
                start, dot, end = starts[index], dots[index], ends[index]
                if only is None:
                    lines.append(line)
                    ids = known[index] if known else None
                    if ids is not None:
                        if dot < 0 or len(ids) > 1:
                            line += body.count(b"\n", start, end)
                            continue
                        # One paper laid out as read before: blank lines, then six line breaks.
                        title_at = start
                        while body[title_at] == _NEWLINE:
                            title_at += 1
                        line += title_at - start + 6
                        continue
                if dot < 0:
                    several = self._read_several(index, line)
                    if several is None:
                        return None
                    papers.extend(several)
                    line += body.count(b"\n", start, end)
                    continue
                # Blank lines, title, blank, abstract, blank, meta line, '·', date.
                title_at = start
                while body[title_at] == _NEWLINE:
                    title_at += 1
                title_end = found(b"\n", title_at, dot)
                abstract_at = title_end + 2
                meta_at = body.rfind(b"\n", abstract_at, dot) + 1
                abstract_end = meta_at - 2
                first = body[title_at]
                paper = None
                if (
                    title_end > title_at
                    and first not in _SPACE
                    and body[title_end + 1] == _NEWLINE
                    and abstract_end > abstract_at
                    and body[abstract_end] == _NEWLINE
                    and found(b"\n", abstract_at, abstract_end) < 0
                ):
                    raw = body[meta_at:dot]
                    meta = metas.get(raw, _UNSEEN)
                    if meta is _UNSEEN:
                        meta = metas[raw] = self._meta(raw)
                    raw = body[dot + 4 : end]
                    day = dates.get(raw, _UNSEEN)
                    if day is _UNSEEN:
                        day = dates[raw] = self._date(raw, year)
                    title = body[title_at:title_end].decode()
                    abstract = body[abstract_at:abstract_end].decode().strip()
                    if (
                        meta is not None
                        and day is not None
                        and abstract
                        and (first < 0x80 or not (title[0] in "•·" or title[0].isspace()))
                    ):
                        paper = _listed_paper(
                            title.strip(),
                            abstract,
                            meta[0],  # author count
                            meta[1],  # organisation
                            day[0],  # published
                            day[1],  # upvotes
                            line + title_at - start,
                        )
                if paper is None:
                    several = self._read_several(index, line)
                    if several is None:
                        return None
                    papers.extend(several)
                    line += body.count(b"\n", start, end)
                else:
                    kept[index] = [(paper, prints[index] if prints else "")]
                    papers.append(paper)
                    line += title_at - start + 6
        except UnicodeDecodeError:
            return None
        return papers

    def _read_several(self, index: int, line: int) -> list[PaperIn] | None:
        """Block ``index`` as several papers (the first ones without meta lines), or one paper
        laid out otherwise than ``read`` expects; None when it is neither."""
        body = self.body
        start, dot, end = self.starts[index], self.dots[index], self.ends[index]
        year = self.captured_at.year if self.captured_at else 0
        metas, dates = self._metas, self._dates
        match = _PAPER.match
        result: list[tuple[PaperIn, int, int]] = []
        pos = start
        with_meta = False
        while pos < end:
            found = match(body, pos, end)
            if found is None:
                if dot < 0 and body[pos:end].isspace():
                    break
                return None
            title = _text(found[1], first=True)
            abstract = _text(found[2])
            if title is None or abstract is None:
                return None
            line += body.count(b"\n", pos, found.start(1))
            with_meta = found.start(5) >= 0
            if not with_meta:
                paper = PaperIn(title=title, abstract=abstract, line=line)
                line += 2
            else:
                raw = body[found.end(2) + 2 : found.start(5) - 4]
                meta = metas.get(raw, _UNSEEN)
                if meta is _UNSEEN:
                    meta = metas[raw] = self._meta(raw)
                raw = body[found.start(5) : found.end()]
                day = dates.get(raw, _UNSEEN)
                if day is _UNSEEN:
                    day = dates[raw] = self._date(raw, year)
                if meta is None or day is None:
                    return None
                paper = PaperIn(
                    title=title,
                    abstract=abstract,
                    author_count=meta[0],
                    organisation=meta[1],
                    published=day[0],
                    upvotes=day[1],
                    line=line,
                )
                line += 6
            result.append((paper, found.start(), found.end()))
            pos = found.end()
        if dot >= 0 and not (with_meta and pos == end):
            return None
        self._papers[index] = self._fingerprinted(index, result)
        return [paper for paper, _, _ in result]

    def _fingerprinted(
        self, index: int, papers: list[tuple[PaperIn, int, int]]
    ) -> list[tuple[PaperIn, str]]:
        """The papers of a block read by ``_read_several``, with their fingerprints."""
        if not self.prints:
            return [(paper, "") for paper, _, _ in papers]
        print_, count = self.prints[index], len(papers)
        if self.dots[index] >= 0 and count == 1:
            return [(papers[0][0], print_)]
        if count <= _MOST:
            several = OF_SEVERAL + print_[1:28]
            return [
                (paper, f"{several}{j:02x}{count:02x}") for j, (paper, _, _) in enumerate(papers)
            ]
        view = memoryview(self.body)
        return [
            (paper, BY_SPAN + print_[1:5] + xxhash.xxh3_128_hexdigest(view[first:last])[:27])
            for paper, first, last in papers
        ]

    def _meta(self, raw: bytes) -> tuple[int | None, Organisation | None] | None:
        """(author count, organisation) of a meta line; None when it is neither."""
        if raw.startswith(_AUTHORS_PREFIX):
            authors = _AUTHORS.fullmatch(raw)
            return None if authors is None else (int(authors[1]), None)
        org = _text(raw, first=True)
        if org is None:
            return None
        handle, _, name = org.partition(" ")
        return None, Organisation(handle, name.strip() or handle)

    def _date(self, raw: bytes, year: int) -> tuple[date, int] | None:
        """(published, upvotes) of a date line; None when it is not one or names no real day."""
        found = _DATE.fullmatch(raw)
        month = _MONTHS.get(found[1]) if found else None
        if found is None or month is None:
            return None
        _, day, printed, upvotes = found.groups()
        try:
            published = date(int(printed) if printed else year, month, int(day))
        except ValueError:
            return None
        return published, int(upvotes) if upvotes else 0

    def _year(self) -> str:
        assert self.captured_at is not None
        return f"{self.captured_at.year:04d}"


# PaperIn(title, abstract, author_count, organisation, published, upvotes, line): a listed paper.
_listed_paper = slots_maker(
    PaperIn, "title", "abstract", "author_count", "organisation", "published", "upvotes", "line"
)

_UNSEEN: Any = object()
_NO_META = (None, None, 0, 0, None, None, 0)


def _text(raw: bytes, *, first: bool = False) -> str | None:
    """A title or abstract line as the line-by-line reader sees it (stripped); None when that
    reader would see it otherwise: not UTF-8, blank, or (``first``) a title or organisation that
    starts with white space, '•' or '·'."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    stripped = text.strip()
    if not stripped or (first and (text[0] in "•·" or text[0].isspace())):
        return None
    return stripped


def _cut(snapshot: Snapshot) -> Blocks | None:
    """The capture's blocks after a valid header; None when only the slow reader can tell."""
    body = snapshot.body
    origin = snapshot.origin
    if not body or b"\x00" in body or body.isspace():
        return None  # a NUL anywhere: the slow reader says where
    base = 3 if body.startswith(BOM) else 0
    if b"\r" in body:
        try:
            body = decode(body, origin).encode()
        except ParseError:
            return None
        base = 0
    head_end = len(body) if len(body) - base <= HEAD else body.rfind(b"\n", base, base + HEAD)
    if head_end < base:
        return None
    try:
        page, _ = _header(_content_lines(body[base:head_end].decode()), origin)
    except (UnicodeDecodeError, ParseError):
        return None
    return _blocks(body, origin, page, base)


def _blocks(body: bytes, origin: str, page: tuple[int, int, int], base: int) -> Blocks:
    """The blocks after the page date line (line ``page[0]``, counted from ``base``)."""
    pos = base
    for _ in range(page[0]):
        pos = body.find(b"\n", pos) + 1
        if pos == 0:
            return Blocks(body, origin, page, page[0] + 1, [], [], [])
    # Each '·' line ("\n\xc2\xb7\n") ends a block with the date line after it. Its second byte
    # is rare in the rest of the text, so memchr finds the candidates.
    find = body.find
    size = len(body)
    dots: list[int] = []
    ends: list[int] = []
    at = find(b"\xb7", pos + 2)
    while at >= 0:
        if body[at + 1 : at + 2] == b"\n" and body[at - 2 : at] == b"\n\xc2":
            end = find(b"\n", at + 2)
            if end < 0:
                end = size
            dots.append(at - 2)
            ends.append(end)
            at = find(b"\xb7", end + 2)
        else:
            at = find(b"\xb7", at + 1)
    starts = [pos, *ends[:-1]] if ends else []
    last = ends[-1] if ends else pos
    if last < len(body) and not body[last:].isspace():
        starts.append(last)
        dots.append(-1)
        ends.append(len(body))
    return Blocks(body, origin, page, page[0] + 1, starts, dots, ends)


def _papers(entries: list[_Entry], year: int, origin: str) -> list[PaperIn]:
    papers = []
    for line, title, abstract, count, org, month, day, printed_year, upvotes, at in entries:
        published = None
        if month:
            published = _date(printed_year or year, month, day, origin, at)
        papers.append(
            PaperIn(
                title=title,
                abstract=abstract,
                author_count=count,
                organisation=org,
                published=published,
                upvotes=upvotes,
                line=line,
            )
        )
    return papers


def _parse_lines(snapshot: Snapshot) -> Parsed:
    """The slow reader: line by line, for captures the fast one does not take."""
    origin = snapshot.origin
    text = decode(snapshot.body, origin)
    page_at, _ = _header(_content_lines(text[:HEAD]), origin)
    numbered = _content_lines(text)
    entries = _entries(numbered, _header(numbered, origin)[1], origin)
    captured_at = capture_time(snapshot, page_at, entries)
    return Parsed(papers=tuple(_papers(entries, captured_at.year, origin)), captured_at=captured_at)


def decode(body: bytes, origin: str) -> str:
    """The body as text: UTF-8 (a BOM allowed), CRLF folded, a lone CR a space (only LF and
    CRLF end lines); binary data and NUL bytes are refused (no store takes them as text)."""
    if not body or body.isspace():
        raise ParseError(source=origin, expected="a listing capture", found="an empty file")
    nul = body.find(b"\x00")
    if 0 <= nul < 8192:
        raise ParseError(source=origin, expected="a text listing capture", found="binary data")
    if nul >= 0:
        raise ParseError(
            source=origin,
            line=body.count(b"\n", 0, nul) + 1,
            expected="text without NUL bytes",
            found="a NUL byte",
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise ParseError(
            source=origin,
            line=line,
            expected="UTF-8 text",
            found=f"byte 0x{body[exc.start]:02x}",
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", " ")
    return text


def _content_lines(text: str) -> list[tuple[int, str]]:
    """The non-blank lines, stripped, with their 1-based line numbers."""
    return [(n, s) for n, line in enumerate(text.split("\n"), 1) if (s := line.strip())]


def _header(numbered: list[tuple[int, str]], origin: str) -> tuple[tuple[int, int, int], int]:
    """Check the header; return the page date's (line, month, day) and the first entry index."""
    expected_line = 0
    index = 0
    for index, (number, line) in enumerate(numbered):  # noqa: B007
        if expected_line < len(HEADER) and line == HEADER[expected_line]:
            expected_line += 1
            continue
        if expected_line >= HEADER.index("Daily Papers") + 1:
            break
        raise ParseError(
            source=origin,
            line=number,
            expected=f"the Hugging Face listing header line {HEADER[expected_line]!r}",
            found=line,
        )
    else:
        last = numbered[-1][0] if numbered else 1
        raise ParseError(
            source=origin, line=last, expected="the page date after the header", found="the end"
        )
    number, line = numbered[index]
    match = DATE_LINE.fullmatch(line)
    if not match or match.group(3) or match.group(4):
        raise ParseError(
            source=origin, line=number, expected="the page date such as 'Dec 26'", found=line
        )
    month, day = MONTHS[match.group(1)], int(match.group(2))
    _date(2000, month, day, origin, number)  # a leap year: Feb 29 is a valid page date
    return (number, month, day), index + 1


def _fast_entries(text: str, page_line: int) -> list[_Entry] | None:
    """The entries after the header line ``page_line`` as the fast reader reads them (for tests);
    None if any block is odd. It reads bytes and makes papers; here the capture year is 4 (a
    leap year no capture prints), so a date in year 4 is one printed without a year."""
    blocks = _blocks(text.encode(), "text", (page_line, 1, 1), 0)
    blocks.captured_at = datetime(4, 1, 1, tzinfo=UTC)
    papers = blocks.read()
    if papers is None:
        return None
    entries: list[_Entry] = []
    for paper in papers:
        assert paper.line is not None
        day = paper.published
        if day is None:
            entries.append((paper.line, paper.title, paper.abstract, *_NO_META))
            continue
        entries.append(
            (
                paper.line,
                paper.title,
                paper.abstract,
                paper.author_count,
                paper.organisation,
                day.month,
                day.day,
                None if day.year == 4 else day.year,
                paper.upvotes,
                paper.line + 6,
            )
        )
    return entries


def _entries(numbered: list[tuple[int, str]], index: int, origin: str) -> list[_Entry]:
    entries: list[_Entry] = []
    total = len(numbered)
    match_date = DATE_LINE.fullmatch
    while index < total:
        number, title = numbered[index]
        if title == "·" or title.startswith("•"):
            raise ParseError(source=origin, line=number, expected="a paper title", found=title)
        if index + 1 >= total:
            raise ParseError(
                source=origin,
                line=number,
                expected=f"the abstract of {title[:60]!r} (the last block is cut short)",
                found="the end of the file",
            )
        abstract = numbered[index + 1][1]
        index += 2
        count: int | None = None
        org: Organisation | None = None
        if index < total:
            meta = numbered[index][1]
            if meta.startswith("•"):
                authors = AUTHORS_LINE.fullmatch(meta)
                if authors is None:
                    raise ParseError(
                        source=origin,
                        line=numbered[index][0],
                        expected="an author line such as '• 7 authors'",
                        found=meta,
                    )
                count = int(authors.group(1))
                index += 1
            elif meta != "·" and index + 1 < total and numbered[index + 1][1] == "·":
                handle, _, name = meta.partition(" ")
                org = Organisation(handle=handle, name=name.strip() or handle)
                index += 1
            elif meta != "·":
                entries.append((number, title, abstract, None, None, 0, 0, None, None, 0))
                continue
            if index >= total or numbered[index][1] != "·":
                where, seen = numbered[index] if index < total else (numbered[-1][0], "the end")
                raise ParseError(
                    source=origin,
                    line=where,
                    expected=f"the '·' line after the meta line of {title[:60]!r}",
                    found=seen,
                )
            if index + 1 >= total:
                raise ParseError(
                    source=origin,
                    line=numbered[index][0],
                    expected=f"{DATE_EXAMPLES} (the last block is cut short)",
                    found="the end of the file",
                )
            date_number, date_text = numbered[index + 1]
            found = match_date(date_text)
            if found is None:
                raise ParseError(
                    source=origin, line=date_number, expected=DATE_EXAMPLES, found=date_text
                )
            month_name, day, year, upvotes = found.groups()
            entries.append(
                (
                    number,
                    title,
                    abstract,
                    count,
                    org,
                    MONTHS[month_name],
                    int(day),
                    int(year) if year else None,
                    int(upvotes) if upvotes else 0,
                    date_number,
                )
            )
            index += 2
        else:
            entries.append((number, title, abstract, None, None, 0, 0, None, None, 0))
    return entries


def capture_time(snapshot: Snapshot, page: tuple[int, int, int], entries: list[_Entry]) -> datetime:
    """When the capture was made: explicit, else a consistent mtime, else inferred."""
    if snapshot.captured_at is not None:
        return snapshot.captured_at
    printed = [entry[7] for entry in entries if entry[7] is not None]
    leap_day = any(e[5:7] == (2, 29) for e in entries if e[7] is None)
    return _capture_time(snapshot, page, printed, leap_day)


def _scanned_capture_time(snapshot: Snapshot, blocks: Blocks) -> datetime:
    """``capture_time`` from the date lines alone, before any block is read (a capture whose
    blocks all read has the same date lines as entries)."""
    if snapshot.captured_at is not None:
        return snapshot.captured_at
    body = blocks.body
    start = blocks.starts[0] if blocks.starts else len(body)
    printed = [int(year) for year in _PRINTED_YEAR.findall(body, start)]
    leap_day = _LEAP_DAY.search(body, start) is not None
    return _capture_time(snapshot, blocks.page, printed, leap_day)


def _capture_time(
    snapshot: Snapshot, page: tuple[int, int, int], printed: list[int], leap_day: bool
) -> datetime:
    _, month, day = page
    floor = max(printed) + 1 if printed else None
    if snapshot.mtime is not None and _agrees(snapshot.mtime, month, day, floor):
        return snapshot.mtime
    if floor is not None:
        year = floor
        leap_day = leap_day or (month, day) == (2, 29)
        while leap_day and not _leap(year):
            year += 1
    else:
        reference = snapshot.fetched_at
        year = reference.year
        if _page_date(year, month, day) > reference + CAPTURE_SLACK:
            year -= 1
    return _page_date(year, month, day)


def _agrees(mtime: datetime, month: int, day: int, floor: int | None) -> bool:
    """Whether a file's mtime can be the capture time of a page dated ``month``/``day``."""
    if floor is not None and mtime.year < floor:
        return False
    page = _page_date(mtime.year, month, day)
    return page <= mtime + CAPTURE_SLACK and mtime - page <= CAPTURE_SLACK + timedelta(days=5)


def _page_date(year: int, month: int, day: int) -> datetime:
    if month == 2 and day == 29 and not _leap(year):
        day = 28
    return datetime(year, month, day, tzinfo=UTC)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _date(year: int, month: int, day: int, origin: str, line: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise ParseError(
            source=origin, line=line, expected=f"a real calendar day in {year}", found=f"{day}"
        ) from None
