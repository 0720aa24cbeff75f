"""Content sniffing: every shared input is recognised, anything else is a clear error."""

from __future__ import annotations

import codecs
import contextlib
import time
from pathlib import Path

import pytest

from service.errors import ParseError
from service.model import SourceKind
from service.parse.sniff import EXPECTED, PAGE_WINDOW, detect

from .shared_files import SHARED, shared_dir

NOT_A_FEED = {"illformed__rss_empty_document.xml"}  # an XML comment and nothing else
BY_FOLDER = {
    "hf_daily_papers": SourceKind.HF_DAILY,
    "arxiv": SourceKind.FEED,
    "feeds": SourceKind.FEED,
}


def shared_inputs() -> list[object]:
    if not SHARED.is_dir():
        return [pytest.param(None, id="placeholder: ../shared/fixtures is absent")]
    files = [p for p in sorted(SHARED.rglob("*")) if p.is_file() and p.name != "README.md"]
    seeds = sorted((SHARED.parent / "seeds").glob("*.txt"))
    return [pytest.param(path, id=str(path.relative_to(SHARED.parent))) for path in files + seeds]


@pytest.mark.shared
@pytest.mark.parametrize("path", shared_inputs())
def test_shared_inputs(path: Path | None) -> None:
    shared_dir()
    assert path is not None
    body = path.read_bytes()
    if path.name in NOT_A_FEED:
        with pytest.raises(ParseError):
            detect(body, origin=str(path))
        return
    folder = path.relative_to(SHARED.parent).parts[1]
    want = SourceKind.LISTING if path.parent.name == "seeds" else BY_FOLDER[folder]
    assert detect(body, origin=str(path)) == want


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'  \n[{"paper": {}}]', SourceKind.HF_DAILY),
        (codecs.BOM_UTF8 + b'{"status": "success"}', SourceKind.HF_DAILY),
        (b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>', SourceKind.FEED),
        (b"<!-- Expect: bozo -->\n<?xml version='1.0'?><feed xmlns='x'/>", SourceKind.FEED),
        (b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>', SourceKind.FEED),
        (b'<!DOCTYPE rss [<!ENTITY a "b">]><rss/>', SourceKind.FEED),
        (codecs.BOM_UTF16_LE + '<?xml version="1.0"?><feed/>'.encode("utf-16-le"), SourceKind.FEED),
        (codecs.BOM_UTF16_BE + "<rss/>".encode("utf-16-be"), SourceKind.FEED),
        ("<rss/>".encode("utf-16-le"), SourceKind.FEED),
        (b"\n\nnew\n\nGet trending papers in your email inbox!\n\nSubscribe\n", SourceKind.LISTING),
        (
            b'<!doctype html><html><div data-target="DailyPapers" data-props="{}"></div>',
            SourceKind.HF_DAILY,
        ),
    ],
    ids=[
        "json-list",
        "json-object-bom",
        "rss",
        "comment-then-atom",
        "rdf",
        "doctype-subset",
        "utf16le-bom",
        "utf16be-bom",
        "utf16-no-bom",
        "listing",
        "papers-page",
    ],
)
def test_kinds(body: bytes, kind: SourceKind) -> None:
    assert detect(body, origin="x") == kind


@pytest.mark.parametrize(
    "body",
    [
        b"<!doctype html><html><body><p>Some page</p></body></html>",
        b'<!doctype html><html><div data-target="DailyPapersBannerSubscribe"></div></html>',
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
        b"<?xml version='1.0'?><opml/>",
        b"Hello, world\n",
        b"new\n\nSomething else entirely\n",
        b"",
        b"\x00\x01\x02\x03",
    ],
    ids=["html", "html-banner-only", "xhtml", "opml", "text", "almost-listing", "empty", "binary"],
)
def test_anything_else_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        detect(body, origin="drop/in/file")
    assert caught.value.expected == EXPECTED
    assert caught.value.source == "drop/in/file"
    assert caught.value.found


@pytest.mark.parametrize(
    ("body", "line", "found"),
    [
        (b"", 1, "an empty file"),
        (b"  \n\n", 1, "an empty file"),
        (bytes(range(256)) * 16, 1, "binary data"),
        (b"some words\nmore\n\x00\x01 bytes\n", 3, "binary data"),
        ("new\n\nCaf\xe9\n".encode("latin-1"), 3, "byte 0xe9 (not UTF-8)"),
        (b"\n\n  Hello, world  \nmore\n", 3, "Hello, world"),
        (b"\n<!doctype html>\n<html><body>a page</body></html>", 2, "<!doctype html>"),
    ],
    ids=["empty", "blank", "random-bytes", "zero-bytes", "latin-1", "text", "html"],
)
def test_an_unknown_file_is_named_with_its_line(body: bytes, line: int, found: str) -> None:
    with pytest.raises(ParseError) as caught:
        detect(body, origin="inbox/x.txt")
    assert (caught.value.line, caught.value.found) == (line, found)
    assert str(caught.value).startswith(f"inbox/x.txt: line {line}: expected ")


def test_a_utf8_sequence_cut_by_the_sniffed_head_is_not_binary() -> None:
    body = b"Hello! " + "é".encode() * 5000  # the head ends inside a two-byte sequence
    with pytest.raises(ParseError) as caught:
        detect(body, origin="x")
    assert caught.value.found is not None and caught.value.found.startswith("Hello! é")


def test_papers_page_marker_after_a_long_head() -> None:
    body = b"<!doctype html><html><head>" + b" " * 100_000 + b'<div data-target="DailyPapers">'
    assert detect(body, origin="x") == SourceKind.HF_DAILY
    too_far = b"<!doctype html><html>" + b" " * PAGE_WINDOW + b'<div data-target="DailyPapers">'
    with pytest.raises(ParseError):
        detect(too_far, origin="x")


def test_large_input_is_judged_by_its_head() -> None:
    tail = b" " * (100 * 1024 * 1024)
    for head in (b"<rss>", b"<!doctype html><html>", b"plain"):
        body = head + tail
        started = time.perf_counter()
        with contextlib.suppress(ParseError):
            detect(body, origin="big")
        assert time.perf_counter() - started < 0.5
