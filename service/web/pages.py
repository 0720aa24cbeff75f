"""Routes: the pages people use: subscribe (``/``), confirm, manage, unsubscribe.

Each route checks its input and calls the pipeline (``Membership``, ``Roster``); the pages say
what happened. A GET never changes anything: links in mail are fetched by scanners.
"""

from __future__ import annotations

import time
import zoneinfo
from collections.abc import Callable
from functools import cache
from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import tokens
from service.errors import InvalidValue, PaperboyError, QueryError
from service.model import WEEKDAY_NAMES, WEEKDAYS, Cadence, Profile, Subscriber, SubscriberStatus
from service.render.feeds import ALL
from service.web import forms, likes, records, showcase
from service.web.forms import Form
from service.web.proof import Verdict
from service.web.records import READ
from service.web.site import NotFound, Site, read_form

HONEYPOT = "website"  # hidden from people by the stylesheet; bots fill it in
NO_SCRIPT_SHARE = 5  # a client that did no proof of work gets 1/5 of the subscribe limit

DECLARED = "This paperboy's operator keeps your settings in a file: ask them to change it."

DONE = {
    "schedule": "Your delivery settings are saved.",
    "paused": "Paused: nothing is sent until you resume.",
    "resumed": "Resumed: your next digest covers what arrives from now on.",
    "saved": "The profile is saved.",
    "removed": "The profile is removed.",
    "unliked": "The paper is taken off the list.",
    "confirmed": "You are subscribed. This page is yours: bookmark it to change your profiles.",
    "resubscribed": "You are subscribed again.",
}


def router(site: Site) -> APIRouter:
    pages = Pages(site)
    routes = APIRouter()
    add = routes.add_api_route
    add("/", pages.landing, methods=READ, response_model=None)
    add("/subscribe", pages.subscribe, methods=["POST"], response_model=None)
    add("/manage-link", pages.manage_link, methods=["POST"], response_model=None)
    add("/confirm/{token}", pages.confirm_page, methods=READ, response_model=None)
    add("/confirm/{token}", pages.confirm, methods=["POST"], response_model=None)
    add("/manage/{token}", pages.manage, methods=READ, response_model=None)
    records.add_routes(routes, site)
    add("/manage/{token}/{action}", pages.manage_action, methods=["POST"], response_model=None)
    add("/unsubscribe/{token}", pages.unsubscribe_page, methods=READ, response_model=None)
    add("/unsubscribe/{token}", pages.unsubscribe, methods=["POST"], response_model=None)
    add("/unsubscribe/{token}/undo", pages.undo, methods=["POST"], response_model=None)
    return routes


@cache
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def schedule_fields(owner: Subscriber) -> dict[str, str]:
    """The schedule form's fields for a subscriber's schedule."""
    schedule = owner.schedule
    at = schedule.at.strftime("%H:%M") if schedule.at else forms.DEFAULT_TIME
    day = WEEKDAYS[schedule.weekday] if schedule.weekday is not None else "mon"
    return {"timezone": owner.timezone, "cadence": schedule.cadence.value, "time": at, "day": day}


def profile_fields(profile: Profile) -> dict[str, str]:
    spec = profile.spec
    threshold = spec.alert_threshold
    return {
        "original": spec.name,
        "name": spec.name,
        "query": spec.query,
        "min_upvotes": str(spec.min_upvotes),
        "max_items": str(spec.max_items),
        "alert_threshold": "" if threshold is None else f"{threshold:g}",
        "send_when_empty": "on" if spec.send_when_empty else "",
    }


class Pages:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.app = site.app
        self.web = site.settings.web

    # -- the landing page and subscribing -------------------------------------------------------

    def landing(self, request: Request) -> Response:
        return self._landing(request, Form({"cadence": "daily", "time": forms.DEFAULT_TIME}))

    def _landing(self, request: Request, form: Form, status: int = 200) -> Response:
        now = self.app.pipeline.clock.now()
        return self.site.page(
            request,
            "landing.html",
            status=status,
            form=form,
            challenge=self.site.proofs.issue(time.time()),
            zones=time_zones(),
            weekdays=list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)),
            sources=showcase.sources(self.app),
            example=showcase.example(self.app, now),
            honeypot=HONEYPOT,
        )

    async def subscribe(self, request: Request) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._subscribe, request, form)

    def _subscribe(self, request: Request, fields: dict[str, str]) -> Response:
        self.site.guard(request, fields)
        client = self.site.client(request)
        form = Form(fields)
        if form.get(HONEYPOT):
            self.site.limit(f"subscribe:{client}", self.web.subscribes_per_hour, 3600)
            return self._check_mail(request, form.get("email").strip())
        email = forms.read_email(form)
        timezone = forms.read_timezone(form)
        schedule = forms.read_schedule(form)
        profile = None
        if form.get("name").strip() or form.get("query").strip():
            profile = forms.read_profile(form)
        if not form.ok:
            return self._landing(request, form, status=422)
        verdict = self.site.proofs.check(
            form.get("pow_challenge"), form.get("pow_nonce"), time.time()
        )
        if verdict is Verdict.INVALID:
            form.errors["pow"] = "The robot check expired or failed: please send the form again."
            return self._landing(request, form, status=422)
        if verdict is Verdict.MISSING:
            limit = max(1, self.web.subscribes_per_hour // NO_SCRIPT_SHARE)
            self.site.limit(f"subscribe-without-proof:{client}", limit, 3600)
        self.site.limit(f"subscribe:{client}", self.web.subscribes_per_hour, 3600)
        self.site.limit(f"address:{email}", self.web.subscribes_per_hour, 3600)
        try:
            self.site.membership.subscribe(email, timezone, schedule, profile)
        except (InvalidValue, QueryError) as exc:
            form.take(exc)
            return self._landing(request, form, status=422)
        return self._check_mail(request, email)

    def _check_mail(self, request: Request, email: str) -> Response:
        """The answer to every subscribe and manage-link request, whatever the address's
        state (nothing about it is revealed)."""
        return self.site.page(request, "check_mail.html", email=email)

    async def manage_link(self, request: Request) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._manage_link, request, form)

    def _manage_link(self, request: Request, fields: dict[str, str]) -> Response:
        self.site.guard(request, fields)
        form = Form(fields)
        email = forms.read_email(form)
        if not form.ok:
            form.errors["link_email"] = form.errors.pop("email")
            form.values["link_email"] = form.values.pop("email", "")
            return self._landing(request, form, status=422)
        self.site.limit(f"address:{email}", self.web.subscribes_per_hour, 3600)
        self.site.membership.send_manage_link(email)
        return self._check_mail(request, email)

    # -- confirming -----------------------------------------------------------------------------

    def confirm_page(self, request: Request, token: str) -> Response:
        owner = self._owner(token, "confirm")
        return self.site.page(request, "confirm.html", owner=owner, token=token)

    async def confirm(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._confirm, request, token, form)

    def _confirm(self, request: Request, token: str, fields: dict[str, str]) -> Response:
        owner = self._owner(token, "confirm")
        self.site.guard(request, fields)
        owner = self.site.membership.confirm(owner.id)
        return self._to_manage(owner, "confirmed")

    # -- managing -------------------------------------------------------------------------------

    def manage(self, request: Request, token: str, done: str = "") -> Response:
        owner = self._owner(token, "manage")
        return self._manage_page(request, owner, token, notice=DONE.get(done))

    def _manage_page(
        self,
        request: Request,
        owner: Subscriber,
        token: str,
        *,
        notice: str | None = None,
        schedule: Form | None = None,
        editing: str | None = None,
        profile: Form | None = None,
        status: int = 200,
        liking: Form | None = None,
    ) -> Response:
        profiles = self.app.pipeline.subscriptions.profiles(owner.id)
        edits = {p.spec.name: Form(profile_fields(p)) for p in profiles}
        new_profile = Form({"max_items": "20", "min_upvotes": "0"})
        if profile is not None and editing is not None:
            if editing in edits:
                edits[editing] = profile
            else:
                new_profile = profile
        return self.site.page(
            request,
            "manage.html",
            status=status,
            owner=owner,
            token=token,
            notice=notice,
            schedule=schedule or Form(schedule_fields(owner)),
            edits=edits,
            editing=editing,
            new_profile=new_profile,
            feeds=self._feeds(owner),
            zones=time_zones(),
            weekdays=list(zip(WEEKDAYS, WEEKDAY_NAMES, strict=True)),
            statuses=SubscriberStatus,
            cadences=Cadence,
            unsubscribe_token=tokens.for_subscriber(owner, "unsubscribe"),
            shelves=likes.shelves(self.app.pipeline, profiles),
            profile_ids={p.spec.name: p.id for p in profiles},
            liking=liking or Form(),
            empty_form=Form(),
            upload_kb=self.web.max_body // 1024,
        )

    async def manage_action(self, request: Request, token: str, action: str) -> Response:
        form = await likes.read_form(request)  # the site's reader, and a library file
        return await run_in_threadpool(self._manage_action, request, token, action, form)

    def _manage_action(
        self, request: Request, token: str, action: str, fields: dict[str, str]
    ) -> Response:
        owner = self._owner(token, "manage")
        handlers = {
            "schedule": self._save_schedule,
            "pause": self._pause,
            "resume": self._resume,
            "profile": self._save_profile,
            "remove": self._remove_profile,
            "likes": self._add_likes,
            "unlike": self._unlike,
        }
        if action not in handlers:
            raise NotFound
        self.site.guard(request, fields)
        return handlers[action](request, owner, token, Form(fields))

    def _save_schedule(
        self, request: Request, owner: Subscriber, token: str, form: Form
    ) -> Response:
        timezone = forms.read_timezone(form)
        schedule = forms.read_schedule(form)
        if form.ok:
            try:
                self.site.membership.update(owner.id, timezone, schedule)
            except InvalidValue as exc:
                form.take(exc)
            except PaperboyError:
                if not owner.declared:
                    raise
                form.errors["timezone"] = DECLARED
        if not form.ok:
            return self._manage_page(request, owner, token, schedule=form, status=422)
        return self._to_manage(owner, "schedule", token)

    def _pause(self, request: Request, owner: Subscriber, token: str, form: Form) -> Response:
        return self._change(request, owner, token, self.site.membership.pause, "paused")

    def _resume(self, request: Request, owner: Subscriber, token: str, form: Form) -> Response:
        if owner.status is SubscriberStatus.UNSUBSCRIBED:
            change, done = self.site.membership.resubscribe, "resubscribed"
        else:
            change, done = self.site.membership.resume, "resumed"
        return self._change(request, owner, token, change, done)

    def _change(
        self,
        request: Request,
        owner: Subscriber,
        token: str,
        change: Callable[[int], Subscriber],
        done: str,
    ) -> Response:
        """A status change; one that no longer fits (another tab changed the status
        meanwhile) is told on the page, with nothing changed."""
        try:
            change(owner.id)
        except InvalidValue as exc:
            if exc.field != "status":
                raise
            notice = f"Nothing changed: {forms.reason(exc)}"
            return self._manage_page(request, owner, token, notice=notice, status=409)
        return self._to_manage(owner, done, token)

    def _save_profile(
        self, request: Request, owner: Subscriber, token: str, form: Form
    ) -> Response:
        original = form.get("original")
        mine = self.app.pipeline.subscriptions.profiles(owner.id)
        # A profile may rank by liked papers alone: then its query may be empty.
        liked = likes.given(form) or bool(likes.shelves(self.app.pipeline, mine).get(original))
        spec = forms.read_profile(form, query_required=not liked)
        named = likes.references(form)
        names = {p.spec.name for p in mine}
        if form.ok and spec.name != original and spec.name in names:
            form.errors["name"] = "You have a profile with this name already."
        if form.ok:
            try:
                self.app.pipeline.roster.save_profile(owner.email, spec)
                if original and original != spec.name:
                    self._move_likes(owner, original, spec.name)
                    self.app.pipeline.roster.remove_profile(owner.email, original)
                if named:
                    added = self.app.pipeline.tastes.like(owner.email, spec.name, named, "web")
                    waiting = [like for like in added if like.paper_id is None]
                    if waiting:
                        return self._manage_page(
                            request, owner, token, notice=likes.report(added), editing=spec.name
                        )
            except (InvalidValue, QueryError) as exc:
                form.take(exc)
            except PaperboyError:
                if not owner.declared:
                    raise
                form.errors["name"] = DECLARED
        if not form.ok:
            editing = original if original in names else ""
            return self._manage_page(
                request, owner, token, editing=editing, profile=form, status=422
            )
        return self._to_manage(owner, "saved", token)

    def _remove_profile(
        self, request: Request, owner: Subscriber, token: str, form: Form
    ) -> Response:
        try:
            self.app.pipeline.roster.remove_profile(owner.email, form.get("original"))
        except PaperboyError:
            if not owner.declared:
                raise
        return self._to_manage(owner, "removed", token)

    # -- liked papers ---------------------------------------------------------------------------

    def _add_likes(self, request: Request, owner: Subscriber, token: str, form: Form) -> Response:
        """Papers a profile likes, named by hand or in a library file; those not stored yet
        are kept (they join when they arrive) and the page names them."""
        name = form.get("original")
        if name not in {p.spec.name for p in self.app.pipeline.subscriptions.profiles(owner.id)}:
            raise NotFound
        named = likes.references(form)
        if form.ok and not named:
            form.errors[likes.LIKES] = "Name a paper a line, or choose a library file."
        if not form.ok:
            return self._manage_page(request, owner, token, editing=name, liking=form, status=422)
        added = self.app.pipeline.tastes.like(owner.email, name, named, "web")
        return self._manage_page(request, owner, token, notice=likes.report(added), editing=name)

    def _unlike(self, request: Request, owner: Subscriber, token: str, form: Form) -> Response:
        try:
            self.app.pipeline.tastes.forget(owner.email, form.get("original"), form.get("ref"))
        except InvalidValue as exc:
            if exc.field != "profile":
                raise
            raise NotFound from None
        return self._to_manage(owner, "unliked", token)

    def _move_likes(self, owner: Subscriber, old: str, new: str) -> None:
        """A renamed profile keeps its liked and refused papers (renaming saves a new profile
        and removes the old one)."""
        tastes = self.app.pipeline.tastes
        moved = self.app.pipeline.likes.of([tastes.profile(owner.email, old).id])
        target = tastes.profile(owner.email, new)
        for vote in ("up", "down"):
            entries = [(like.keys, like.label) for like in moved if like.vote == vote]
            if entries:
                self.app.pipeline.likes.save(
                    target.id, entries, vote, "web", self.app.pipeline.clock.now()
                )
        self.app.pipeline.matching.likes_changed([target])

    def _feeds(self, owner: Subscriber) -> list[tuple[str, str, str]]:
        """(what, Atom URL, RSS URL) for the subscriber's feed of everything, then each
        profile's, as ``Mailroom.feed_list`` names them."""
        mailroom = self.app.mailroom
        source = mailroom.outbox.feed_source(owner.id)
        if source is None:
            return []
        token = tokens.for_subscriber(owner, "feeds")
        base = f"{self.site.settings.mail.base_url}/feeds/{token}"
        shown = []
        for feed in mailroom.feed_list(source):
            label = "All your profiles" if feed.slug == ALL else feed.profiles[0].spec.name
            path = f"{base}/{quote(feed.slug)}"
            shown.append((label, f"{path}.atom", f"{path}.rss"))
        return shown

    # -- leaving --------------------------------------------------------------------------------

    def unsubscribe_page(self, request: Request, token: str) -> Response:
        owner = self._owner(token, "unsubscribe")
        return self.site.page(request, "unsubscribe.html", owner=owner, token=token)

    async def unsubscribe(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._unsubscribe, request, token, form)

    def _unsubscribe(self, request: Request, token: str, fields: dict[str, str]) -> Response:
        """RFC 8058: a POST whose body is ``List-Unsubscribe=One-Click`` unsubscribes at once,
        with no cookie and no CSRF token (mail providers send it); the page's button posts
        the same body."""
        owner = self._owner(token, "unsubscribe")
        if fields.get("List-Unsubscribe") != "One-Click":
            return self.site.page(request, "unsubscribe.html", owner=owner, token=token, status=400)
        owner = self.site.membership.unsubscribe(owner.id)
        return self.site.page(request, "unsubscribed.html", owner=owner, token=token)

    async def undo(self, request: Request, token: str) -> Response:
        form = await read_form(request)
        return await run_in_threadpool(self._undo, request, token, form)

    def _undo(self, request: Request, token: str, fields: dict[str, str]) -> Response:
        owner = self._owner(token, "unsubscribe")
        self.site.guard(request, fields)
        manage = self.site.membership.token(owner, "manage")
        return self._change(
            request, owner, manage, self.site.membership.resubscribe, "resubscribed"
        )

    # -- shared ---------------------------------------------------------------------------------

    def _owner(self, token: str, purpose: str) -> Subscriber:
        owner = self.site.membership.subscriber(token, purpose)
        if owner is None:
            raise NotFound
        return owner

    def _to_manage(self, owner: Subscriber, done: str, token: str | None = None) -> Response:
        token = token or self.site.membership.token(owner, "manage")
        return RedirectResponse(f"/manage/{token}?done={done}", status_code=303)
