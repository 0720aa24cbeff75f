"""Feeds over HTTP as a feed reader sees them: feedparser against a real uvicorn server, with
conditional GETs answered 304, HEAD, content types, and 404 for anything but the right token."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import feedparser
import httpx
from mail import BASE, ingest, listing, make_app
from webserver import serving

from service import tokens
from service.clock import FixedClock
from service.model import ProfileSpec

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
T = TypeVar("T")


def eventually(get: Callable[[], T], done: Callable[[T], bool], wait: float = 10.0) -> T:
    """What ``get`` gives once ``done`` holds for it (a feed's validators are trusted for
    ``feeds.FRESH_FOR`` after they were read)."""
    deadline = time.monotonic() + wait
    while True:
        value = get()
        if done(value) or time.monotonic() > deadline:
            assert done(value), value
            return value
        time.sleep(0.1)


def test_a_feed_reader_subscribes_by_url(tmp_path: Path, database_url: str) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV cache", "kv"))
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("Ünïcode ✓", "paging"))
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "Shrunk.", "May 30 2")))
        owner = app.pipeline.roster.subscriber("ann@example.org")
        token = tokens.make(owner.id, owner.token, "feeds")
        with serving(app) as base:
            url = f"{base}/feeds/{token}/kv-cache.atom"
            first = feedparser.parse(url)
            assert first.status == 200 and first.bozo == 0
            assert first.version == "atom10"
            assert [e.title for e in first.entries] == ["A kv cache"]
            own = f"{BASE}/feeds/{token}/kv-cache.atom"
            assert any(link.href == own for link in first.feed.links)
            # The reader comes back with what it was given: nothing to download.
            again = feedparser.parse(url, etag=first.etag, modified=first.modified)
            assert again.status == 304 and again.entries == []
            by_date = feedparser.parse(url, modified=first.modified)
            assert by_date.status == 304
            # A new match changes the validators (within feeds.FRESH_FOR): the reader gets
            # the new entry.
            clock.advance(hours=1)
            ingest(app, tmp_path, "b.txt", listing("Jun 1", ("More kv", "Again.", "Jun 1 1")))
            changed = eventually(
                lambda: feedparser.parse(url, etag=first.etag, modified=first.modified),
                lambda parsed: parsed.status == 200,
            )
            assert [e.title for e in changed.entries] == ["More kv", "A kv cache"]
            assert changed.etag != first.etag

            with httpx.Client(base_url=base) as client:
                rss = client.get(f"/feeds/{token}/all.rss")
                assert rss.status_code == 200
                assert rss.headers["content-type"] == "application/rss+xml; charset=utf-8"
                assert feedparser.parse(rss.content).version == "rss20"
                assert "private" in rss.headers["cache-control"]
                head = client.head(f"/feeds/{token}/all.rss")
                assert head.status_code == 200 and head.content == b""
                assert head.headers["etag"] == rss.headers["etag"]
                assert head.headers["content-length"] == str(len(rss.content))
                atom = client.get(f"/feeds/{token}/unicode.atom")  # the slug keeps its letters
                assert atom.headers["content-type"] == "application/atom+xml; charset=utf-8"
                modified = rss.headers["last-modified"]
                assert (
                    client.get(
                        f"/feeds/{token}/all.rss", headers={"If-Modified-Since": modified}
                    ).status_code
                    == 304
                )
                # If-None-Match decides alone when both are sent.
                assert (
                    client.get(
                        f"/feeds/{token}/all.rss",
                        headers={"If-None-Match": '"other"', "If-Modified-Since": modified},
                    ).status_code
                    == 200
                )

                other = tokens.make(owner.id, "another secret", "feeds")
                manage = tokens.make(owner.id, owner.token, "manage")
                for path in (
                    f"/feeds/{other}/all.rss",  # signed with another secret
                    f"/feeds/{manage}/all.rss",  # the right secret, another purpose
                    f"/feeds/{owner.id + 1}{token[len(str(owner.id)) :]}/all.rss",
                    f"/feeds/{token}/nothing.rss",  # no such profile
                    f"/feeds/{token}/all.json",  # no such format
                    f"/feeds/{token}x/all.rss",
                    "/feeds/not-a-token/all.rss",
                ):
                    answer = client.get(path)
                    assert answer.status_code == 404, path
                    assert answer.text == "not found"
                # A subscriber who is removed has no feeds any more.
                app.pipeline.roster.remove_subscriber("ann@example.org")
                eventually(
                    lambda: client.get(f"/feeds/{token}/all.rss"),
                    lambda answer: answer.status_code == 404,
                )
