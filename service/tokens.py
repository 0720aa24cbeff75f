"""Secret URL tokens: ``<subscriber id>.<signature>``, a signature per purpose.

Each subscriber has a random secret (192 bits); a token signs (purpose, subscriber id) with it
(HMAC-SHA-256 cut to 144 bits), so one subscriber's feed URL cannot unsubscribe them, and
replacing the secret revokes every URL. Two purposes sign more:

- ``manage`` signs the subscriber's manage generation as well: a new manage link (generation
  + 1) revokes the old one and leaves the feed and unsubscribe URLs working;
- ``confirm`` signs when it was issued, carried in the token (``<id>.<issued>.<signature>``),
  so that the link can expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime

from service.model import Subscriber

PURPOSES = ("unsubscribe", "manage", "feeds", "confirm")


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def make(
    subscriber_id: int,
    secret: str,
    purpose: str,
    *,
    generation: int = 0,
    issued: datetime | None = None,
) -> str:
    """The token for ``purpose``; ``issued`` is required for (and only for) ``confirm``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")
    if (purpose == "confirm") != (issued is not None):
        raise ValueError("a confirm token, and only a confirm token, carries when it was issued")
    signed = f"{purpose}:{subscriber_id}"
    if generation:  # generation 0 signs as tokens did before generations existed
        signed += f":{generation}"
    stamp = ""
    if issued is not None:
        stamp = f"{int(issued.timestamp())}."
        signed += f"@{stamp}"
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()[:18]).decode()
    return f"{subscriber_id}.{stamp}{signature}"


def for_subscriber(owner: Subscriber, purpose: str, *, issued: datetime | None = None) -> str:
    """``owner``'s current token for ``purpose`` (the manage one of their generation)."""
    generation = owner.manage_generation if purpose == "manage" else 0
    return make(owner.id, owner.token, purpose, generation=generation, issued=issued)


def subscriber_of(token: str) -> int | None:
    """The subscriber id a token claims (check it with ``verify``), or None if malformed."""
    head, _, _ = token.partition(".")
    return int(head) if head.isdigit() and len(head) < 19 else None


def issued_at(token: str) -> datetime | None:
    """When a ``confirm`` token says it was issued (check it with ``verify``); None if it
    carries no time."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 12:
        return None
    return datetime.fromtimestamp(int(parts[1]), UTC)


def verify(token: str, secret: str, purpose: str, *, generation: int = 0) -> bool:
    """Whether ``token`` is the one ``secret`` signs for ``purpose``, in constant time."""
    subscriber_id = subscriber_of(token)
    if subscriber_id is None or not secret:
        return False
    issued = issued_at(token) if purpose == "confirm" else None
    if (purpose == "confirm") != (issued is not None):
        return False
    expected = make(subscriber_id, secret, purpose, generation=generation, issued=issued)
    return hmac.compare_digest(token.encode(), expected.encode())


# -- feedback links -----------------------------------------------------------------------------
# A 👍/👎 link names a subscriber, one of their profiles and a paper:
# ``<subscriber id>.<profile id>.<paper id>.<signature>``, signed like the purposes above (with
# the subscriber's secret: replacing it revokes every such link). The vote is not signed:
# whoever holds the link may say up, down or neither about that paper for that profile.


def for_feedback(owner: Subscriber, profile_id: int, paper_id: int) -> str:
    """The feedback token of ``owner``'s profile ``profile_id`` on paper ``paper_id``."""
    return _feedback(owner.id, owner.token, profile_id, paper_id)


def _feedback(subscriber_id: int, secret: str, profile_id: int, paper_id: int) -> str:
    signed = f"feedback:{subscriber_id}:{profile_id}:{paper_id}"
    mac = hmac.new(secret.encode(), signed.encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()[:18]).decode()
    return f"{subscriber_id}.{profile_id}.{paper_id}.{signature}"


def feedback_parts(token: str) -> tuple[int, int, int] | None:
    """The (subscriber, profile, paper) ids a feedback token claims (check it with
    ``verify_feedback``), or None if malformed."""
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) < 19 for p in parts[:3]):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def verify_feedback(token: str, secret: str) -> bool:
    """Whether ``token`` is the feedback token ``secret`` signs, in constant time."""
    claimed = feedback_parts(token)
    if claimed is None or not secret:
        return False
    expected = _feedback(claimed[0], secret, claimed[1], claimed[2])
    return hmac.compare_digest(token.encode(), expected.encode())
