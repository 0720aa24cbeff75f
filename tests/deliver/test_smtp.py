from __future__ import annotations

import asyncio
import socket
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP, default
from typing import Literal

import pytest

from service.config import SmtpSettings
from service.deliver.smtp import Pacer, SmtpSender
from service.errors import DeliveryError, MailConfigError

from .smtpd import HOST, Answer, SmtpSink

Stage = Literal["MAIL", "RCPT", "DATA"]
FROM = "paperboy@example.org"
TO = "reader@example.net"


def message(subject: str = "Your digest") -> bytes:
    """A multipart message as the outbox stores it: CRLF line endings, ready to send."""
    mail = EmailMessage()
    mail["From"] = f"paperboy <{FROM}>"
    mail["To"] = TO
    mail["Subject"] = subject
    mail["Message-ID"] = "<digest-1@example.org>"
    # A line starting with a dot tests dot-stuffing; the accents go as 8-bit bytes.
    mail.set_content("Three new papers today.\n.hidden dot line\nCafé — naïve résumé\n")
    mail.add_alternative("<p>Three new papers today.</p>\n<p>.dot</p>\n", subtype="html")
    return mail.as_bytes(policy=SMTP)


def send_all(sender: SmtpSender, count: int) -> list[str]:
    async def go() -> list[str]:
        async with sender:
            return [await sender.send(FROM, [TO], message(f"n{n}")) for n in range(count)]

    return asyncio.run(go())


def failure(sender: SmtpSender, recipients: tuple[str, ...] = (TO,)) -> DeliveryError:
    async def go() -> None:
        async with sender:
            await sender.send(FROM, list(recipients), message())

    with pytest.raises(DeliveryError) as caught:
        asyncio.run(go())
    return caught.value


def test_delivers_the_message_byte_for_byte_with_its_envelope() -> None:
    sent = message()
    with SmtpSink() as sink:

        async def go() -> str:
            async with SmtpSender(sink.settings()) as sender:
                return await sender.send(FROM, [TO, "second@example.net"], sent)

        reply = asyncio.run(go())
        (received,) = sink.messages
    assert reply == "2.0.0 Ok: queued as 1"
    assert received.sender == FROM
    assert received.recipients == (TO, "second@example.net")
    assert received.content == sent
    parsed = BytesParser(policy=default).parsebytes(received.content)
    assert parsed["Subject"] == "Your digest"
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().splitlines()[1:] == [".hidden dot line", "Café — naïve résumé"]


def test_sends_many_messages_over_one_connection() -> None:
    with SmtpSink() as sink:
        replies = send_all(SmtpSender(sink.settings()), 5)
        assert sink.connections == 1
        assert [m.connection for m in sink.messages] == [1] * 5
    assert replies == [f"2.0.0 Ok: queued as {n}" for n in range(1, 6)]


@pytest.mark.parametrize("noticed", [True, False], ids=["closed-seen", "closed-unseen"])
def test_reconnects_once_when_the_server_closed_the_idle_connection(noticed: bool) -> None:
    with SmtpSink() as sink:

        async def go() -> None:
            async with SmtpSender(sink.settings()) as sender:
                await sender.send(FROM, [TO], message("first"))
                sink.hang_up()
                if noticed:  # let the client's loop see the EOF before the next send
                    await asyncio.sleep(0.05)
                await sender.send(FROM, [TO], message("second"))

        asyncio.run(go())
        assert sink.connections == 2
        assert [m.connection for m in sink.messages] == [1, 2]


def test_reconnects_only_once() -> None:
    with SmtpSink(answers=[Answer(), Answer(drop=True)]) as sink:

        async def go() -> None:
            async with SmtpSender(sink.settings()) as sender:
                await sender.send(FROM, [TO], message("first"))
                sink.hang_up()
                await sender.send(FROM, [TO], message("second"))

        with pytest.raises(DeliveryError) as caught:
            asyncio.run(go())
        assert sink.connections == 2
    assert caught.value.transient is True


@pytest.mark.parametrize("at", ["MAIL", "RCPT", "DATA"])
def test_451_is_transient_and_the_connection_stays_usable(at: Stage) -> None:
    with SmtpSink(answers=[Answer("451 4.3.0 Try again later", at=at)]) as sink:

        async def go() -> tuple[DeliveryError, str]:
            async with SmtpSender(sink.settings()) as sender:
                with pytest.raises(DeliveryError) as caught:
                    await sender.send(FROM, [TO], message())
                return caught.value, await sender.send(FROM, [TO], message())

        error, reply = asyncio.run(go())
        assert (error.transient, error.code, error.reply) == (True, 451, "4.3.0 Try again later")
        assert reply == "2.0.0 Ok: queued as 1"
        assert sink.connections == 1
        assert len(sink.messages) == 1


@pytest.mark.parametrize("at", ["MAIL", "RCPT", "DATA"])
def test_550_is_permanent_with_the_server_reply(at: Stage) -> None:
    with SmtpSink(then=Answer("550 5.1.1 No such user here", at=at)) as sink:
        error = failure(SmtpSender(sink.settings()))
        assert sink.messages == []
    assert error.transient is False
    assert error.code == 550
    assert error.reply == "5.1.1 No such user here"
    assert "550 5.1.1 No such user here" in str(error)


def test_a_closed_port_is_a_configuration_error() -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    error = failure(SmtpSender(SmtpSettings(host=HOST, port=port, security="none", timeout=5)))
    assert isinstance(error, MailConfigError)
    assert error.transient is True  # no message is at fault
    assert error.code is None
    assert str(error) == (
        f"{HOST}:{port} refused the connection (check mail.smtp.host and mail.smtp.port)"
    )


def test_dropped_mid_message_is_transient_and_the_next_send_reconnects() -> None:
    with SmtpSink(answers=[Answer(drop=True)]) as sink:

        async def go() -> tuple[DeliveryError, str]:
            async with SmtpSender(sink.settings()) as sender:
                with pytest.raises(DeliveryError) as caught:
                    await sender.send(FROM, [TO], message())
                return caught.value, await sender.send(FROM, [TO], message())

        error, reply = asyncio.run(go())
        assert sink.connections == 2
    assert error.transient is True
    assert error.code is None
    assert reply == "2.0.0 Ok: queued as 1"


def test_a_server_slower_than_the_timeout_is_transient() -> None:
    with SmtpSink(answers=[Answer(delay=3)]) as sink:

        async def go() -> tuple[DeliveryError, float, str]:
            async with SmtpSender(sink.settings(timeout=0.3)) as sender:
                start = time.monotonic()
                with pytest.raises(DeliveryError) as caught:
                    await sender.send(FROM, [TO], message())
                waited = time.monotonic() - start
                return caught.value, waited, await sender.send(FROM, [TO], message())

        error, waited, reply = asyncio.run(go())
        assert sink.connections == 2
    assert error.transient is True and not isinstance(error, MailConfigError)
    assert "timed out" in str(error)
    assert waited < 2
    assert reply == "2.0.0 Ok: queued as 1"


def test_starttls_with_a_trusted_certificate() -> None:
    with SmtpSink(security="starttls") as sink:
        send_all(SmtpSender(sink.settings(), tls_context=sink.client_context()), 2)
        assert [m.tls for m in sink.messages] == [True, True]
        assert sink.connections == 1


def test_starttls_refuses_an_untrusted_certificate_unless_told_not_to_check() -> None:
    with SmtpSink(security="starttls") as sink:
        error = failure(SmtpSender(sink.settings()))
        assert sink.messages == []
        send_all(SmtpSender(sink.settings(validate_certs=False)), 1)
        assert [m.tls for m in sink.messages] == [True]
    assert isinstance(error, MailConfigError)
    assert "certificate verify failed" in str(error)


def test_implicit_tls() -> None:
    with SmtpSink(security="tls") as sink:
        send_all(SmtpSender(sink.settings(), tls_context=sink.client_context()), 2)
        assert [m.tls for m in sink.messages] == [True, True]
        assert sink.connections == 1


def test_implicit_tls_refuses_an_untrusted_certificate() -> None:
    with SmtpSink(security="tls") as sink:
        error = failure(SmtpSender(sink.settings()))
    assert isinstance(error, MailConfigError)
    assert "certificate verify failed" in str(error)


def test_a_server_without_starttls_is_a_configuration_error() -> None:
    with SmtpSink(security="none") as sink:
        error = failure(SmtpSender(sink.settings(security="starttls")))
        assert sink.messages == []
    assert isinstance(error, MailConfigError)
    assert "STARTTLS extension not supported" in str(error)


def test_tls_spoken_to_a_plain_port_is_a_configuration_error() -> None:
    with SmtpSink(security="none") as sink:
        error = failure(SmtpSender(sink.settings(security="tls")))
    assert isinstance(error, MailConfigError)
    assert "is mail.smtp.security right for this port" in str(error)


def test_a_login_the_server_cannot_take_is_a_configuration_error() -> None:
    with SmtpSink(security="none") as sink:
        error = failure(SmtpSender(sink.settings(username="reader", password="s3cret")))
    assert isinstance(error, MailConfigError)
    assert "AUTH extension is not supported" in str(error)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_logs_in_when_a_username_is_set(mechanism: str) -> None:
    with SmtpSink(login=("reader", "s3cret"), mechanisms=[mechanism]) as sink:
        send_all(SmtpSender(sink.settings()), 2)
        assert [m.login for m in sink.messages] == ["reader", "reader"]


def test_logs_in_over_starttls() -> None:
    with SmtpSink(security="starttls", login=("reader", "s3cret")) as sink:
        send_all(SmtpSender(sink.settings(), tls_context=sink.client_context()), 1)
        assert [(m.tls, m.login) for m in sink.messages] == [(True, "reader")]


def test_a_wrong_password_is_a_configuration_error() -> None:
    with SmtpSink(login=("reader", "s3cret")) as sink:
        error = failure(SmtpSender(sink.settings(password="wrong")))
        assert sink.messages == []
    assert isinstance(error, MailConfigError)
    assert error.code == 535
    assert "refused the login: 535" in str(error)
    assert "wrong" not in str(error)


def test_sends_no_faster_than_max_per_second() -> None:
    with SmtpSink() as sink:
        start = time.monotonic()
        send_all(SmtpSender(sink.settings(max_per_second=20)), 10)
        elapsed = time.monotonic() - start
        assert len(sink.messages) == 10
    assert elapsed >= 0.44  # nine gaps of 1/20 s after the first message


def test_pacer_spaces_events_and_waits_only_when_over_the_rate() -> None:
    pacer = Pacer(per_second=4)
    assert [pacer.reserve(10.0) for _ in range(3)] == [0.0, 0.25, 0.5]
    assert pacer.reserve(10.6) == pytest.approx(0.15)
    assert pacer.reserve(20.0) == 0.0


def test_an_address_that_cannot_go_on_the_command_line_is_permanent() -> None:
    with SmtpSink() as sink:
        error = failure(SmtpSender(sink.settings()), ("reader@example.net>\r\nRSET",))
        assert sink.connections == 0
    assert error.transient is False


def test_a_non_ascii_address_goes_with_smtputf8() -> None:
    with SmtpSink() as sink:

        async def go() -> None:
            async with SmtpSender(sink.settings()) as sender:
                await sender.send(FROM, ["léa@example.net"], message())

        asyncio.run(go())
        assert sink.messages[0].recipients == ("léa@example.net",)


def test_close_is_idempotent_and_a_later_send_reconnects() -> None:
    with SmtpSink() as sink:

        async def go() -> None:
            sender = SmtpSender(sink.settings())
            await sender.close()
            await sender.send(FROM, [TO], message())
            await sender.close()
            await sender.close()
            await sender.send(FROM, [TO], message())
            await sender.close()

        asyncio.run(go())
        assert sink.connections == 2
        assert len(sink.messages) == 2
