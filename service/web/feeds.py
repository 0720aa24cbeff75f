"""Routes: feeds (placeholder router; filled in by the web work)."""

from __future__ import annotations

from fastapi import APIRouter

from service.app import App


def router(app: App) -> APIRouter:
    return APIRouter()
