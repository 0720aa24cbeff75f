"""The one exception tree of paperboy.

Expected outcomes (not modified, nothing new, no match) are values, not exceptions. Everything
raised on purpose derives from ``PaperboyError`` and carries structured fields::

    PaperboyError
    ├── ConfigError            a setting or declared source is invalid
    ├── SourceError            one source failed; the run goes on with the others
    │   ├── FetchError         the bytes could not be had (network, HTTP status, file)
    │   │   └── SourceGone     HTTP 410: the source is disabled
    │   └── ParseError         the bytes are not what the source's kind expects
    ├── QueryError             a profile query is invalid (position and caret)
    ├── InvalidValue           a subscriber's or profile's field is invalid (email, zone, ...)
    ├── StoreError             the database is unusable or at the wrong revision
    └── DeliveryError          a message could not be handed over (transient or permanent)
        └── MailConfigError    no message can go: the mail server refuses the connection, the
                               TLS or the login that the settings ask for
"""

from __future__ import annotations

import re
import unicodedata

# The password of a URL's userinfo (RFC 3986 section 3.2.1): ``scheme://user:password@host``.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*):[^/?#@\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text) if "@" in text else text


class PaperboyError(Exception):
    """Base of every error paperboy raises on purpose."""


class ConfigError(PaperboyError):
    """A setting, a declared source or a profile file is invalid."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SourceError(PaperboyError):
    """One source failed; ``source`` names it (an id, a path or a URL)."""

    def __init__(self, message: str, *, source: str) -> None:
        # A source's URL may carry a password: no message shows it, none stores it.
        self.source = source = redact(source)
        self.reason = message = redact(message)
        super().__init__(f"{source}: {message}")


class FetchError(SourceError):
    """The snapshot could not be fetched. ``status`` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        source: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message, source=source)


class SourceGone(FetchError):
    """The server answered 410 Gone: the source is disabled until re-enabled."""


class ParseError(SourceError):
    """The snapshot is not in the expected format.

    ``line`` is 1-based (``None`` when the problem is the whole document), ``expected`` says
    what the parser wanted there and ``found`` shows what it saw, shortened.
    """

    def __init__(
        self,
        *,
        source: str,
        expected: str,
        found: str | None = None,
        line: int | None = None,
    ) -> None:
        self.line = line
        self.expected = expected
        self.found = found
        where = f"line {line}: " if line is not None else ""
        seen = f", found {_shorten(found)}" if found is not None else ""
        super().__init__(f"{where}expected {expected}{seen}", source=source)


class QueryError(PaperboyError):
    """A query is invalid. ``position`` is the 0-based offset of the problem in ``query``."""

    def __init__(self, message: str, *, query: str, position: int) -> None:
        self.query = query
        self.position = position
        self.reason = message
        shown, column = _excerpt(query, position)
        super().__init__(f"{message} at position {position}\n  {shown}\n  {' ' * column}^")


# A query shown under an error is cut to this many characters either side of the problem.
_CONTEXT = 60


def _excerpt(query: str, position: int) -> tuple[str, int]:
    """The query as shown on one terminal line (cut around ``position`` when long, control
    characters as spaces) and the column of ``position`` in it, counting wide characters
    (CJK, emoji) as two columns and combining marks as none."""
    start, end = max(0, position - _CONTEXT), min(len(query), position + _CONTEXT)
    before = ("…" if start else "") + query[start:position]
    shown = before + query[position:end] + ("…" if end < len(query) else "")
    shown = "".join(" " if unicodedata.category(c) == "Cc" else c for c in shown)
    return shown, _width(before)


def _width(text: str) -> int:
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


class InvalidValue(PaperboyError):
    """A field given by a user is invalid: ``field`` names it, ``value`` is what was given."""

    def __init__(self, message: str, *, field: str, value: object, where: str | None = None):
        self.field = field
        self.value = value
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{field} {value!r}: {message}")


class StoreError(PaperboyError):
    """The database is unusable: unreachable, or at a revision this version does not know."""


def _shorten(text: str, limit: int = 60) -> str:
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return repr(text)


class DeliveryError(PaperboyError):
    """A message was not delivered. ``transient`` failures (4xx replies, timeouts, dropped
    connections) are retried later; permanent ones (5xx replies) fail the delivery. ``code`` is
    the SMTP reply code when the server gave one, ``reply`` its text."""

    def __init__(
        self, message: str, *, transient: bool, code: int | None = None, reply: str | None = None
    ) -> None:
        self.transient = transient
        self.code = code
        self.reply = reply
        super().__init__(message)


class MailConfigError(DeliveryError):
    """The sender cannot work as configured: the connection is refused, the server lacks the
    STARTTLS or AUTH asked for, its certificate is invalid, or the login is refused. No message
    is at fault (they wait, and no attempt is counted) until the settings or the server change.
    """

    def __init__(self, message: str, *, code: int | None = None, reply: str | None = None):
        super().__init__(message, transient=True, code=code, reply=reply)
