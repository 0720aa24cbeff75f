"""What every page shares: templates, the CSRF cookie, the proof-of-work issuer, the rate
limiter and the errors that become pages (404, 403, 413, 429)."""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from service.app import App
from service.pipeline.membership import Membership
from service.render.templates import template_dirs
from service.web.csrf import COOKIE, FIELD, Csrf
from service.web.limits import Limiter, client_address
from service.web.proof import Proofs
from service.web.secret import load_key

_ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class NotFound(Exception):
    """A page that does not exist, or a wrong or revoked token: the same plain 404."""


class Forbidden(Exception):
    """A form without a valid CSRF token."""


class Site:
    """The web's shared parts over one built ``App``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.env: jinja2.Environment = app.mailroom.env
        key = load_key(app.settings.data_dir)
        self.csrf = Csrf(key)
        self.proofs = Proofs(key, app.settings.web.pow_bits)
        self.limiter = Limiter()
        self.secure_cookies = app.settings.mail.base_url.startswith("https://")
        self.static_dirs = [
            path / "web" / "static" for path in template_dirs(app.settings.templates_dir)
        ]
        self._versions: dict[str, str] = {}

    @property
    def membership(self) -> Membership:
        return self.app.pipeline.membership

    # -- pages ----------------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, *, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """``templates/web/<template>`` as an uncached page, with a CSRF token for its forms
        (and the cookie it signs, when the visitor has none yet)."""
        cookie = request.cookies.get(COOKIE)
        fresh = None
        if cookie is None or not Csrf.usable(cookie):
            cookie = fresh = Csrf.fresh_cookie()
        html = self.env.get_template(f"web/{template}").render(
            csrf_field=FIELD,
            csrf=self.csrf.token(cookie),
            asset=self.asset,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        # Pages carry secret URLs and per-visitor tokens: no cache keeps them.
        response.headers["Cache-Control"] = "no-store"
        if fresh is not None:
            response.set_cookie(
                COOKIE,
                fresh,
                httponly=True,
                samesite="strict",
                secure=self.secure_cookies,
                path="/",
            )
        return response

    def asset(self, name: str) -> str:
        """The URL of a static file, with a version that changes when the file does."""
        if name not in self._versions:
            path = self.static_file(name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10] if path else "0"
            self._versions[name] = digest
        return f"/static/{name}?v={self._versions[name]}"

    def static_file(self, name: str) -> Path | None:
        """The static file called ``name``: the user's templates directory first."""
        if not _ASSET_NAME.match(name):
            return None
        for folder in self.static_dirs:
            if (folder / name).is_file():
                return folder / name
        return None

    # -- guards ---------------------------------------------------------------------------------

    def client(self, request: Request) -> str:
        return client_address(request, self.settings.web.trusted_proxies)

    def guard(self, request: Request, form: dict[str, str]) -> None:
        """A state-changing form: its CSRF token must match, and the client be within its
        requests per minute."""
        if not self.csrf.check(request.cookies.get(COOKIE), form.get(FIELD)):
            raise Forbidden
        self.limit(f"requests:{self.client(request)}", self.settings.web.requests_per_minute, 60)

    def limit(self, key: str, limit: int, period: float) -> None:
        self.limiter.hit(key, limit, period, time.monotonic())


async def read_form(request: Request) -> dict[str, str]:
    """A posted form's text fields (the last value of each); files are ignored."""
    async with request.form() as data:
        fields: FormData = data
        return {name: value for name, value in fields.multi_items() if isinstance(value, str)}
