"""A person's own data, in headless Chromium against a real uvicorn server: download it from
the manage page, erase it after the confirmation page, and find every link of theirs gone;
screenshots of the pages at phone and desktop widths, light and dark."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from service import tokens
from service.clock import FixedClock
from service.model import ProfileSpec
from service.pipeline.records import to_json

from .serve import free_port, serving, web_app
from .test_browser import SCREENS, SIDEWAYS, browser, png_size

__all__ = ["browser"]  # the module's Chromium, shared with test_browser

pytestmark = pytest.mark.browser

T0 = datetime(2026, 6, 1, 3, tzinfo=UTC)
ANN = "ann@example.org"


def test_a_person_downloads_their_data_then_erases_themselves(
    browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with web_app(tmp_path, url, FixedClock(T0), port) as app, serving(app, port) as base:
        app.pipeline.roster.save_subscriber(ANN, "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(ANN, ProfileSpec("KV cache", '"kv cache"'))
        owner = app.pipeline.subscriptions.subscriber(ANN)
        assert owner is not None
        manage = f"{base}/manage/{app.pipeline.membership.token(owner, 'manage')}"
        feed = f"{base}/feeds/{tokens.for_subscriber(owner, 'feeds')}/all.atom"
        expected = to_json(app.pipeline.records.export(ANN)) + "\n"

        page = browser.new_page(accept_downloads=True)
        page.goto(manage)
        card = page.get_by_role("region", name="Your data")
        with page.expect_download() as caught:
            card.get_by_role("link", name="Download my data (JSON)").click()
        download = caught.value
        assert download.suggested_filename == "paperboy-my-data.json"
        saved = Path(download.path())
        assert saved.read_text() == expected
        assert json.loads(expected)["profiles"][0]["name"] == "KV cache"

        card.get_by_role("link", name="Erase me…").click()
        expect(page.get_by_role("heading", name="Erase everything about you?")).to_be_visible()
        page.get_by_role("link", name="Keep my subscription").click()  # changed my mind
        expect(page.get_by_role("heading", name="Your subscription")).to_be_visible()
        assert app.pipeline.subscriptions.subscriber(ANN) is not None

        page.get_by_role("region", name="Your data").get_by_role("link", name="Erase me…").click()
        page.get_by_role("button", name="Erase me").click()
        expect(page.get_by_role("heading", name="Erased")).to_be_visible()
        assert app.pipeline.subscriptions.subscriber(ANN) is None

        for link in (manage, f"{manage}/data.json", f"{manage}/erase", feed):
            response = page.request.get(link)
            assert response.status == 404, link
        shown = page.goto(manage)
        assert shown is not None and shown.status == 404
        page.close()


def test_screenshots_of_the_data_card_and_the_erase_pages(browser: Browser, tmp_path: Path) -> None:
    """Writes build/screenshots/{data,erase,erased}-<width>-<scheme>.png."""
    port = free_port()
    url = f"sqlite:///{tmp_path / 'paperboy.db'}"
    with web_app(tmp_path, url, FixedClock(T0), port) as app, serving(app, port) as base:
        SCREENS.mkdir(parents=True, exist_ok=True)
        for width in (390, 1280):
            for scheme in ("light", "dark"):
                email = f"ann-{width}-{scheme}@example.org"
                app.pipeline.roster.save_subscriber(email, "Europe/Berlin", "daily 07:30")
                app.pipeline.roster.save_profile(email, ProfileSpec("KV cache", '"kv cache"'))
                owner = app.pipeline.subscriptions.subscriber(email)
                assert owner is not None
                manage = f"{base}/manage/{app.pipeline.membership.token(owner, 'manage')}"
                context = browser.new_context(
                    viewport={"width": width, "height": 900},
                    color_scheme=scheme,  # type: ignore[arg-type]
                )
                page = context.new_page()
                page.goto(manage)
                card = page.get_by_role("region", name="Your data")
                card.screenshot(path=str(SCREENS / f"data-{width}-{scheme}.png"))
                assert page.evaluate(SIDEWAYS) == 0, ("manage", width)
                card.get_by_role("link", name="Erase me…").click()
                shoot(page, SCREENS / f"erase-{width}-{scheme}.png", width)
                page.get_by_role("button", name="Erase me").click()
                shoot(page, SCREENS / f"erased-{width}-{scheme}.png", width)
                context.close()


def shoot(page: Page, path: Path, width: int) -> None:
    """A full-page screenshot at ``width``, with nothing sticking out sideways."""
    page.wait_for_load_state()
    page.screenshot(path=str(path), full_page=True)
    assert png_size(path)[0] == width
    assert page.evaluate(SIDEWAYS) == 0, (path.name, width)
