"""A real SMTP server (aiosmtpd) on 127.0.0.1 and a free port, for delivery tests.

It records every message it accepts and answers as a test scripts it::

    with SmtpSink() as sink:
        async with SmtpSender(sink.settings()) as sender:   # inside asyncio.run(...)
            await sender.send("a@example.org", ["b@example.org"], message)
        assert sink.messages[0].content == message
        assert sink.connections == 1

    SmtpSink(answers=[Answer("451 4.3.0 Try again later")] * 2)  # 451 twice, then accept
    SmtpSink(then=Answer("550 5.1.1 No such user", at="RCPT"))  # refuse every recipient
    SmtpSink(answers=[Answer(drop=True)])                        # hang up on the first message
    SmtpSink(then=Answer(delay=3))                               # take 3 s over every DATA
    SmtpSink(security="starttls")   # or "tls"; a sender trusts it with sink.client_context()
    SmtpSink(login=("user", "secret"))  # AUTH PLAIN and LOGIN; MAIL needs a login

``sink.hang_up()`` closes every open connection from the server's side, as an idle timeout
would. The server runs in aiosmtpd's ``Controller`` thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import TracebackType
from typing import Any, Literal, Self

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from service.config import SmtpSettings

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Answer:
    """How the sink answers one message: at command ``at`` (at RCPT: every recipient's), wait
    ``delay`` seconds, then hang up (``drop``), send ``reply`` (e.g. ``"451 4.3.0 Try again
    later"``), or go on as usual (``reply`` None)."""

    reply: str | None = None
    at: Literal["MAIL", "RCPT", "DATA"] = "DATA"
    delay: float = 0.0
    drop: bool = False


ACCEPT = Answer()


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope, the DATA bytes as received (dot-unstuffed, with
    nothing added), the 1-based number of the connection it came over, whether that connection
    was encrypted and the user it logged in as."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    connection: int
    tls: bool
    login: str | None


class SmtpSink:
    """An aiosmtpd server; ``answers`` are used one per MAIL command, then ``then`` for the rest."""

    def __init__(
        self,
        *,
        answers: Iterable[Answer] = (),
        then: Answer = ACCEPT,
        security: Literal["none", "starttls", "tls"] = "none",
        login: tuple[str, str] | None = None,
        mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
    ) -> None:
        self.security = security
        self.login = login
        self._mechanisms = set(mechanisms)
        self._answers = deque(answers)
        self._then = then
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._connections = 0
        self._started = 0
        self._open: dict[_Server, int] = {}
        self._current: dict[_Server, Answer] = {}
        self._controller: _Controller | None = None

    def __enter__(self) -> Self:
        server_context = self._server_context() if self.security != "none" else None
        smtp_options: dict[str, Any] = {
            "server_hostname": "sink.test",
            "tls_context": server_context if self.security == "starttls" else None,
            "require_starttls": self.security == "starttls",
        }
        if self.login is not None:
            smtp_options |= {
                "authenticator": self._authenticate,
                "auth_require_tls": False,
                "auth_exclude_mechanism": {"PLAIN", "LOGIN"} - self._mechanisms,
            }
        self._controller = _Controller(
            self,
            _Handler(self),
            ssl_context=server_context if self.security == "tls" else None,
            **smtp_options,
        )
        self._controller.start()
        with self._lock:
            self._connections = 0  # the controller's own start-up probe does not count
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.hang_up()
        assert self._controller is not None
        self._controller.stop()
        self._controller = None

    @property
    def port(self) -> int:
        """The port it listens on, on 127.0.0.1 (``HOST``); known once entered."""
        if self._controller is None:
            raise RuntimeError("the sink is not running: use it as `with SmtpSink() as sink:`")
        return self._controller.port

    @property
    def messages(self) -> list[Received]:
        """The messages accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def connections(self) -> int:
        """How many connections clients have opened so far."""
        with self._lock:
            return self._connections

    @property
    def started(self) -> int:
        """How many messages clients have begun (MAIL commands) so far."""
        with self._lock:
            return self._started

    @cached_property
    def ca(self) -> trustme.CA:
        """The certificate authority that signed the sink's certificate (for 127.0.0.1)."""
        return trustme.CA()

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts the sink's certificate."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def settings(self, **overrides: Any) -> SmtpSettings:
        """Settings that reach this sink: its port, security and login, a 5 s timeout and no
        practical rate cap; ``overrides`` replace any of them."""
        values: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "security": self.security,
            "timeout": 5.0,
            "max_per_second": 1e6,
        }
        if self.login is not None:
            values |= {"username": self.login[0], "password": self.login[1]}
        return SmtpSettings.model_validate(values | overrides)

    def hang_up(self) -> None:
        """Close every open connection from the server's side; return once they are closed."""

        async def close_all() -> None:
            servers = list(self._open)
            for server in servers:
                if server.transport is not None:
                    server.transport.close()
            while any(server in self._open for server in servers):
                await asyncio.sleep(0.001)

        if self._controller is None:
            return
        loop = self._controller.loop
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=5)

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(HOST, "localhost").configure_cert(context)
        return context

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.login is not None
        user, password = (part.encode() for part in self.login)
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (user, password)
        if not ok:  # handled=False: aiosmtpd sends the 535 itself
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=data)

    def _opened(self, server: _Server) -> None:
        with self._lock:
            self._connections += 1
            self._open[server] = self._connections

    def _closed(self, server: _Server) -> None:
        with self._lock:
            self._open.pop(server, None)
            self._current.pop(server, None)

    def _next_answer(self, server: _Server) -> None:
        with self._lock:
            self._started += 1
            self._current[server] = self._answers.popleft() if self._answers else self._then

    async def _answer(self, server: _Server, at: str) -> str | None:
        """Carry out the current message's answer if it is due at ``at``; the reply to send."""
        with self._lock:
            answer = self._current.get(server, ACCEPT)
        if answer.at != at:
            return None
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.drop:
            assert server.transport is not None
            server.transport.close()
            await asyncio.Event().wait()  # connection_lost cancels this handler task
        return answer.reply

    def _record(self, server: _Server, session: Session, envelope: Envelope) -> int:
        login = session.auth_data.login.decode() if session.authenticated else None
        with self._lock:
            received = Received(
                sender=str(envelope.mail_from),
                recipients=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content or b""),
                connection=self._open[server],
                tls=session.ssl is not None or self.security == "tls",
                login=login,
            )
            self._messages.append(received)
            return len(self._messages)


class _Server(SMTP):
    """aiosmtpd's SMTP protocol, one per connection, telling the sink when it opens and closes."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        upgrade = self.transport is not None  # called again after STARTTLS
        super().connection_made(transport)
        if not upgrade:
            self.sink._opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._closed(self)
        super().connection_lost(error)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: _Server, session: Session, envelope: Envelope, address: str, options: Any
    ) -> Any:
        if self.sink.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        self.sink._next_answer(server)
        reply = await self.sink._answer(server, "MAIL")
        return MISSING if reply is None else reply

    async def handle_RCPT(
        self, server: _Server, session: Session, envelope: Envelope, address: str, options: Any
    ) -> Any:
        reply = await self.sink._answer(server, "RCPT")
        return MISSING if reply is None else reply

    async def handle_DATA(self, server: _Server, session: Session, envelope: Envelope) -> str:
        reply = await self.sink._answer(server, "DATA")
        if reply is not None:
            return reply
        number = self.sink._record(server, session, envelope)
        return f"250 2.0.0 Ok: queued as {number}"


class _Controller(Controller):
    """aiosmtpd's threaded controller, listening on a port the OS chose."""

    def __init__(self, sink: SmtpSink, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=0, **kwargs)
        self.sink = sink

    def factory(self) -> _Server:
        return _Server(self.sink, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        # Runs in the controller's thread before the start-up probe, which connects to self.port.
        listener = socket.socket()
        listener.bind((HOST, 0))
        self.port = listener.getsockname()[1]
        return self.loop.create_server(self._factory_invoker, sock=listener, ssl=self.ssl_context)
