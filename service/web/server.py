"""The ASGI application: ``create_app(app)`` mounts each part's router on one FastAPI app,
behind the security headers and the request body cap."""

from __future__ import annotations

import mimetypes

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app import App
from service.web import feedback, feeds, ops, pages, preview
from service.web.limits import RateLimited
from service.web.site import Forbidden, NotFound, Site

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # URLs carry secret tokens: never tell another site where a visitor came from.
    "referrer-policy": "no-referrer",
}

STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".png": "image/png"}


def create_app(app: App) -> FastAPI:
    """The web application over a built ``App`` (the caller owns and closes it)."""
    web = FastAPI(title="paperboy", docs_url=None, redoc_url=None, openapi_url=None)
    web.state.app = app
    site = Site(app)
    web.state.site = site
    ops.mount(web, app)
    feeds.mount(web, app)
    preview.mount(web, app)
    web.include_router(pages.router(site))
    web.include_router(feedback.router(site))

    @web.api_route("/static/{name}", methods=["GET", "HEAD"], response_model=None)
    def static(name: str) -> Response:
        path = site.static_file(name)
        if path is None or path.suffix not in STATIC_TYPES:
            raise NotFound
        media = STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        return Response(
            path.read_bytes(),
            media_type=media,
            headers={"cache-control": "public, max-age=86400"},
        )

    def error_page(request: Request, template: str, status: int, **extra: str) -> Response:
        response = site.page(request, template, status=status, code=status)
        response.headers.update(extra)
        return response

    @web.exception_handler(NotFound)
    def not_found(request: Request, exc: NotFound) -> Response:
        return error_page(request, "not_found.html", 404)

    @web.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return error_page(request, "not_found.html", 404)
        response = error_page(request, "error.html", exc.status_code)
        response.headers.update(exc.headers or {})
        return response

    @web.exception_handler(Forbidden)
    def forbidden(request: Request, exc: Forbidden) -> Response:
        return error_page(request, "forbidden.html", 403)

    @web.exception_handler(RateLimited)
    def rate_limited(request: Request, exc: RateLimited) -> Response:
        retry = {"retry-after": str(exc.retry_after)}
        return error_page(request, "rate_limited.html", 429, **retry)

    web.add_middleware(BodyCap, limit=app.settings.web.max_body)
    web.add_middleware(SecurityHeaders)
    return web


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (a route's own value wins)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyCap:
    """Answers 413 to a request whose body is over ``limit`` bytes: at once when its
    Content-Length says so, else as soon as the bytes read pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await too_large(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > self.limit:
                await too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(
        "The request is too large.\n",
        status_code=413,
        media_type="text/plain",
        headers={"connection": "close"},
    )
    await response(scope, receive, send)
