"""Secret URL tokens: ``<subscriber id>.<signature>``, a signature per purpose.

Each subscriber has a random secret; a token signs (purpose, subscriber id) with it, so one
subscriber's feed URL cannot unsubscribe them, and replacing the secret revokes every URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PURPOSES = ("unsubscribe", "manage", "feeds")


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def make(subscriber_id: int, secret: str, purpose: str) -> str:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")
    mac = hmac.new(secret.encode(), f"{purpose}:{subscriber_id}".encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()[:18]).decode()
    return f"{subscriber_id}.{signature}"


def subscriber_of(token: str) -> int | None:
    """The subscriber id a token claims (check it with ``verify``), or None if malformed."""
    head, _, _ = token.partition(".")
    return int(head) if head.isdigit() else None


def verify(token: str, secret: str, purpose: str) -> bool:
    subscriber_id = subscriber_of(token)
    if subscriber_id is None:
        return False
    return hmac.compare_digest(token, make(subscriber_id, secret, purpose))
