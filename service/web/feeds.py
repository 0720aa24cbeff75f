"""Routes: a subscriber's RSS 2.0 and Atom feeds at ``/feeds/{token}/{slug}.{rss|atom}``.

GET and HEAD, with an entity tag and Last-Modified from two small queries (see
``Mailroom.feed_state``), so that a feed reader's conditional GET is answered 304 without
rendering. A feed's validators are trusted for ``FRESH_FOR`` before the database is asked
again, and the last feeds rendered are kept by entity tag: a busy feed costs neither a query
nor a rendering per request. A wrong token or an unknown slug is a plain 404.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.app import App
from service.mailroom import FeedState, Mailroom
from service.render.feeds import FORMATS, MEDIA_TYPES, Format

# Feed URLs carry a secret: no shared cache may keep them; readers may reuse them a while.
CACHE_CONTROL = "private, max-age=300"
# Seconds a feed's validators are used before the database is asked again: a feed may show a
# new match this much later.
FRESH_FOR = 1.0
KNOWN = 10_000  # feeds whose validators are kept
RENDERED = 128  # feeds kept rendered


class _Kept:
    """Validators by URL for ``FRESH_FOR``, and the last feeds rendered by entity tag."""

    def __init__(self, mailroom: Mailroom) -> None:
        self.mailroom = mailroom
        self.states: dict[tuple[str, str], tuple[float, FeedState]] = {}
        self.bodies: OrderedDict[tuple[str, Format], bytes] = OrderedDict()

    async def state(self, token: str, slug: str) -> FeedState | None:
        now = time.monotonic()
        known = self.states.get((token, slug))
        if known is not None and now - known[0] < FRESH_FOR:
            return known[1]
        state = await run_in_threadpool(self.mailroom.feed_state, token, slug)
        if state is None:
            self.states.pop((token, slug), None)
            return None
        if len(self.states) >= KNOWN:
            self.states.clear()
        self.states[(token, slug)] = (now, state)
        return state

    async def body(self, state: FeedState, fmt: Format) -> bytes:
        key = (state.etag, fmt)
        body = self.bodies.get(key)
        if body is None:
            body = await run_in_threadpool(self.mailroom.render_feed, state, fmt)
            self.bodies[key] = body
            if len(self.bodies) > RENDERED:
                self.bodies.popitem(last=False)
        else:
            self.bodies.move_to_end(key)
        return body


def mount(web: FastAPI, app: App) -> None:
    """Add the route to ``web`` (as a plain route: its template labels the metrics)."""
    kept = _Kept(app.mailroom)

    async def feed(request: Request) -> Response:
        token: str = request.path_params["token"]
        slug, _, extension = request.path_params["name"].rpartition(".")
        if extension not in FORMATS or not slug:
            return _not_found()
        fmt: Format = "rss" if extension == "rss" else "atom"
        state = await kept.state(token, slug)
        if state is None:
            return _not_found()
        headers = {
            "ETag": f'"{state.etag}-{fmt}"',
            "Last-Modified": format_datetime(state.modified, usegmt=True),
            "Cache-Control": CACHE_CONTROL,
        }
        if _fresh(request, headers["ETag"], state):
            return Response(status_code=304, headers=headers)
        body = await kept.body(state, fmt)
        headers["Content-Type"] = f"{MEDIA_TYPES[fmt]}; charset=utf-8"
        return Response(body, headers=headers)

    web.router.routes.append(Route("/feeds/{token}/{name}", feed, methods=["GET", "HEAD"]))


def _fresh(request: Request, etag: str, state: FeedState) -> bool:
    """Whether the client's copy is current (RFC 9110 section 13.2.2: If-None-Match, when
    sent, decides alone; entity tags compare weakly)."""
    wanted = request.headers.get("if-none-match")
    if wanted is not None:
        tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as RFC 9110 asks
    if moment.tzinfo is None:
        return False
    return state.modified <= moment


def _not_found() -> Response:
    return PlainTextResponse("not found", status_code=404)
