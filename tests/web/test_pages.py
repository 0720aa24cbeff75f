"""The subscription pages over a real server: subscribe, confirm, manage, unsubscribe; what
each page shows, and that bad input is shown on the form and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mail import listing, maildir_messages, send

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec, SubscriberStatus
from service.web.proof import solve

from .serve import Visitor, field_errors, free_port, serving, web_app

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def site(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[tuple[App, str]]:
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app, serving(app, port) as base:
        yield app, base


@pytest.fixture
def visitor(site: tuple[App, str]) -> Iterator[Visitor]:
    person = Visitor(site[1])
    yield person
    person.close()


def subscribe_form(visitor: Visitor, **fields: str) -> dict[str, str]:
    """The landing page's form filled in as a person with a browser would, proof included."""
    page = visitor.get("/")
    assert page.status_code == 200
    challenge = visitor.hidden("pow_challenge")
    values = {
        "email": "ann@example.org",
        "name": "KV cache",
        "query": '"kv cache"',
        "timezone": "Europe/Berlin",
        "cadence": "daily",
        "time": "07:30",
        "day": "mon",
        "website": "",
        "pow_challenge": challenge,
        "pow_nonce": solve(challenge, int(challenge.split(".")[2])),
    }
    return values | fields


def mail_links(app: App, to: str | None = None) -> list[str]:
    """The links in the mail sent so far (to ``to`` only, when given), oldest first."""
    send(app)
    found = []
    for message in maildir_messages(app):
        if to is not None and message["To"] != to:
            continue
        text = message.get_body(("plain",))
        assert text is not None
        found += re.findall(r"http://127\.0\.0\.1:\d+/\S+", text.get_content())
    return found


def status(app: App, email: str = "ann@example.org") -> str:
    owner = app.pipeline.subscriptions.subscriber(email)
    assert owner is not None
    return owner.status.value


def confirmed(app: App, visitor: Visitor, email: str = "ann@example.org") -> str:
    """Subscribe ``email``, confirm by the mailed link; the manage page's path."""
    assert visitor.post("/subscribe", subscribe_form(visitor, email=email)).status_code == 200
    [link] = [u for u in mail_links(app, email) if "/confirm/" in u]
    assert visitor.get(link).status_code == 200
    answer = visitor.post(link, {})
    assert answer.status_code == 200
    assert "/manage/" in answer.url.path
    return answer.url.path


def test_the_landing_page_shows_the_sources_an_example_entry_and_the_form(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app:
        path = tmp_path / "capture.txt"
        path.write_text(
            listing(
                "Jun 1",
                ("Small KV caches", "We shrink the KV cache.", "May 30 12"),
                ("Quiet paper", "Nobody reads it.", "May 30 1"),
            )
        )
        app.pipeline.ingest.ingest_files([path], captured_at=T0)
        with serving(app, port) as base:
            visitor = Visitor(base)
            page = visitor.get("/").text
            visitor.close()
    assert "Small KV caches" in page  # the most upvoted paper as a digest shows it
    assert "12 upvotes" in page
    for name in ("email", "name", "query", "timezone", "time", "day", "website"):
        assert re.search(rf'<label for="{name}">', page), name  # every control has a label
    assert 'data-preview="preview"' in page and 'id="preview"' in page
    assert "data-autofill-timezone" in page and 'value="UTC"' in page  # without JS: UTC
    assert 'name="pow_challenge"' in page


def test_subscribing_mails_a_link_whose_page_confirms_only_on_post(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    answer = visitor.post("/subscribe", subscribe_form(visitor))
    assert answer.status_code == 200 and "Check your mail" in answer.text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status is SubscriberStatus.PENDING
    assert owner.timezone == "Europe/Berlin" and str(owner.schedule) == "daily 07:30"
    [profile] = app.pipeline.subscriptions.profiles(owner.id)
    assert profile.spec == ProfileSpec("KV cache", '"kv cache"')
    [link] = [u for u in mail_links(app) if "/confirm/" in u]
    for _ in range(2):  # a mail scanner fetching the link changes nothing
        page = visitor.get(link)
        assert page.status_code == 200 and "Confirm my subscription" in page.text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status is SubscriberStatus.PENDING
    manage = visitor.post(link, {})
    assert manage.status_code == 200 and "You are subscribed" in manage.text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status is SubscriberStatus.ACTIVE
    assert manage.url.path == f"/manage/{tokens.for_subscriber(owner, 'manage')}"


def test_every_address_state_gets_the_same_answer(site: tuple[App, str], clock: FixedClock) -> None:
    app, base = site
    answers = []
    for step in ("new", "pending", "active", "unsubscribed", "throttled"):
        if step != "throttled":
            clock.advance(hours=2)  # past web.resend_after: each request really mails
        visitor = Visitor(base)
        if step == "active":
            other = Visitor(base)
            confirmed(app, other, "old@example.org")
            other.close()
            clock.advance(hours=2)
        if step == "unsubscribed":
            owner = app.pipeline.subscriptions.subscriber("old@example.org")
            assert owner is not None
            app.pipeline.membership.unsubscribe(owner.id)
        email = "new@example.org" if step in ("new", "pending") else "old@example.org"
        visitor.get("/")  # the CSRF cookie, as a browser has it by now
        answer = visitor.post("/subscribe", subscribe_form(visitor, email=email))
        visitor.close()
        send(app)
        shown = answer.text.replace(email, "EMAIL")
        answers.append((answer.status_code, sorted(answer.headers.keys()), shown))
    assert answers[0][0] == 200 and "Check your mail" in answers[0][2]
    assert all(answer == answers[0] for answer in answers[1:]), "the answer tells states apart"
    subjects = [m["Subject"] for m in maildir_messages(app)]
    assert len(subjects) == 5  # new, pending again, old's first, old active, old unsubscribed
    assert sum("manage" in subject for subject in subjects) == 1


def test_bad_input_is_shown_beside_its_field_with_what_was_typed(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    form = subscribe_form(
        visitor,
        email="ann@@example",
        name=EVIL,
        query=f"({EVIL}",
        timezone="Mars/Olympus",
        time="25:61",
    )
    answer = visitor.post("/subscribe", form)
    assert answer.status_code == 422
    errors = field_errors(answer.text)
    assert set(errors) == {"email", "query", "timezone", "time"}
    assert "time zone" in errors["timezone"]
    assert "HH:MM" in errors["time"]
    assert "unclosed parenthesis" in errors["query"] and "^" in errors["query"]
    assert EVIL not in answer.text  # escaped wherever it is shown
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in answer.text  # and kept
    assert 'value="Mars/Olympus"' in answer.text and 'value="ann@@example"' in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert app.pipeline.subscriptions.subscribers() == []
    assert not maildir_messages_or_none(app)


def maildir_messages_or_none(app: App) -> list[object]:
    send(app)
    return list(maildir_messages(app)) if app.settings.maildir().exists() else []


def test_a_hostile_name_and_query_are_escaped_on_every_page_and_never_reach_a_header(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    answer = visitor.post(
        f"{manage}/profile",
        {"original": "", "name": f'{EVIL}"', "query": f'"{EVIL}" OR kv'},
    )
    assert answer.status_code == 200, field_errors(answer.text)
    assert EVIL not in answer.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    assert f'{EVIL}"' in {p.spec.name for p in app.pipeline.subscriptions.profiles(owner.id)}
    # Line breaks and NULs are refused in every field (PostgreSQL cannot store a NUL either).
    for name in ('x"\r\nSet-Cookie: x=1', "a\x00b", "tab\there"):
        refused = visitor.post(f"{manage}/profile", {"original": "", "name": name, "query": "kv"})
        assert refused.status_code == 422, name
        assert "control characters" in field_errors(refused.text)["name"]
        assert all("\n" not in v and "\r" not in v for v in refused.headers.values())
    assert "x" not in visitor.client.cookies
    crlf = visitor.post("/manage-link", {"email": "ann@example.org\r\nBcc: eve@example.org"})
    assert crlf.status_code == 422 and "link_email" in field_errors(crlf.text)
    nul = visitor.post("/subscribe", subscribe_form(visitor, name="N\x00", query="a\x00"))
    assert nul.status_code == 422 and {"name", "query"} <= set(field_errors(nul.text))
    assert len(app.pipeline.subscriptions.profiles(owner.id)) == 2


def test_the_manage_page_changes_schedule_profiles_and_pause(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, base = site
    manage = confirmed(app, visitor)
    page = visitor.get(manage).text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    feeds = tokens.for_subscriber(owner, "feeds")
    assert f"{base}/feeds/{feeds}/all.atom" in page and f"{base}/feeds/{feeds}/kv-cache.rss" in page

    answer = visitor.post(
        f"{manage}/schedule",
        {"timezone": "America/New_York", "cadence": "weekly", "day": "fri", "time": "18:15"},
    )
    assert answer.status_code == 200 and "delivery settings are saved" in answer.text
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    assert (owner.timezone, str(owner.schedule)) == ("America/New_York", "weekly fri 18:15")

    added = visitor.post(
        f"{manage}/profile",
        {
            "original": "",
            "name": "Privacy",
            "query": "privacy OR private",
            "min_upvotes": "3",
            "max_items": "7",
            "alert_threshold": "8.5",
            "send_when_empty": "on",
        },
    )
    assert added.status_code == 200 and "The profile is saved" in added.text
    edited = visitor.post(
        f"{manage}/profile",
        {"original": "KV cache", "name": "Caches", "query": "cache", "max_items": "20"},
    )
    assert edited.status_code == 200
    specs = {p.spec.name: p.spec for p in app.pipeline.subscriptions.profiles(owner.id)}
    assert specs == {
        "Privacy": ProfileSpec("Privacy", "privacy OR private", 3, 7, 8.5, True),
        "Caches": ProfileSpec("Caches", "cache"),
    }
    clash = visitor.post(
        f"{manage}/profile", {"original": "Caches", "name": "Privacy", "query": "x"}
    )
    assert clash.status_code == 422 and "already" in field_errors(clash.text)["p1-name"]
    bad = visitor.post(
        f"{manage}/profile",
        {"original": "", "name": "N", "query": "a OR", "max_items": "0", "alert_threshold": "-1"},
    )
    assert bad.status_code == 422
    assert {"query", "max_items", "alert_threshold"} <= set(field_errors(bad.text))
    long = visitor.post(f"{manage}/profile", {"original": "", "name": "L", "query": "ab " * 200})
    assert long.status_code == 422 and "500 characters" in field_errors(long.text)["query"]
    removed = visitor.post(f"{manage}/remove", {"original": "Privacy"})
    assert removed.status_code == 200 and "removed" in removed.text
    assert [p.spec.name for p in app.pipeline.subscriptions.profiles(owner.id)] == ["Caches"]

    paused = visitor.post(f"{manage}/pause", {})
    assert "Paused" in paused.text and "Resume" in paused.text
    assert status(app) == "paused"
    visitor.post(f"{manage}/resume", {})
    assert status(app) == "active"


def test_a_new_manage_link_by_mail_revokes_the_old_one(
    site: tuple[App, str], visitor: Visitor, clock: FixedClock
) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    before = len(mail_links(app))
    clock.advance(hours=2)  # past web.resend_after since the confirmation
    visitor.get(manage)
    answer = visitor.post("/manage-link", {"email": "ann@example.org"})
    assert answer.status_code == 200 and "Check your mail" in answer.text
    fresh = [u for u in mail_links(app)[before:] if "/manage/" in u]
    assert len(fresh) == 1 and not fresh[0].endswith(manage)
    assert visitor.get(manage).status_code == 404
    assert visitor.get(fresh[0]).status_code == 200


def test_one_click_unsubscribe_needs_no_cookie_and_can_be_undone(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, base = site
    confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    path = f"/unsubscribe/{tokens.for_subscriber(owner, 'unsubscribe')}"
    page = visitor.get(path)
    assert page.status_code == 200 and 'value="One-Click"' in page.text
    assert status(app) == "active"

    # A mail provider: a plain POST, no cookie, no CSRF token.
    provider = httpx.post(f"{base}{path}", data={"List-Unsubscribe": "One-Click"})
    assert provider.status_code == 200
    assert status(app) == "unsubscribed"
    assert httpx.post(f"{base}{path}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert httpx.post(f"{base}{path}", data={"other": "1"}).status_code == 400

    undone = visitor.post(f"{path}/undo", {}, csrf=False)
    assert undone.status_code == 403  # the undo is a form of this site: CSRF applies
    visitor.get(path)
    visitor.post(path, {"List-Unsubscribe": "One-Click"}, csrf=False)
    undone = visitor.post(f"{path}/undo", {})
    assert undone.status_code == 200 and "subscribed again" in undone.text
    assert status(app) == "active"


def test_a_wrong_or_revoked_token_is_the_same_plain_404_everywhere(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    confirmed(app, visitor)
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    feeds = tokens.for_subscriber(owner, "feeds")  # right subscriber, wrong purpose
    visitor.get("/")
    csrf = visitor.hidden("csrf")  # a good CSRF token: the token alone is wrong
    pages = set()
    for token in ("nope", "1.AAAA", feeds, f"{owner.id}.{'A' * 24}", "99999999999999999999.x"):
        for path in (f"/confirm/{token}", f"/manage/{token}", f"/unsubscribe/{token}"):
            answer = visitor.get(path)
            assert answer.status_code == 404
            pages.add(answer.text.replace(path, ""))
        for path in (
            f"/confirm/{token}",
            f"/manage/{token}/pause",
            f"/manage/{token}/profile",
            f"/unsubscribe/{token}",
            f"/unsubscribe/{token}/undo",
        ):
            form = {"List-Unsubscribe": "One-Click", "csrf": csrf}
            assert visitor.post(path, form, csrf=False).status_code == 404
    assert len(pages) == 1
    assert "Not found" in pages.pop()
    assert status(app) == "active"
    assert visitor.get("/no/such/page").status_code == 404


def test_a_change_that_no_longer_fits_is_told_on_the_page_and_changes_nothing(
    site: tuple[App, str], visitor: Visitor
) -> None:
    app, _ = site
    manage = confirmed(app, visitor)
    visitor.get(manage)
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None
    app.pipeline.membership.unsubscribe(owner.id)  # in another tab, say
    answer = visitor.post(f"{manage}/pause", {})
    assert answer.status_code == 409 and "Nothing changed" in answer.text
    assert "Subscribe again" in answer.text
    again = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert again is not None and again.status is SubscriberStatus.UNSUBSCRIBED
    back = visitor.post(f"{manage}/resume", {})
    assert back.status_code == 200 and "subscribed again" in back.text
