"""The ``feed`` parser on real arXiv, journal, blog and feedparser edge-case feeds."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest

from service.errors import ConfigError, ParseError
from service.model import Snapshot
from service.parse import feed
from service.parse.markup import html_blocks, html_to_text

from .shared_files import FETCHED_AT, check_expected, shared_dir, shared_files, snapshot_of

ITEM = re.compile(rb"<item[\s>]")
ENTRY = re.compile(rb"<entry[\s>]")
TAG = re.compile(r"<[A-Za-z/!]")
REPUBLISHED = "arxiv/republished/cn-chat-arxiv_cs.LG_2026-08-19.xml"


def snapshot(body: bytes, **changes: Any) -> Snapshot:
    changes.setdefault("origin", "test.xml")
    return Snapshot(source_id="test", body=body, fetched_at=FETCHED_AT, **changes)


def rss(items: str, channel: str = "<title>t</title>") -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:arxiv="http://arxiv.org/schemas/atom" '
        f'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>{channel}{items}</channel></rss>'
    ).encode()


@pytest.mark.shared
@pytest.mark.parametrize(
    "name",
    [
        "arxiv_rss_cs.AI",
        "arxiv_api_2017",
        "arxiv_api_2026",
        "arxiv_rss_legacy",
        "arxiv_republished_cs.LG",
        "tpami",
    ],
)
def test_expected_output(name: str) -> None:
    check_expected(name, feed.parse)


@pytest.mark.shared
@pytest.mark.parametrize(
    "folder", ["arxiv/rss", "arxiv/api", "arxiv/rss_legacy", "feeds/journals", "feeds/research"]
)
def test_every_real_feed_gives_one_paper_per_item(folder: str) -> None:
    for path in sorted((shared_dir() / folder).iterdir()):
        body = path.read_bytes()
        parsed = feed.parse(snapshot_of(path))
        assert len(parsed.papers) == len(ITEM.findall(body)) + len(ENTRY.findall(body)), path
        assert parsed.notes == (), path
        for paper in parsed.papers:
            assert paper.title and not TAG.search(paper.title), paper.title
            assert paper.title == " ".join(paper.title.split())
            assert not re.search(r"<(?:p|div|a|br|script|style|img)\b", paper.abstract), path


@pytest.mark.shared
def test_arxiv_rss() -> None:
    path = shared_dir() / "arxiv/rss/cs.AI_2026-04-27_trimmed.xml"
    parsed = feed.parse(snapshot_of(path))
    first = parsed.papers[0]
    assert first.arxiv_id == "2604.21935"
    assert first.version == 1
    assert first.announce == "new"
    assert first.authors == ("Michael Cooper", "Samuel Cooper")
    assert first.categories == ("cs.AI", "cs.LG")
    assert first.abstract.startswith("Although language models demonstrate remarkable")
    assert "Announce Type" not in first.abstract
    assert first.published == date(2026, 4, 27)
    text = path.read_text(encoding="utf-8")
    assert first.line == text[: text.index("<item>")].count("\n") + 1
    second = parsed.papers[1]
    assert r"\textbf{adaptability}" in second.abstract
    assert len(second.authors) == 18


@pytest.mark.shared
def test_arxiv_rss_creator_with_double_space() -> None:
    parsed = feed.parse(snapshot_of(shared_dir() / "arxiv/rss/cs.CL_2026-04-27_trimmed.xml"))
    assert parsed.papers[0].authors == (
        "Anamta Khan",
        "Ratna Kandala",
        "Deepti",
        "Sheza Munir",
        "Joyojeet Pal",
    )


@pytest.mark.shared
def test_arxiv_api_old_and_new() -> None:
    old = feed.parse(snapshot_of(shared_dir() / "arxiv/api/2017-05_search_deep-dream_start0.atom"))
    first = old.papers[0]
    assert first.title.startswith("Hierarchical Neural Representation of Dreamed Objects")
    assert "Brain Decoding" in first.title
    assert first.abstract.startswith("Dreaming is generally thought")
    assert (first.arxiv_id, first.version) == ("1611.09520", 2)
    assert first.published == date(2016, 11, 29)
    assert old.papers[1].doi == "10.3847/0004-637X/820/2/107"
    new = feed.parse(
        snapshot_of(shared_dir() / "arxiv/api/2026-07_new-api-format_all-nicotine.atom")
    )
    assert new.papers[0].categories == ("cond-mat.mes-hall", "physics.comp-ph")
    assert new.papers[1].authors == ("Hyung-June Lee", "Gunn Kim", "Young-Kyun Kwon")
    assert new.papers[0].links["doi"] == "https://doi.org/10.1063/1.4904358"


@pytest.mark.shared
def test_legacy_rss1() -> None:
    parsed = feed.parse(snapshot_of(shared_dir() / "arxiv/rss_legacy/arxiv-cs-pl_2015-06-11.rss1"))
    first, second = parsed.papers
    assert first.title == "OMP2MPI: Automatic MPI code generation from OpenMP programs"
    assert (first.arxiv_id, first.version, first.categories) == ("1502.02921", 2, ("cs.DC",))
    assert first.authors == ("Albert Saa-Garriga", "David Castells-Rufas", "Jordi Carrabina")
    assert second.authors[-1] == "Ioannis Papaefstathiou"
    assert len(second.authors) == 4


@pytest.mark.shared
def test_republished_listing() -> None:
    path = shared_dir() / REPUBLISHED
    body = path.read_bytes()
    parsed = feed.parse(snapshot_of(path))
    links = re.findall(rb"<link>https?://arxiv\.org/abs/([^<]+)</link>", body)
    assert len(parsed.papers) == len(ITEM.findall(body)) == len(links) == 237
    assert [paper.arxiv_id for paper in parsed.papers] == [link.decode() for link in links]
    cjk = re.compile(r"[\u4e00-\u9fff]")
    assert not [paper.title for paper in parsed.papers if cjk.search(paper.title)]
    assert all(cjk.search(paper.summary) for paper in parsed.papers)
    announced = Counter(m.decode() for m in re.findall(rb"Announce Type: ([a-z-]+)", body))
    assert Counter(p.announce for p in parsed.papers if p.announce) == announced
    assert parsed.notes == (
        f"{announced['replace'] + announced['replace-cross']} entries are not new announcements "
        f"(replace: {announced['replace']}, replace-cross: {announced['replace-cross']})",
    )
    # Two items carry the legacy title suffix and no "Announce Type" paragraph.
    spikformer = next(p for p in parsed.papers if p.arxiv_id == "2401.02020")
    assert spikformer.title == (
        "Spikformer V2: Join the High Accuracy Club on ImageNet with an SNN Ticket"
    )
    assert spikformer.version == 1
    assert spikformer.abstract.startswith("Spiking Neural Networks (SNNs), known for")


@pytest.mark.shared
def test_new_announce_types_option_only_changes_the_note() -> None:
    path = shared_dir() / REPUBLISHED
    default = feed.parse(snapshot_of(path))
    strict = feed.parse(snapshot_of(path), {"new_announce_types": ["new"], "host_interval": 5})
    assert strict.papers == default.papers
    assert strict.notes == ("156 entries are not new announcements "
                            "(cross: 78, replace: 41, replace-cross: 37)",)  # fmt: skip


def test_new_announce_types_must_be_a_list_of_strings() -> None:
    with pytest.raises(ConfigError):
        feed.parse(snapshot(rss("")), {"new_announce_types": "new"})
    with pytest.raises(ConfigError):
        feed.parse(snapshot(rss("")), {"new_announce_types": [1]})


@pytest.mark.shared
def test_tpami_bare_doi_guids() -> None:
    path = shared_dir() / "feeds/journals/tpami-current-issue_2026-07-01.rss"
    guids = re.findall(r"<guid>([^<]+)</guid>", path.read_text(encoding="utf-8"))
    parsed = feed.parse(snapshot_of(path))
    assert [paper.doi for paper in parsed.papers] == guids
    first = parsed.papers[0]
    assert first.links == {"doi": "https://doi.org/10.1109/tpami.2026.3669584"}
    assert first.title.startswith("AIRPNet: Adaptive Image Restoration")
    assert "<br" not in first.abstract
    assert first.arxiv_id is None


@pytest.mark.shared
def test_nature_sliding_window() -> None:
    folder = shared_dir() / "feeds/journals"
    before, after = (
        feed.parse(snapshot_of(folder / f"nature_research-articles_{stamp}.atom"))
        for stamp in ("2026-02-03T0609", "2026-02-04T0612")
    )
    old = {paper.links["abs"] for paper in before.papers}
    new = {paper.links["abs"] for paper in after.papers}
    assert len(old) == len(new) == 20
    assert len(new - old) == len(old - new) == 1
    first = before.papers[0]
    assert first.title == "A broadly protective antibody targeting gammaherpesvirus gB"
    assert first.abstract.startswith("Cong Sun")  # the card repeats the title; dropped
    assert first.published == date(2026, 2, 2)


@pytest.mark.shared
def test_blog_html_becomes_clean_text() -> None:
    bair = feed.parse(snapshot_of(shared_dir() / "feeds/research/bair_blog_2026-04.rss"))
    first = bair.papers[0]
    assert first.abstract.startswith("GRASP is a new gradient-based planner")
    assert "margin-top" not in first.abstract  # <style> content is not text
    gradient = feed.parse(snapshot_of(shared_dir() / "feeds/research/the_gradient_2026-04.rss"))
    assert "don’t have goals" in gradient.papers[0].abstract
    assert gradient.papers[0].authors == ("Peli Grietzer",)
    assert gradient.papers[0].categories == ("Ethics", "Human factors", "Impacts")


# What each edge case gives: a paper count and note count, or the start of the error.
EDGE_CASES: dict[str, tuple[int, int] | str] = {
    "encoding__big5.xml": (0, 0),
    "encoding__demoronize-1.xml": (0, 1),  # one item with neither title nor link
    "encoding__utf-16le-bom.xml": (0, 0),
    "encoding__utf-8-bom.xml": (0, 0),
    "entities__doesnotexist.xml": (0, 1),
    "illformed__rss_empty_document.xml": 'expected an RSS or Atom feed, found "no element found',
    "illformed__rss_incomplete_cdata.xml": (0, 2),
    "illformed__undeclared_namespace.xml": (0, 1),
    "wellformed__atom10__entry_title_escaped_markup.xml": (1, 0),
    "wellformed__atom__relative_uri_inherit.xml": (0, 0),
    "wellformed__rss__item_guid_not_permalink_not_url.xml": (0, 1),
    "wellformed__sanitize__entry_title_iframe.xml": (1, 0),
}


@pytest.mark.shared
@pytest.mark.parametrize("path", shared_files("feeds/edge_cases"))
def test_edge_case(path: Path | None) -> None:
    """Every file there parses to clean papers or is rejected with a clear ParseError."""
    shared_dir()
    assert path is not None
    try:
        parsed = feed.parse(snapshot_of(path))
    except ParseError as error:
        assert error.expected == "an RSS or Atom feed"
        assert error.found
        outcome: tuple[int, int] | str = str(error).removeprefix(f"{path}: ")
    else:
        for paper in parsed.papers:
            assert paper.title
            assert not TAG.search(paper.title)
            assert not TAG.search(paper.abstract)
        outcome = (len(parsed.papers), len(parsed.notes))
    want = EDGE_CASES.get(path.name)
    if isinstance(want, str):
        assert isinstance(outcome, str) and outcome.startswith(want)
    elif want is not None:
        assert outcome == want


@pytest.mark.shared
def test_markup_in_titles_is_clean_text() -> None:
    folder = shared_dir() / "feeds/edge_cases"
    escaped = feed.parse(snapshot_of(folder / "wellformed__atom10__entry_title_escaped_markup.xml"))
    assert [p.title for p in escaped.papers] == ["Example Atom"]
    iframe = feed.parse(snapshot_of(folder / "wellformed__sanitize__entry_title_iframe.xml"))
    assert [p.title for p in iframe.papers] == ["safe description"]


def test_script_in_title_and_description() -> None:
    body = rss(
        "<item><title>Safe &lt;script&gt;alert(1)&lt;/script&gt;title</title>"
        "<link>https://example.org/a</link>"
        "<description>&lt;p&gt;One &amp;amp; two&lt;/p&gt;&lt;style&gt;p{}&lt;/style&gt;"
        "&lt;iframe src='x'&gt;frame&lt;/iframe&gt;&lt;p&gt;three&amp;nbsp;four&lt;/p&gt;"
        "</description></item>"
    )
    (paper,) = feed.parse(snapshot(body)).papers
    assert paper.abstract == "One & two three four"
    assert paper.title == "Safe title"


def test_empty_arxiv_listing_is_zero_papers() -> None:
    channel = "<title>cs.AI updates on arXiv.org</title><link>http://rss.arxiv.org/rss/cs.AI</link>"
    parsed = feed.parse(snapshot(rss("", channel)))
    assert parsed.papers == ()
    assert parsed.notes == ()


@pytest.mark.parametrize(
    "body",
    [
        b"<!doctype html><html><head><title>Hi</title></head><body><p>x</p></body></html>",
        b'[{"paper": {"id": "2401.00001"}}]',
        b"\x00\x01\x02 binary",
        b"<?xml version='1.0'?><opml version='2.0'><body/></opml>",
        b"",
    ],
    ids=["html", "json", "binary", "opml", "empty"],
)
def test_not_a_feed(body: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        feed.parse(snapshot(body))
    assert caught.value.expected == "an RSS or Atom feed"
    assert caught.value.source == "test.xml"


def test_ill_formed_feed_with_entries_is_parsed_with_a_note() -> None:
    body = rss(
        "<item><title>Good &bogus; paper</title><link>https://example.org/1</link></item>"
        "<item><title>Second</title><link>https://example.org/2</link></item>"
    )
    parsed = feed.parse(snapshot(body))
    assert [paper.title for paper in parsed.papers] == ["Good &bogus; paper", "Second"]
    assert len(parsed.notes) == 1
    assert "not well-formed" in parsed.notes[0]


def test_entries_without_title_are_skipped_with_a_note() -> None:
    body = rss(
        "<item><description>no title or link</description></item>"
        "<item><link>https://example.org/x</link></item>"
        "<item><title>Kept</title></item>"
    )
    parsed = feed.parse(snapshot(body))
    assert [paper.title for paper in parsed.papers] == ["Kept"]
    assert [note.split(" skipped: ")[1] for note in parsed.notes] == [
        "no title, link or id",
        "no title",
    ]


def test_relative_links_are_resolved() -> None:
    body = rss("<item><title>A</title><link>posts/a.html</link></item>")
    (paper,) = feed.parse(snapshot(body, origin="https://example.org/blog/feed.xml")).papers
    assert paper.links["abs"] == "https://example.org/blog/posts/a.html"
    based = body.replace(b'version="2.0"', b'version="2.0" xml:base="https://base.example/x/"')
    (paper,) = feed.parse(snapshot(based)).papers
    assert paper.links["abs"] == "https://base.example/x/posts/a.html"


def test_arxiv_abstract_keeps_less_than_signs() -> None:
    body = rss(
        "<item><title>Bounds for p&lt;n</title><link>https://arxiv.org/abs/2604.00001</link>"
        "<description>arXiv:2604.00001v3 Announce Type: replace \nAbstract: When $p&lt;n$ "
        "and $k&lt;m$, it works.</description><guid>oai:arXiv.org:2604.00001v3</guid>"
        "<arxiv:announce_type>replace</arxiv:announce_type>"
        "<dc:creator>A. One, B. Two and C. Three</dc:creator></item>"
    )
    parsed = feed.parse(snapshot(body))
    (paper,) = parsed.papers
    assert paper.title == "Bounds for p<n"
    assert paper.abstract == "When $p<n$ and $k<m$, it works."
    assert (paper.arxiv_id, paper.version, paper.announce) == ("2604.00001", 3, "replace")
    assert paper.authors == ("A. One", "B. Two", "C. Three")
    assert parsed.notes == ("1 entry is not new announcements (replace: 1)",)


@pytest.mark.parametrize(
    ("reference", "arxiv_id", "version"),
    [
        ("<guid>oai:arXiv.org:hep-th/9901001v2</guid>", "hep-th/9901001", 2),
        ("<link>http://arxiv.org/abs/cs/0112017v1</link>", "cs/0112017", 1),
        ("<link>https://arxiv.org/abs/math.AG/0601001</link>", "math.AG/0601001", None),
        ("<link>https://arxiv.org/pdf/2404.12345v4</link>", "2404.12345", 4),
        ("<guid>oai:arXiv.org:2404.12345</guid>", "2404.12345", None),
    ],
)
def test_arxiv_ids(reference: str, arxiv_id: str, version: int | None) -> None:
    (paper,) = feed.parse(snapshot(rss(f"<item><title>T</title>{reference}</item>"))).papers
    assert (paper.arxiv_id, paper.version) == (arxiv_id, version)
    assert paper.links["abs"] == f"https://arxiv.org/abs/{arxiv_id}"


def test_feedparser_gets_bytes_and_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, dict[str, str]]] = []
    real = feedparser.parse

    def spy(source: object, **kwargs: Any) -> Any:
        calls.append((source, kwargs["response_headers"]))
        return real(source, **kwargs)

    monkeypatch.setattr(feedparser, "parse", spy)
    body = rss("")
    feed.parse(snapshot(body, origin="https://example.org/f", content_type="application/rss+xml"))
    assert calls == [
        (body, {"content-type": "application/rss+xml", "content-location": "https://example.org/f"})
    ]


def test_capture_time_preference() -> None:
    body = rss("")
    mtime = datetime(2026, 4, 1, tzinfo=UTC)
    assert feed.parse(snapshot(body)).captured_at == FETCHED_AT
    assert feed.parse(snapshot(body, mtime=mtime)).captured_at == mtime
    at = datetime(2026, 4, 2, tzinfo=UTC)
    assert feed.parse(snapshot(body, mtime=mtime, captured_at=at)).captured_at == at


def test_split_names() -> None:
    assert feed.split_names("A (1), B (2) ((1) Dept., X, (2) Y), C and D") == ["A", "B", "C", "D"]
    assert feed.split_names("  Deepti,  Sheza   Munir ") == ["Deepti", "Sheza Munir"]


def test_markup_text() -> None:
    assert html_to_text("<p>a &amp; b</p><p>c<br/>d</p>") == "a & b c d"
    assert html_to_text("x<script>bad()</script><b>y</b>z") == "xyz"
    assert html_to_text("plain\n  text") == "plain text"
    assert html_blocks("<p>\n one \n</p><p></p><div>two</div>") == ["one", "two"]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("<title>A &#x110000; b</title>", "ValueError"),
        ("<title>A &#99999999999; b</title>", "OverflowError"),
    ],
)
def test_what_feedparser_raises_is_a_parse_error_naming_the_file(item: str, says: str) -> None:
    with pytest.raises(ParseError) as caught:
        feed.parse(snapshot(rss(f"<item>{item}<link>https://x.org/</link></item>")))
    assert str(caught.value).startswith("test.xml: expected an RSS or Atom feed feedparser")
    assert says in str(caught.value)


def test_html_python_cannot_parse_is_a_parse_error_naming_the_line() -> None:
    item = (
        '<item><title>Fine</title><link>https://x.org/</link>\n<description type="html">'
        "&lt;p&gt;Text &lt;![!x&lt;/p&gt;</description></item>"
    )
    with pytest.raises(ParseError) as caught:
        feed.parse(snapshot(rss("\n" + item)))
    assert caught.value.line == 2
    assert "entry 1" in caught.value.expected and "AssertionError" in str(caught.value.found)
