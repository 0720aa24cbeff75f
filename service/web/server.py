"""The ASGI application: ``create_app(app)`` mounts each part's router on one FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from service.app import App
from service.web import feeds, ops, pages


def create_app(app: App) -> FastAPI:
    """The web application over a built ``App`` (the caller owns and closes it)."""
    web = FastAPI(title="paperboy", docs_url=None, redoc_url=None, openapi_url=None)
    web.state.app = app
    web.include_router(ops.router(app))
    web.include_router(feeds.router(app))
    web.include_router(pages.router(app))
    return web
