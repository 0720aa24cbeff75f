"""A subscriber's own data from the manage page, over a real server: download it (the same
JSON as ``subscriber export``), erase it (a confirmation page, then a POST with the CSRF
token; afterwards every link of theirs is the plain 404); and HEAD on every page."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from mail import ingest, maildir_messages, rss, send

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.pipeline.records import to_json
from service.web.server import create_app

from .serve import Visitor, free_port, serving, web_app
from .test_pages import confirmed, mail_links, subscribe_form

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
ANN = "ann@example.org"


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[tuple[App, str]]:
    port = free_port()
    with web_app(tmp_path, database_url, FixedClock(T0), port) as app, serving(app, port) as base:
        yield app, base


@pytest.fixture
def visitor(site: tuple[App, str]) -> Iterator[Visitor]:
    person = Visitor(site[1])
    yield person
    person.close()


def test_my_data_downloads_as_the_cli_exports_it(site: tuple[App, str], visitor: Visitor) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    page = visitor.get(manage).text
    assert f'href="{manage}/data.json" download' in page and f'href="{manage}/erase"' in page

    answer = visitor.get(f"{manage}/data.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-disposition"].startswith("attachment;")
    assert answer.headers["cache-control"] == "no-store"
    assert answer.text == to_json(app.pipeline.records.export(ANN)) + "\n"
    document = json.loads(answer.text)
    assert document["subscriber"]["status"] == "active"
    assert [p["name"] for p in document["profiles"]] == ["KV cache"]
    assert [m["kind"] for m in document["messages"]] == ["confirmation"]


def test_erasing_asks_first_then_every_link_is_the_plain_404(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None
    feeds = tokens.for_subscriber(owner, "feeds")
    feed = f"/feeds/{feeds}/all.atom"
    unsubscribe = f"/unsubscribe/{tokens.for_subscriber(owner, 'unsubscribe')}"
    # (Asked of the store: over HTTP its validators would be trusted web.feeds.FRESH_FOR.)
    assert app.mailroom.feed_state(feeds, "all") is not None
    wrong = visitor.get("/manage/1.nope")
    assert wrong.status_code == 404

    for _ in range(2):  # a scanner fetching the page changes nothing
        page = visitor.get(f"{manage}/erase")
        assert page.status_code == 200 and "Erase everything about you?" in page.text
        assert ANN in page.text
    assert app.pipeline.subscriptions.subscriber(ANN) is not None

    # Without the CSRF token: refused, nothing changed.
    assert visitor.post(f"{manage}/erase", {}, csrf=False).status_code == 403
    assert app.pipeline.subscriptions.subscriber(ANN) is not None

    visitor.get(f"{manage}/erase")
    done = visitor.post(f"{manage}/erase", {})
    assert done.status_code == 200 and "Erased" in done.text and ANN in done.text
    assert app.pipeline.subscriptions.subscriber(ANN) is None
    with pytest.raises(Exception, match="nothing is stored"):
        app.pipeline.records.export(ANN)

    for path in (manage, f"{manage}/data.json", f"{manage}/erase", unsubscribe):
        gone = visitor.get(path)
        assert (gone.status_code, gone.text) == (404, wrong.text), path
    assert visitor.post(f"{manage}/erase", {}).status_code == 404
    assert visitor.get(feed).status_code == 404


def test_erasing_someone_else_is_a_404_and_changes_nothing(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None
    # Right subscriber, wrong purpose; a forged token.
    for token in (tokens.for_subscriber(owner, "feeds"), f"{owner.id}.{'A' * 24}"):
        visitor.get("/")
        assert visitor.post(f"/manage/{token}/erase", {}).status_code == 404
        assert visitor.get(f"/manage/{token}/data.json").status_code == 404
    assert app.pipeline.subscriptions.subscriber(ANN) is not None


def get_routes(routes: Sequence[Any]) -> Iterator[str]:
    """The paths of the GET routes, inside included routers too."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI 0.16x keeps routers whole
        if inner is not None:
            yield from get_routes(inner.routes)
        elif "GET" in (getattr(route, "methods", None) or ()):
            yield route.path


def test_every_page_answers_head_as_its_get_without_the_body(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, base = site
    manage = confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber(ANN)
    assert owner is not None
    assert visitor.post("/subscribe", subscribe_form(visitor, email="bob@example.org"))
    [confirm] = [u for u in mail_links(app, "bob@example.org") if "/confirm/" in u]
    token = {p: tokens.for_subscriber(owner, p) for p in ("feeds", "unsubscribe")}
    ingest(app, app.settings.data_dir, "day.xml", rss(("2606.00001", "KV cache", "A KV cache.")))
    [paper] = app.pipeline.store.all_papers()
    [profile] = app.pipeline.subscriptions.profiles(owner.id)
    vote = tokens.for_feedback(owner, profile.id, paper.id)
    pages = {
        "/": "/",
        "/confirm/{token}": httpx.URL(confirm).path,
        "/manage/{token}": manage,
        "/manage/{token}/data.json": f"{manage}/data.json",
        "/manage/{token}/erase": f"{manage}/erase",
        "/manage/{token}/preview/{profile}": f"{manage}/preview/{profile.id}?q=cache",
        "/feedback/{token}/{vote}": f"/feedback/{vote}/up",
        "/unsubscribe/{token}": f"/unsubscribe/{token['unsubscribe']}",
        "/feeds/{token}/{name}": f"/feeds/{token['feeds']}/all.atom",
        "/static/{name}": "/static/paperboy.css",
        "/preview": "/preview?q=cache",
        "/healthz": "/healthz",
        "/readyz": "/readyz",
        "/metrics": "/metrics",
    }
    assert set(get_routes(create_app(app).routes)) == set(pages), "a GET page not checked here"
    with httpx.Client(base_url=base, timeout=10) as client:
        for template, path in pages.items():
            got = client.get(path)
            head = client.head(path)
            assert got.status_code == 200 and got.content, template
            assert head.status_code == 200, (template, head.status_code)
            assert head.content == b"", template
            assert head.headers["content-type"] == got.headers["content-type"], template
    send(app)
    assert len(maildir_messages(app)) == 2  # the two confirmations: HEAD sent nothing
