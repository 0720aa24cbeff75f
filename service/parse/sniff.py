"""Content sniffing: which source kind a file is, judged from its first bytes.

- ``[`` or ``{`` first (after a BOM and whitespace): Hugging Face API JSON, ``hf-daily``;
- an HTML page with a ``data-target="DailyPapers"`` element: the papers page, ``hf-daily``;
- an XML document whose root is ``rss``, ``feed`` or ``rdf:RDF`` (UTF-8 or UTF-16, after any
  XML declaration, comments or doctype): ``feed``;
- text whose first non-blank lines are the Hugging Face listing header: ``listing``.

Anything else, including HTML that is not the papers page, raises ``ParseError``. Only the
first ``HEAD`` bytes are decoded; the papers page marker is looked for in the first
``PAGE_WINDOW`` bytes, since it follows the page header (15 KB into the 2024 page).
"""

from __future__ import annotations

import codecs
import re

from service.errors import ParseError
from service.model import SourceKind

HEAD = 8 * 1024
PAGE_WINDOW = 512 * 1024
PAGE_MARKER = b'data-target="DailyPapers"'
LISTING_HEADER = ("new", "Get trending papers in your email inbox!")
FEED_ROOTS = frozenset({"rss", "feed", "rdf"})
EXPECTED = "a listing capture, Hugging Face JSON or HTML, or an RSS/Atom feed"

# Declarations, comments, doctype and processing instructions that may precede the root.
_PROLOGUE = re.compile(
    r"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*", re.DOTALL | re.IGNORECASE
)
_ROOT = re.compile(r"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")
_UTF16 = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def detect(body: bytes, *, origin: str) -> SourceKind:
    """Return the kind of a snapshot's content; raise ``ParseError`` when it is none of ours."""
    text = _head_text(body[:HEAD])
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        return SourceKind.HF_DAILY
    if stripped.startswith("<"):
        root = _root_name(stripped)
        if root in FEED_ROOTS:
            return SourceKind.FEED
        if root == "html" and PAGE_MARKER in body[:PAGE_WINDOW]:
            return SourceKind.HF_DAILY
    elif _starts_with_listing_header(stripped):
        return SourceKind.LISTING
    raise _unknown(body[:HEAD], text, origin)


def _unknown(head: bytes, text: str, origin: str) -> ParseError:
    """The error for content of no kind we read: where it starts, and what it looks like."""
    if not text.strip():
        return ParseError(source=origin, line=1, expected=EXPECTED, found="an empty file")
    utf16 = head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"<\x00", b"\x00<"))
    bad = None if utf16 else _not_utf8_at(head)
    if bad is not None:
        line = head.count(b"\n", 0, bad) + 1
        found = "binary data" if b"\x00" in head else f"byte 0x{head[bad]:02x} (not UTF-8)"
        return ParseError(source=origin, line=line, expected=EXPECTED, found=found)
    line = 1 + text.count("\n", 0, len(text) - len(text.lstrip()))
    first = text.lstrip().split("\n", 1)[0].strip()
    return ParseError(source=origin, line=line, expected=EXPECTED, found=first)


def _not_utf8_at(head: bytes) -> int | None:
    """Where ``head`` stops being text: a zero byte or bytes that are not UTF-8 (a sequence
    cut at the end of ``head`` does not count); None if it is text throughout."""
    zero = head.find(b"\x00")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data":
            return exc.start if zero < 0 else min(zero, exc.start)
    return zero if zero >= 0 else None


def _head_text(head: bytes) -> str:
    for bom, encoding in _UTF16:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, "replace")
    # UTF-16 without a BOM still shows the "<" next to a zero byte.
    if head.startswith(b"<\x00"):
        return head.decode("utf-16-le", "replace")
    if head.startswith(b"\x00<"):
        return head.decode("utf-16-be", "replace")
    return head.removeprefix(codecs.BOM_UTF8).decode("utf-8", "replace")


def _root_name(text: str) -> str | None:
    """Return the lower-cased local name of the first element, or ``None`` if none is seen."""
    prologue = _PROLOGUE.match(text)
    match = _ROOT.match(text, prologue.end() if prologue else 0)
    return match.group(2).lower() if match else None


def _starts_with_listing_header(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return tuple(lines[: len(LISTING_HEADER)]) == LISTING_HEADER
