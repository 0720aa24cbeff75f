"""``paperboy run``: APScheduler's AsyncIOScheduler runs the "do what is due" jobs.

Jobs: ``poll`` (poll due sources; matching and alerts follow each snapshot), ``plan`` (close
due digest windows: a delivery to compose recorded for each), ``send`` (compose, render and
send what the outbox holds) and ``cleanup``. Due times live in the database, so the jobs only
ask "what is due now?". The jobs that write papers and windows run one at a time on a single
worker thread, and on PostgreSQL only in the process that leads them (an advisory lock per
job, taken for each run: when the leader dies its locks go with its connection, and the next
tick of another process leads), so any number of ``paperboy run`` processes can share a
database. ``send`` runs on the event loop in every process and is woken as soon as a poll or a
plan queued something. Every job coalesces missed runs and never overlaps itself. SIGTERM or
SIGINT: the job in hand finishes (the message in flight is sent), then the process exits.

``paperboy worker`` runs ``send`` alone (no polling, planning or web): any number of them, on
one machine or many, compose, render and send what the leaders plan, each claiming its own
rows (``FOR UPDATE SKIP LOCKED``).

``paperboy run`` also serves the web (feeds, pages, health and metrics) with uvicorn on the
same event loop, and ``paperboy web`` serves only the web. uvicorn's own signal handling is
off: the runner's SIGTERM/SIGINT handler stops the web and the jobs together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from service.app import App
from service.errors import MailConfigError, PaperboyError
from service.mailroom import SendResult
from service.store.leader import leading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listen:
    """Where the web listens."""

    host: str
    port: int


def run(
    app: App, *, tick: float = 30.0, send_every: float = 60.0, listen: Listen | None = None
) -> None:
    """Run the jobs (and the web, when ``listen`` says where) until SIGTERM or SIGINT."""
    asyncio.run(serve(app, tick=tick, send_every=send_every, listen=listen))


def work(app: App, *, send_every: float = 10.0) -> None:
    """Compose, render and send what is due, and nothing else, until SIGTERM or SIGINT."""
    asyncio.run(serve(app, send_every=send_every, lead=False))


def run_web(app: App, listen: Listen) -> None:
    """Serve only the web until SIGTERM or SIGINT."""
    asyncio.run(serve_web(app, listen))


async def serve_web(app: App, listen: Listen, *, stop: asyncio.Event | None = None) -> None:
    """Serve the web until ``stop`` is set (by SIGTERM or SIGINT, or by a caller)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    _on_signals(loop, stop)
    try:
        async with _web(app, listen):
            await stop.wait()
    finally:
        _off_signals(loop)


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handlers: the runner's own stop it (see ``_web``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _web(app: App, listen: Listen) -> AsyncIterator[None]:
    """uvicorn serving the web on the running loop for the time of the ``async with``; the
    preview papers are prepared in the background meanwhile."""
    from service.web.access_log import install
    from service.web.server import create_app

    config = uvicorn.Config(
        create_app(app),
        host=listen.host,
        port=listen.port,
        lifespan="off",
        server_header=False,
        log_config=None,  # the CLI's logging setup holds (libraries at WARNING unless -vv)
        forwarded_allow_ips=",".join(app.settings.web.trusted_proxies) or None,
    )
    install()
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    # A daemon thread: a stop does not wait for it (it only reads).
    threading.Thread(target=app.pipeline.matching.warm, name="warm", daemon=True).start()
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():  # it could not start (the port is taken): say why
        serving.result()
        raise PaperboyError(f"the web did not start on {listen.host}:{listen.port}")
    log.info("web listening on http://%s:%d", listen.host, listen.port)
    try:
        yield
    finally:
        server.should_exit = True
        await serving


def _on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    def request_stop(signum: int) -> None:
        log.info("signal %d: finishing the job in hand, then stopping", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)


def _off_signals(loop: asyncio.AbstractEventLoop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(signum)


async def serve(
    app: App,
    *,
    tick: float = 30.0,
    send_every: float = 60.0,
    stop: asyncio.Event | None = None,
    listen: Listen | None = None,
    lead: bool = True,
) -> None:
    """Run the jobs (and the web, when ``listen`` says where) until ``stop`` is set (by
    SIGTERM or SIGINT, or by a caller). ``lead=False``: only ``send`` (``paperboy worker``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    mailroom = app.mailroom
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        executors={"store": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    sending: set[asyncio.Task[Any]] = set()
    unusable: list[str] = []  # why mail cannot go, as last logged (logged once, not per run)

    def store_job(
        name: str, job: Callable[[], object], *, take_over: Callable[[], None] | None = None
    ) -> Callable[[], None]:
        """Run ``job`` if this process leads it now (see ``store.leader``), after ``take_over``
        when another process led its last run; if the outbox then holds something due, wake
        the sender now."""

        followed = False  # whether another process led the last run

        def wrapped() -> None:
            nonlocal followed
            with leading(app.store.engine, name) as leader:
                if not leader:
                    log.debug("%s: another process leads it; skipped", name)
                    followed = True
                    return
                if followed and take_over is not None:
                    take_over()
                followed = False
                job()
            if mailroom.outbox.due(app.pipeline.clock.now()) and not mailroom.stopping:
                loop.call_soon_threadsafe(wake)

        return wrapped

    again = asyncio.Event()  # mail was queued while a send ran: that send goes round again

    def wake() -> None:
        """Send now; a send already running (the job never overlaps itself) runs once more."""
        if sending:
            again.set()
        else:
            scheduler.modify_job("send", next_run_time=datetime.now(UTC))

    async def send() -> None:
        if sending:  # a long send is running: it goes round once more (no overlap, no warning)
            again.set()
            return
        task = asyncio.current_task()
        assert task is not None
        sending.add(task)
        again.clear()  # this run takes what is due now
        try:
            results = [await mailroom.send()]
            while again.is_set() and not mailroom.stopping:
                again.clear()
                results.append(await mailroom.send())
        except MailConfigError as exc:
            if unusable != [str(exc)]:
                log.error("mail cannot go until [mail] or the server is fixed: %s", exc)
                unusable[:] = [str(exc)]
            return
        finally:
            sending.discard(task)
        if unusable and any(r != SendResult() for r in results):  # the server answered
            log.info("mail goes out again")
            unusable.clear()

    now = datetime.now(UTC)
    # A second instance only hands over to the first (see ``send``): APScheduler would log a
    # warning at every interval that a long send spans.
    scheduler.add_job(
        send, "interval", seconds=send_every, id="send", next_run_time=now, max_instances=2
    )
    if lead:
        _leader_jobs(app, scheduler, store_job, tick)

    _on_signals(loop, stop)
    log.info(
        "paperboy %s: %d sources, mail by %s",
        "running" if lead else "worker running (composes, renders and sends)",
        len(app.settings.sources),
        app.settings.mail.sender,
    )
    mailroom.warn_of_slow_sending()
    scheduler.start()
    try:
        async with _web(app, listen) if listen else contextlib.nullcontext():
            await stop.wait()
    finally:
        mailroom.stop()  # the send in progress ends after its message in flight
        scheduler.pause()
        if sending:
            await asyncio.wait(sending)
        scheduler.shutdown(wait=True)  # waits for the store thread's job in hand
        _off_signals(loop)
        if mailroom.sender is not None:
            await mailroom.sender.close()


def _leader_jobs(
    app: App,
    scheduler: AsyncIOScheduler,
    store_job: Callable[..., Callable[[], None]],
    tick: float,
) -> None:
    """The jobs one process at a time leads: poll, plan, cleanup and bounces."""
    store = {"executor": "store", "next_run_time": datetime.now(UTC)}
    # Papers another process polled meanwhile are not in this one's document frequencies.
    poll = store_job("poll", app.pipeline.ingest.poll, take_over=app.pipeline.matching.forget_stats)
    plan = store_job("plan", app.mailroom.close_windows)
    scheduler.add_job(poll, "interval", seconds=tick, id="poll", **store)
    scheduler.add_job(plan, "interval", seconds=tick, id="plan", **store)
    cleanup = store_job("cleanup", app.pipeline.cleanup)
    scheduler.add_job(cleanup, "interval", hours=1, id="cleanup", executor="store")
    if app.bounce_mailboxes():

        def read_bounces() -> None:
            try:
                app.check_bounces()
            except MailConfigError as exc:  # the mailbox is unreachable: next time, maybe
                log.error("bounce mailbox: %s", exc)

        bounces = store_job("bounces", read_bounces)
        every = app.settings.bounces.interval.total_seconds()
        scheduler.add_job(bounces, "interval", seconds=every, id="bounces", **store)
