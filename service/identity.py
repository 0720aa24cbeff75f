"""Identity: the keys under which a paper, or a subscriber's mailbox, is found again.

A paper has one or more keys: ``arxiv:<id>`` (version-less) when a source names its arXiv id,
and ``title:<normalised title>`` always. A paper first seen by title gains its arXiv key when a
source later gives both, so the two never become two papers.

A mailbox's key is its address as mail providers compare it: ``You@Example.org`` and
``you@example.org`` are one subscriber.

A delivery's key, on the way back, is its VERP envelope sender ``<local>+<delivery id>@<domain>``
(the bounce address of that one message).
"""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")
# For ASCII titles, the same folding as one byte translation: letters and digits lower-cased,
# every other byte a space (then runs of spaces become one).
_ASCII_FOLD = bytes(
    (c | 0x20 if chr(c).isalpha() else c) if c < 128 and chr(c).isalnum() else 32
    for c in range(256)
)
_ARXIV_NEW = re.compile(r"(\d{4}\.\d{4,5})(?:v(\d+))?")
_ARXIV_OLD = re.compile(r"([a-z][a-z.-]*/\d{7})(?:v(\d+))?", re.IGNORECASE)


def normalise_title(title: str) -> str:
    """Fold case, accents, punctuation, spacing: ``"KV-Cache:  Études"`` → ``"kv cache etudes"``."""
    if title.isascii():
        return " ".join(title.encode().translate(_ASCII_FOLD).decode().split())
    title = unicodedata.normalize("NFKD", title)
    title = "".join(c for c in title if not unicodedata.combining(c))
    return _NOT_WORD.sub(" ", title.casefold()).strip()


def title_key(title: str) -> str | None:
    normalised = normalise_title(title)
    return f"title:{normalised}" if normalised else None


def arxiv_key(arxiv_id: str) -> str:
    return f"arxiv:{arxiv_id.lower()}"


def mailbox_key(email: str) -> str:
    """The address with its local part and domain lower-cased (providers treat both
    case-insensitively in practice, though RFC 5321 lets the local part differ)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local.lower()}@{domain.lower()}"


def verp_address(local_part: str, domain: str, delivery_id: int) -> str:
    """The envelope sender that makes a bounce name its delivery: ``bounces+42@example.org``."""
    return f"{local_part}+{delivery_id}@{domain}"


def verp_delivery(address: str, local_part: str | None = None) -> int | None:
    """The delivery id a VERP address names (any local part when ``local_part`` is None), or
    None when ``address`` is not one."""
    local, _, _ = address.strip().strip("<>").rpartition("@")
    base, plus, tail = local.partition("+")
    if not plus or not tail.isdigit() or len(tail) > 18:
        return None
    if local_part is not None and base.lower() != local_part.lower():
        return None
    return int(tail)


def split_arxiv_id(text: str) -> tuple[str, int | None] | None:
    """Find an arXiv id in ``text`` (a bare id, an abs/pdf URL, an OAI guid): (id, version)."""
    for pattern in (_ARXIV_NEW, _ARXIV_OLD):
        found = pattern.search(text)
        if found:
            version = found.group(2)
            return found.group(1), int(version) if version else None
    return None
