"""Per-profile and per-subscriber RSS 2.0 and Atom feeds: feedparser reads them cleanly and
every field round-trips."""

from __future__ import annotations

import calendar
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import feedparser
from mail import BASE, ingest, listing, make_app, parse, parts, rss

from service import tokens
from service.cli import main
from service.clock import FixedClock
from service.model import ProfileSpec

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVIL = '<script>alert("x")</script> & "Quotes" in KV cache'


def test_feeds_round_trip_through_feedparser(tmp_path: Path, database_url: str) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV cache", '"kv cache"'))
        app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("Paging", "paging OR paged")
        )
        ingest(
            app, tmp_path, "a.txt", listing("Jun 1", (EVIL, "The KV-cache, shrunk.", "May 30 12"))
        )
        clock.advance(hours=3)
        ingest(
            app, tmp_path, "b.xml", rss(("2606.00001", "Paging the kv cache", "A paged kv cache."))
        )
        owner = app.pipeline.roster.subscriber("ann@example.org")
        feeds = app.mailroom.feeds(owner)
        token = tokens.make(owner.id, owner.token, "feeds")

    assert sorted(feeds) == [
        "all.atom",
        "all.rss",
        "kv-cache.atom",
        "kv-cache.rss",
        "paging.atom",
        "paging.rss",
    ]
    for name, body in feeds.items():
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
        assert parsed.version == ("atom10" if name.endswith("atom") else "rss20")
        slug = name.rsplit(".", 1)[0]
        assert any(link.href == f"{BASE}/feeds/{token}/{name}" for link in parsed.feed.links)
        if slug == "paging":
            assert [e.title for e in parsed.entries] == ["Paging the kv cache"]
        else:
            # Newest match first; the title comes back exactly, markup and all.
            assert [e.title for e in parsed.entries] == ["Paging the kv cache", EVIL]
        for entry in parsed.entries:
            assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", entry.id)
            assert "Matched" in entry.summary
        first = parsed.entries[0]
        assert first.link == "https://arxiv.org/abs/2606.00001"
        stamp = "published_parsed" if name.endswith("rss") else "updated_parsed"
        assert calendar.timegm(first[stamp]) == int(T0.timestamp() + 3 * 3600)
        if slug == "all":
            # Both profiles' reasons on the one entry, and both as categories.
            assert "KV cache:" in first.summary and "Paging:" in first.summary
            assert {t.term for t in first.tags} == {"KV cache", "Paging"}
            last = parsed.entries[-1]
            assert "<strong>KV-cache</strong>" in last.summary  # feed readers drop <mark>
            assert calendar.timegm(last[stamp]) == int(T0.timestamp())
            if name.endswith("atom"):
                assert last.published == "2026-05-30T00:00:00Z"  # the paper's own date
    # The same paper has the same id in every feed it is in.
    ids = {feedparser.parse(body).entries[0].id for name, body in feeds.items()}
    assert len(ids) == 1


def test_feeds_export_writes_every_subscriber_atomically(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / "public"
    assert main(["--data-dir", str(data), "subscriber", "add", "ann@example.org"]) == 0
    assert main(["--data-dir", str(data), "profile", "add", "ann@example.org", "KV", "kv"]) == 0
    capture = tmp_path / "a.txt"
    capture.write_text(listing("Jun 1", ("A kv cache", "x", "May 30 1")))
    assert main(["--data-dir", str(data), "ingest", str(capture)]) == 0
    assert main(["--data-dir", str(data), "feeds", "export", str(out)]) == 0
    [folder] = out.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["all.atom", "all.rss", "kv.atom", "kv.rss"]
    assert feedparser.parse((folder / "kv.atom").read_bytes()).entries[0].title == "A kv cache"
    # Exporting again replaces the files in place and leaves no temporary files behind.
    assert main(["--data-dir", str(data), "feeds", "export", str(out)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["all.atom", "all.rss", "kv.atom", "kv.rss"]


def test_an_entry_keeps_its_id_when_its_paper_gains_an_arxiv_id(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", '"kv cache"'))
        owner = app.pipeline.roster.subscriber("ann@example.org")
        # First seen by its title alone, in a listing capture.
        title = "Paging the KV cache: Études"
        ingest(app, tmp_path, "a.txt", listing("Jun 1", (title, "A kv cache.", "May 30 2")))
        before = feedparser.parse(app.mailroom.feeds(owner)["all.atom"]).entries
        clock.advance(hours=3)
        # Then a feed names its arXiv id: the same paper, now known by that id.
        ingest(app, tmp_path, "b.xml", rss(("2606.00001", title, "A kv cache.")))
        [paper] = app.pipeline.store.papers()
        assert paper.arxiv_id == "2606.00001"
        after = feedparser.parse(app.mailroom.feeds(owner)["all.atom"]).entries
    assert [e.id for e in after] == [e.id for e in before]
    assert " " not in before[0].id and before[0].id == paper.entry_id
    assert uuid.UUID(paper.entry_id).version == 4


def test_a_listing_paper_links_to_its_pages_once_its_arxiv_id_is_known(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV cache", '"kv cache"'))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "Small.", "May 30 1")))
        owner = app.pipeline.roster.subscriber("ann@example.org")
        before = feedparser.parse(app.mailroom.feeds(owner)["all.atom"]).entries[0]
        clock.advance(hours=1)
        ingest(app, tmp_path, "b.xml", rss(("2606.00002", "A kv cache", "Small.")))
        after = feedparser.parse(app.mailroom.feeds(owner)["all.atom"]).entries[0]
        _, rendered = app.mailroom.render_now(owner)
    assert before.link == "https://huggingface.co/papers?q=A+kv+cache"  # no id: a search
    assert after.link == "https://arxiv.org/abs/2606.00002"
    assert rendered is not None
    text, html = parts(parse(rendered.message))
    assert "https://arxiv.org/abs/2606.00002" in text
    assert 'href="https://huggingface.co/papers/2606.00002"' in html
    assert "papers?q=" not in text + html


def test_slugs_keep_letters_and_are_unique() -> None:
    from service.render.feeds import slug, slugs

    assert slug("Ünïcode ✓") == "unicode"
    assert slug("機械学習") == "機械学習"
    assert slug("KV cache (v2)") == "kv-cache-v2"
    assert slug("✓ ✓") == "profile"
    # The oldest profile keeps the plain slug; later ones (and "all") get their id.
    assert slugs([(7, "kv-cache"), (3, "KV cache"), (9, "all")]) == {
        3: "kv-cache",
        7: "kv-cache-7",
        9: "all-9",
    }


def test_feeds_export_removes_what_is_no_longer_published(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / "public"
    keep = out / "index.html"  # not paperboy's: left alone
    out.mkdir()
    keep.write_text("hello")

    def cli(*args: str) -> int:
        return main(["--data-dir", str(data), *args])

    assert cli("subscriber", "add", "ann@example.org") == 0
    assert cli("subscriber", "add", "bob@example.org") == 0
    assert cli("profile", "add", "ann@example.org", "Ünïcode ✓", "kv") == 0
    assert cli("profile", "add", "ann@example.org", "Old", "cache") == 0
    assert cli("profile", "add", "bob@example.org", "KV", "kv") == 0
    assert cli("feeds", "export", str(out)) == 0
    folders = {p.name: sorted(f.name for f in p.iterdir()) for p in out.iterdir() if p.is_dir()}
    assert sorted(map(len, folders.values())) == [4, 6]
    assert any("unicode.atom" in names for names in folders.values())

    assert cli("profile", "remove", "ann@example.org", "Old") == 0
    assert cli("subscriber", "remove", "bob@example.org") == 0
    assert cli("feeds", "export", str(out)) == 0
    [names] = [sorted(f.name for f in p.iterdir()) for p in out.iterdir() if p.is_dir()]
    assert names == ["all.atom", "all.rss", "unicode.atom", "unicode.rss"]
    assert keep.read_text() == "hello"
