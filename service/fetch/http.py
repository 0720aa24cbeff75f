"""Polite HTTP(S) fetching: conditional GET, size limit, Retry-After and a per-host limiter.

What a fetch returns or raises::

    Snapshot       2xx with a body that differs from the last one (sha256, see ``body_hash``)
    NotModified    304, or 2xx whose body hashes to ``state.body_hash``
    SourceGone     410: the caller disables the source
    FetchError     any other 4xx/5xx (``status`` set; ``retry_after`` on 429 and 503),
                   or no usable response: timeout, refused or dropped connection, TLS,
                   too many redirects, a body over ``fetch.max_bytes`` (``status`` None)
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import httpx

from service import __version__
from service.config import FetchSettings
from service.errors import FetchError, SourceGone, redact
from service.model import NotModified, Snapshot, SourceState

USER_AGENT = f"paperboy/{__version__} (+https://github.com/paperboy-digest/paperboy)"
MAX_REDIRECTS = 5


def body_hash(body: bytes) -> str:
    """The hash kept as ``SourceState.body_hash``: the hex sha256 of the (decoded) body."""
    return hashlib.sha256(body).hexdigest()


class HostLimiter:
    """Spaces requests to one host at least ``interval`` apart, across threads.

    Each call reserves the host's next free slot under a lock and then sleeps outside it, so
    concurrent callers queue up instead of all waking at once.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, host: str, interval: timedelta) -> float:
        """Block until a request to ``host`` is allowed; return the seconds waited."""
        with self._lock:
            now = self._monotonic()
            last = self._last.get(host)
            slot = now if last is None else max(now, last + interval.total_seconds())
            self._last[host] = slot
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


class HttpFetcher:
    """Fetches source URLs with one shared ``httpx.Client``; close it, or use ``with``."""

    def __init__(
        self,
        settings: FetchSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._limiter = HostLimiter(sleep=sleep, monotonic=monotonic)
        self._client = httpx.Client(
            headers={"User-Agent": settings.user_agent or USER_AGENT},
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(
        self,
        source_id: str,
        url: str,
        state: SourceState,
        now: datetime,
        min_interval: timedelta | None = None,
    ) -> Snapshot | NotModified:
        """GET ``url`` conditionally on ``state``; see the module docstring for the outcomes.

        ``min_interval`` overrides ``fetch.host_interval`` for this request (a source's own
        ``host_interval`` option). Redirect hops are not spaced by the limiter.
        """
        shown = redact(url)  # what summaries and records name: no password
        headers: dict[str, str] = {}
        if state.etag:
            headers["If-None-Match"] = state.etag
        if state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            target = httpx.URL(url)
            auth: httpx.BasicAuth | None = None
            if target.userinfo:
                # Sent as a header, not in the URL, which httpx would log.
                auth = httpx.BasicAuth(target.username, target.password)
                target = target.copy_with(userinfo=b"")
            interval = self.settings.host_interval if min_interval is None else min_interval
            self._limiter.wait(target.host, interval)
            with self._client.stream("GET", target, headers=headers, auth=auth) as response:
                if response.status_code == 304:
                    return NotModified(
                        source_id,
                        shown,
                        etag=response.headers.get("ETag") or state.etag,
                        last_modified=response.headers.get("Last-Modified") or state.last_modified,
                    )
                if not response.is_success:
                    raise _status_error(response, url, now)
                body = self._read(response, url)
        except httpx.InvalidURL as exc:
            raise FetchError(f"invalid URL: {exc}", source=url) from exc
        except httpx.RequestError as exc:
            raise FetchError(self._describe(exc), source=url) from exc

        etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if state.body_hash is not None and body_hash(body) == state.body_hash:
            return NotModified(source_id, shown, etag=etag, last_modified=last_modified)
        return Snapshot(
            source_id=source_id,
            origin=shown,
            body=body,
            fetched_at=now,
            captured_at=now,
            content_type=response.headers.get("Content-Type"),
            etag=etag,
            last_modified=last_modified,
        )

    def _read(self, response: httpx.Response, url: str) -> bytes:
        limit = self.settings.max_bytes
        too_big = (
            f"response is larger than fetch.max_bytes ({limit} bytes); raise that setting "
            "if the source is really this large"
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(too_big, source=url)
        chunks: list[bytes] = []
        size = 0
        # Counting decoded bytes also bounds a small gzip body that inflates into a huge one.
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(too_big, source=url)
            chunks.append(chunk)
        return b"".join(chunks)

    def _describe(self, exc: httpx.RequestError) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out after {self.settings.timeout:g}s"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return f"connection dropped ({exc})"
        if isinstance(exc, httpx.ConnectError):
            if _caused_by_ssl(exc):
                return f"TLS error ({exc})"
            return f"could not connect ({exc})"
        if isinstance(exc, httpx.TooManyRedirects):
            return f"more than {MAX_REDIRECTS} redirects"
        if isinstance(exc, httpx.DecodingError):
            return f"could not decode the response body ({exc})"
        if isinstance(exc, httpx.UnsupportedProtocol):
            return f"unsupported URL scheme ({exc})"
        return f"{type(exc).__name__} ({exc})"


def _status_error(response: httpx.Response, url: str, now: datetime) -> FetchError:
    status = response.status_code
    message = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status == 410:
        return SourceGone(f"{message}: the source is gone", source=url, status=status)
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        if retry_after is not None:
            message += f" (retry after {_span(retry_after)})"
    return FetchError(message, source=url, status=status, retry_after=retry_after)


def _span(seconds: float) -> str:
    """A wait as people read it: ``45s``, ``2h 5m``, ``28d 13h``."""
    whole = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2]) or "0s"


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _caused_by_ssl(exc: BaseException) -> bool:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        if isinstance(link, ssl.SSLError):
            return True
        chain.append(link)
        link = link.__cause__ or link.__context__
    return False
