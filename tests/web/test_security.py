"""The web's defences, each shown to hold: security headers and no inline code, CSRF on every
form, proof of work, honeypot, rate limits, the body cap and the server key."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.web.csrf import COOKIE
from service.web.proof import leading_zero_bits
from service.web.secret import FILENAME, load_key
from service.web.server import SECURITY_HEADERS

from .serve import Visitor, free_port, serving, web_app
from .test_pages import confirmed, subscribe_form

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@contextmanager
def running(
    tmp_path: Path, clock: FixedClock, templates_dir: Path | None = None, **web: object
) -> Iterator[tuple[App, str]]:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with (
        web_app(tmp_path, url, clock, port, templates_dir=templates_dir, **web) as app,
        serving(app, port) as base,
    ):
        yield app, base


@pytest.fixture
def site(tmp_path: Path, clock: FixedClock) -> Iterator[tuple[App, str]]:
    with running(tmp_path, clock) as both:
        yield both


@pytest.fixture
def visitor(site: tuple[App, str]) -> Iterator[Visitor]:
    person = Visitor(site[1])
    yield person
    person.close()


def test_every_page_has_the_security_headers_and_no_inline_code(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    paths = ["/", manage, f"/unsubscribe/{tokens.for_subscriber(owner, 'unsubscribe')}"]
    paths += ["/no/such/page", "/static/paperboy.css", "/static/paperboy.js"]
    for path in paths:
        answer = visitor.get(path)
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers[name] == value, (path, name)
        if answer.headers["content-type"].startswith("text/html"):
            page = answer.text
            assert answer.headers["cache-control"] == "no-store"
            # Every script comes from this server; no inline script, style or handler.
            assert re.findall(r"<script\b[^>]*>", page) == [
                f'<script src="{m}" defer>' for m in re.findall(r'<script src="([^"]+)"', page)
            ]
            assert all(src.startswith("/static/") for src in re.findall(r'src="([^"]+)"', page))
            assert "<style" not in page and " style=" not in page
            assert not re.search(r"\son[a-z]+=", page)
            assert all(
                href.startswith("/static/")
                for href in re.findall(r'<link[^>]*href="([^"]+)"', page)
            )
    css = visitor.get("/static/paperboy.css")
    assert css.headers["content-type"].startswith("text/css") and "prefers-color-scheme" in css.text
    js = visitor.get("/static/paperboy.js")
    assert js.headers["content-type"].startswith("text/javascript") and "crypto.subtle" in js.text
    assert visitor.get("/static/..%2Fbase.html").status_code == 404
    assert visitor.get("/static/base.html").status_code == 404


def test_the_csrf_cookie_is_httponly_samesite_and_the_token_signs_it(
    site: tuple[App, str], visitor: Visitor
) -> None:
    answer = visitor.get("/")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    again = visitor.get("/")
    assert "set-cookie" not in again.headers  # the same cookie stays


def test_every_state_changing_form_refuses_a_missing_or_foreign_csrf_token(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, base = site
    manage = confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    unsubscribe = f"/unsubscribe/{tokens.for_subscriber(owner, 'unsubscribe')}"
    stranger = Visitor(base)
    stranger.get("/")
    foreign = stranger.hidden("csrf")  # a good token, for someone else's cookie
    stranger.close()
    forms = {
        "/subscribe": subscribe_form(visitor, email="bob@example.org"),
        "/manage-link": {"email": "ann@example.org"},
        f"{manage}/schedule": {"timezone": "UTC", "cadence": "instant"},
        f"{manage}/pause": {},
        f"{manage}/resume": {},
        f"{manage}/profile": {"original": "", "name": "New", "query": "x"},
        f"{manage}/remove": {"original": "KV cache"},
        f"{unsubscribe}/undo": {},
    }
    confirm = "/confirm/" + app.pipeline.membership.token(owner, "confirm")
    forms[confirm] = {}
    visitor.get("/")
    mine = visitor.hidden("csrf")  # right for the visitor's cookie: useless without it
    for path, fields in forms.items():
        for token in (None, "", foreign, "x" * 43):
            data = dict(fields) | ({} if token is None else {"csrf": token})
            answer = visitor.post(path, data, csrf=False)
            assert answer.status_code == 403, (path, token)
            assert "Please try again" in answer.text
        cookieless = httpx.post(f"{base}{path}", data=fields | {"csrf": mine})
        assert cookieless.status_code == 403, path
    assert [s.email for s in app.pipeline.subscriptions.subscribers()] == ["ann@example.org"]
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status.value == "active"
    assert str(owner.schedule) == "daily 07:30"
    assert [p.spec.name for p in app.pipeline.subscriptions.profiles(owner.id)] == ["KV cache"]


def test_a_proof_of_work_must_be_right_fresh_and_used_once(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    form = subscribe_form(visitor)
    # A wrong nonce may by chance be right too (1 in 2**8): find one that is not.
    nonce = int(form["pow_nonce"]) + 1
    while leading_zero_bits(f"{form['pow_challenge']}:{nonce}", 8):
        nonce += 1
    wrong = form | {"pow_nonce": str(nonce)}
    answer = visitor.post("/subscribe", wrong)
    assert answer.status_code == 422 and "robot check" in answer.text
    assert 'value="ann@example.org"' in answer.text  # the form keeps what was typed
    forged = form | {"pow_challenge": form["pow_challenge"].replace(".8.", ".0.")}
    assert visitor.post("/subscribe", forged).status_code == 422
    assert app.pipeline.subscriptions.subscribers() == []
    visitor.get("/")
    assert visitor.post("/subscribe", form).status_code == 200
    visitor.get("/")
    reused = visitor.post("/subscribe", form | {"email": "bob@example.org"})
    assert reused.status_code == 422 and "robot check" in reused.text
    assert [s.email for s in app.pipeline.subscriptions.subscribers()] == ["ann@example.org"]


def test_without_proof_of_work_a_client_gets_a_fifth_of_the_subscribe_limit(
    tmp_path: Path, clock: FixedClock
) -> None:
    with running(tmp_path, clock, subscribes_per_hour=10) as (app, base):
        visitor = Visitor(base)
        answers = []
        for number in range(3):
            form = subscribe_form(visitor, email=f"n{number}@example.org", pow_nonce="")
            answers.append(visitor.post("/subscribe", form))
        with_proof = visitor.post("/subscribe", subscribe_form(visitor, email="p@example.org"))
        visitor.close()
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert int(answers[2].headers["retry-after"]) > 3000
        assert "Too many requests" in answers[2].text
        assert with_proof.status_code == 200  # a browser that does the work is not held back
        emails = {s.email for s in app.pipeline.subscriptions.subscribers()}
        assert emails == {"n0@example.org", "n1@example.org", "p@example.org"}


def test_a_filled_honeypot_answers_as_success_and_does_nothing(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    answer = visitor.post("/subscribe", subscribe_form(visitor, website="http://spam.example"))
    assert answer.status_code == 200 and "Check your mail" in answer.text
    assert app.pipeline.subscriptions.subscribers() == []


def test_requests_per_minute_and_per_address_limits_answer_429_with_retry_after(
    tmp_path: Path, clock: FixedClock
) -> None:
    with running(tmp_path, clock, requests_per_minute=4, subscribes_per_hour=2) as (_, base):
        visitor = Visitor(base)
        visitor.get("/")
        codes = [
            visitor.post("/manage-link", {"email": f"x{n}@example.org"}).status_code
            for n in range(4)
        ]
        visitor.get("/")
        over = visitor.post("/manage-link", {"email": "y@example.org"})
        visitor.close()
        assert codes == [200] * 4
        assert over.status_code == 429 and 0 < int(over.headers["retry-after"]) <= 60
    with running(tmp_path / "2", clock, subscribes_per_hour=2) as (_, base):
        visitor = Visitor(base)
        visitor.get("/")
        codes = [
            visitor.post("/manage-link", {"email": "same@example.org"}).status_code
            for _ in range(3)
        ]
        other = visitor.post("/manage-link", {"email": "other@example.org"})
        visitor.close()
        assert codes == [200, 200, 429]  # per address
        assert other.status_code == 200


def test_a_body_over_max_body_is_refused_with_413(site: tuple[App, str]) -> None:
    app, base = site
    limit = app.settings.web.max_body
    big = {"email": "a@example.org", "query": "x" * limit}
    assert httpx.post(f"{base}/subscribe", data=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(limit // 1024 + 2):
            yield b"q=" + b"x" * 1022

    answer = httpx.post(
        f"{base}/subscribe",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413
    assert app.pipeline.subscriptions.subscribers() == []


def test_the_server_key_is_made_once_private_and_kept(tmp_path: Path, clock: FixedClock) -> None:
    first = load_key(tmp_path)
    path = tmp_path / FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path) == first and len(first) == 32
    # A form served before a restart is still good after it (the key is in data_dir).
    with running(tmp_path / "site", clock) as (_, base):
        visitor = Visitor(base)
        visitor.get("/")
        cookies, token = dict(visitor.client.cookies), visitor.hidden("csrf")
        visitor.close()
    with running(tmp_path / "site", clock) as (_, base):
        later = httpx.Client(base_url=base, cookies=cookies)
        answer = later.post("/manage-link", data={"csrf": token, "email": "a@example.org"})
        later.close()
        assert answer.status_code == 200


def test_a_templates_dir_replaces_pages_and_static_files(tmp_path: Path, clock: FixedClock) -> None:
    mine = tmp_path / "mine"
    (mine / "web" / "static").mkdir(parents=True)
    (mine / "web" / "static" / "paperboy.css").write_text("body { color: teal; }\n")
    (mine / "web" / "check_mail.html").write_text(
        '{% extends "web/base.html" %}{% block main %}<h1>Look in {{ email }}</h1>{% endblock %}'
    )
    with running(tmp_path, clock, templates_dir=mine) as (_, base):
        visitor = Visitor(base)
        page = visitor.get("/").text
        found = re.search(r'href="(/static/paperboy\.css\?v=[^"]+)"', page)
        assert found is not None
        css = visitor.get(found[1])
        answer = visitor.post("/subscribe", subscribe_form(visitor))
        visitor.close()
    assert css.text == "body { color: teal; }\n"
    assert answer.status_code == 200 and "<h1>Look in ann@example.org</h1>" in answer.text
