"""A digest or an alert as an email: multipart/alternative (plain text and HTML with inlined
CSS), with the headers of a well-behaved list (RFC 2369 List-Unsubscribe, RFC 8058 one-click,
RFC 2919 List-Id, RFC 3834 Auto-Submitted)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import quote

import css_inline
import jinja2

from service import tokens
from service.digest import Digest, Section
from service.model import DeliveryKind
from service.render import mime
from service.render.papers import view


@dataclass(frozen=True, slots=True)
class Letterhead:
    """Who mail comes from and where its links point: from the ``mail`` settings."""

    from_address: str
    base_url: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    list_id: str | None = None

    @property
    def domain(self) -> str:
        _, address = parseaddr(self.from_address)
        return address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    message_id: str
    message: bytes


class EmailRenderer:
    """Renders digests; templates are compiled once and CSS is inlined per message."""

    def __init__(self, env: jinja2.Environment, letterhead: Letterhead) -> None:
        self.letterhead = letterhead
        self._html = env.get_template("email/digest.html")
        self._text = env.get_template("email/digest.txt")
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        name, address = parseaddr(letterhead.from_address)
        self._from = mime.header_line("From", formataddr((name, address), charset="utf-8"))
        self._reply_to = (
            mime.header_line("Reply-To", letterhead.reply_to) if letterhead.reply_to else ""
        )

    def message_id(self, digest: Digest) -> str:
        """One per delivery, made from what the outbox tells deliveries apart by (subscriber,
        kind and ``Digest.key``): distinct messages never share one, and the id is stored
        with the message, so a retry sends the same."""
        key = hashlib.sha256(digest.key.encode()).hexdigest()[:16]
        return f"<{digest.kind}.{digest.subscriber.id}.{key}@{self.letterhead.domain}>"

    def links(self, digest: Digest) -> dict[str, str]:
        subscriber = digest.subscriber
        base = self.letterhead.base_url

        def url(purpose: str) -> str:
            return f"{base}/{purpose}/{tokens.for_subscriber(subscriber, purpose)}"

        unsubscribe = url("unsubscribe")
        _, mailbox = parseaddr(self.letterhead.unsubscribe_mailto or self.letterhead.from_address)
        token = tokens.make(subscriber.id, subscriber.token, "unsubscribe")
        return {
            "unsubscribe": unsubscribe,
            "unsubscribe_mailto": f"mailto:{mailbox}?subject={quote('unsubscribe ' + token)}",
            "manage": url("manage"),
            "feeds": f"{url('feeds')}/all.atom",
        }

    def votes(self, digest: Digest, section: Section) -> list[str]:
        """Each paper's feedback URL (``/up`` or ``/down`` is added), for the section's
        profile; empty when the section does not say which profile it is."""
        if not section.profile_id:
            return []
        base = f"{self.letterhead.base_url}/feedback"
        owner, profile_id = digest.subscriber, section.profile_id
        return [
            f"{base}/{tokens.for_feedback(owner, profile_id, item.paper.id)}"
            for item in section.items
        ]

    def render(self, digest: Digest, now: datetime) -> Rendered:
        links = self.links(digest)
        context: dict[str, Any] = {
            "digest": digest,
            "alert": digest.kind is DeliveryKind.ALERT,
            "sections": [
                {
                    "name": section.profile,
                    "more": section.more,
                    "papers": [view(item.paper, item.hits) for item in section.items],
                    "votes": self.votes(digest, section),
                }
                for section in digest.sections
            ],
            "notes": digest.notes,
            "healthy": digest.healthy,
            "links": links,
            "subject": digest.subject,
            "zone": digest.subscriber.timezone,
        }
        text = self._text.render(context)
        html = self._inliner.inline(self._html.render(context))
        message_id = self.message_id(digest)
        head = self.letterhead
        headers = [
            mime.header_line("Subject", digest.subject),
            self._from,
            mime.address_line("To", digest.subscriber.email),
            self._reply_to,
            mime.header_line("Date", format_datetime(now)),
            mime.header_line("Message-ID", message_id),
            mime.header_line("List-Id", f"paperboy <{head.list_id or 'digests.' + head.domain}>"),
            mime.address_list_line(
                "List-Unsubscribe",
                [f"<{links['unsubscribe']}>", f"<{links['unsubscribe_mailto']}>"],
            ),
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            "Auto-Submitted: auto-generated\r\n",
        ]
        boundary = f"==paperboy-{message_id.strip('<>').split('@')[0]}=="
        message = mime.alternative(headers, text, html, boundary)
        return Rendered(digest.subject, message_id, message)
