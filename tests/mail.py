"""Building blocks for the delivery tests: listing captures and feeds written on the fly, an app
wired to a maildir or to a real SMTP sink, and readers for what arrives."""

from __future__ import annotations

import asyncio
import email
import mailbox
import re
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from service.app import App, build
from service.clock import FixedClock
from service.config import MailSettings, Settings
from service.mailroom import SendResult

FROM = "paperboy <digest@papers.example.org>"
BASE = "https://papers.example.org"


def listing(date: str, *entries: tuple[str, str, str | None]) -> str:
    """A listing capture: (title, abstract, date line or None for no meta lines) per entry."""
    lines = ["new", "Get trending papers in your email inbox!", "Subscribe", "Daily Papers"]
    lines += ["byAK and the research community", date]
    for title, abstract, when in entries:
        lines += [title, abstract]
        if when is not None:
            lines += ["  • 3 authors", "·", when]
    return "\n\n".join(lines) + "\n"


def rss(*items: tuple[str, str, str]) -> str:
    """An arXiv-style RSS feed: (arXiv id, title, abstract) per item."""
    body = "".join(
        f"<item><title>{escape(title)}</title><link>https://arxiv.org/abs/{arxiv_id}</link>"
        f"<description>{escape(abstract)}</description>"
        f"<guid isPermaLink='false'>oai:arXiv.org:{arxiv_id}v1</guid>"
        "<dc:creator>Jane Doe, John Roe</dc:creator></item>"
        for arxiv_id, title, abstract in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>cs.LG updates</title><link>https://arxiv.org/</link>{body}</channel></rss>"
    )


def make_app(tmp_path: Path, database_url: str, clock: FixedClock, **mail: Any) -> App:
    values: dict[str, Any] = {
        "from_address": FROM,
        "base_url": BASE,
        "reply_to": "help@papers.example.org",
    }
    values.update(mail)
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sources=[],
        mail=MailSettings.model_validate(values),
    )
    return build(settings, clock=clock)


def ingest(app: App, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    summaries = app.pipeline.ingest.ingest_files([path], captured_at=app.pipeline.clock.now())
    assert all(s.outcome.value == "parsed" for s in summaries), summaries


def send(app: App) -> SendResult:
    async def drain() -> SendResult:
        try:
            return await app.mailroom.send()
        finally:
            assert app.mailroom.sender is not None
            await app.mailroom.sender.close()

    return asyncio.run(drain())


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def maildir_messages(app: App) -> list[EmailMessage]:
    """The messages in the maildir outbox, in the order they were stored."""
    box = mailbox.Maildir(app.settings.maildir(), create=False)
    return [parse(box.get_bytes(key)) for key in sorted(box.keys(), key=_stored_order)]


def _stored_order(key: str) -> tuple[int, ...]:
    # Python's Maildir names are "<seconds>.M<microseconds>P<pid>Q<count>.<host>", the numbers
    # unpadded: as text, "M99999" would sort after "M100000".
    found = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)\.", key)
    assert found is not None, key
    return tuple(int(n) for n in found.groups())


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain text and the HTML of a multipart/alternative message."""
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()
