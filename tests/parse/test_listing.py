"""The listing parser: the seeds read exactly, file pairs for the corner cases, bad input."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SEED_ORDER, seed

from service.errors import ParseError
from service.identity import normalise_title
from service.model import Organisation, Parsed, Snapshot
from service.parse.listing import Capture, parse

HERE = Path(__file__).parent / "listing"
NOW = datetime(2028, 6, 1, 12, tzinfo=UTC)


def snap(body: bytes, **kwargs: Any) -> Snapshot:
    kwargs.setdefault("fetched_at", NOW)
    return Snapshot(source_id="test", origin=kwargs.pop("origin", "test.txt"), body=body, **kwargs)


def as_json(parsed: Parsed) -> dict[str, Any]:
    return {
        "captured_at": parsed.captured_at.isoformat(),
        "papers": [
            {
                "line": p.line,
                "title": p.title,
                "abstract": p.abstract,
                "author_count": p.author_count,
                "organisation": [p.organisation.handle, p.organisation.name]
                if p.organisation
                else None,
                "published": p.published.isoformat() if p.published else None,
                "upvotes": p.upvotes,
            }
            for p in parsed.papers
        ],
    }


def header_and(blocks: str, page: str = "Mar 3") -> bytes:
    head = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    return f"{head}byAK and the research community\n\n{page}\n\n{blocks}".encode()


# -- the seeds -----------------------------------------------------------------------------------


@pytest.mark.shared
def test_the_seeds_hold_260_entries_of_203_papers(seeds: list[Path]) -> None:
    parsed = [parse(snap(path.read_bytes(), origin=str(path))) for path in seeds]
    entries = [paper for result in parsed for paper in result.papers]
    # Independent counts from the raw text: each block's title is the line after a date line
    # or after the header, so count the '·' separators plus the blocks without meta lines.
    text_blocks = sum(path.read_text().count("\n·\n") for path in seeds)
    assert len(entries) == 260
    assert text_blocks == 250
    assert sum(1 for p in entries if p.published is None and p.author_count is None) == 10
    assert len({normalise_title(p.title) for p in entries}) == 203
    assert all(p.published is not None for p in entries if p.upvotes is not None)


@pytest.mark.shared
def test_every_seed_date_line_is_parsed(seeds: list[Path]) -> None:
    date_lines = re.compile(r"^·\n(.+)$", re.MULTILINE)
    for path in seeds:
        text = path.read_text()
        printed = date_lines.findall(text)
        papers = [p for p in parse(snap(path.read_bytes())).papers if p.published]
        assert len(papers) == len(printed)
        for paper, line in zip(papers, printed, strict=True):
            month_day = paper.published.strftime("%b ") + str(paper.published.day)
            assert line.startswith(month_day), (line, paper.published)
            upvotes = re.search(r"(?:^\w{3} \d+(?:, \d{4})?) (\d+)$", line)
            assert paper.upvotes == (int(upvotes.group(1)) if upvotes else 0)


@pytest.mark.shared
def test_shadowkv_spot_check(seeds: list[Path]) -> None:
    papers = {p.title: p for p in parse(snap(seed(seeds, "002").read_bytes())).papers}
    shadow = papers["ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference"]
    assert shadow.organisation == Organisation("ByteDance-Seed", "ByteDance Seed")
    assert shadow.published == date(2024, 10, 28)
    assert shadow.upvotes == 2
    assert shadow.author_count is None
    assert shadow.abstract.startswith("With the widespread deployment of long-context")


@pytest.mark.shared
def test_capture_years_are_inferred_from_the_printed_years(seeds: list[Path]) -> None:
    for prefix, captured in SEED_ORDER:
        parsed = parse(snap(seed(seeds, prefix).read_bytes()))
        assert parsed.captured_at == captured


# -- pairs of files: input and expected result ---------------------------------------------------


@pytest.mark.parametrize("case", sorted(p.stem for p in HERE.glob("*.txt")))
def test_expected_output(case: str) -> None:
    body = (HERE / f"{case}.txt").read_bytes()
    expected = json.loads((HERE / f"{case}.json").read_text())
    captured = datetime.fromisoformat(expected["captured_at"])
    assert as_json(parse(snap(body, captured_at=captured))) == expected


def test_crlf_line_endings_parse_the_same() -> None:
    body = (HERE / "basic.txt").read_bytes()
    captured = datetime(2028, 3, 3, tzinfo=UTC)
    crlf = parse(snap(body.replace(b"\n", b"\r\n"), captured_at=captured))
    assert as_json(crlf) == as_json(parse(snap(body, captured_at=captured)))


def test_a_byte_order_mark_is_allowed() -> None:
    body = b"\xef\xbb\xbf" + (HERE / "basic.txt").read_bytes()
    parsed = parse(snap(body))
    assert len(parsed.papers) == 5
    # Inferred: after 2024 (printed), and a leap year, as a Feb 29 without a year shows.
    assert parsed.captured_at == datetime(2028, 3, 3, tzinfo=UTC)


def test_very_long_lines() -> None:
    abstract = "word " * 400_000
    parsed = parse(snap(header_and(f"Long\n\n{abstract}\n\n  • 3 authors\n·\nJan 2 7\n")))
    assert len(parsed.papers[0].abstract) == len(abstract.strip())
    assert parsed.papers[0].upvotes == 7


# -- the capture year ----------------------------------------------------------------------------


def test_explicit_capture_time_wins() -> None:
    at = datetime(2030, 3, 3, 9, tzinfo=UTC)
    parsed = parse(snap(header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5\n"), captured_at=at))
    assert parsed.captured_at == at
    assert parsed.papers[0].published == date(2030, 1, 5)


def test_a_plausible_mtime_is_the_capture_time() -> None:
    mtime = datetime(2027, 3, 3, 18, tzinfo=UTC)
    parsed = parse(snap(header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5\n"), mtime=mtime))
    assert parsed.captured_at == mtime
    assert parsed.papers[0].published == date(2027, 1, 5)


def test_an_mtime_the_content_contradicts_is_overruled() -> None:
    # A year 2027 is printed, so the capture is 2028 at the earliest, whatever the mtime says.
    body = header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5, 2027 3\n")
    parsed = parse(snap(body, mtime=datetime(2027, 3, 3, tzinfo=UTC)))
    assert parsed.captured_at == datetime(2028, 3, 3, tzinfo=UTC)


def test_a_copied_file_whose_mtime_is_long_after_the_page_date_is_inferred() -> None:
    body = header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5, 2024 3\n", page="Dec 26")
    parsed = parse(snap(body, mtime=datetime(2026, 11, 22, tzinfo=UTC)))
    assert parsed.captured_at == datetime(2025, 12, 26, tzinfo=UTC)


def test_with_no_year_printed_the_latest_past_page_date_is_taken() -> None:
    body = header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5\n", page="Dec 26")
    parsed = parse(snap(body, fetched_at=datetime(2026, 6, 1, tzinfo=UTC)))
    assert parsed.captured_at == datetime(2025, 12, 26, tzinfo=UTC)


# -- bad input -----------------------------------------------------------------------------------


def rejected(body: bytes) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse(snap(body, origin="inbox/bad.txt"))
    assert str(caught.value).startswith("inbox/bad.txt: ")
    return caught.value


def test_a_bare_cr_inside_a_line_is_no_line_break() -> None:
    blocks = (
        "Paging the\rKV cache\n\nAn abstract\rthat goes on.\n\n  • 3 authors\n·\nMar 2 4\n\n"
        "Second paper\n\nIts abstract.\n\n  • 1 author\n·\nMar 1"
    )
    for ending in ("\n", "\r\n"):
        body = header_and(blocks).replace(b"\n", ending.encode())
        parsed = parse(snap(body, captured_at=datetime(2028, 3, 3, tzinfo=UTC)))
        assert [(p.title, p.abstract, p.line) for p in parsed.papers] == [
            ("Paging the KV cache", "An abstract that goes on.", 13),
            ("Second paper", "Its abstract.", 21),
        ]


def test_a_nul_byte_past_the_start_names_its_line() -> None:
    body = header_and("T\n\nA\n\n  • 3 authors\n·\nMar 2 4\n\n" * 400) + b"\n\nNul\x00\n\nx\n"
    error = rejected(body)
    assert error.line == body.count(b"\n", 0, body.index(b"\x00")) + 1
    assert (error.expected, error.found) == ("text without NUL bytes", "a NUL byte")


def test_empty_file() -> None:
    error = rejected(b"")
    assert "expected a listing capture" in str(error)
    assert "empty" in str(error)
    assert rejected(b"\n\n  \n").expected == "a listing capture"


def test_binary_file() -> None:
    error = rejected(bytes(range(256)) * 10)
    assert error.found == "binary data"


def test_not_utf8() -> None:
    error = rejected(header_and("T\n\nA\n") + b"\n\nCaf\xe9 au lait\n")
    assert error.line == 18
    assert error.expected == "UTF-8 text"
    assert "0xe9" in str(error)


def test_html_page() -> None:
    error = rejected(b"<!DOCTYPE html>\n<html><head><title>Daily Papers</title></head></html>")
    assert error.line == 1
    assert "header line 'new'" in str(error)
    assert "<!DOCTYPE html>" in str(error)


def test_truncated_last_block_title_only() -> None:
    error = rejected(header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5\n\nCut Here\n"))
    assert error.line == 21
    assert "abstract of 'Cut Here'" in str(error)


def test_truncated_last_block_no_date() -> None:
    error = rejected(header_and("T\n\nA\n\n  • 2 authors\n·\n"))
    assert error.line == 18
    assert "date line" in str(error)


def test_truncated_last_block_no_dot() -> None:
    error = rejected(header_and("T\n\nA\n\n  • 2 authors\n"))
    assert error.line == 17
    assert "'·'" in str(error)


@pytest.mark.parametrize("line", ["Jan 32 2", "Foo 3", "Jan 3,2024", "January 3", "Feb 29, 2023"])
def test_malformed_date_line(line: str) -> None:
    error = rejected(header_and(f"T\n\nA\n\n  • 2 authors\n·\n{line}\n"))
    assert error.line == 19
    assert line.rsplit(maxsplit=1)[-1] in str(error)


def test_malformed_author_line() -> None:
    error = rejected(header_and("T\n\nA\n\n  • many authors\n·\nJan 5\n"))
    assert error.line == 17
    assert "'• 7 authors'" in str(error)


def test_header_without_a_page_date() -> None:
    error = rejected(header_and("", page="Yesterday"))
    assert error.line == 11
    assert "page date" in str(error)


def test_error_counts_are_line_numbers_of_the_file() -> None:
    body = header_and("T\n\nA\n\n  • 2 authors\n·\nJan 5\n").replace(b"\n", b"\r\n")
    body += b"\r\nX\r\n\r\nY\r\n\r\n  \xe2\x80\xa2 2 authors\r\n\xc2\xb7\r\nnot a date\r\n"
    error = rejected(body)
    assert error.line == 27


def test_repeated_entries_are_all_returned() -> None:
    parsed = parse(snap(header_and("T\n\nA\n\n" * 3)))
    assert Counter(p.title for p in parsed.papers) == {"T": 3}


@pytest.mark.shared
def test_the_fast_path_and_the_line_by_line_parser_agree(seeds: list[Path]) -> None:
    from service.parse import listing

    for path in [*seeds, HERE / "basic.txt"]:
        text = listing.decode(path.read_bytes(), str(path))
        numbered = listing._content_lines(text)
        page, start = listing._header(numbered, str(path))
        fast = listing._fast_entries(text, page[0])
        assert fast is not None, path
        assert fast == listing._entries(numbered, start, str(path))


def test_an_odd_block_falls_back_to_the_line_by_line_parser() -> None:
    # Trailing spaces and a whitespace-only line: not the exact layout, still a listing.
    body = header_and("T  \n  \nA\n\n  • 2 authors \n·\nJan 5 3\n")
    (paper,) = parse(snap(body)).papers
    assert (paper.title, paper.author_count, paper.upvotes) == ("T", 2, 3)


# -- the fast reader against the line-by-line one, on generated captures -------------------------


def _random_capture(rng: random.Random, odd_rate: float) -> str:
    """A listing capture laid out as Hugging Face prints it, but for odd lines at ``odd_rate``."""

    def words(count: int) -> str:
        vocabulary = ["attention", "KV-cache", "Études", "注意力", "LLM", "x", "42", "a_b"]
        return " ".join(rng.choice(vocabulary) for _ in range(count))

    def odd(text: str, *variants: str) -> str:
        return rng.choice(variants) if rng.random() < odd_rate else text

    blocks = []
    for _ in range(rng.randrange(0, 12)):
        title = odd(words(rng.randrange(1, 6)), " Lead", "Trail ", "\u00a0Nbsp", "• Bullet", "·dot")
        abstract = odd(words(rng.randrange(1, 30)), "   ", "\u00a0", "·", "  • 3 authors")
        block = f"{title}\n\n{abstract}"
        kind = rng.random()
        if kind < 0.75:
            meta = rng.choice(
                ["  • 7 authors", "  • 1 author", "ByteDance-Seed ByteDance Seed", "Solo"]
            )
            meta = odd(meta, " • 3 authors", "• 3 authors", "  • many authors", "Org \u00a0", "")
            dot = odd("·", " · ", "", "·x")
            day = rng.choice(["Jan 15", "Jan 15 2", "Mar 31, 2023", "Aug 2, 2024 4", "Feb 29"])
            day = odd(day, "Jan 32", "Foo 3", "Jan 3,2024", "Feb 29, 2023", "Dec 5 ", "")
            block += f"\n\n{meta}\n{dot}\n{day}"
        blocks.append(block)
    separator = odd("\n\n", "\n\n\n", "\n \n", "\n")
    page = odd("Mar 3", "Feb 29", "Dec 26")
    head = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    text = f"{head}byAK and the research community\n\n{page}\n\n" + separator.join(blocks)
    return text + rng.choice(["", "\n", "\n\n", "\n  \n"])


def _outcome(read: Any, snapshot: Snapshot) -> Any:
    """What a reader makes of a snapshot: the papers and capture time, or the error message."""
    try:
        parsed = read(snapshot)
    except ParseError as error:
        return str(error)
    return Parsed(parsed.papers, parsed.captured_at, parsed.notes)


def test_the_fast_reader_agrees_with_the_line_by_line_one_on_generated_captures() -> None:
    from service.parse import listing

    rng = random.Random(2)
    for round_ in range(3000):
        odd_rate = 0.08 if round_ % 2 else 0
        text = _random_capture(rng, odd_rate)
        body = text.encode()
        if rng.random() < 0.1:
            body = body.replace(b"\n", b"\r\n")
        if rng.random() < 0.1:
            body = b"\xef\xbb\xbf" + body
        captured = rng.choice([None, datetime(2026, 5, 8, tzinfo=UTC)])
        snapshot = snap(body, captured_at=captured)
        expected = _outcome(listing._parse_lines, snapshot)
        assert _outcome(parse, snapshot) == expected, text
        # The ingesting reader: the same, and read fast when the capture is laid out right.
        assert _outcome(lambda s: listing.read(s, listing.scan(s)), snapshot) == expected, text
        if not odd_rate and not isinstance(expected, str):
            assert isinstance(listing.read(snapshot, listing.scan(snapshot)), Capture), text


def _blocks(snapshot: Snapshot, seen: dict[str, int] | None = None) -> Any:
    from service.parse import listing

    blocks = listing.scan(snapshot)
    parsed = listing.read(snapshot, blocks, seen)
    assert isinstance(parsed, Capture)
    assert parsed.blocks is blocks
    return blocks


def _prints(blocks: Any) -> list[tuple[str, ...]]:
    return [tuple(fp for _, fp in blocks.entries(i)) for i in range(len(blocks))]


def test_unread_blocks_read_later_as_the_first_reading_did(seeds: list[Path]) -> None:
    for body in (seed(seeds, "000").read_bytes(), (HERE / "basic.txt").read_bytes()):
        snapshot = snap(body, captured_at=datetime(2028, 3, 3, tzinfo=UTC))
        full = _blocks(snapshot)
        everything = [pair for i in range(len(full)) for pair in full.entries(i)]
        # Leave every other block unread, then read them one by one.
        seen = {fp: 0 for prints in _prints(full)[::2] for fp in prints}
        blocks = _blocks(snapshot, seen)
        assert blocks.known(seen)[::2] == [[0] * len(p) for p in _prints(full)[::2]]
        assert not any(blocks.known(seen)[1::2])
        later = [pair for i in range(len(blocks)) for pair in blocks.entries(i)]
        assert later == everything
        assert [blocks.describe(i) for i in range(len(blocks))] == [
            (papers[0][0].line, papers[0][0].title)
            for papers in (full.entries(i) for i in range(len(full)))
        ]
        assert tuple(paper for paper, _ in later) == parse(snapshot).papers


def test_blocks_of_several_papers_are_known_only_whole() -> None:
    body = (HERE / "basic.txt").read_bytes()
    snapshot = snap(body, captured_at=datetime(2028, 3, 3, tzinfo=UTC))
    blocks = _blocks(snapshot)
    prints = _prints(blocks)
    several = next(i for i, p in enumerate(prints) if len(p) > 1)
    assert [p[0][0] for p in prints] == ["L", "L", "S", "L"]
    seen = {fp: n for n, fp in enumerate(prints[several])}
    assert blocks.known(seen)[several] == list(range(len(prints[several])))
    del seen[prints[several][-1]]
    assert blocks.known(seen)[several] is None


def test_known_answers_anew_only_when_the_mapping_changed() -> None:
    body = (HERE / "basic.txt").read_bytes()
    blocks = _blocks(snap(body, captured_at=datetime(2028, 3, 3, tzinfo=UTC)))
    seen = {fp: n for n, fp in enumerate(fp for block in _prints(blocks) for fp in block)}
    first = blocks.known(seen)
    assert all(found is not None for found in first)
    assert blocks.known(dict(seen)) == first  # equal mappings, as before and in a transaction
    seen[_prints(blocks)[0][0]] = 99  # the mapping asked about before, changed since
    assert blocks.known(seen)[0] == [99]
    assert blocks.known({}) == [None] * len(blocks)


def test_papers_made_fast_equal_papers_made_by_keyword() -> None:
    from service.model import PaperIn
    from service.parse.listing import _listed_paper

    org = Organisation("ByteDance-Seed", "ByteDance Seed")
    fast = _listed_paper("Title", "Abstract.", None, org, date(2026, 5, 2), 5, 7)
    assert fast == PaperIn(
        title="Title",
        abstract="Abstract.",
        organisation=org,
        published=date(2026, 5, 2),
        upvotes=5,
        line=7,
    )
    other = _listed_paper("Title", "Abstract.", 3, None, date(2026, 5, 2), 0, 9)
    assert other == PaperIn(
        "Title", "Abstract.", author_count=3, published=date(2026, 5, 2), upvotes=0, line=9
    )
    assert fast.links == {} and fast.links is not other.links  # a default factory's, each its own


def test_fingerprints_change_with_any_byte_and_with_the_capture_year() -> None:
    body = (HERE / "basic.txt").read_bytes()
    at = datetime(2028, 3, 3, tzinfo=UTC)
    base = _blocks(snap(body, captured_at=at))
    prints = _prints(base)
    flat = [fp for block in prints for fp in block]
    assert len(set(flat)) == len(flat)
    assert all(len(fp) == 32 for fp in flat)
    year_later = _prints(_blocks(snap(body, captured_at=at.replace(year=2032))))
    assert not set(flat) & {fp for block in year_later for fp in block}
    for offset in range(body.index(b"MoE"), len(body)):
        changed = body[:offset] + bytes([body[offset] ^ 1]) + body[offset + 1 :]
        try:
            blocks = _blocks(snap(changed, captured_at=at))
        except (AssertionError, ParseError):
            continue  # not read fast
        spans = dict(zip(zip(base.starts, base.ends, strict=True), prints, strict=True))
        for start, end, now in zip(blocks.starts, blocks.ends, _prints(blocks), strict=True):
            if (start, end) not in spans:
                continue
            # The block with the changed byte is fingerprinted anew; the others are not.
            renewed = not set(now) & set(spans[start, end])
            assert renewed == (start <= offset < end), offset


def test_blocks_end_at_each_dot_line_and_the_date_line_after_it() -> None:
    from service.parse import listing

    dot_line = re.compile(rb"\n\xc2\xb7\n[^\n]*")
    rng = random.Random(3)
    pieces = [b"\n", b"\xc2\xb7", b"\xb7", b"\xc2", b"a", b"Jan 5", "÷ŷ".encode(), b"\n\n"]
    for _ in range(5000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(40)))
        start = rng.randrange(len(body) + 1)
        blocks = listing._blocks(body, "x", (0, 1, 1), start)
        spans = [found.span() for found in dot_line.finditer(body, start)]
        assert blocks.dots[: len(spans)] == [dot for dot, _ in spans], body
        assert blocks.ends[: len(spans)] == [end for _, end in spans], body


def test_fingerprints_of_other_kinds_are_never_a_block_s() -> None:
    body = (HERE / "basic.txt").read_bytes()
    blocks = _blocks(snap(body, captured_at=datetime(2028, 3, 3, tzinfo=UTC)))
    others = {"": 1, "0" * 32: 2, "S" * 32: 3, "Sxyz": 4, "L2028": 5}
    assert blocks.known(others) == [None] * len(blocks)


def test_ascii_titles_fold_to_the_same_keys_as_the_general_rule() -> None:
    # Stored keys must not change: the byte-table fold of ASCII titles equals the regex rule.
    import unicodedata

    from service.identity import _NOT_WORD

    def general(title: str) -> str:
        title = unicodedata.normalize("NFKD", title)
        title = "".join(c for c in title if not unicodedata.combining(c))
        return _NOT_WORD.sub(" ", title.casefold()).strip()

    rng = random.Random(4)
    titles = [
        "".join(chr(rng.randrange(128)) for _ in range(rng.randrange(16))) for _ in range(20000)
    ]
    titles += ["KV-Cache:  Etudes", "  a_b__c  ", "MoE$^2$: Optimizing", "\x1c\x1f x \t"]
    for title in titles:
        assert normalise_title(title) == general(title), repr(title)
