"""A digest or an alert as an email: multipart/alternative (plain text and HTML with inlined
CSS), with the headers of a well-behaved list (RFC 2369 List-Unsubscribe, RFC 8058 one-click,
RFC 2919 List-Id, RFC 3834 Auto-Submitted).

A paper looks the same in every digest that shows it for the same reasons, so its block
(``email/paper.txt`` and ``email/paper.html``, CSS inlined, both quoted-printable) is made once
and kept (``BLOCKS`` of them, the oldest dropped first); a digest renders only its frame
(``email/digest.txt``, ``email/digest.html``: subject, sections, notes, footer), where each
paper stands as a marker, and the blocks are put in the markers' places as encoded bytes.
A block's CSS is inlined on its own, with the rules of the frame's ``<style>``: a rule for
what is inside a paper must not depend on what is around it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any
from urllib.parse import quote

import css_inline
import jinja2

from service import tokens
from service.digest import Digest, Item, Section
from service.model import DeliveryKind
from service.render import mime
from service.render.papers import view

BLOCKS = 4096
"""Papers' blocks kept rendered (a day of 1,000 papers, each shown for a few reasons, needs a
few thousand; each takes a few KB)."""


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


class _Marker:
    """Where a paper's block goes in a digest's frame: in the text, a line no field can hold;
    in HTML, a comment (what the CSS inliner keeps as it is)."""

    __slots__ = ("_html", "_text")

    def __init__(self, nonce: str, n: int) -> None:
        self._text = f"\x00{nonce}:{n}\x00"
        self._html = f"<!--paperboy {nonce} {n}-->"

    def __str__(self) -> str:
        return self._text

    def __html__(self) -> str:
        return self._html


class EmailRenderer:
    """Renders digests; templates are compiled once, a paper's block is rendered, inlined and
    encoded once for all the digests that show it alike (see the module's docstring)."""

    def __init__(self, env: jinja2.Environment, letterhead: Letterhead) -> None:
        self.letterhead = letterhead
        self._domain = letterhead.domain
        self._html = env.get_template("email/digest.html")
        self._text = env.get_template("email/digest.txt")
        self._paper_html = env.get_template("email/paper.html")
        self._paper_text = env.get_template("email/paper.txt")
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        name, address = parseaddr(letterhead.from_address)
        self._from = mime.header_line("From", formataddr((name, address), charset="utf-8"))
        self._reply_to = (
            mime.header_line("Reply-To", letterhead.reply_to) if letterhead.reply_to else ""
        )
        self._list_id = mime.header_line(
            "List-Id", f"paperboy <{letterhead.list_id or 'digests.' + letterhead.domain}>"
        )
        _, self._unsubscribe_mailbox = parseaddr(
            letterhead.unsubscribe_mailto or letterhead.from_address
        )
        nonce = secrets.token_hex(8)
        self._markers = [_Marker(nonce, n) for n in range(64)]
        self._nonce = nonce
        self._text_marker = re.compile(f"\x00{nonce}:(\\d+)\x00\n?")
        self._html_marker = re.compile(f"<!--paperboy {nonce} (\\d+)-->\n?")
        self._split = f"<!--paperboy {nonce} split-->"  # between blocks inlined together
        # The markers as quoted-printable shows them when each stands on a line of its own.
        self._encoded_marker = {
            "text": re.compile(f"^=00{nonce}:(\\d+)=00\r\n".encode(), re.MULTILINE),
            "html": re.compile(f"^<!--paperboy {nonce} (\\d+)-->\r\n".encode(), re.MULTILINE),
        }
        self._css = ""  # the frame's style, as the kept blocks were inlined with
        self._blocks: dict[Hashable, tuple[bytes, bytes]] = {}

    def message_id(self, digest: Digest) -> str:
        """One per delivery, made from what the outbox tells deliveries apart by (subscriber,
        kind and ``Digest.key``): distinct messages never share one, and the id is stored
        with the message, so a retry sends the same."""
        key = hashlib.sha256(digest.key.encode()).hexdigest()[:16]
        return f"<{digest.kind}.{digest.subscriber.id}.{key}@{self._domain}>"

    def links(self, digest: Digest) -> dict[str, str]:
        subscriber = digest.subscriber
        base = self.letterhead.base_url
        unsubscribe = tokens.for_subscriber(subscriber, "unsubscribe")
        feeds = tokens.for_subscriber(subscriber, "feeds")
        subject = quote("unsubscribe " + unsubscribe)
        return {
            "unsubscribe": f"{base}/unsubscribe/{unsubscribe}",
            "unsubscribe_mailto": f"mailto:{self._unsubscribe_mailbox}?subject={subject}",
            "manage": f"{base}/manage/{tokens.for_subscriber(subscriber, 'manage')}",
            "feeds": f"{base}/feeds/{feeds}/all.atom",
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
        subject = digest.subject
        items = digest.items
        markers = self._marker_list(len(items))
        numbered = iter(markers)
        context: dict[str, Any] = {
            "digest": digest,
            "alert": digest.kind is DeliveryKind.ALERT,
            "sections": [
                {
                    "name": section.profile,
                    "more": section.more,
                    "papers": [next(numbered) for _ in section.items],
                    "votes": self.votes(digest, section),
                }
                for section in digest.sections
            ],
            "notes": digest.notes,
            "healthy": digest.healthy,
            "links": links,
            "subject": subject,
            "zone": digest.subscriber.timezone,
        }
        frame = self._html.render(context)
        self._use_style(_style(frame))
        blocks = self._blocks_of(items)
        text = self._text.render(context)
        html = self._inliner.inline(frame)
        text_parts = self._filled(text, [b[0] for b in blocks], self._text_marker, "text")
        html_parts = self._filled(html, [b[1] for b in blocks], self._html_marker, "html")
        message_id = self.message_id(digest)
        headers = [
            mime.header_line("Subject", subject),
            self._from,
            mime.address_line("To", digest.subscriber.email),
            self._reply_to,
            mime.header_line("Date", format_datetime(now)),
            mime.header_line("Message-ID", message_id),
            self._list_id,
            mime.address_list_line(
                "List-Unsubscribe",
                [f"<{links['unsubscribe']}>", f"<{links['unsubscribe_mailto']}>"],
            ),
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            "Auto-Submitted: auto-generated\r\n",
        ]
        boundary = f"==paperboy-{message_id.strip('<>').split('@')[0]}=="
        message = mime.alternative_encoded(headers, text_parts, html_parts, boundary)
        return Rendered(subject, message_id, message)

    def _filled(
        self, frame: str, blocks: list[bytes], marker: re.Pattern[str], part: str
    ) -> list[bytes]:
        """The frame encoded with each marker (and the line end after it) replaced by its
        block; the last piece ends a line. Encoded whole when every marker stands on a line of
        its own (as in paperboy's templates), else piece by piece."""
        if not frame.endswith("\n"):
            frame += "\n"
        encoded = self._encoded_marker[part].split(mime.quoted_printable(frame))
        if len(encoded) == 2 * len(blocks) + 1:
            out = [encoded[0]]
            for at in range(1, len(encoded), 2):
                out += (blocks[int(encoded[at])], encoded[at + 1])
            return out
        pieces = marker.split(frame)
        out = [mime.quoted_printable(pieces[0])]
        for at in range(1, len(pieces), 2):
            out += (blocks[int(pieces[at])], mime.quoted_printable(pieces[at + 1]))
        return out

    def _marker_list(self, count: int) -> list[_Marker]:
        while len(self._markers) < count:
            self._markers.append(_Marker(self._nonce, len(self._markers)))
        return self._markers[:count]

    def _use_style(self, css: str) -> None:
        """Blocks are inlined with the frame's CSS: kept blocks go when it changes."""
        if css != self._css:
            self._css = css
            self._blocks.clear()

    def _blocks_of(self, items: Sequence[Item]) -> list[tuple[bytes, bytes]]:
        """The papers' blocks, text and HTML, encoded: the kept ones where the paper and the
        reasons to show it are the same; the others made now, their HTML inlined in one call
        (the CSS is read once a digest, not once a paper)."""
        keys = [_key(item) for item in items]
        kept = self._blocks
        missing = {key: item for key, item in zip(keys, items, strict=True) if key not in kept}
        if missing:
            shown = [{"paper": view(item.paper, item.hits)} for item in missing.values()]
            split = self._split
            htmls = self._inliner.inline_fragment(
                split.join(self._paper_html.render(one) for one in shown), self._css
            ).split(split)
            if len(htmls) != len(shown):  # a template that makes the marker: one at a time
                htmls = [
                    self._inliner.inline_fragment(self._paper_html.render(one), self._css)
                    for one in shown
                ]
            made = {
                key: (
                    mime.quoted_printable(self._paper_text.render(one)),
                    mime.quoted_printable(html),
                )
                for key, one, html in zip(missing, shown, htmls, strict=True)
            }
        else:
            made = {}
        found = [made[key] if key in made else kept[key] for key in keys]
        for key, block in made.items():
            if len(kept) >= BLOCKS:  # the oldest goes (a day's papers come together)
                del kept[next(iter(kept))]
            kept[key] = block
        return found


def _key(item: Item) -> Hashable:
    """What a paper's block shows: the paper's fields and the reasons to show it."""
    paper = item.paper
    return (
        paper.id,
        paper.title,
        paper.abstract,
        paper.authors,
        paper.author_count,
        paper.organisation,
        paper.published,
        paper.upvotes,
        paper.arxiv_id,
        tuple(paper.links.items()),
        tuple((hit.profile, hit.reasons) for hit in item.hits),
    )


def _style(frame: str) -> str:
    """The CSS of the ``<style>`` elements of an HTML page."""
    lower = frame.lower()
    found, at = [], 0
    while (start := lower.find("<style", at)) >= 0:
        opened = lower.find(">", start)
        end = lower.find("</style", opened)
        if opened < 0 or end < 0:
            break
        found.append(frame[opened + 1 : end])
        at = end
    return "".join(found)
