"""A real HTTP server on 127.0.0.1 for fetch tests, with routes each test programs.

Used like this::

    with LocalServer() as server:
        url = server.serve("/feed.xml", b"<rss/>", etag='"v1"')
        ...
        assert server.seen[-1].headers["if-none-match"] == '"v1"'
"""

from __future__ import annotations

import gzip
import os
import sys
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import pytest

SHARED_FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def shared_fixture(relative: str) -> Path:
    """A file under ../shared/fixtures; skip when that is absent, except in CI (then fail)."""
    path = SHARED_FIXTURES / relative
    if not path.is_file():
        reason = f"{path} is absent: the shared fixtures (../shared/fixtures) are not checked out"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass
class Route:
    """How the server answers one path.

    ``etag``/``last_modified`` are sent and honoured (304 on a matching If-None-Match or an
    If-Modified-Since not older). ``delay`` waits before answering, ``drop`` closes the
    connection without answering, ``chunked`` sends the body without a Content-Length and
    ``gzip`` compresses it when the client accepts gzip.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0
    drop: bool = False
    chunked: bool = False
    gzip: bool = False


@dataclass(frozen=True)
class Seen:
    """One request the server received; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 and a free port, in a daemon thread."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def url(self, path: str = "/") -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def route(self, path: str, route: Route) -> str:
        """Answer ``path`` as ``route`` says; return its URL."""
        self.routes[path] = route
        return self.url(path)

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str = "application/rss+xml; charset=utf-8",
    ) -> str:
        return self.route(
            path,
            Route(
                body=body,
                etag=etag,
                last_modified=last_modified,
                headers={"Content-Type": content_type},
            ),
        )

    def status(
        self, path: str, status: int, *, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> str:
        return self.route(path, Route(status=status, headers=headers or {}, body=body))

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        return self.status(path, status, headers={"Location": to})

    def hits(self, path: str) -> int:
        """How many requests reached ``path`` (query strings ignored)."""
        with self._lock:
            return sum(1 for seen in self.seen if urlsplit(seen.path).path == path)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer

    def handle_error(self, request: object, client_address: object) -> None:
        # The client hanging up first (timeouts, size limits) is part of the tests, not a fault.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        owner._record(Seen("GET", self.path, headers))
        # A route may name a query string too; else the path alone decides.
        route = owner.routes.get(self.path) or owner.routes.get(urlsplit(self.path).path)
        if route is None:
            self._answer(404, {"Content-Type": "text/plain"}, b"no such route")
            return
        if route.drop:
            self.close_connection = True
            return
        if route.delay:
            owner._stopping.wait(route.delay)
        validators = {}
        if route.etag is not None:
            validators["ETag"] = route.etag
        if route.last_modified is not None:
            validators["Last-Modified"] = route.last_modified
        if route.status == 200 and self._not_modified(route):
            self._answer(304, validators, b"")
            return
        body = route.body
        extra = dict(validators)
        if route.gzip and "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body)
            extra["Content-Encoding"] = "gzip"
        self._answer(route.status, {**extra, **route.headers}, body, chunked=route.chunked)

    def _not_modified(self, route: Route) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
            return route.etag is not None and ("*" in tags or route.etag.removeprefix("W/") in tags)
        if_modified_since = self.headers.get("If-Modified-Since")
        if if_modified_since is None or route.last_modified is None:
            return False
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return parsedate_to_datetime(route.last_modified) <= since

    def _answer(
        self, status: int, headers: dict[str, str], body: bytes, *, chunked: bool = False
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status == 304:
            self.end_headers()
            return
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 16384):
                piece = body[start : start + 16384]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass
