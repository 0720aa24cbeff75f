"""The ``hf-daily`` parser on real Daily Papers API replies and the saved papers page."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lxml import html as lxml_html

from service.errors import ParseError
from service.model import Organisation, Snapshot
from service.parse import hf_daily

from .shared_files import (
    FETCHED_AT,
    check_expected,
    record,
    shared_dir,
    shared_files,
    snapshot_of,
)

PAGE = "hf_daily_papers/html/huggingface.co_papers_2024-08-01.html"


def snapshot(body: bytes, **changes: Any) -> Snapshot:
    return Snapshot(
        source_id="test", origin="test.json", body=body, fetched_at=FETCHED_AT, **changes
    )


def page_items(path: Path) -> list[dict[str, Any]]:
    """The page's items read with lxml, independently of the parser's own HTML reading."""
    element = lxml_html.fromstring(path.read_bytes()).xpath('//*[@data-target="DailyPapers"]')[0]
    items: list[dict[str, Any]] = json.loads(element.get("data-props"))["dailyPapers"]
    return items


def as_page(items: list[Any]) -> bytes:
    props = html.escape(json.dumps({"dailyPapers": items, "date": "2024-08-01"}), quote=True)
    return (
        '<!doctype html><html><body><div data-target="DailyPapersBannerSubscribe"></div>'
        f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{props}">'
        "</div></body></html>"
    ).encode()


@pytest.mark.shared
@pytest.mark.parametrize("name", ["hf_api_2024-05-27", "hf_api_2026-08-12", "hf_page_2024-08-01"])
def test_expected_output(name: str) -> None:
    check_expected(name, hf_daily.parse)


@pytest.mark.shared
@pytest.mark.parametrize("path", shared_files("hf_daily_papers/api_json", "*.json"))
def test_every_api_day_parses(path: Path | None) -> None:
    shared_dir()
    assert path is not None
    items = json.loads(path.read_text(encoding="utf-8"))
    parsed = hf_daily.parse(snapshot_of(path))
    assert len(parsed.papers) == len(items)
    for item, paper in zip(items, parsed.papers, strict=True):
        assert paper.arxiv_id == item["paper"]["id"]
        assert paper.title == " ".join(item["title"].split())
        assert "\n" not in paper.abstract
        assert paper.abstract.split()[:5] == item["paper"]["summary"].split()[:5]
        assert paper.upvotes == item["paper"]["upvotes"]
        assert paper.comments == item["numComments"]
        assert paper.links["abs"] == f"https://arxiv.org/abs/{item['paper']['id']}"
        assert paper.published == date.fromisoformat(item["paper"]["publishedAt"][:10])
        if "submittedOnDailyAt" in item["paper"]:
            assert paper.listed_at is not None
            assert paper.listed_at.utcoffset() == timedelta(0)
        if "githubRepo" in item["paper"]:
            assert paper.links["code"] == item["paper"]["githubRepo"]
            assert paper.stars == item["paper"].get("githubStars")


@pytest.mark.shared
def test_2024_schema_unwraps_titles_and_abstracts() -> None:
    parsed = hf_daily.parse(snapshot_of(shared_dir() / "hf_daily_papers/api_json/2024-05-27.json"))
    first = parsed.papers[0]
    assert first.title == (
        "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    )
    assert first.abstract.startswith("High-resolution Large Multimodal Models (LMMs) encounter")
    assert first.authors[:2] == ("Chunjiang Ge", "Sijie Cheng")
    assert first.authors[-1] == "Bo Zheng"
    assert first.listed_at is None
    assert first.organisation is None


@pytest.mark.shared
def test_2026_schema_organisation_and_ai_fields() -> None:
    path = shared_dir() / "hf_daily_papers/api_json/2026-08-06.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    parsed = hf_daily.parse(snapshot_of(path))
    sjtu = [
        paper
        for item, paper in zip(items, parsed.papers, strict=True)
        if item["paper"].get("organization", {}).get("name") == "SJTU"
    ]
    assert sjtu
    assert {paper.organisation for paper in sjtu} == {
        Organisation(handle="SJTU", name="Shanghai Jiao Tong University")
    }
    day = hf_daily.parse(snapshot_of(shared_dir() / "hf_daily_papers/api_json/2026-08-12.json"))
    first = day.papers[0]
    assert first.summary.startswith("Combodied Agents integrate digital and embodied tools")
    assert first.keywords[:2] == ("Combodied Agents", "Personal World Models")
    assert first.listed_at == datetime(2026, 8, 12, tzinfo=UTC)


@pytest.mark.shared
def test_papers_page() -> None:
    path = shared_dir() / PAGE
    items = page_items(path)
    parsed = hf_daily.parse(snapshot_of(path))
    assert len(parsed.papers) == len(items) == 13
    llama = parsed.papers[0]
    assert llama.title == "The Llama 3 Herd of Models"
    assert len(llama.authors) == 533
    assert llama.author_count is None
    assert llama.authors[0] == "Abhimanyu Dubey"
    humanoid = next(p for p in parsed.papers if p.arxiv_id == "2407.21781")
    assert "Xuanyu Huang" not in humanoid.authors
    assert len(humanoid.authors) == 5
    assert humanoid.author_count == 6
    assert humanoid.abstract.startswith("We introduce Berkeley Humanoid, a reliable and low-cost")
    assert "\n" not in humanoid.abstract


@pytest.mark.shared
def test_api_and_page_give_the_same_fields() -> None:
    """The fixtures share no paper (checked), so the same items go through both wrappings.

    Should a paper ever appear in both, its stable fields are compared as well.
    """
    api_path = shared_dir() / "hf_daily_papers/api_json/2026-08-12.json"
    api_items = json.loads(api_path.read_text(encoding="utf-8"))
    from_api = hf_daily.parse(snapshot_of(api_path))
    assert hf_daily.parse(snapshot(as_page(api_items))).papers == from_api.papers

    page_path = shared_dir() / PAGE
    from_page = hf_daily.parse(snapshot_of(page_path))
    as_json = json.dumps(page_items(page_path)).encode()
    assert hf_daily.parse(snapshot(as_json)).papers == from_page.papers

    stable = ("title", "abstract", "arxiv_id", "authors", "author_count", "organisation")
    page_papers = {paper.arxiv_id: record(paper) for paper in from_page.papers}
    for path in sorted((shared_dir() / "hf_daily_papers/api_json").glob("*.json")):
        for paper in hf_daily.parse(snapshot_of(path)).papers:
            if paper.arxiv_id in page_papers:
                mine = record(paper)
                assert {k: mine.get(k) for k in stable} == {
                    k: page_papers[paper.arxiv_id].get(k) for k in stable
                }


@pytest.mark.shared
@pytest.mark.parametrize("path", shared_files("hf_daily_papers/api_json_malformed"))
def test_malformed_bot_output_is_rejected(path: Path | None) -> None:
    shared_dir()
    assert path is not None
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot_of(path))
    assert "a JSON list of objects with a 'paper' object" in caught.value.expected
    assert caught.value.source == str(path)
    assert caught.value.found


@pytest.mark.shared
def test_list_of_python_reprs_names_the_item() -> None:
    path = shared_dir() / "hf_daily_papers/api_json_malformed/2024-12-11.json"
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot_of(path))
    assert "item 0" in caught.value.expected
    assert "string" in str(caught.value.found)
    assert caught.value.line is None


@pytest.mark.shared
def test_wrapper_object_is_rejected() -> None:
    path = shared_dir() / "hf_daily_papers/api_json_malformed/2025-01-10.json"
    with pytest.raises(ParseError, match="an object with keys"):
        hf_daily.parse(snapshot_of(path))


def test_invalid_json_names_the_line() -> None:
    body = b'[\n  {"paper": {"id": "2401.00001", "title": "A"}},\n  ,\n]'
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot(body))
    assert caught.value.line == 3
    assert caught.value.expected == "valid JSON"


@pytest.mark.parametrize("missing", ["id", "title"])
def test_item_without_id_or_title(missing: str) -> None:
    good = {"paper": {"id": "2401.00001", "title": "A paper"}, "title": "A paper"}
    bad: dict[str, Any] = {"paper": {"id": "2401.00002", "title": "B"}}
    del bad["paper"][missing]
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot(json.dumps([good, bad]).encode()))
    assert "item 1" in caught.value.expected
    assert missing in caught.value.expected


def test_wrong_field_type_is_named() -> None:
    body = json.dumps([{"paper": {"id": "2401.00001", "title": "A", "upvotes": "many"}}])
    with pytest.raises(ParseError, match="upvotes in item 0 to be an integer"):
        hf_daily.parse(snapshot(body.encode()))


def test_minimal_item_and_defaults() -> None:
    body = "\ufeff" + json.dumps([{"paper": {"id": "2401.00001", "title": "A\n  title"}}])
    (paper,) = hf_daily.parse(snapshot(body.encode())).papers
    assert paper.title == "A title"
    assert paper.upvotes is None
    assert paper.links == {
        "abs": "https://arxiv.org/abs/2401.00001",
        "pdf": "https://arxiv.org/pdf/2401.00001",
        "hf": "https://huggingface.co/papers/2401.00001",
    }


def test_empty_day_is_zero_papers() -> None:
    assert hf_daily.parse(snapshot(b"[]")).papers == ()


def test_page_without_the_papers_element() -> None:
    body = b"<!doctype html><html><body><div data-target='Other'></div></body></html>"
    with pytest.raises(ParseError, match='data-target="DailyPapers"'):
        hf_daily.parse(snapshot(body))


def test_neither_json_nor_html() -> None:
    with pytest.raises(ParseError, match=re.escape("JSON or the huggingface.co/papers page")):
        hf_daily.parse(snapshot(b"new\n\nGet trending papers in your email inbox!"))


def test_capture_time_preference() -> None:
    body = b"[]"
    later = datetime(2026, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    mtime = datetime(2026, 4, 1, tzinfo=UTC)
    assert hf_daily.parse(snapshot(body)).captured_at == FETCHED_AT
    assert hf_daily.parse(snapshot(body, mtime=mtime)).captured_at == mtime
    chosen = hf_daily.parse(snapshot(body, mtime=mtime, captured_at=later)).captured_at
    assert chosen == later
    assert chosen.tzinfo == UTC


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "RecursionError"),
        (b'[{"paper": {"id": "2401.00001", "title": "A", "upvotes": ' + b"9" * 5000 + b"}}]",
         "ValueError"),
    ],
)  # fmt: skip
def test_what_the_json_reader_raises_is_a_parse_error_naming_the_file(
    body: bytes, says: str
) -> None:
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot(body))
    assert str(caught.value).startswith("test.json: expected JSON Python can read")
    assert says in str(caught.value)
    props = html.escape('{"dailyPapers": ' + body.decode() + "}", quote=True)
    page = f'<html><div data-target="DailyPapers" data-props="{props}"></div></html>'.encode()
    with pytest.raises(ParseError, match=says):
        hf_daily.parse(snapshot(page))


def test_a_page_python_cannot_parse_is_a_parse_error_naming_the_file() -> None:
    body = b"<!doctype html><html><body><![!x<div data-target='DailyPapers'></div></body></html>"
    with pytest.raises(ParseError) as caught:
        hf_daily.parse(snapshot(body))
    assert str(caught.value).startswith("test.json: expected an HTML page Python's parser reads")
    assert "AssertionError" in str(caught.value)
