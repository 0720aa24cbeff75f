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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from service.errors import ParseError
from service.model import Organisation, PaperIn, Parsed, Snapshot

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
# The fast path's whole block, exactly as Hugging Face prints it; anything else goes the slow,
# line-by-line way, which also names the line of a problem.
BLOCK = re.compile(
    r"\n*([^\s•·][^\n]*)\n\n([^\n]+)"
    r"(?:\n\n(?:  • (\d+) authors?|([^\s•·][^\n]*))\n·\n"
    r"([A-Z][a-z]{2}) (\d{1,2})(?:, (\d{4}))?(?: (\d+))?(?=\n|\Z))?"
)
HEAD = 4096  # the header fits well within this many characters
# A capture may be written a little after the page's date (time zones, a late save).
CAPTURE_SLACK = timedelta(days=2)

# (line, title, abstract, author_count, organisation, month, day, year, upvotes, date line)
_Entry = tuple[
    int, str, str, int | None, Organisation | None, int, int, int | None, int | None, int
]


def parse(snapshot: Snapshot, options: Mapping[str, Any] | None = None) -> Parsed:
    """Parse a listing capture; raise ``ParseError`` naming the line at the first problem."""
    origin = snapshot.origin
    text = decode(snapshot.body, origin)
    page_at, _ = _header(_content_lines(text[:HEAD]), origin)
    entries = _fast_entries(text, page_at[0])
    if entries is None:
        numbered = _content_lines(text)
        entries = _entries(numbered, _header(numbered, origin)[1], origin)
    captured_at = capture_time(snapshot, page_at, entries)
    year = captured_at.year
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
    return Parsed(papers=tuple(papers), captured_at=captured_at)


def decode(body: bytes, origin: str) -> str:
    """The body as text: UTF-8 (a BOM allowed), CRLF folded; binary data is refused."""
    if not body or body.isspace():
        raise ParseError(source=origin, expected="a listing capture", found="an empty file")
    if b"\x00" in body[:8192]:
        raise ParseError(source=origin, expected="a text listing capture", found="binary data")
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
        text = text.replace("\r\n", "\n").replace("\r", "\n")
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
    """The entries after the header line ``page_line`` by one regex; None if any block is odd."""
    pos = 0
    for _ in range(page_line):
        pos = text.find("\n", pos) + 1
        if pos == 0:
            return []
    line = page_line + 1
    entries: list[_Entry] = []
    end = len(text)
    match = BLOCK.match
    months = MONTHS
    while pos < end:
        found = match(text, pos)
        if found is None:
            return entries if text[pos:].isspace() else None
        start = found.start(1)
        line += start - pos  # the characters skipped before the title are all newlines
        title, abstract, authors, org, month_name, day, year, upvotes = found.groups()
        if month_name is None:
            entries.append((line, title.strip(), abstract.strip(), None, None, 0, 0, None, None, 0))
        else:
            month = months.get(month_name)
            if month is None:
                return None
            if org is not None:
                handle, _, name = org.partition(" ")
                organisation: Organisation | None = Organisation(handle, name.strip() or handle)
            else:
                organisation = None
            entries.append(
                (
                    line,
                    title.strip(),
                    abstract.strip(),
                    int(authors) if authors else None,
                    organisation,
                    month,
                    int(day),
                    int(year) if year else None,
                    int(upvotes) if upvotes else 0,
                    line + 6,
                )
            )
        pos = found.end()
        line += 2 if month_name is None else 6  # the newlines inside a block are fixed
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
    _, month, day = page
    printed = [entry[7] for entry in entries if entry[7] is not None]
    floor = max(printed) + 1 if printed else None
    if snapshot.mtime is not None and _agrees(snapshot.mtime, month, day, floor):
        return snapshot.mtime
    if floor is not None:
        year = floor
        leap_day = (month, day) == (2, 29) or any(
            e[5:7] == (2, 29) for e in entries if e[7] is None
        )
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
