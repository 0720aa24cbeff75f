"""GET /preview: the live preview as an HTML fragment, from a real uvicorn server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from mail import ingest, listing, make_app
from webserver import serving

from service.clock import FixedClock

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVIL = '<script>alert("x")</script> kv cache'


def test_preview_shows_recent_matches_best_first_and_query_errors(tmp_path: Path) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", clock) as app:
        ingest(app, tmp_path, "old.txt", listing("Apr 1", ("An old kv cache", "kv", "Apr 1 1")))
        clock.advance(days=31)  # that paper is now older than the 30-day window
        ingest(
            app,
            tmp_path,
            "new.txt",
            listing(
                "Jul 2",
                ("A (KV) cache for all", "We shrink the KV cache.", "Jul 1 3"),
                ("Paging", "Only the kv cache in the abstract.", "Jul 1 1"),
                (EVIL, "Hostile.", "Jul 1 1"),
            ),
        )
        with serving(app) as base, httpx.Client(base_url=base) as client:
            found = client.get("/preview", params={"q": "kv cache"})
            assert found.status_code == 200
            assert found.headers["content-type"] == "text/html; charset=utf-8"
            html = found.text
            assert "<html" not in html
            assert html.count('class="paper"') == 3
            assert "An old kv cache" not in html
            # Title hits first; each term marked where it is.
            assert html.index("A (<mark>KV</mark>) <mark>cache</mark> for all") < html.index(
                "Paging"
            )
            assert "<mark>kv</mark> <mark>cache</mark> in the abstract" in html
            assert "<script>" not in html and "&lt;script&gt;" in html

            # A paper ingested now is in the next preview (the window follows the store).
            ingest(app, tmp_path, "more.txt", listing("Jul 2", ("Kv cache again", "x", None)))
            assert (
                client.get("/preview", params={"q": '"kv cache"'}).text.count('class="paper"') == 4
            )

            bad = client.get("/preview", params={"q": "(kv cache"})
            assert bad.status_code == 422
            assert bad.headers["content-type"] == "text/html; charset=utf-8"
            assert '<div class="query-error" role="alert">' in bad.text
            assert "unclosed parenthesis" in bad.text
            assert "<pre>(kv cache\n^</pre>" in bad.text
            caret = client.get("/preview", params={"q": "kv AND OR cache"})
            assert caret.status_code == 422
            shown = caret.text.split("<pre>")[1].split("</pre>")[0].split("\n")
            position = int(caret.text.split(" at position ")[1].split("<")[0])
            assert shown == ["kv AND OR cache", " " * position + "^"]
            assert position > 0

            long = client.get("/preview", params={"q": "kv " * 200})
            assert long.status_code == 422
            assert "at most 500 characters" in long.text
            hostile = client.get("/preview", params={"q": "<b>(x"})
            assert hostile.status_code == 422 and "<b>" not in hostile.text
            empty = client.get("/preview", params={"q": " "})
            assert empty.status_code == 200 and 'class="paper"' not in empty.text
            none = client.get("/preview", params={"q": "nothing-like-this"})
            assert none.status_code == 200 and "No paper" in none.text
