"""``paperboy worker`` and ``paperboy run`` as real processes on one PostgreSQL database: the
workers share what the leader plans, each digest sent once, and when the leader dies another
``paperboy run`` plans in its place at its next tick."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import ingest, listing, make_app

from service import subscribers
from service.clock import FixedClock
from service.model import DeliveryKind, DeliveryStatus, ProfileSpec, Schedule

CONFIG = """
data_dir = "{data}"
database_url = "{database}"
profiles_file = "{data}/none.toml"
log_level = "INFO"

[mail]
sender = "smtp"
from_address = "paperboy <digest@papers.example.org>"

[mail.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
max_per_second = 100000
"""

HOLD_THE_PLAN = """
import sys, time
import sqlalchemy as sa
from service.store.database import create_engine
from service.store.leader import lock_key
engine = create_engine(sys.argv[1])
db = engine.connect()
assert db.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("plan")}).scalar()
db.commit()
print("holding", flush=True)
time.sleep(3600)
"""


def wait_for(check: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def due_readers(tmp_path: Path, pg_url: str, count: int) -> FixedClock:
    """``count`` subscribers who joined two days ago with a paper matched since: each has a
    digest due now. The clock is at now."""
    clock = FixedClock(datetime.now(UTC) - timedelta(days=2))
    with make_app(tmp_path / "setup", pg_url, clock) as app:
        app.pipeline.roster.import_profiles(
            [
                subscribers.Declared(
                    f"reader{n}@example.org",
                    "Europe/Berlin",
                    Schedule.parse("daily 07:30"),
                    (ProfileSpec("KV", '"kv cache"'),),
                )
                for n in range(count)
            ]
        )
        clock.advance(hours=1)
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
    clock.at = datetime.now(UTC)
    return clock


@contextmanager
def processes(tmp_path: Path, pg_url: str, sink: SmtpSink) -> Iterator[Callable[..., Path]]:
    """Start ``paperboy ARGS`` (or a Python script) as real processes; each one's output goes
    to a file, whose path is returned. All are stopped (SIGTERM, then SIGKILL) on the way out."""
    config = tmp_path / "paperboy.toml"
    config.write_text(CONFIG.format(data=tmp_path / "data", database=pg_url, port=sink.port))
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, script: str | None = None) -> Path:
        log = tmp_path / f"process{len(started)}.log"
        command = (
            [sys.executable, "-c", script, pg_url]
            if script
            else [
                sys.executable,
                "-m",
                "service",
                *args,
            ]
        )
        with log.open("wb") as out:
            started.append(
                subprocess.Popen(
                    command,
                    env={**os.environ, "PAPERBOY_CONFIG": str(config)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        return log

    start.processes = started  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def says(log: Path, text: str) -> bool:
    return text in log.read_text(errors="replace")


def sent_by(log: Path) -> int:
    return sum(int(n) for n in re.findall(r"sent (\d+), to retry", log.read_text()))


@pytest.mark.postgres
def test_workers_share_what_the_leader_plans_and_send_each_digest_once(
    tmp_path: Path, pg_url: str
) -> None:
    readers = 300  # a worker holds two batches of 100 at most: the others take the rest
    clock = due_readers(tmp_path, pg_url, readers)
    # A relay that takes 20 ms a message: one worker alone would take seconds.
    with (
        SmtpSink(then=Answer(delay=0.02)) as sink,
        processes(tmp_path, pg_url, sink) as start,
    ):
        logs = [start("worker", "--send-every", "0.2") for _ in range(3)]
        assert wait_for(lambda: all(says(log, "worker running") for log in logs))
        with make_app(tmp_path / "leader", pg_url, clock) as leader:
            closed = leader.mailroom.close_windows()  # what the leader's plan job does
            assert len(closed) == readers and all(p.delivery_id for p in closed)
            assert wait_for(lambda: len(sink.messages) >= readers)
            assert wait_for(
                lambda: leader.mailroom.outbox.counts() == {DeliveryStatus.SENT.value: readers}
            ), leader.mailroom.outbox.counts()
            digests = leader.mailroom.outbox.deliveries()
        for process in start.processes:  # type: ignore[attr-defined]
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
    received = collections.Counter(r for m in sink.messages for r in m.recipients)
    assert received == {f"reader{n}@example.org": 1 for n in range(readers)}
    assert all(d.kind is DeliveryKind.DIGEST and d.papers == 1 for d in digests)
    assert all(m.content.count(b"Subject: 1 new paper: KV (1)") == 1 for m in sink.messages)
    counts = [sent_by(log) for log in logs]
    assert sum(counts) == readers
    assert sum(1 for n in counts if n) >= 2, counts  # the work was shared


@pytest.mark.postgres
def test_another_run_plans_at_its_next_tick_once_the_leader_is_killed(
    tmp_path: Path, pg_url: str
) -> None:
    clock = due_readers(tmp_path, pg_url, 5)
    with SmtpSink() as sink, processes(tmp_path, pg_url, sink) as start:
        leader = start(script=HOLD_THE_PLAN)  # a leader in the middle of planning
        assert wait_for(lambda: says(leader, "holding"))
        follower = start("run", "--tick", "0.5", "--send-every", "0.5", "--port", "0")
        assert wait_for(lambda: says(follower, "paperboy running"))
        time.sleep(2)  # four ticks: the follower polls, but leaves planning to the leader
        with make_app(tmp_path / "look", pg_url, clock) as app:
            assert app.mailroom.outbox.deliveries() == []
            start.processes[0].send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
            assert wait_for(lambda: len(sink.messages) == 5)
            assert says(follower, "closed 5 digest windows")
            # The sink has them before the sender records them (outcomes go per slice).
            sent = {DeliveryStatus.SENT.value: 5}
            assert wait_for(lambda: app.mailroom.outbox.counts() == sent)
    assert sorted(r for m in sink.messages for r in m.recipients) == sorted(
        f"reader{n}@example.org" for n in range(5)
    )
