"""DKIM signing (RFC 6376) of outgoing messages, for those who send without a relay that signs.

The key is read once; each message is signed as it is handed to the sender (relaxed/relaxed
canonicalisation, rsa-sha256), the signature prepended. Signed: the headers RFC 6376 advises
that the message has, and RFC 8058's List-Unsubscribe-Post, which one-click unsubscribe
requires to be covered.
"""

from __future__ import annotations

from pathlib import Path

import dkim

from service.errors import ConfigError

# Headers to sign when present: dkimpy's advised set (From, Subject, Date, Message-ID, To,
# MIME-Version, Content-Type, List-Id, List-Unsubscribe, ...) and List-Unsubscribe-Post.
_HEADERS = (*dkim.DKIM.SHOULD, b"list-unsubscribe-post", b"auto-submitted")


class DkimSigner:
    def __init__(self, selector: str, domain: str, private_key: Path) -> None:
        try:
            self.key = private_key.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the DKIM private key: {exc.strerror}", where=str(private_key)
            ) from None
        if b"PRIVATE KEY-----" not in self.key:
            raise ConfigError("expected a PEM private key", where=str(private_key))
        self.selector = selector.encode()
        self.domain = domain.encode()
        # A key dkimpy cannot use is a setting to fix: found now, not at the first send.
        self.sign(b"From: paperboy@" + self.domain + b"\r\nSubject: key check\r\n\r\nok\r\n")

    def sign(self, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header in front."""
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in message.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if b":" in line and not line[:1].isspace()
        }
        try:
            signature = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[h for h in _HEADERS if h in present],
            )
        except dkim.DKIMException as exc:
            raise ConfigError(
                f"DKIM signing failed: {exc}", where="mail.dkim.private_key"
            ) from None
        return bytes(signature) + message
