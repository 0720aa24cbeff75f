"""The IMAP bounce mailbox against a real server (Debian's dovecot, started here): returns
appended to INBOX are read, acted on and moved to INBOX.processed or INBOX.rejected, once."""

from __future__ import annotations

import asyncio
import imaplib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from deliver.imapd import Imapd, imapd
from pydantic import SecretStr

from service.app import App, build
from service.clock import FixedClock
from service.config import BounceSettings, ImapSettings, Settings
from service.deliver.mailbox import ImapBox
from service.errors import MailConfigError
from service.model import ProfileSpec

HERE = Path(__file__).parent / "bounces"
ANN = "ann@example.org"


@pytest.fixture(scope="module")
def server() -> Iterator[Imapd]:
    with imapd() as running:
        yield running


def imap_settings(server: Imapd, **more: object) -> ImapSettings:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "security": "none",
        "username": server.user,
        "password": SecretStr(server.password),
    }
    values.update(more)
    return ImapSettings.model_validate(values)


def client(server: Imapd) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(server.host, server.port)
    imap.login(server.user, server.password)
    return imap


def count(server: Imapd, folder: str) -> int:
    imap = client(server)
    try:
        status, data = imap.select(f'"{folder}"', readonly=True)
        return int(data[0] or 0) if status == "OK" else 0
    finally:
        imap.logout()


def test_returns_in_an_imap_folder_are_acted_on_and_moved_once(
    server: Imapd, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        sources=[],
        bounces=BounceSettings(imap=imap_settings(server)),
    )
    app: App
    with build(settings, clock=FixedClock(datetime(2026, 6, 1, tzinfo=UTC))) as app:
        app.pipeline.roster.save_subscriber(ANN, "UTC", "daily 07:00")
        app.pipeline.roster.save_profile(ANN, ProfileSpec("All", "x", send_when_empty=True))
        app.mailroom.close_now(app.pipeline.roster.subscriber(ANN))
        assert asyncio.run(app.mailroom.send()).sent == 1
        [sent] = app.mailroom.outbox.deliveries()
        imap = client(server)
        hard = (
            (HERE / "gmail-hard.eml")
            .read_bytes()
            .replace(b"no.such.person@gmail.com", ANN.encode())
            .replace(b"<digest.21.ffeeddccbbaa9988@papers.example.org>", sent.message_id.encode())
        )
        imap.append("INBOX", None, None, hard.replace(b"\n", b"\r\n"))
        odd = (HERE / "unreadable" / "vacation.eml").read_bytes()
        imap.append("INBOX", None, None, odd.replace(b"\n", b"\r\n"))
        imap.logout()

        assert app.bounce_mailboxes()
        [handled] = app.check_bounces()
        assert (handled.read, handled.hard, handled.suppressed) == (2, 1, [ANN])
        assert len(handled.rejected) == 1
        assert app.pipeline.returns.suppressed(ANN) is not None
        assert count(server, "INBOX") == 0
        assert count(server, "INBOX.processed") == 1
        assert count(server, "INBOX.rejected") == 1
        assert app.check_bounces()[0].read == 0  # not read twice


def test_a_wrong_imap_password_is_a_config_error_naming_the_server(server: Imapd) -> None:
    with pytest.raises(MailConfigError, match=rf"IMAP 127.0.0.1:{server.port}.*bounces.imap"):
        ImapBox(imap_settings(server, password=SecretStr("wrong")))
