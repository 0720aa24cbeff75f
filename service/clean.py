"""What a source's text and links must be to enter the store: ``paper`` applies it to every
field of a parsed paper, at the one place parsed papers pass (``diff.identify``).

Text loses control characters: they break XML (a feed that lists the paper), and ESC or BEL
reach a terminal and the plain-text mail part raw. Tab and newline stay in the fields where
lines mean something (abstract, summary) and become spaces elsewhere; the other white-space
controls (CR, VT, FF, the separators, NEL) become spaces; the rest (NUL, ESC, BEL, DEL, C1) and
what no text can hold (lone surrogates, U+FFFE, U+FFFF) are dropped.

Links are kept only when they are absolute http(s) URLs, read as browsers read them (spaces and
C0 controls around them ignored, tabs and newlines inside removed, the scheme in any case):
``javascript:``, ``data:`` and the like never leave paperboy. Renderers check again with
``link``, for papers stored before this check existed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from service.model import Organisation, PaperIn

_SPACE = str.maketrans(dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x1f\x85", " "))
_LINE = str.maketrans(dict.fromkeys("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85", " "))
_DROP = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
# What browsers strip around a URL (C0 controls and space) and take out of it (tab, LF, CR).
_AROUND = "".join(map(chr, range(0x21)))
_INSIDE = str.maketrans(dict.fromkeys("\t\n\r"))
_SCHEMES = frozenset({"http", "https"})
_PRINTABLE = bytes(range(0x20, 0x7F))
_PRINTABLE_LINES = _PRINTABLE + b"\t\n"


def text(value: str, *, lines: bool = False) -> str:
    """``value`` without control characters; tab and newline kept when ``lines``."""
    if _clean(value, lines):
        return value
    return _DROP.sub("", value.translate(_SPACE if lines else _LINE))


def _clean(value: str, lines: bool = False) -> bool:
    """Whether ``value`` holds no character ``text`` would change: quickly, in C (ASCII text,
    the usual case, as bytes: a few times faster than ``str.isprintable``)."""
    if value.isascii():
        return not value.encode().translate(None, _PRINTABLE_LINES if lines else _PRINTABLE)
    if value.isprintable():
        return True
    return lines and value.replace("\n", " ").replace("\t", " ").isprintable()


def link(value: str) -> str | None:
    """The URL when it is an absolute http(s) one (as a browser reads it), else None."""
    url = value.strip(_AROUND).translate(_INSIDE)
    if not url.isprintable():  # another control character or a lone surrogate: not a URL
        return None
    scheme, colon, _ = url.partition(":")
    if not colon or scheme.lower() not in _SCHEMES:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # an invalid port or IPv6 host
        return None
    if not parts.hostname:
        return None
    return url.replace(" ", "%20")


def links(values: Mapping[str, str]) -> dict[str, str]:
    """The http(s) links of ``values``, by role."""
    return {role: url for role, raw in values.items() if (url := link(raw)) is not None}


def paper(given: PaperIn) -> PaperIn:
    """``given`` with every text field cleaned and only http(s) links (itself when clean)."""
    org = given.organisation
    if (
        _clean(given.title)
        and _clean(given.abstract, lines=True)
        and (not given.authors or all(map(_clean, given.authors)))
        and (org is None or (_clean(org.handle) and _clean(org.name)))
        and _clean(given.summary, lines=True)
        and (not given.keywords or all(map(_clean, given.keywords)))
        and (not given.categories or all(map(_clean, given.categories)))
        and (given.arxiv_id is None or _clean(given.arxiv_id))
        and (given.doi is None or _clean(given.doi))
        and (given.announce is None or _clean(given.announce))
        and (not given.links or all(link(url) == url for url in given.links.values()))
    ):
        return given
    return replace(
        given,
        title=text(given.title),
        abstract=text(given.abstract, lines=True),
        authors=tuple(filter(None, (text(name) for name in given.authors))),
        organisation=Organisation(text(org.handle), text(org.name)) if org else None,
        summary=text(given.summary, lines=True),
        keywords=tuple(filter(None, (text(word) for word in given.keywords))),
        categories=tuple(filter(None, (text(word) for word in given.categories))),
        arxiv_id=_optional(given.arxiv_id),
        doi=_optional(given.doi),
        announce=_optional(given.announce),
        links=links(given.links),
    )


def _optional(value: str | None) -> str | None:
    return None if value is None else text(value) or None
