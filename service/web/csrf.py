"""CSRF protection: a signed double-submit token.

A visitor gets a random cookie (HttpOnly, SameSite=Strict); each form carries HMAC(server key,
cookie). A POST is believed when its form field is the signature of the cookie it came with:
another site can make a browser send the cookie, but cannot read it to sign it, and cannot
sign without the server's key. Nothing is stored on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

COOKIE = "paperboy_csrf"
FIELD = "csrf"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class Csrf:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @staticmethod
    def fresh_cookie() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def usable(cookie: str | None) -> bool:
        """Whether ``cookie`` looks like one this server hands out (else a new one is set)."""
        return cookie is not None and _WELL_FORMED.match(cookie) is not None

    def token(self, cookie: str) -> str:
        """The form field that goes with ``cookie``."""
        mac = hmac.new(self._key, b"csrf:" + cookie.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def check(self, cookie: str | None, token: str | None) -> bool:
        """Whether a POST's form ``token`` signs the ``cookie`` it came with (constant time)."""
        if not self.usable(cookie) or not token:
            return False
        assert cookie is not None
        return hmac.compare_digest(self.token(cookie).encode(), token.encode())
