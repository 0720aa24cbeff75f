"""👍/👎 as a person does it, in headless Chromium against a real uvicorn server: open the
delivered digest (its HTML from the maildir), click 👍 under a paper, confirm on the page, and
the next digest ranks by it; click 👎 and the paper never comes back; the manage page lists
both and previews a profile of one liked paper before it is saved. Screenshots of the digest,
the feedback page and the manage page's likes at phone and desktop widths, light and dark."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from mail import ingest, maildir_messages, rss
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec

from .serve import free_port, serving, web_app
from .test_browser import ARGS, CHROMIUM, SCREENS, SIDEWAYS, drain, png_size
from .topics import BIO, SKY, papers

pytestmark = pytest.mark.browser

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EMAIL = "jane@example.org"


def about_sky(title: str) -> bool:
    return title.split(maxsplit=1)[0].lower() in SKY


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


def next_digest(app: App, clock: FixedClock) -> EmailMessage:
    """The next digest as delivered: the clock moves to 07:01 the next day, the outbox is
    sent to the maildir and its newest message read back."""
    clock.at = clock.now().replace(hour=7, minute=1) + timedelta(days=1)
    assert [p.email for p in app.mailroom.plan() if p.delivery_id] == [EMAIL]
    drain(app)
    return maildir_messages(app)[-1]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def shown(page: Page) -> list[str]:
    """The titles of the papers in the digest open in ``page``, in order."""
    return [t.strip() for t in page.locator(".paper a.title").all_inner_texts()]


def open_mail(page: Page, message: EmailMessage, *, width: int = 1280) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.set_content(html_of(message))


def vote(page: Page, title: str, which: str) -> None:
    """In the digest open in ``page``: click 👍 or 👎 under ``title`` and confirm."""
    paper = page.locator(".paper").filter(has=page.locator("a.title", has_text=title))
    paper.get_by_role("link", name=re.compile(which)).click()
    button = page.get_by_role("button", name=re.compile("Yes, "))
    expect(button).to_have_count(1)
    expect(page.locator(".feedback-paper")).to_have_text(title)
    button.click()
    expect(page.get_by_role("heading", name=re.compile("Liked|Refused"))).to_be_visible()


def test_a_subscriber_votes_from_the_digest_and_the_next_one_follows(
    browser: Browser, tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(NOW)
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app, serving(app, port) as base:
        ingest(app, tmp_path, "day0.xml", rss(*papers(1, 20, seed=1)))
        app.pipeline.roster.save_subscriber(EMAIL, "Europe/Berlin", "daily 08:01")
        query = " OR ".join(SKY + BIO)
        app.pipeline.roster.save_profile(EMAIL, ProfileSpec("Papers", query, max_items=10))
        clock.advance(hours=1)
        ingest(app, tmp_path, "day1.xml", rss(*papers(101, 20, seed=2)))
        context = browser.new_context(timezone_id="Europe/Berlin")
        page = context.new_page()

        # 👍 on a sky paper of the first digest.
        first = next_digest(app, clock)
        open_mail(page, first)
        titles = shown(page)
        votes = page.get_by_role("link", name=re.compile("(More|Less) like this"))
        assert len(titles) == 10 and votes.count() == 20
        liked = next(t for t in titles if about_sky(t))
        paper = page.locator(".paper").filter(has=page.locator("a.title", has_text=liked))
        paper.get_by_role("link", name=re.compile("👍")).click()
        expect(page.get_by_role("heading", name="👍 More like this?")).to_be_visible()
        assert app.pipeline.likes.of() == [], "the page alone changes nothing"
        page.get_by_role("button", name="👍 Yes, more like this").click()
        expect(page.get_by_role("heading", name="👍 Liked")).to_be_visible()
        [like] = app.pipeline.likes.of()
        assert (like.vote, like.origin) == ("up", "feedback")

        # The next digest ranks the sky first and says which liked paper each is like.
        clock.advance(hours=2)
        ingest(app, tmp_path, "day2.xml", rss(*papers(201, 20, seed=3)))
        second = next_digest(app, clock)
        open_mail(page, second)
        titles = shown(page)
        assert all(about_sky(t) for t in titles[:5]), titles
        expect(page.locator(".why").first).to_contain_text(f"like: {liked}")

        # 👎 on its first paper: never in a digest again, even changed.
        refused = titles[0]
        vote(page, refused, "👎")
        clock.advance(hours=2)
        day2 = papers(201, 20, seed=3)
        changed = [(i, t + " revised", a) for i, t, a in day2] + papers(301, 6, seed=4)
        ingest(app, tmp_path, "day2b.xml", rss(*changed))
        third = next_digest(app, clock)
        open_mail(page, third)
        later = shown(page)
        assert later and refused not in later and refused + " revised" not in later

        # The manage page lists both; the profile's preview offers 👍/👎 and ranks by the like.
        owner = app.pipeline.subscriptions.subscriber(EMAIL)
        assert owner is not None
        manage = f"{base}/manage/{app.pipeline.membership.token(owner, 'manage')}"
        page.goto(manage)
        details = page.locator("details.profile").first
        details.locator("summary").click()
        likes = details.locator("section.likes")
        expect(likes.locator("ul.liked:not(.refused) li")).to_have_text([f"👍 {liked} Remove"])
        expect(likes.locator("ul.refused li")).to_have_text([re.compile(re.escape(refused))])
        details.locator("input[name=query]").focus()
        expect(details.locator(".preview .paper").first).to_be_visible()
        expect(details.locator(".preview .vote a").first).to_be_visible()

        # A new profile of one liked paper: its example digest shows before it is saved.
        page.locator("#name").fill("Stars")
        page.locator("#likes").fill("2603.00102")
        expect(page.locator("#preview .paper").first).to_be_visible()
        expect(page.locator("#preview .reasons").first).to_contain_text("like: ")
        assert all(about_sky(t) for t in page.locator("#preview .paper-title").all_inner_texts())
        page.get_by_role("button", name="Add the profile").click()
        expect(page.get_by_text("The profile is saved.")).to_be_visible()
        stars = app.pipeline.tastes.profile(EMAIL, "Stars")
        assert stars.spec.query == ""
        assert [like.ref for like in app.pipeline.likes.of([stars.id])] == ["arxiv:2603.00102"]
        context.close()


def test_screenshots_of_the_digest_the_feedback_page_and_the_likes(
    browser: Browser, tmp_path: Path
) -> None:
    """Writes build/screenshots/{digest-mail,feedback,feedback-done,manage-likes}-<width>-
    <scheme>.png, for people to look at."""
    clock = FixedClock(NOW)
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with web_app(tmp_path, url, clock, port) as app, serving(app, port) as base:
        ingest(app, tmp_path, "day0.xml", rss(*papers(1, 20, seed=1)))
        app.pipeline.roster.save_subscriber(EMAIL, "Europe/Berlin", "daily 08:01")
        app.pipeline.roster.save_profile(EMAIL, ProfileSpec("Sky", "", max_items=5))
        app.pipeline.tastes.feedback(EMAIL, "2603.00002", "up", "Sky")
        app.pipeline.tastes.feedback(EMAIL, "2603.00004", "up", "Sky")
        app.pipeline.tastes.feedback(EMAIL, "2603.00001", "down", "Sky")
        clock.advance(hours=1)
        ingest(app, tmp_path, "day1.xml", rss(*papers(101, 60, seed=2)))
        message = next_digest(app, clock)
        owner = app.pipeline.subscriptions.subscriber(EMAIL)
        assert owner is not None
        manage = f"{base}/manage/{app.pipeline.membership.token(owner, 'manage')}"
        up = re.findall(rf"{re.escape(base)}/feedback/\S+/up", html_of(message))[0]
        SCREENS.mkdir(parents=True, exist_ok=True)
        for width in (390, 1280):
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": width, "height": 900},
                    color_scheme=scheme,  # type: ignore[arg-type]
                )
                page = context.new_page()
                open_mail(page, message, width=width)
                snap(page, f"digest-mail-{width}-{scheme}", width)
                page.goto(up)
                snap(page, f"feedback-{width}-{scheme}", width)
                page.get_by_role("button", name=re.compile("Yes, ")).click()
                snap(page, f"feedback-done-{width}-{scheme}", width)
                page.get_by_role("button", name="Undo").click()
                expect(page.get_by_role("heading", name="Vote taken back")).to_be_visible()
                page.goto(manage)
                page.locator("details.profile summary").first.click()
                page.locator("details.profile input[name=query]").first.focus()
                expect(page.locator("details.profile .preview .paper").first).to_be_visible()
                path = SCREENS / f"manage-likes-{width}-{scheme}.png"
                page.locator("details.profile").first.screenshot(path=str(path))
                assert page.evaluate(SIDEWAYS) == 0, width
                context.close()


def snap(page: Page, name: str, width: int) -> None:
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert png_size(path)[0] == width
    assert page.evaluate(SIDEWAYS) == 0, name  # nothing sticks out sideways
