"""What the landing page shows of this paperboy: its sources and an example entry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from service.app import App
from service.render.papers import PaperView, view

_KINDS = {
    "listing": "Hugging Face papers listing",
    "hf-daily": "Hugging Face Daily Papers",
    "feed": "RSS/Atom feed",
}


@dataclass(frozen=True, slots=True)
class SourceView:
    name: str
    kind: str
    where: str  # a public site's address, or words for files the operator drops in
    last_success: datetime | None


def sources(app: App) -> list[SourceView]:
    """The enabled sources, with where they read from (never a URL's password or query)."""
    health = {state.source_id: state for state, _ in app.pipeline.mailroom.outbox.source_health()}
    shown = []
    for source in app.settings.sources:
        if not source.enabled:
            continue
        where = "files this paperboy's operator adds"
        if source.is_http:
            parts = urlsplit(source.location)
            where = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
        state = health.get(source.id)
        shown.append(
            SourceView(
                name=source.id,
                kind=_KINDS.get(source.kind.value if source.kind else "", "Listings and feeds"),
                where=where,
                last_success=state.last_success_at if state else None,
            )
        )
    return shown


def example(app: App, now: datetime) -> PaperView | None:
    """The most upvoted paper of the last 30 days, as a digest shows it (None: no papers)."""
    recent = app.store.papers(since=now - timedelta(days=30), limit=500)
    recent = recent or app.store.papers(limit=500)  # a quiet month: the latest ones
    if not recent:
        return None
    best = max(recent, key=lambda paper: (paper.upvotes, paper.id))
    return view(best, ())
