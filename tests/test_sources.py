"""More sources end to end: HF API days, one paper across sources, polite HTTP polling."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fetch.server import LocalServer

from service.app import App, build
from service.clock import FixedClock
from service.config import FetchSettings, Settings, SourceSettings
from service.model import SnapshotOutcome, SourceKind

T0 = datetime(2026, 8, 3, 9, tzinfo=UTC)


def make_app(tmp_path: Path, database_url: str, sources: list[SourceSettings]) -> App:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sources=sources,
        fetch=FetchSettings(timeout=2, host_interval=timedelta(0)),
    )
    return build(settings, clock=FixedClock(T0))


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    with make_app(tmp_path, database_url, []) as built:
        yield built


@pytest.mark.shared
def test_hf_api_days_in_date_order(app: App, fixtures_dir: Path) -> None:
    days = sorted((fixtures_dir / "hf_daily_papers" / "api_json").glob("*.json"))
    seen: set[str] = set()
    for day in days:
        ids = {item["paper"]["id"] for item in json.loads(day.read_text())}
        (summary,) = app.pipeline.ingest.ingest_files([day], kind=SourceKind.HF_DAILY)
        assert summary.outcome is SnapshotOutcome.PARSED, summary.error
        assert summary.new == len(ids - seen), day.name
        seen |= ids
    assert app.store.counts()["papers"] == len(seen)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["2024-12-11.json", "2025-01-10.json"])
def test_malformed_hf_api_files_change_nothing(app: App, fixtures_dir: Path, name: str) -> None:
    good = fixtures_dir / "hf_daily_papers" / "api_json" / "2025-03-03.json"
    app.pipeline.ingest.ingest_files([good])
    before = app.store.counts()
    bad = fixtures_dir / "hf_daily_papers" / "api_json_malformed" / name
    (summary,) = app.pipeline.ingest.ingest_files([bad])
    assert summary.outcome is SnapshotOutcome.REJECTED
    assert "expected" in (summary.error or "")
    after = app.store.counts()
    assert after["snapshots"] == before["snapshots"] + 1
    assert after["papers"] == before["papers"]
    assert after["events"] == before["events"]


@pytest.mark.shared
def test_every_kind_is_recognised_in_one_drop_in_folder(
    tmp_path: Path, database_url: str, fixtures_dir: Path, seeds: list[Path]
) -> None:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    picks = {
        "listing.txt": seeds[0],
        "api.json": fixtures_dir / "hf_daily_papers" / "api_json" / "2025-03-03.json",
        "page.html": next((fixtures_dir / "hf_daily_papers" / "html").iterdir()),
        "rss.xml": fixtures_dir / "arxiv" / "rss" / "cs.AI_2026-04-27_trimmed.xml",
        "api.atom": next((fixtures_dir / "arxiv" / "api").glob("2026*")),
    }
    for name, source in picks.items():
        (inbox / name).write_bytes(source.read_bytes())
    source = SourceSettings(id="inbox", location="inbox")
    with make_app(tmp_path, database_url, [source]) as app:
        summaries = app.pipeline.ingest.poll("inbox")
    assert len(summaries) == 5
    assert all(s.outcome is SnapshotOutcome.PARSED for s in summaries), summaries
    assert all(s.papers > 0 for s in summaries)


def rss(items: list[tuple[str, str, str, str]]) -> bytes:
    """An arXiv-style RSS listing of (id with version, announce type, title, abstract)."""
    entries = "".join(
        f"<item><title>{html.escape(title)}</title><link>https://arxiv.org/abs/{i[:-2]}</link>"
        f"<description>arXiv:{i} Announce Type: {kind} \nAbstract: {html.escape(abstract)}"
        f'</description><guid isPermaLink="false">oai:arXiv.org:{i}</guid>'
        f"<dc:creator>Ada Lovelace, Alan Turing</dc:creator>"
        f"<arxiv:announce_type>{kind}</arxiv:announce_type></item>"
        for i, kind, title, abstract in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom"><channel><title>cs.AI updates</title>'
        f"<link>https://arxiv.org/</link><description>x</description>{entries}</channel></rss>"
    ).encode()


@pytest.mark.shared
def test_one_paper_across_listing_hf_api_hf_page_and_arxiv(
    app: App, tmp_path: Path, fixtures_dir: Path
) -> None:
    day = json.loads(
        (fixtures_dir / "hf_daily_papers" / "api_json" / "2026-08-03.json").read_text()
    )
    item = day[0]
    arxiv_id, title = item["paper"]["id"], item["title"]
    abstract = " ".join(item["paper"]["summary"].split())
    files = {
        # A listing capture knows the title only.
        "a-listing.txt": (
            "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
            f"byAK and the research community\n\nAug 3\n\n{title.upper()}\n\n{abstract}\n\n"
            "  • 12 authors\n·\nAug 1 3\n"
        ).encode(),
        "b-api.json": json.dumps([item]).encode(),
        "c-page.html": (
            '<html><body><div data-target="DailyPapers" data-props="'
            + html.escape(json.dumps({"dailyPapers": [item]}))
            + '"></div></body></html>'
        ).encode(),
        "d-arxiv.xml": rss([(f"{arxiv_id}v2", "replace", title, abstract)]),
    }
    results = []
    for name, body in files.items():
        path = tmp_path / name
        path.write_bytes(body)
        (summary,) = app.pipeline.ingest.ingest_files(
            [path], source_id=None, captured_at=T0 + timedelta(hours=len(results))
        )
        assert summary.outcome is SnapshotOutcome.PARSED, (name, summary.error)
        results.append(summary.new)
    assert results == [1, 0, 0, 0]
    (paper,) = app.store.papers()
    assert paper.arxiv_id == arxiv_id
    assert paper.key == f"arxiv:{arxiv_id}"
    assert paper.version == 2
    # The arXiv listing (written here with two authors) is the latest word on the authors.
    assert paper.authors == ("Ada Lovelace", "Alan Turing")
    assert paper.sources == ("files",)


def test_arxiv_replacements_update_known_papers_and_add_no_new_ones(
    app: App, tmp_path: Path
) -> None:
    first = tmp_path / "monday.xml"
    first.write_bytes(rss([("2604.00001v1", "new", "A Known Paper", "First abstract.")]))
    second = tmp_path / "tuesday.xml"
    second.write_bytes(
        rss(
            [
                ("2604.00001v2", "replace", "A Known Paper", "Revised abstract."),
                ("2501.99999v3", "replace-cross", "An Old Paper We Never Saw", "Old."),
                ("2604.00002v1", "cross", "A Cross-list", "Cross."),
            ]
        )
    )
    (monday,) = app.pipeline.ingest.ingest_files([first], captured_at=T0)
    (tuesday,) = app.pipeline.ingest.ingest_files([second], captured_at=T0 + timedelta(days=1))
    assert (monday.new, tuesday.new, tuesday.updated) == (1, 1, 1)
    papers = {p.arxiv_id: p for p in app.store.papers()}
    assert set(papers) == {"2604.00001", "2604.00002"}
    assert papers["2604.00001"].abstract == "Revised abstract."
    assert papers["2604.00001"].version == 2


def test_an_empty_arxiv_feed_is_healthy(app: App, tmp_path: Path) -> None:
    weekend = tmp_path / "saturday.xml"
    weekend.write_bytes(rss([]))
    (summary,) = app.pipeline.ingest.ingest_files([weekend], kind=SourceKind.FEED)
    assert summary.outcome is SnapshotOutcome.PARSED
    assert summary.papers == 0


# -- polling over HTTP, politely ----------------------------------------------------------------


def state(app: App, source_id: str):  # type: ignore[no-untyped-def]
    return app.store.source_state(source_id)


def test_http_source_conditional_get_backoff_and_gone(tmp_path: Path, database_url: str) -> None:
    with LocalServer() as server:
        body = rss([("2604.00001v1", "new", "A Paper", "Abstract.")])
        url = server.serve("/rss", body, etag='"v1"')
        source = SourceSettings(id="arxiv", kind=SourceKind.FEED, location=url, interval=3600)
        with make_app(tmp_path, database_url, [source]) as app:
            clock = app.pipeline.clock
            assert isinstance(clock, FixedClock)
            (first,) = app.pipeline.ingest.poll()
            assert (first.outcome, first.new) == (SnapshotOutcome.PARSED, 1)
            assert server.seen[-1].headers["user-agent"].startswith("paperboy/")
            assert app.pipeline.ingest.poll() == []  # not due for an hour
            clock.advance(hours=1)
            (second,) = app.pipeline.ingest.poll()
            assert second.outcome is SnapshotOutcome.NOT_MODIFIED
            assert server.seen[-1].headers["if-none-match"] == '"v1"'

            server.status("/rss", 429, headers={"Retry-After": "7200"})
            clock.advance(hours=1)
            (limited,) = app.pipeline.ingest.poll()
            assert limited.outcome is SnapshotOutcome.FAILED
            assert state(app, "arxiv").errors == 1
            assert state(app, "arxiv").next_check_at >= clock.now() + timedelta(seconds=7200)

            server.status("/rss", 500)
            clock.advance(hours=3)
            app.pipeline.ingest.poll()
            health = state(app, "arxiv")
            assert health.errors == 2
            assert "500" in (health.last_error or "")
            (row,) = [r for r in app.store.list_sources() if r.id == "arxiv"]
            assert row.state.errors == 2

            server.status("/rss", 410)
            clock.advance(days=2)
            app.pipeline.ingest.poll()
            assert state(app, "arxiv").disabled is not None
            hits = server.hits("/rss")
            clock.advance(days=30)
            assert app.pipeline.ingest.poll() == []
            assert server.hits("/rss") == hits


def test_an_unchanged_body_without_etag_is_not_modified(tmp_path: Path, database_url: str) -> None:
    with LocalServer() as server:
        url = server.serve("/plain", rss([("2604.00001v1", "new", "A Paper", "Abstract.")]))
        source = SourceSettings(id="plain", kind=SourceKind.FEED, location=url)
        with make_app(tmp_path, database_url, [source]) as app:
            (first,) = app.pipeline.ingest.poll("plain")
            (second,) = app.pipeline.ingest.poll("plain")
    assert first.outcome is SnapshotOutcome.PARSED
    assert second.outcome is SnapshotOutcome.NOT_MODIFIED


def test_sources_command_shows_failing_sources(tmp_path: Path, database_url: str) -> None:
    with LocalServer() as server:
        url = server.status("/down", 503, headers={"Retry-After": "60"})
        source = SourceSettings(id="down", kind=SourceKind.FEED, location=url)
        with make_app(tmp_path, database_url, [source]) as app:
            app.pipeline.ingest.poll("down")
            (row,) = [r for r in app.store.list_sources() if r.id == "down"]
    assert row.state.errors == 1
    assert re.search(r"503", row.state.last_error or "")


@pytest.mark.shared
def test_hf_api_pages_are_followed_while_full(
    tmp_path: Path, database_url: str, fixtures_dir: Path
) -> None:
    days = sorted((fixtures_dir / "hf_daily_papers" / "api_json").glob("2026-*.json"))
    items = [item for day in days[:3] for item in json.loads(day.read_text())]
    pages = [items[:30], items[30:60], items[60:]]  # 30, 30 and fewer: the last page
    assert len(pages[2]) < 30

    with LocalServer() as server:
        url = server.serve("/api/daily_papers", json.dumps(pages[0]).encode())
        for number, page in enumerate(pages[1:], start=1):
            server.serve(f"/api/daily_papers?limit=30&p={number}", json.dumps(page).encode())
        source = SourceSettings(
            id="hf",
            kind=SourceKind.HF_DAILY,
            location=url,
            options={"params": {"limit": 30}, "pages": 5},
        )
        with make_app(tmp_path, database_url, [source]) as app:
            (summary,) = app.pipeline.ingest.poll("hf")
        assert server.hits("/api/daily_papers") == 3
    assert summary.outcome is SnapshotOutcome.PARSED, summary.error
    assert summary.new == len({item["paper"]["id"] for item in items})


def test_a_password_in_a_source_url_is_used_but_never_shown(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import base64

    with LocalServer() as server:
        good = server.serve("/rss", rss([("2604.00001v1", "new", "A Paper", "Abstract.")]))
        bad = server.status("/down", 500)
        secret = [
            SourceSettings(
                id=name, kind=SourceKind.FEED, location=url.replace("//", "//al:s3cr3t@")
            )
            for name, url in (("good", good), ("bad", bad))
        ]
        with caplog.at_level("DEBUG"), make_app(tmp_path, database_url, secret) as app:
            summaries = app.pipeline.ingest.poll("good") + app.pipeline.ingest.poll("bad")
            rows = app.store.list_sources()
        sent = server.seen[0].headers["authorization"]
    assert sent == "Basic " + base64.b64encode(b"al:s3cr3t").decode()
    assert [s.outcome for s in summaries] == [SnapshotOutcome.PARSED, SnapshotOutcome.FAILED]
    assert summaries[0].origin == good.replace("//", "//al:***@")
    shown = [repr(summaries), repr(rows), caplog.text]
    assert all("s3cr3t" not in text for text in shown)
    assert "al:***@" in repr(rows) and "500" in repr(rows)
