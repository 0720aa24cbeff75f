"""The outbox under crashes: what a crashed sender leaves behind is sent at once by the next
sender on the same host, and only attempts whose outcome is known count towards the limit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import FROM, ingest, listing, make_app, send

from service.app import App
from service.clock import FixedClock
from service.mailroom import LEASE
from service.model import DeliveryStatus, ProfileSpec
from service.store.claimer import Claimer
from service.store.outbox import Outbox

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
NAMES = ("ann", "bob", "cid")


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def queue_digests(app: App, tmp_path: Path, clock: FixedClock, names: tuple[str, ...]) -> None:
    for name in names:
        app.pipeline.roster.save_subscriber(f"{name}@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(f"{name}@example.org", ProfileSpec("KV", '"kv cache"'))
    ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
    clock.at = NEXT_MORNING
    assert len(app.mailroom.plan()) == len(names)


def smtp_app(tmp_path: Path, database_url: str, clock: FixedClock, sink: SmtpSink) -> App:
    return make_app(tmp_path, database_url, clock, sender="smtp", smtp=sink.settings())


def a_finished_process() -> Claimer:
    """The claimer a process that has ended would have left: same host, its pid free now."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = f"{psutil.Process(child.pid).create_time():.2f}"
    child.wait()
    return Claimer(socket.gethostname(), Claimer.current().namespace, child.pid, started)


def test_a_claim_lost_to_a_crash_is_no_attempt(tmp_path: Path, database_url: str) -> None:
    clock = FixedClock(T0)
    with (
        SmtpSink(answers=[Answer("451 4.3.0 Try again later")]) as sink,
        make_app(
            tmp_path, database_url, clock, sender="smtp", smtp=sink.settings(), max_attempts=2
        ) as app,
    ):
        queue_digests(app, tmp_path, clock, ("ann",))
        elsewhere = Outbox(app.store.engine, Claimer("other-host", "", 4242, "1.00"))
        for _ in range(3):  # three senders on another host claim it and die
            assert len(elsewhere.claim(clock.now(), LEASE, 10)) == 1
            clock.advance(seconds=LEASE.total_seconds() + 1)
        [row] = app.mailroom.outbox.deliveries()
        assert row.attempts == 0
        # Its first real attempt meets a 451: one attempt of two, not the last.
        assert send(app).retried == 1
        [row] = app.mailroom.outbox.deliveries()
        assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
        clock.advance(hours=1)
        assert send(app).sent == 1
        [row] = app.mailroom.outbox.deliveries()
        assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)


def test_claims_of_a_process_gone_from_this_host_are_taken_at_once(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(T0)
    host = socket.gethostname()
    me = psutil.Process()
    with SmtpSink() as sink, smtp_app(tmp_path, database_url, clock, sink) as app:
        queue_digests(app, tmp_path, clock, NAMES)
        engine = app.store.engine
        here = Claimer.current().namespace
        alive = Outbox(engine, Claimer(host, here, me.pid, f"{me.create_time():.2f}"))
        assert len(alive.claim(clock.now(), LEASE, 1)) == 1  # a live sender holds ann's
        # bob's was claimed by a process that ended; cid's by a process whose pid is now
        # another process's (this one: a restarted container's pid 1 looks like this)
        assert len(Outbox(engine, a_finished_process()).claim(clock.now(), LEASE, 1)) == 1
        reused = Claimer(host, here, me.pid, "12.34")
        assert len(Outbox(engine, reused).claim(clock.now(), LEASE, 1)) == 1
        assert send(app).sent == 2  # within the lease: bob's and cid's, not the live one's
        assert sorted(m.recipients[0] for m in sink.messages) == [
            "bob@example.org",
            "cid@example.org",
        ]
        [held] = app.mailroom.outbox.deliveries(DeliveryStatus.SENDING)
        assert held.recipient == "ann@example.org"


@pytest.mark.parametrize("elsewhere", ["host", "namespace"])
def test_claims_made_where_this_process_cannot_look_wait_out_their_lease(
    tmp_path: Path, database_url: str, elsewhere: str
) -> None:
    """Another host, or another pid namespace (a container given the same host name): its
    pids mean nothing here, so a claim is not taken from a process that may be alive."""
    clock = FixedClock(T0)
    with SmtpSink() as sink, smtp_app(tmp_path, database_url, clock, sink) as app:
        queue_digests(app, tmp_path, clock, ("ann",))
        gone = a_finished_process()
        if elsewhere == "host":
            other = Claimer(f"not-{gone.host}", gone.namespace, gone.pid, gone.started)
        else:
            other = Claimer(gone.host, "pid:[1]", gone.pid, gone.started)
        assert len(Outbox(app.store.engine, other).claim(clock.now(), LEASE, 10)) == 1
        assert send(app).sent == 0
        clock.advance(seconds=LEASE.total_seconds() + 1)
        assert send(app).sent == 1


def test_a_claimer_reads_back_from_what_the_column_holds() -> None:
    me = Claimer.current()
    assert Claimer.parse(str(me)) == me
    assert me.namespace.startswith("pid:[")  # Linux
    assert not me.is_gone()
    assert [Claimer.parse(text) for text in (None, "", "a/b/c", "h/ns/x/1.00")] == [None] * 4


def test_a_sender_killed_mid_send_leaves_nothing_waiting_for_the_lease(
    tmp_path: Path, database_url: str
) -> None:
    """A real ``paperboy send`` claims three messages and is killed (SIGKILL) while the first
    is in flight; the next sender on this host sends all three at once, each counted as one
    attempt."""
    clock = FixedClock(T0)
    with SmtpSink(answers=[Answer("451 4.3.0 Too slow", delay=60)]) as sink:
        with smtp_app(tmp_path, database_url, clock, sink) as app:
            queue_digests(app, tmp_path, clock, NAMES)  # due since June: due for the child too
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAPERBOY_")},
            "XDG_CONFIG_HOME": str(tmp_path / "no-config"),
            "PAPERBOY_DATA_DIR": str(tmp_path / "data"),
            "PAPERBOY_DATABASE_URL": database_url,
            "PAPERBOY_SOURCES": "[]",
            "PAPERBOY_MAIL__FROM_ADDRESS": FROM,
            "PAPERBOY_MAIL__SENDER": "smtp",
            "PAPERBOY_MAIL__SMTP__HOST": "127.0.0.1",
            "PAPERBOY_MAIL__SMTP__PORT": str(sink.port),
            "PAPERBOY_MAIL__SMTP__SECURITY": "none",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "send"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            with smtp_app(tmp_path, database_url, clock, sink) as app:
                outbox = app.mailroom.outbox

                def in_flight() -> bool:
                    claimed = outbox.deliveries(DeliveryStatus.SENDING)
                    return len(claimed) == 3 and sink.started == 1

                assert wait_for(in_flight), "the sender never got the messages in flight"
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
                clock.at = datetime.now(UTC)  # well within the child's 10-minute lease
                assert send(app).sent == 3
                rows = outbox.deliveries()
                assert [(r.status, r.attempts) for r in rows] == [(DeliveryStatus.SENT, 1)] * 3
        finally:
            if process.poll() is None:
                process.kill()
            output = process.communicate()[0].decode()
        assert process.returncode == -signal.SIGKILL, output
        assert sorted(m.recipients[0] for m in sink.messages) == [
            f"{name}@example.org" for name in NAMES
        ]
