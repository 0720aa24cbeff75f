"""What a person does, in headless Chromium against a real uvicorn server: subscribe on the
landing page (the proof of work runs in the page), confirm from the mail, watch the live
preview, add a profile, get a digest, leave by one click as a mail provider does it, and get
nothing more. Also: the same without JavaScript, and screenshots of the pages."""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest import SEED_ORDER, seed
from deliver.smtpd import SmtpSink
from mail import maildir_messages, parse
from playwright.sync_api import Browser, Page, expect, sync_playwright

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec, SubscriberStatus

from .serve import free_port, serving, web_app

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
T0 = datetime(2026, 6, 1, 3, tzinfo=UTC)  # 05:00 in Berlin; the digest is due at 07:30
DUE = datetime(2026, 6, 1, 5, 31, tzinfo=UTC)

_T = TypeVar("_T")


def aside(work: Callable[[], _T]) -> _T:
    """Run ``work`` in another thread: Playwright's sync API holds this thread's event loop,
    and sending mail runs one of its own."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()


def drain(app: App) -> None:
    async def run() -> None:
        try:
            await app.mailroom.send()
        finally:
            assert app.mailroom.sender is not None
            await app.mailroom.sender.close()

    aside(lambda: asyncio.run(run()))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


def ingest(app: App, seeds: list[Path], prefix: str) -> None:
    [summary] = app.pipeline.ingest.ingest_files(
        [seed(seeds, prefix)], captured_at=app.pipeline.clock.now()
    )
    assert summary.outcome.value == "parsed", summary


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    content: str = body.get_content()
    return content


def walk(
    browser: Browser,
    app: App,
    base: str,
    clock: FixedClock,
    seeds: list[Path],
    inbox: Callable[[], list[EmailMessage]],
) -> None:
    """The whole journey; ``inbox`` sends what the outbox holds and returns every message
    that arrived so far."""
    ingest(app, seeds, "001")
    context = browser.new_context(timezone_id="Europe/Berlin", locale="en-GB")
    page = context.new_page()
    page.goto(f"{base}/")
    expect(page.locator("#timezone")).to_have_value("Europe/Berlin")  # from Intl, by the script
    page.locator("#email").fill("ann@example.org")
    page.locator("#name").fill("Agents")
    page.locator("#query").fill("agent")
    expect(page.locator("#preview .paper").first).to_be_visible()
    page.get_by_role("radio", name="Daily").check()
    page.locator("#time").fill("07:30")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status is SubscriberStatus.PENDING
    assert (owner.timezone, str(owner.schedule)) == ("Europe/Berlin", "daily 07:30")

    [confirmation] = inbox()
    assert confirmation["To"] == "ann@example.org"
    [link] = re.findall(rf"{re.escape(base)}/confirm/\S+", text_of(confirmation))
    page.goto(link)
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_text("You are subscribed.")).to_be_visible()
    assert "/manage/" in page.url

    query = page.locator("#query")  # the add-a-profile form's
    query.fill("video")
    expect(page.locator("#preview .paper").first).to_be_visible()
    videos = page.locator("#preview").inner_text()
    assert "video" in videos.lower()
    expect(page.locator("#preview mark").first).to_have_text(re.compile("video", re.I))
    query.fill("inference")
    expect(page.locator("#preview")).not_to_have_text(videos)
    expect(page.locator("#preview .paper").first).to_be_visible()
    query.fill("(video")
    expect(page.locator("#preview .query-error")).to_be_visible()
    page.locator("#name").fill("Robots")
    query.fill("robot")
    page.locator("#max_items").fill("5")
    page.get_by_role("button", name="Add the profile").click()
    expect(page.get_by_text("The profile is saved.")).to_be_visible()
    specs = [p.spec for p in app.pipeline.subscriptions.profiles(owner.id)]
    assert ProfileSpec("Robots", "robot", max_items=5) in specs
    context.close()

    clock.advance(hours=1)
    ingest(app, seeds, "003")
    clock.at = DUE
    assert [p.email for p in app.mailroom.plan() if p.delivery_id] == ["ann@example.org"]
    arrived = inbox()
    assert len(arrived) == 2
    digest = arrived[1]
    assert digest["To"] == "ann@example.org" and "Robots" in text_of(digest)

    # One click, as a mail provider does it (RFC 8058): a plain POST, no cookie, no token.
    [target] = re.findall(r"<(https?://[^>]+)>", digest["List-Unsubscribe"])
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    answer = httpx.post(
        target,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    owner = app.pipeline.subscriptions.subscriber("ann@example.org")
    assert owner is not None and owner.status is SubscriberStatus.UNSUBSCRIBED

    clock.advance(hours=5)
    ingest(app, seeds, "002")
    clock.advance(days=1)
    app.mailroom.plan()
    assert len(inbox()) == 2  # nothing more arrives


def test_a_person_subscribes_confirms_previews_gets_a_digest_and_leaves(
    browser: Browser, tmp_path: Path, database_url: str, clock: FixedClock, seeds: list[Path]
) -> None:
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app, serving(app, port) as base:

        def inbox() -> list[EmailMessage]:
            drain(app)
            return maildir_messages(app) if app.settings.maildir().exists() else []

        walk(browser, app, base, clock, seeds, inbox)


def test_the_same_journey_with_mail_through_an_smtp_server(
    browser: Browser, tmp_path: Path, clock: FixedClock, seeds: list[Path]
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with SmtpSink() as sink:
        mail = {"sender": "smtp", "smtp": sink.settings().model_dump()}
        with web_app(tmp_path, url, clock, port, mail=mail) as app, serving(app, port) as base:

            def inbox() -> list[EmailMessage]:
                drain(app)
                return [parse(received.content) for received in sink.messages]

            walk(browser, app, base, clock, seeds, inbox)
        assert all(m.recipients == ("ann@example.org",) for m in sink.messages)


def test_without_javascript_the_form_still_subscribes_under_the_stricter_limit(
    browser: Browser, tmp_path: Path, clock: FixedClock
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with (
        web_app(tmp_path, url, clock, port, subscribes_per_hour=10) as app,
        serving(app, port) as base,
    ):
        context = browser.new_context(java_script_enabled=False, timezone_id="Asia/Tokyo")
        page = context.new_page()
        headings = []
        for number in range(3):
            page.goto(f"{base}/")
            expect(page.locator("#timezone")).to_have_value("UTC")  # no script: UTC, changeable
            page.locator("#email").fill(f"n{number}@example.org")
            page.locator("#name").fill("Robots")
            page.locator("#query").fill("robot")
            page.get_by_role("radio", name="Weekly").check()
            page.locator("#day").select_option("fri")
            page.get_by_role("button", name="Subscribe").click()
            headings.append(page.locator("h1").inner_text())
        context.close()
        # Two a client an hour without the proof of work (a fifth of subscribes_per_hour).
        assert headings == ["Check your mail", "Check your mail", "Too many requests"]
        owner = app.pipeline.subscriptions.subscriber("n0@example.org")
        assert owner is not None and owner.timezone == "UTC"
        assert str(owner.schedule) == "weekly fri 07:30"


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
HF_DAILY = "https://huggingface.co/api/daily_papers"
SCREENS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def test_screenshots_of_the_pages_at_phone_and_desktop_widths_light_and_dark(
    browser: Browser, tmp_path: Path, clock: FixedClock, seeds: list[Path]
) -> None:
    """Writes build/screenshots/<page>-<width>-<scheme>.png, for people to look at."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    sources = [
        {"id": "hf-daily", "kind": "hf-daily", "location": HF_DAILY},
        {"id": "inbox", "location": "inbox"},
    ]
    with (
        web_app(tmp_path, url, clock, port, sources=sources) as app,
        serving(app, port) as base,
    ):
        captured = dict(SEED_ORDER)["001"]
        clock.at = captured + timedelta(hours=6)  # the papers are fresh: previews show them
        [summary] = app.pipeline.ingest.ingest_files([seed(seeds, "001")], captured_at=captured)
        assert summary.outcome.value == "parsed"
        roster = app.pipeline.roster
        roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        roster.save_profile("ann@example.org", ProfileSpec("Diffusion", "diffusion"))
        roster.save_profile(
            "ann@example.org",
            ProfileSpec("KV cache", '"kv cache" OR kv-cache', 2, 10, 8.0, True),
        )
        owner = app.pipeline.subscriptions.subscriber("ann@example.org")
        assert owner is not None
        manage = app.pipeline.membership.token(owner, "manage")
        pages: dict[str, Callable[[Page], Any]] = {
            "landing": lambda page: page.goto(f"{base}/"),
            "landing-errors": lambda page: submit_bad_form(page, base),
            "manage": lambda page: open_manage(page, f"{base}/manage/{manage}"),
            "unsubscribe": lambda page: page.goto(
                f"{base}/unsubscribe/{tokens.for_subscriber(owner, 'unsubscribe')}"
            ),
        }
        SCREENS.mkdir(parents=True, exist_ok=True)
        for width in (390, 1280):
            for scheme in ("light", "dark"):
                context = browser.new_context(
                    viewport={"width": width, "height": 900},
                    color_scheme=scheme,  # type: ignore[arg-type]
                    timezone_id="Europe/Berlin",
                )
                page = context.new_page()
                for name, show in pages.items():
                    show(page)
                    path = SCREENS / f"{name}-{width}-{scheme}.png"
                    page.screenshot(path=str(path), full_page=True)
                    assert png_size(path)[0] == width
                    # Nothing sticks out sideways on a phone.
                    overflow = page.evaluate(SIDEWAYS)
                    assert overflow == 0, (name, width)
                context.close()


def submit_bad_form(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    page.locator("#email").fill("ann@@example")
    page.locator("#name").fill("KV")
    page.locator("#query").fill('("kv cache" OR')
    page.locator("#timezone").fill("Mars/Olympus")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator(".form-error")).to_be_visible()


def open_manage(page: Page, url: str) -> None:
    page.goto(url)
    page.locator("details.profile summary").first.click()
    page.locator("#name").fill("Video")
    page.locator("#query").fill("video")
    expect(page.locator("#preview .paper").first).to_be_visible()


def test_the_subscribe_form_works_from_the_keyboard_and_skips_the_honeypot(
    browser: Browser, tmp_path: Path, clock: FixedClock
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with web_app(tmp_path, url, clock, port) as app, serving(app, port) as base:
        page = browser.new_page()
        page.goto(f"{base}/")
        page.locator("#email").focus()
        reached = []
        for _ in range(15):
            page.keyboard.press("Tab")
            reached.append(
                page.evaluate("document.activeElement.id || document.activeElement.textContent")
            )
            if reached[-1] == "Subscribe":
                break
        assert "website" not in reached and reached[-1] == "Subscribe"
        assert reached[:2] == ["name", "query"]
        # The focused control shows a ring (an outline of 3px).
        ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
        assert ring == "3px"
        page.locator("#email").fill("kb@example.org")
        page.locator("#name").fill("Agents")
        page.locator("#query").fill("agent")
        page.locator("#query").press("Enter")  # Enter in a field submits the form
        expect(page.get_by_role("heading", name="Check your mail")).to_be_visible()
        page.close()
        assert app.pipeline.subscriptions.subscriber("kb@example.org") is not None
