"""Transactional mail about a subscription itself: the confirmation of a new subscription
(double opt-in) and a manage link asked for on the web.

Unlike digests these are no list mail: no List-Unsubscribe or List-Id (there is nothing to
leave; ignoring the mail is enough), but Auto-Submitted (RFC 3834) all the same. They hold
nothing a visitor typed but the address they were sent to, so the form cannot mail a stranger
words of the visitor's choosing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

import css_inline
import jinja2

from service.model import DeliveryKind
from service.render import mime
from service.render.email import Letterhead, Rendered

SUBJECTS = {
    DeliveryKind.CONFIRMATION: "Confirm your paperboy subscription",
    DeliveryKind.MANAGE_LINK: "Your paperboy manage link",
}
TEMPLATES = {DeliveryKind.CONFIRMATION: "confirm", DeliveryKind.MANAGE_LINK: "manage_link"}
PATHS = {DeliveryKind.CONFIRMATION: "confirm", DeliveryKind.MANAGE_LINK: "manage"}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice to render: to whom, of which kind, with which token, asked for when."""

    kind: DeliveryKind
    subscriber_id: int
    email: str
    token: str
    window: str  # the delivery's key in the outbox (the request time)
    expires_after: timedelta | None = None  # how long the link works, when it expires
    renewed: bool = False  # a manage link that replaces (revokes) the one before


class NoticeRenderer:
    """Renders notices; templates are compiled once and CSS is inlined per message."""

    def __init__(self, env: jinja2.Environment, letterhead: Letterhead) -> None:
        self.letterhead = letterhead
        self._templates = {
            kind: (env.get_template(f"email/{name}.txt"), env.get_template(f"email/{name}.html"))
            for kind, name in TEMPLATES.items()
        }
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)

    def message_id(self, notice: Notice) -> str:
        """Unique to the delivery: the outbox keeps (subscriber, kind, window) unique."""
        window = hashlib.sha256(notice.window.encode()).hexdigest()[:16]
        return f"<{notice.kind}.{notice.subscriber_id}.{window}@{self.letterhead.domain}>"

    def link(self, notice: Notice) -> str:
        return f"{self.letterhead.base_url}/{PATHS[notice.kind]}/{notice.token}"

    def render(self, notice: Notice, now: datetime) -> Rendered:
        subject = SUBJECTS[notice.kind]
        context: dict[str, Any] = {
            "subject": subject,
            "email": notice.email,
            "link": self.link(notice),
            "expires": duration(notice.expires_after) if notice.expires_after else None,
            "renewed": notice.renewed,
        }
        text_template, html_template = self._templates[notice.kind]
        text = text_template.render(context)
        html = self._inliner.inline(html_template.render(context))
        message_id = self.message_id(notice)
        head = self.letterhead
        name, address = parseaddr(head.from_address)
        headers = [
            mime.header_line("Subject", subject),
            mime.header_line("From", formataddr((name, address), charset="utf-8")),
            mime.address_line("To", notice.email),
            mime.header_line("Reply-To", head.reply_to) if head.reply_to else "",
            mime.header_line("Date", format_datetime(now)),
            mime.header_line("Message-ID", message_id),
            "Auto-Submitted: auto-generated\r\n",
        ]
        boundary = f"==paperboy-{message_id.strip('<>').split('@')[0]}=="
        return Rendered(subject, message_id, mime.alternative(headers, text, html, boundary))


def duration(span: timedelta) -> str:
    """``span`` in words, in its largest whole unit: "7 days", "1 hour", "90 minutes"."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"
