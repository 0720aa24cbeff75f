"""The ASGI application: ``create_app(app)`` mounts each part's router on one FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from service.app import App
from service.web import feeds, ops, pages, preview


def create_app(app: App) -> FastAPI:
    """The web application over a built ``App`` (the caller owns and closes it)."""
    web = FastAPI(title="paperboy", docs_url=None, redoc_url=None, openapi_url=None)
    web.state.app = app
    ops.mount(web, app)
    feeds.mount(web, app)
    preview.mount(web, app)
    web.include_router(pages.router(app))
    return web
