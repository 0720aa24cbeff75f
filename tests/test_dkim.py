"""DKIM: a message signed at send time verifies (dkimpy's verify, the public key served as its
DNS TXT record would be), covering the list headers; a changed byte breaks it."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from deliver.smtpd import SmtpSink
from mail import FROM, send

from service.app import build
from service.clock import FixedClock
from service.config import DkimSettings, MailSettings, Settings
from service.errors import ConfigError
from service.model import ProfileSpec


def keys(tmp_path: Path) -> tuple[Path, bytes]:
    """A private key file, and the TXT record of its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path = tmp_path / "dkim.pem"
    path.write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_a_sent_message_carries_a_signature_that_verifies(tmp_path: Path) -> None:
    private, record = keys(tmp_path)
    asked: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        asked.append(name)
        return record if name == b"paperboy._domainkey.papers.example.org." else None

    with SmtpSink() as sink:
        settings = Settings(
            data_dir=tmp_path / "data",
            sources=[],
            mail=MailSettings(
                from_address=FROM,
                sender="smtp",
                smtp=sink.settings(),
                dkim=DkimSettings(
                    selector="paperboy", domain="papers.example.org", private_key=private
                ),
            ),
        )
        with build(settings, clock=FixedClock(datetime(2026, 6, 1, 12, tzinfo=UTC))) as app:
            app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "daily 07:00")
            app.pipeline.roster.save_profile(
                "ann@example.org", ProfileSpec("All", "x", send_when_empty=True)
            )
            app.mailroom.close_now(app.pipeline.roster.subscriber("ann@example.org"))
            assert send(app).sent == 1
        [received] = sink.messages
    message = received.content
    assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    head = message.split(b"\r\n\r\n", 1)[0].lower()
    for header in (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post"):
        assert header in head.split(b"h=", 1)[1].split(b";", 1)[0]
    assert dkim.verify(message, dnsfunc=dns)
    assert asked == [b"paperboy._domainkey.papers.example.org."]
    tampered = message.replace(b"Subject: ", b"Subject: FREE ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_settings_are_all_or_none_and_a_bad_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set together"):
        DkimSettings(selector="paperboy")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    settings = Settings(
        data_dir=tmp_path / "data",
        sources=[],
        mail=MailSettings(dkim=DkimSettings(selector="s", domain="example.org", private_key=junk)),
    )
    with pytest.raises(ConfigError, match=r"junk\.pem"):
        build(settings)
    junk.write_text("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="DKIM signing failed"):
        build(settings)
