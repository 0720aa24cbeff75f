"""Routes: the live preview as an HTML fragment, which the pages' script puts into their
``#preview``:

- ``GET /preview?q=TEXT&likes=LINES``: what a query, papers liked (one arXiv id, DOI or title
  a line) or both would bring among the stored papers of the last 30 days, best first, the
  query's terms (or the terms the likes carried) marked; 422 with the query error (its message,
  and the query with a caret under the position) for a query that cannot be saved.
- ``GET /manage/{token}/preview/{profile id}?q=TEXT&likes=LINES``: the same for one of the
  manage page's profiles: its stored likes and refusals count as well, and each paper has 👍/👎.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from service import tokens
from service.app import App
from service.digest import Hit
from service.errors import QueryError
from service.model import Profile, Subscriber
from service.parse.library import reference
from service.pipeline.matching import PREVIEW_WINDOW
from service.render.papers import view
from service.web.site import NotFound

MAX_QUERY = 500  # characters: a profile query is a line, not a document
MAX_LIKES = 50  # papers named in the likes field of one preview
LIMIT = 20  # papers shown


@dataclass(frozen=True, slots=True)
class Shown:
    """A query error as the CLI prints it: the message, the query, a caret under the place."""

    reason: str
    position: int
    shown: str
    caret: str


def mount(web: FastAPI, app: App) -> None:
    """Add the routes to ``web`` (as plain routes: their template labels the metrics)."""
    pipeline = app.pipeline
    matching = pipeline.matching
    template = app.mailroom.env.get_template("web/preview.html")
    days = PREVIEW_WINDOW.days

    def answer(
        query: str, likes: str = "", voter: tuple[Subscriber, Profile] | None = None
    ) -> tuple[int, str]:
        named = [line.strip() for line in likes.splitlines() if line.strip()][:MAX_LIKES]
        liked: list[int] = []
        refused: list[int] = []
        missing: list[str] = []
        for text in named:
            paper_id = pipeline.likes.find(reference(text).keys)
            if paper_id is None:
                missing.append(text)
            else:
                liked.append(paper_id)
        if voter is not None:
            for like in pipeline.likes.of([voter[1].id]):
                if like.paper_id is not None:
                    (liked if like.vote == "up" else refused).append(like.paper_id)
        shown = {"query": query, "likes": bool(named) or bool(liked), "missing": missing}
        if not query.strip() and not liked:
            return 200, template.render(
                error=None, items=[], votes=[], more=False, days=days, **shown
            )
        try:
            if len(query) > MAX_QUERY:
                raise QueryError(
                    f"a query is at most {MAX_QUERY} characters", query=query, position=MAX_QUERY
                )
            since = pipeline.clock.now() - PREVIEW_WINDOW
            if liked:
                found = matching.preview_similar(
                    liked, refused, query if query.strip() else None, since=since, limit=LIMIT + 1
                )
            else:
                found = matching.preview(query, since=since, limit=LIMIT + 1)
        except QueryError as exc:
            _, line, caret = str(exc).split("\n", 2)
            error = Shown(exc.reason, exc.position, line.removeprefix("  "), caret[2:])
            return 422, template.render(
                error=error, items=[], votes=[], more=False, days=days, **shown
            )
        items = [
            view(paper, (Hit("Matched", match.score, match.reasons),)) for paper, match in found
        ]
        votes = []
        if voter is not None:
            owner, profile = voter
            votes = [
                f"/feedback/{tokens.for_feedback(owner, profile.id, paper.id)}"
                for paper, _ in found[:LIMIT]
            ]
        return 200, template.render(
            error=None,
            items=items[:LIMIT],
            votes=votes,
            more=len(items) > LIMIT,
            days=days,
            **shown,
        )

    def respond(status: int, body: str) -> Response:
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    async def preview(request: Request) -> Response:
        params = request.query_params
        status, body = await run_in_threadpool(answer, params.get("q", ""), params.get("likes", ""))
        return respond(status, body)

    def voter(token: str, profile_id: str) -> tuple[Subscriber, Profile]:
        owner = pipeline.membership.subscriber(token, "manage")
        if owner is None:
            raise NotFound
        mine = pipeline.subscriptions.profiles(owner.id)
        profile = next((p for p in mine if str(p.id) == profile_id), None)
        if profile is None:
            raise NotFound
        return owner, profile

    async def profile_preview(request: Request) -> Response:
        params, path = request.query_params, request.path_params
        found = await run_in_threadpool(voter, path["token"], path["profile"])
        status, body = await run_in_threadpool(
            answer, params.get("q", ""), params.get("likes", ""), found
        )
        return respond(status, body)

    web.router.routes.append(Route("/preview", preview, methods=["GET", "HEAD"]))
    web.router.routes.append(
        Route("/manage/{token}/preview/{profile}", profile_preview, methods=["GET", "HEAD"])
    )
