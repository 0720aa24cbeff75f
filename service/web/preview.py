"""Route: ``GET /preview?q=TEXT``, the live preview of a query as an HTML fragment.

200 with the matching stored papers of the last 30 days, best first, the query's terms marked;
422 with the query error (its message, and the query with a caret under the position) for a
query that cannot be saved. The pages' script puts the fragment into their ``#preview``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from service.app import App
from service.digest import Hit
from service.errors import QueryError
from service.pipeline.matching import PREVIEW_WINDOW
from service.render.papers import view

MAX_QUERY = 500  # characters: a profile query is a line, not a document
LIMIT = 20  # papers shown


@dataclass(frozen=True, slots=True)
class Shown:
    """A query error as the CLI prints it: the message, the query, a caret under the place."""

    reason: str
    position: int
    shown: str
    caret: str


def mount(web: FastAPI, app: App) -> None:
    """Add the route to ``web`` (as a plain route: its template labels the metrics)."""
    matching = app.pipeline.matching
    template = app.mailroom.env.get_template("web/preview.html")
    days = PREVIEW_WINDOW.days

    def answer(query: str) -> tuple[int, str]:
        if not query.strip():
            return 200, template.render(query="", error=None, items=[], more=False, days=days)
        try:
            if len(query) > MAX_QUERY:
                raise QueryError(
                    f"a query is at most {MAX_QUERY} characters", query=query, position=MAX_QUERY
                )
            since = app.pipeline.clock.now() - PREVIEW_WINDOW
            found = matching.preview(query, since=since, limit=LIMIT + 1)
        except QueryError as exc:
            _, shown, caret = str(exc).split("\n", 2)
            error = Shown(exc.reason, exc.position, shown.removeprefix("  "), caret[2:])
            return 422, template.render(query=query, error=error, items=[], more=False, days=days)
        items = [
            view(paper, (Hit("Matched", match.score, match.reasons),)) for paper, match in found
        ]
        return 200, template.render(
            query=query, error=None, items=items[:LIMIT], more=len(items) > LIMIT, days=days
        )

    async def preview(request: Request) -> Response:
        status, body = await run_in_threadpool(answer, request.query_params.get("q", ""))
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    web.router.routes.append(Route("/preview", preview, methods=["GET", "HEAD"]))
