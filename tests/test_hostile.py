"""Hostile and odd content from a source, from ingest to every place a paper is shown: links
that are not http(s), control characters in text, NUL bytes, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
import sqlalchemy as sa
from mail import ingest, listing, maildir_messages, make_app, parts, send

from service.cli import main
from service.clock import FixedClock
from service.model import ProfileSpec, SnapshotOutcome
from service.store.tables import papers

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)
BAD_LINKS = [
    "javascript:alert(1)",
    "  JaVaScRiPt:alert(document.domain)",
    "\x01\x02javascript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    " DATA:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "https://",
]
# Every C0 control but tab and newline, DEL, and C1 controls such as CSI (U+009B).
CONTROLS = "".join(chr(c) for c in range(0x20) if c not in (9, 10)) + "\x7f\x85\x9b"
TITLE = "KV cache\x1b]0;pwned\x07 for all\x9b2J of\x7fus"
CLEAN_TITLE = "KV cache]0;pwned for all2J ofus"


def hf_item(arxiv_id: str, title: str, *, code: str, project: str) -> dict[str, object]:
    return {
        "paper": {
            "id": arxiv_id,
            "title": title,
            "summary": f"About the kv cache.\x1b[31m Red{CONTROLS}.",
            "authors": [{"name": "Jane\x1b[2J Doe"}],
            "githubRepo": code,
            "projectPage": project,
            "upvotes": 3,
        },
        "title": title,
    }


def test_hostile_links_and_control_characters_never_leave_paperboy(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    items = [
        hf_item(f"2606.{n:05d}", f"{TITLE} {n}", code=bad, project=bad)
        for n, bad in enumerate(BAD_LINKS)
    ]
    items.append(
        hf_item("2606.99999", "A kv cache", code=" https://github.com/a/b ", project="HTTP://x.org")
    )
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "day.json", json.dumps(items))
        stored = app.store.papers()
        owner = app.pipeline.roster.subscriber("ann@example.org")
        feeds = app.mailroom.feeds(owner)
        clock.at = NEXT_MORNING
        app.mailroom.plan()
        assert send(app).sent == 1
        [message] = maildir_messages(app)

    by_id = {p.arxiv_id: p for p in stored}
    good = by_id.pop("2606.99999")
    assert good.links["code"] == "https://github.com/a/b"
    assert good.links["project"] == "HTTP://x.org"
    for paper in by_id.values():
        assert set(paper.links) == {"abs", "pdf", "hf"}  # the hostile ones are gone
        assert paper.title == f"{CLEAN_TITLE} {int(paper.arxiv_id[-5:])}"
        assert paper.abstract.startswith("About the kv cache.[31m Red")
        assert paper.authors == ("Jane[2J Doe",)
    for name, body in feeds.items():
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
        assert len(parsed.entries) == len(items)
        assert not re.search(rb"(?i)(javascript|data|vbscript):", body)
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", body.decode())
    text, html = parts(message)
    for shown in (text, html, message["Subject"]):
        assert not re.search(r"(?i)(javascript|data|vbscript):", shown)
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", shown)  # CRLF ends lines
    assert 'href="https://github.com/a/b"' in html


def test_links_stored_before_the_check_are_still_not_shown(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "Paged.", "May 30 2")))
        hostile = {"hf": " javascript:alert(1)", "pdf": "DATA:x", "code": "vbscript:x"}
        with app.store.engine.begin() as db:
            db.execute(papers.update().values(links=hostile))
        owner = app.pipeline.roster.subscriber("ann@example.org")
        feeds = app.mailroom.feeds(owner)
        clock.at = NEXT_MORNING
        app.mailroom.plan()
        send(app)
        [message] = maildir_messages(app)
    text, html = parts(message)
    for shown in (text, html, *(body.decode() for body in feeds.values())):
        assert not re.search(r"(?i)(javascript|data|vbscript):", shown)
    assert 'href="https://huggingface.co/papers?q=A+kv+cache"' in html


def test_paperboy_papers_prints_no_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    capture = tmp_path / "a.txt"
    capture.write_text(listing("Jun 1", (TITLE, "An \x07abstract.", "May 30 2")))
    assert main(["--data-dir", str(data), "ingest", str(capture)]) == 0
    capsys.readouterr()
    assert main(["--data-dir", str(data), "papers"]) == 0
    out = capsys.readouterr().out
    assert CLEAN_TITLE in out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", out)


def test_a_nul_byte_in_a_listing_is_rejected_alike_on_every_store(
    tmp_path: Path, database_url: str
) -> None:
    padding = [(f"Paper {n} on caches", "x" * 300, "May 30 1") for n in range(40)]
    good = listing("Jun 1", *padding)
    assert len(good) > 8192  # past where binary files are told apart
    broken = good.replace("Paper 39 on caches", "Paper 39 on\x00caches")
    with make_app(tmp_path, database_url, FixedClock(T0)) as app:
        path = tmp_path / "nul.txt"
        path.write_text(broken)
        [summary] = app.pipeline.ingest.ingest_files([path], captured_at=T0)
        assert summary.outcome is SnapshotOutcome.REJECTED
        line = broken[: broken.index("\x00")].count("\n") + 1
        assert summary.error == (
            f"{path}: line {line}: expected text without NUL bytes, found 'a NUL byte'"
        )
        assert app.store.papers() == []
        with app.store.engine.connect() as db:
            assert db.execute(sa.text("SELECT count(*) FROM snapshots")).scalar() == 1
        # The same text without the byte goes in, in full.
        path.write_text(good)
        [summary] = app.pipeline.ingest.ingest_files([path], captured_at=T0)
        assert summary.outcome is SnapshotOutcome.PARSED and summary.new == 40


def test_a_nul_from_json_or_xml_text_is_dropped_alike_on_every_store(
    tmp_path: Path, database_url: str
) -> None:
    item = hf_item("2606.00001", "Nul\x00 in the title", code="", project="")
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
        "<title>Another &#0; nul &#x1b;[2J</title><link>https://x.org/2</link>"
        "<description>Body &#1;&#x7;.</description></item></channel></rss>"
    )
    with make_app(tmp_path, database_url, FixedClock(T0)) as app:
        ingest(app, tmp_path, "day.json", json.dumps([item]))
        ingest(app, tmp_path, "feed.xml", feed)
        titles = sorted(p.title for p in app.store.papers())
    assert titles == ["Another  nul [2J", "Nul in the title"]
