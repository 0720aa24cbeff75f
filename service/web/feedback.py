"""Routes: ``/feedback/{token}/{vote}``, the 👍/👎 links under every paper of a digest, an
alert and the manage page's preview.

The token names a subscriber, one of their profiles and a paper (``tokens.for_feedback``). A
GET shows the paper and one button (mail scanners fetch links: a GET changes nothing); the
POST records the vote through ``Tastes.feedback``, as ``paperboy feedback`` does, and the page
says what happened and offers to take it back (``clear``). A wrong or revoked token, a removed
profile or paper: the one plain 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from service import tokens
from service.latex import to_text
from service.model import Paper, Profile, Subscriber
from service.pipeline.tastes import FEEDBACK
from service.render.papers import paper_url
from service.web.site import NotFound, Site, read_form

ASKED = ("up", "down")  # what a link asks; the page's undo posts "clear"


@dataclass(frozen=True, slots=True)
class Target:
    """What a feedback token names."""

    owner: Subscriber
    profile: Profile
    paper: Paper

    @property
    def reference(self) -> str:
        """The paper as ``paperboy feedback`` takes it: arXiv id, DOI, else its title."""
        paper = self.paper
        if paper.arxiv_id:
            return paper.arxiv_id
        if paper.doi:
            return f"doi:{paper.doi}"
        return paper.title


def router(site: Site) -> APIRouter:
    votes = Votes(site)
    routes = APIRouter()
    add = routes.add_api_route
    add("/feedback/{token}/{vote}", votes.ask, methods=["GET", "HEAD"], response_model=None)
    add("/feedback/{token}/{vote}", votes.record, methods=["POST"], response_model=None)
    return routes


class Votes:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.pipeline = site.app.pipeline

    def ask(self, request: Request, token: str, vote: str) -> Response:
        if vote not in ASKED:
            raise NotFound
        target = self._target(token)
        return self._page(request, token, target, asked=vote)

    async def record(self, request: Request, token: str, vote: str) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._record, request, token, vote, form)

    def _record(self, request: Request, token: str, vote: str, fields: dict[str, str]) -> Response:
        if vote not in FEEDBACK:
            raise NotFound
        target = self._target(token)
        self.site.guard(request, fields)
        self.pipeline.tastes.feedback(
            target.owner.email, target.reference, vote, target.profile.spec.name
        )
        return self._page(request, token, target, done=vote)

    def _page(
        self, request: Request, token: str, target: Target, *, asked: str = "", done: str = ""
    ) -> Response:
        return self.site.page(
            request,
            "feedback.html",
            token=token,
            asked=asked,
            done=done,
            current=self._current(target),
            profile=target.profile.spec.name,
            title=to_text(target.paper.title),
            url=paper_url(target.paper),
        )

    def _current(self, target: Target) -> str:
        """The profile's vote on the paper now: "up", "down" or ""."""
        for like in self.pipeline.likes.of([target.profile.id]):
            if like.paper_id == target.paper.id:
                return like.vote
        return ""

    def _target(self, token: str) -> Target:
        claimed = tokens.feedback_parts(token)
        if claimed is None:
            raise NotFound
        subscriber_id, profile_id, paper_id = claimed
        owner = self.pipeline.membership.members.by_id(subscriber_id)
        if owner is None or not tokens.verify_feedback(token, owner.token):
            raise NotFound
        profile = next(
            (p for p in self.pipeline.subscriptions.profiles(owner.id) if p.id == profile_id),
            None,
        )
        found = self.pipeline.store.papers(ids=[paper_id])
        if profile is None or not found:
            raise NotFound
        return Target(owner, profile, found[0])
