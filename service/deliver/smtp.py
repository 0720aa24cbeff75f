"""The ``smtp`` sender: hand messages to a mail server over a reused SMTP connection (or,
with ``mail.smtp.connections`` above 1, ``SmtpPool``: several at once under one rate cap).

``SmtpSender.send`` returns the server's reply to an accepted message, or raises
``DeliveryError``::

    transient   a 4xx reply (greeting, login, MAIL, RCPT or DATA), a timeout, a dropped
                connection
    permanent   a 5xx reply to MAIL, RCPT or DATA (``code`` and ``reply`` set); an address
                that cannot go on an SMTP command line
    MailConfigError (transient: no message is at fault) the connection is refused or the host
                unknown, TLS fails (an invalid certificate, TLS spoken to a plain port), the
                server lacks the STARTTLS or AUTH asked for, the login is refused (5xx), the
                greeting is a 5xx

Any other exception is a bug and propagates. The connection opens on the first send; one the
server closed while idle is reopened once, transparently. After a clean 4xx/5xx reply it is
reset (RSET) and kept; after anything else it is dropped, and the next send reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
import time
from collections.abc import Sequence

import aiosmtplib
from aiosmtplib.email import parse_address

from service.config import SmtpSettings
from service.deliver import Closing
from service.errors import DeliveryError, MailConfigError

log = logging.getLogger(__name__)

# Errors from the wire; everything else aiosmtplib raises is a bug and propagates.
_NETWORK_ERRORS = (aiosmtplib.SMTPException, OSError)  # OSError covers TimeoutError and ssl


class Pacer:
    """Spaces events at least ``1 / per_second`` apart; the caller passes the time."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = -math.inf

    def reserve(self, now: float) -> float:
        """Take the next free slot; return the seconds to wait for it (0 when under the rate)."""
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now


class SmtpSender(Closing):
    """Sends over one connection, opened lazily and kept until ``close``; sends queue in turn."""

    concurrency = 1

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        self._settings = settings
        self._tls_context = tls_context
        self._server = f"{settings.host}:{settings.port}"
        self._pacer = pacer or Pacer(settings.max_per_second)
        self._lock = asyncio.Lock()
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        """Hand ``message`` (sent byte for byte) over for ``recipients``; return the reply text."""
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        options = _mail_options(sender, recipients)
        async with self._lock:
            delay = self._pacer.reserve(time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
            return await self._send(sender, list(recipients), message, options)

    async def close(self) -> None:
        """Say QUIT and close the connection; does nothing when none is open."""
        async with self._lock:
            smtp, self._smtp = self._smtp, None
            if smtp is None:
                return
            try:
                if smtp.is_connected:
                    with contextlib.suppress(*_NETWORK_ERRORS):
                        await smtp.quit()
            finally:
                smtp.close()

    async def _send(
        self, sender: str, recipients: list[str], message: bytes, options: list[str]
    ) -> str:
        reused = self._smtp is not None and self._smtp.is_connected
        while True:
            smtp = await self._connection()
            try:
                refused, reply = await smtp.sendmail(
                    sender, recipients, message, mail_options=options
                )
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._drop()
                if reused:  # the server closed it while idle: once more on a new connection
                    reused = False
                    continue
                raise self._error(exc) from exc
            except (
                aiosmtplib.SMTPResponseException,
                aiosmtplib.SMTPRecipientsRefused,
                aiosmtplib.SMTPNotSupported,
            ) as exc:
                if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code < 400:
                    self._drop()  # not a reply at all (garbled, too long): the stream is unknown
                else:
                    await self._reset(smtp)
                raise self._error(exc) from exc
            except _NETWORK_ERRORS as exc:
                self._drop()
                raise self._error(exc) from exc
            except BaseException:
                self._drop()
                raise
            if refused:
                log.warning(
                    "%s took the message but refused %s",
                    self._server,
                    "; ".join(f"{who}: {code} {text}" for who, (code, text) in refused.items()),
                )
            return reply

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._drop()
        settings = self._settings
        password = settings.password.get_secret_value() if settings.password else None
        smtp = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=password,
            timeout=settings.timeout,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            validate_certs=settings.validate_certs,
            tls_context=self._tls_context,
        )
        try:
            await smtp.connect()  # closes the connection itself when it fails
        except _NETWORK_ERRORS as exc:
            raise self._connect_error(exc) from exc
        self._smtp = smtp
        return smtp

    async def _reset(self, smtp: aiosmtplib.SMTP) -> None:
        """After a refusal, keep the connection only if RSET says it is usable."""
        # sendmail already sent RSET, but it swallows a failed one; ours tells.
        if not smtp.is_connected:
            self._drop()
            return
        try:
            await smtp.rset()
        except BaseException as exc:
            self._drop()
            if not isinstance(exc, _NETWORK_ERRORS):
                raise

    def _drop(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _connect_error(self, exc: Exception) -> DeliveryError:
        """What a failure to connect, start TLS or log in means: a setting (or the server) to
        fix, or a passing failure (a timeout, a 4xx reply, a dropped connection)."""
        server = self._server
        cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
        if isinstance(exc, TimeoutError | aiosmtplib.SMTPServerDisconnected):
            return self._error(exc)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            if exc.code < 500:
                return self._error(exc)
            if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                return MailConfigError(
                    f"{server} refused the login: {exc.code} {exc.message}"
                    " (check mail.smtp.username and mail.smtp.password)",
                    code=exc.code,
                    reply=exc.message,
                )
            return MailConfigError(
                f"{server} refused the session: {exc.code} {exc.message}",
                code=exc.code,
                reply=exc.message,
            )
        if isinstance(cause, ConnectionRefusedError):
            return MailConfigError(
                f"{server} refused the connection (check mail.smtp.host and mail.smtp.port)"
            )
        if isinstance(cause, socket.gaierror):
            return MailConfigError(f"{server}: unknown host (check mail.smtp.host): {cause}")
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message
            return MailConfigError(
                f"{server}: TLS certificate verify failed: {reason} (mail.smtp.validate_certs)"
            )
        if isinstance(cause, ssl.SSLError):
            return MailConfigError(
                f"{server}: TLS failed ({cause.reason}); is mail.smtp.security right for this"
                " port (465: tls, 587: starttls)?"
            )
        if isinstance(exc, aiosmtplib.SMTPException) and not isinstance(exc, OSError):
            # The server lacks an extension the settings need (STARTTLS, AUTH).
            return MailConfigError(
                f"{server}: {exc} (check mail.smtp.security and mail.smtp.username)"
            )
        return self._error(exc)

    def _error(self, exc: Exception) -> DeliveryError:
        server = self._server
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            refusals = exc.recipients
            worst = next((r for r in refusals if r.code >= 500), refusals[0])
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refusals)
            return DeliveryError(
                f"{server} refused every recipient: {detail}",
                transient=worst.code < 500,
                code=worst.code,
                reply=worst.message,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
            return DeliveryError(
                f"{server} answered {exc.code} {exc.message}",
                transient=exc.code < 500,
                code=exc.code,
                reply=exc.message,
            )
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return DeliveryError(f"{server}: {exc}", transient=False)
        if isinstance(exc, TimeoutError):
            return DeliveryError(f"{server} timed out: {exc}", transient=True)
        return DeliveryError(f"{server}: {exc}", transient=True)


class SmtpPool(Closing):
    """Sends over up to ``mail.smtp.connections`` connections at once, each an ``SmtpSender``
    opened when first needed; together they keep to the one rate cap
    (``mail.smtp.max_per_second``), so a relay's latency does not serialise sending."""

    def __init__(
        self, settings: SmtpSettings, *, tls_context: ssl.SSLContext | None = None
    ) -> None:
        pacer = Pacer(settings.max_per_second)
        self.concurrency = settings.connections
        self._senders = [
            SmtpSender(settings, tls_context=tls_context, pacer=pacer)
            for _ in range(settings.connections)
        ]
        self._idle: asyncio.Queue[SmtpSender] | None = None

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        """``SmtpSender.send`` over whichever connection is free."""
        if self._idle is None:  # made in the loop that sends
            self._idle = asyncio.Queue()
            for each in self._senders:
                self._idle.put_nowait(each)
        lane = await self._idle.get()
        try:
            return await lane.send(sender, recipients, message)
        finally:
            self._idle.put_nowait(lane)

    async def close(self) -> None:
        """Close every connection."""
        for each in self._senders:
            await each.close()
        self._idle = None


def _mail_options(sender: str, recipients: Sequence[str]) -> list[str]:
    """The MAIL options the envelope needs: SMTPUTF8 when an address is not ASCII."""
    addresses = [sender, *recipients]
    for address in addresses:
        try:
            if any(ord(char) < 32 or char == "\x7f" for char in address):
                raise ValueError("it contains a control character")
            parse_address(address)
        except ValueError as exc:
            raise DeliveryError(f"invalid address {address!r}: {exc}", transient=False) from exc
    return [] if all(address.isascii() for address in addresses) else ["SMTPUTF8"]
