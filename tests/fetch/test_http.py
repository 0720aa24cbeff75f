from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from service import __version__
from service.config import FetchSettings
from service.errors import FetchError, SourceGone
from service.fetch.http import HostLimiter, HttpFetcher, body_hash, parse_retry_after
from service.model import NotModified, Snapshot, SourceState

from .server import LocalServer, Route, shared_fixture

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
LAST_MODIFIED = "Mon, 02 Mar 2026 06:00:00 GMT"
STATE = SourceState("arxiv")


class FakeTime:
    """A monotonic clock that only moves when asked to sleep (or by hand)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def fetcher(clock: FakeTime, **settings: object) -> HttpFetcher:
    values: dict[str, object] = {"timeout": 5.0, "host_interval": timedelta(0), **settings}
    return HttpFetcher(
        FetchSettings.model_validate(values), sleep=clock.sleep, monotonic=clock.monotonic
    )


def fetch_error(client: HttpFetcher, url: str, state: SourceState = STATE) -> FetchError:
    with pytest.raises(FetchError) as caught:
        client.fetch("arxiv", url, state, NOW)
    return caught.value


def test_a_body_becomes_a_snapshot_with_its_validators(
    server: LocalServer, clock: FakeTime
) -> None:
    url = server.serve("/rss", FEED, etag='"v1"', last_modified=LAST_MODIFIED)
    with fetcher(clock) as client:
        got = client.fetch("arxiv", url, STATE, NOW)
    assert got == Snapshot(
        source_id="arxiv",
        origin=url,
        body=FEED,
        fetched_at=NOW,
        captured_at=NOW,
        content_type="application/rss+xml; charset=utf-8",
        etag='"v1"',
        last_modified=LAST_MODIFIED,
    )


def test_etag_is_sent_back_and_304_is_not_modified(server: LocalServer, clock: FakeTime) -> None:
    url = server.serve("/rss", FEED, etag='"v1"')
    with fetcher(clock) as client:
        first = client.fetch("arxiv", url, STATE, NOW)
        assert isinstance(first, Snapshot)
        state = SourceState("arxiv", etag=first.etag, body_hash=body_hash(first.body))
        second = client.fetch("arxiv", url, state, NOW)
    assert second == NotModified("arxiv", url, etag='"v1"')
    assert "if-none-match" not in server.seen[0].headers
    assert server.seen[1].headers["if-none-match"] == '"v1"'


def test_last_modified_alone_gives_not_modified(server: LocalServer, clock: FakeTime) -> None:
    url = server.serve("/rss", FEED, last_modified=LAST_MODIFIED)
    state = SourceState("arxiv", last_modified=LAST_MODIFIED)
    with fetcher(clock) as client:
        got = client.fetch("arxiv", url, state, NOW)
    assert got == NotModified("arxiv", url, last_modified=LAST_MODIFIED)
    assert server.seen[0].headers["if-modified-since"] == LAST_MODIFIED


def test_a_newer_resource_is_fetched_despite_if_modified_since(
    server: LocalServer, clock: FakeTime
) -> None:
    url = server.serve("/rss", FEED, last_modified=LAST_MODIFIED)
    state = SourceState("arxiv", last_modified="Sun, 01 Mar 2026 06:00:00 GMT")
    with fetcher(clock) as client:
        got = client.fetch("arxiv", url, state, NOW)
    assert isinstance(got, Snapshot)
    assert got.last_modified == LAST_MODIFIED


def test_a_304_updates_the_validators_it_carries(server: LocalServer, clock: FakeTime) -> None:
    url = server.route("/rss", Route(status=304, headers={"ETag": '"v2"'}))
    state = SourceState("arxiv", etag='"v1"', last_modified=LAST_MODIFIED)
    with fetcher(clock) as client:
        got = client.fetch("arxiv", url, state, NOW)
    assert got == NotModified("arxiv", url, etag='"v2"', last_modified=LAST_MODIFIED)


def test_an_unchanged_body_without_validators_is_not_modified(
    server: LocalServer, clock: FakeTime
) -> None:
    url = server.serve("/rss", FEED)
    with fetcher(clock) as client:
        unchanged = client.fetch("arxiv", url, SourceState("arxiv", body_hash=body_hash(FEED)), NOW)
        changed = client.fetch("arxiv", url, SourceState("arxiv", body_hash=body_hash(b"x")), NOW)
    assert unchanged == NotModified("arxiv", url)
    assert isinstance(changed, Snapshot)
    assert body_hash(changed.body) == body_hash(FEED)


def test_410_is_source_gone(server: LocalServer, clock: FakeTime) -> None:
    url = server.status("/rss", 410)
    with fetcher(clock) as client, pytest.raises(SourceGone) as caught:
        client.fetch("arxiv", url, STATE, NOW)
    assert caught.value.status == 410
    assert caught.value.source == url
    assert "410 Gone" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds", "shown"),
    [
        (429, "120", 120.0, "(retry after 2m)"),
        (429, "2468460", 2468460.0, "(retry after 28d 13h)"),
        (503, "Mon, 02 Mar 2026 12:05:00 GMT", 300.0, "(retry after 5m)"),
        (503, "Mon, 02 Mar 2026 11:00:00 GMT", 0.0, "(retry after 0s)"),
        (429, "soon", None, "Too Many Requests"),
        (429, None, None, "Too Many Requests"),
    ],
)
def test_429_and_503_carry_retry_after(
    server: LocalServer,
    clock: FakeTime,
    status: int,
    retry_after: str | None,
    seconds: float | None,
    shown: str,
) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    url = server.status("/rss", status, headers=headers)
    with fetcher(clock) as client:
        error = fetch_error(client, url)
    assert (error.status, error.retry_after) == (status, seconds)
    assert str(error).endswith(shown)
    assert not isinstance(error, SourceGone)


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "Internal Server Error"), (404, "Not Found"), (403, "Forbidden")]
)
def test_other_error_statuses_name_status_and_reason(
    server: LocalServer, clock: FakeTime, status: int, reason: str
) -> None:
    url = server.status("/rss", status, headers={"Retry-After": "60"})
    with fetcher(clock) as client:
        error = fetch_error(client, url)
    assert error.status == status
    assert error.retry_after is None
    assert f"HTTP {status} {reason}" in str(error)


def test_a_slow_server_times_out(server: LocalServer, clock: FakeTime) -> None:
    url = server.route("/rss", Route(body=FEED, delay=5.0))
    with fetcher(clock, timeout=0.3) as client:
        error = fetch_error(client, url)
    assert error.status is None
    assert "timed out after 0.3s" in str(error)


def test_a_dropped_connection_is_a_fetch_error(server: LocalServer, clock: FakeTime) -> None:
    url = server.route("/rss", Route(drop=True))
    with fetcher(clock) as client:
        error = fetch_error(client, url)
    assert error.status is None
    assert "connection dropped" in str(error)


def test_a_refused_connection_is_a_fetch_error(clock: FakeTime) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with fetcher(clock) as client:
        error = fetch_error(client, f"http://127.0.0.1:{port}/rss")
    assert error.status is None
    assert "could not connect" in str(error)


def test_tls_failures_are_named() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("handshake failed", request=request) from exc

    settings = FetchSettings(host_interval=timedelta(0))
    with HttpFetcher(settings, transport=httpx.MockTransport(refuse)) as client:
        error = fetch_error(client, "https://127.0.0.1/rss")
    assert "TLS error" in str(error)


@pytest.mark.parametrize(
    "route",
    [
        Route(body=b"x" * 5000),
        Route(body=b"x" * 5000, chunked=True),
        Route(body=b"\0" * 200_000, gzip=True),
    ],
    ids=["content-length", "chunked", "gzip-inflated"],
)
def test_a_body_over_max_bytes_is_refused(
    server: LocalServer, clock: FakeTime, route: Route
) -> None:
    url = server.route("/rss", route)
    with fetcher(clock, max_bytes=4096) as client:
        error = fetch_error(client, url)
    assert "fetch.max_bytes" in str(error)
    assert "4096" in str(error)


def test_a_body_at_max_bytes_is_fine(server: LocalServer, clock: FakeTime) -> None:
    url = server.route("/rss", Route(body=b"x" * 4096, chunked=True))
    with fetcher(clock, max_bytes=4096) as client:
        got = client.fetch("arxiv", url, STATE, NOW)
    assert isinstance(got, Snapshot)
    assert len(got.body) == 4096


def test_redirects_are_followed(server: LocalServer, clock: FakeTime) -> None:
    server.serve("/new", FEED, etag='"v1"')
    url = server.redirect("/old", "/new", status=301)
    with fetcher(clock) as client:
        got = client.fetch("arxiv", url, STATE, NOW)
    assert isinstance(got, Snapshot)
    assert (got.body, got.origin, got.etag) == (FEED, url, '"v1"')
    assert [seen.path for seen in server.seen] == ["/old", "/new"]


def test_more_than_five_redirects_fail(server: LocalServer, clock: FakeTime) -> None:
    for hop in range(6):
        server.redirect(f"/r{hop}", f"/r{hop + 1}")
    server.serve("/r6", FEED)
    with fetcher(clock) as client:
        error = fetch_error(client, server.url("/r0"))
    assert "more than 5 redirects" in str(error)
    assert server.hits("/r6") == 0


def test_the_user_agent_names_paperboy(server: LocalServer, clock: FakeTime) -> None:
    url = server.serve("/rss", FEED)
    with fetcher(clock) as client:
        client.fetch("arxiv", url, STATE, NOW)
    with fetcher(clock, user_agent="digest-bot/2 (ops@example.org)") as client:
        client.fetch("arxiv", url, STATE, NOW)
    assert [seen.headers["user-agent"] for seen in server.seen] == [
        f"paperboy/{__version__} (+https://github.com/paperboy-digest/paperboy)",
        "digest-bot/2 (ops@example.org)",
    ]
    assert "gzip" in server.seen[0].headers["accept-encoding"]


def test_requests_to_one_host_are_spaced(server: LocalServer, clock: FakeTime) -> None:
    url = server.serve("/rss", FEED)
    with fetcher(clock, host_interval=timedelta(seconds=0.2)) as client:
        client.fetch("arxiv", url, STATE, NOW)
        clock.now += 0.05
        client.fetch("arxiv", url, STATE, NOW)
        assert clock.sleeps == [pytest.approx(0.15)]
        clock.now += 10
        client.fetch("arxiv", url, STATE, NOW)
        assert len(clock.sleeps) == 1
        client.fetch("arxiv", url, STATE, NOW, min_interval=timedelta(seconds=3))
    assert clock.sleeps == [pytest.approx(0.15), pytest.approx(3.0)]
    assert server.hits("/rss") == 4


def test_the_limiter_keeps_hosts_apart_and_queues_callers() -> None:
    clock = FakeTime()
    limiter = HostLimiter(sleep=lambda _: None, monotonic=clock.monotonic)
    interval = timedelta(seconds=3)
    waits = [limiter.wait(host, interval) for host in ("export.arxiv.org", "a.org", "a.org")]
    waits.append(limiter.wait("export.arxiv.org", interval))
    # The clock does not move while sleeping here, as with threads waiting side by side.
    waits.append(limiter.wait("export.arxiv.org", interval))
    assert waits == [0, 0, 3, 3, 6]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        (" 90 ", 90.0),
        ("Mon, 02 Mar 2026 12:01:30 GMT", 90.0),
        ("Monday, 02-Mar-26 12:01:30 GMT", 90.0),
        ("Mon, 02 Mar 2026 11:59:00 GMT", 0.0),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("tomorrow", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.shared
def test_a_real_arxiv_feed_arrives_byte_for_byte(server: LocalServer, clock: FakeTime) -> None:
    body = shared_fixture("arxiv/rss/cs.AI_2026-04-27_trimmed.xml").read_bytes()
    url = server.serve("/rss/cs.AI", body, etag='"abc"')
    with fetcher(clock) as client:
        got = client.fetch("arxiv-cs-ai", url, STATE, NOW)
    assert isinstance(got, Snapshot)
    assert got.body == body
