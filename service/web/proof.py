"""Proof of work on the subscribe form, self-hosted (in the spirit of ALTCHA).

The server issues a challenge ``<expires>.<salt>.<bits>.<signature>`` signed with its key;
the page's script looks for a number ``nonce`` such that SHA-256 of ``<challenge>:<nonce>``
starts with ``bits`` zero bits, and sends it with the form. The server checks the signature,
the expiry and the hash, and takes each challenge once (remembered in this process until it
expires). Finding a nonce costs ``2**bits`` hashes on average; checking it costs one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from enum import StrEnum

LIFETIME = 30 * 60.0  # seconds a challenge stays good: time enough to fill the form in
_MAX_NONCE_DIGITS = 12


class Verdict(StrEnum):
    SOLVED = "solved"  # a good nonce for a challenge of ours, fresh and not used before
    MISSING = "missing"  # no nonce at all: the browser ran no script (or could not hash)
    INVALID = "invalid"  # forged, expired, wrong or used before


class Proofs:
    """Issues and checks challenges of ``bits`` leading zero bits (0: none asked)."""

    def __init__(self, key: bytes, bits: int) -> None:
        self._key = key
        self.bits = bits
        self._used: dict[str, float] = {}  # challenge -> when it expires
        self._lock = threading.Lock()

    def issue(self, now: float) -> str | None:
        """A fresh challenge for a form, or None when no work is asked."""
        if self.bits == 0:
            return None
        body = f"{int(now + LIFETIME)}.{secrets.token_urlsafe(12)}.{self.bits}"
        return f"{body}.{self._sign(body)}"

    def check(self, challenge: str, nonce: str, now: float) -> Verdict:
        """What a form's ``challenge`` and ``nonce`` fields prove; a SOLVED challenge is used up."""
        if self.bits == 0:
            return Verdict.SOLVED
        if not nonce:
            return Verdict.MISSING
        body, _, signature = challenge.rpartition(".")
        parts = body.split(".")
        if (
            len(parts) != 3
            or not parts[0].isdigit()
            or not hmac.compare_digest(signature.encode(), self._sign(body).encode())
        ):
            return Verdict.INVALID
        expires, bits = int(parts[0]), int(parts[2])
        if expires < now or not nonce.isdigit() or len(nonce) > _MAX_NONCE_DIGITS:
            return Verdict.INVALID
        if not leading_zero_bits(f"{challenge}:{nonce}", bits):
            return Verdict.INVALID
        with self._lock:
            self._forget_expired(now)
            if challenge in self._used:
                return Verdict.INVALID
            self._used[challenge] = expires
        return Verdict.SOLVED

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, b"pow:" + body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    def _forget_expired(self, now: float) -> None:
        if len(self._used) > 1024:
            for challenge in [c for c, expires in self._used.items() if expires < now]:
                del self._used[challenge]


def leading_zero_bits(text: str, bits: int) -> bool:
    """Whether SHA-256 of ``text`` (UTF-8) starts with ``bits`` zero bits."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest, "big") >> (256 - bits) == 0


def solve(challenge: str, bits: int) -> str:
    """A nonce for ``challenge`` (what the page's script does; for tests and benchmarks)."""
    nonce = 0
    while not leading_zero_bits(f"{challenge}:{nonce}", bits):
        nonce += 1
    return str(nonce)
