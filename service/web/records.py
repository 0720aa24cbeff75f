"""Routes: a subscriber's own data from the manage page: download it, or erase it.

``/manage/{token}/data.json`` is what ``paperboy subscriber export`` prints (a GET changes
nothing); ``/manage/{token}/erase`` asks first, and its POST (with the CSRF token) does what
``paperboy subscriber remove --erase`` does. Afterwards every link of theirs (manage, feeds,
unsubscribe) is the plain 404 of a wrong token.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service.model import Subscriber
from service.pipeline.records import to_json
from service.web.site import NotFound, Site, read_form

READ = ["GET", "HEAD"]  # every page answers HEAD as its GET would, without the body


def add_routes(routes: APIRouter, site: Site) -> None:
    """Add the routes to ``routes`` (before ``/manage/{token}/{action}``, which they precede)."""
    records = Records(site)
    add = routes.add_api_route
    add("/manage/{token}/data.json", records.download, methods=READ, response_model=None)
    add("/manage/{token}/erase", records.erase_page, methods=READ, response_model=None)
    add("/manage/{token}/erase", records.erase, methods=["POST"], response_model=None)


class Records:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.records = site.app.pipeline.records

    def download(self, token: str) -> Response:
        owner = self._owner(token)
        body = to_json(self.records.export(owner.email)) + "\n"
        return Response(
            body.encode(),
            media_type="application/json",
            headers={
                "content-disposition": 'attachment; filename="paperboy-my-data.json"',
                "cache-control": "no-store",
            },
        )

    def erase_page(self, request: Request, token: str) -> Response:
        owner = self._owner(token)
        return self.site.page(request, "erase.html", owner=owner, token=token)

    async def erase(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._erase, request, token, form)

    def _erase(self, request: Request, token: str, fields: dict[str, str]) -> Response:
        owner = self._owner(token)
        self.site.guard(request, fields)
        self.records.erase(owner.email)
        return self.site.page(request, "erased.html", email=owner.email)

    def _owner(self, token: str) -> Subscriber:
        owner = self.site.membership.subscriber(token, "manage")
        if owner is None:
            raise NotFound
        return owner
