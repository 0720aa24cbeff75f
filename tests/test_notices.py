"""Confirmation and manage-link mails as rendered (pure): headers of transactional mail, the
link in both parts, the expiry in words."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from mail import parse, parts

from service.model import DeliveryKind
from service.render.email import Letterhead
from service.render.notices import Notice, NoticeRenderer, duration
from service.render.templates import environment

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HEAD = Letterhead(
    from_address="paperboy <digest@papers.example.org>",
    base_url="https://papers.example.org",
    reply_to="help@papers.example.org",
)


@pytest.mark.parametrize(
    ("span", "words"),
    [
        (timedelta(days=7), "7 days"),
        (timedelta(days=1), "1 day"),
        (timedelta(hours=1), "1 hour"),
        (timedelta(hours=36), "36 hours"),
        (timedelta(minutes=90), "90 minutes"),
        (timedelta(seconds=30), "1 minute"),
    ],
)
def test_durations_in_words(span: timedelta, words: str) -> None:
    assert duration(span) == words


def test_a_confirmation_is_transactional_mail_with_the_link_and_its_expiry() -> None:
    renderer = NoticeRenderer(environment(), HEAD)
    notice = Notice(
        DeliveryKind.CONFIRMATION,
        7,
        "tom&jerry@example.org",
        "7.1780315200.abc",
        NOW.isoformat(),
        expires_after=timedelta(days=7),
    )
    rendered = renderer.render(notice, NOW)
    message = parse(rendered.message)
    assert message["Subject"] == rendered.subject == "Confirm your paperboy subscription"
    assert message["To"] == "tom&jerry@example.org"
    assert message["Reply-To"] == "help@papers.example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == rendered.message_id
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert message[header] is None
    text, html = parts(message)
    link = "https://papers.example.org/confirm/7.1780315200.abc"
    assert f"  {link}" in text.splitlines() and f'href="{link}"' in html
    assert "works for 7 days" in text and "works for 7 days" in html
    assert "ignore this mail" in text and "ignore this mail" in html
    assert "tom&amp;jerry@example.org" in html  # autoescaped
    assert "@media" in html and 'style="' in html  # the digest's look, CSS inlined
    later = renderer.render(replace(notice, window="later"), NOW)
    assert later.message_id != rendered.message_id


def test_a_manage_link_says_whether_it_replaced_the_one_before() -> None:
    renderer = NoticeRenderer(environment(), HEAD)
    asked = Notice(DeliveryKind.MANAGE_LINK, 7, "a@example.org", "7.xyz", NOW.isoformat())
    text, html = parts(parse(renderer.render(asked, NOW).message))
    assert "https://papers.example.org/manage/7.xyz" in text
    assert 'href="https://papers.example.org/manage/7.xyz"' in html
    assert "has a subscription already" in text and "no longer work" not in text
    renewed = replace(asked, renewed=True)
    text, _ = parts(parse(renderer.render(renewed, NOW).message))
    assert "Manage links sent before this one no longer work" in text
