"""Benchmark: digests a second sent by 1, 2 and 4 ``paperboy worker`` processes (issue 15), and
a leader killed halfway.

Builds, in a fresh PostgreSQL database on 127.0.0.1:5432 (dropped afterwards), ``--digests``
subscribers who each have a digest due now (one profile, ten matched papers: a real digest to
compose and render), and starts a local SMTP sink (aiosmtpd, in a process of its own) that takes
20 ms over each message, as a real relay does, and notes each message it accepts. Then:

- for each worker count: the windows are closed (the leader's plan job: a delivery to compose
  recorded per digest; timed), that many real ``paperboy worker`` processes are started, and
  the run ends when the sink has every digest. Messages a second are counted at the sink, from
  its first message to its last; beside them the load average and the CPU seconds the workers,
  the sink and PostgreSQL used, which say where the two cores went;
- the kill run: ``paperboy run`` (the leader: it plans, and sends too) and two workers start on
  due windows; when the sink has half the digests the leader is frozen (SIGSTOP), the
  deliveries it holds are noted (what it has in flight), and it is killed (SIGKILL). The
  workers take its claims over and finish; at the sink, every digest must have arrived, and
  any that arrived twice must be one the leader held.

The workers send with ``mail.smtp.connections`` connections each (``--connections``) and the
rate cap (``mail.smtp.max_per_second``) high enough to be off; each renders in its own process
(``mail.render_processes = 1``): a worker is the unit of scale.

    .venv/bin/python bench/workers.py [--digests 20000] [--workers 1 2 4] [--connections 1]
        [--no-kill]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cycle import database  # a fresh PostgreSQL database, dropped afterwards

from service import identity
from service.app import App, build
from service.clock import FixedClock
from service.config import Settings
from service.model import ProfileSpec
from service.store.tables import deliveries, matches, messages, profiles, sent, subscribers

DELAY = 0.02  # what the sink takes over each message
PAPERS = 10
TEMPLATE = "template@example.org"

CONFIG = """
data_dir = "{data}"
database_url = "{database}"
profiles_file = "{data}/none.toml"
log_level = "WARNING"

[mail]
sender = "smtp"
from_address = "paperboy <digest@papers.example.org>"
render_processes = 1

[mail.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = {connections}
max_per_second = 1000000
"""


# -- the sink -------------------------------------------------------------------------------


def sink(port: int, log: str) -> None:
    """Serve SMTP on 127.0.0.1:``port``; each message takes ``DELAY`` and is noted in ``log``
    (the time and the recipient, a line each) once accepted."""
    from aiosmtpd.controller import Controller

    with Path(log).open("a", buffering=1) as out:

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                await asyncio.sleep(DELAY)
                out.write(f"{time.time():.4f} {envelope.rcpt_tos[0]}\n")
                return "250 2.0.0 OK"

        controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        controller.start()
        print("listening", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        controller.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def received(log: Path) -> list[tuple[float, str]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(at), rcpt) for at, rcpt in (line.split(" ", 1) for line in lines if " " in line)]


# -- the workload ---------------------------------------------------------------------------


def listing() -> bytes:
    parts = [
        "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        "byAK and the research community\n\nJun 1\n\n"
    ]
    for n in range(PAPERS):
        parts.append(
            f"Paging the kv cache, part {n + 1}\n\nA paged kv cache for serving large models,"
            f" studied from angle {n + 1}.\n\n  • 3 authors\n·\nJun 1\n\n"
        )
    return "".join(parts).encode()


@dataclass
class Workload:
    app: App
    due: dict[str, Any]  # the subscribers' window columns, to make every digest due again


def build_workload(url: str, tmp: Path, count: int) -> Workload:
    """One subscriber made the ordinary way (a profile, ten matched papers), then copied
    ``count`` times in bulk: subscribers, profiles and matches."""
    now = datetime.now(UTC)
    clock = FixedClock(now - timedelta(days=2))
    settings = Settings(data_dir=tmp / "setup", database_url=url, sources=[])
    app = build(settings, clock=clock)
    roster = app.pipeline.roster
    roster.save_subscriber(TEMPLATE, "UTC", "daily 07:00")
    roster.save_profile(TEMPLATE, ProfileSpec("KV cache", '"kv cache"', max_items=20))
    clock.advance(hours=1)
    path = tmp / "day.txt"
    path.write_bytes(listing())
    app.pipeline.ingest.ingest_files([path], captured_at=clock.now())
    engine = app.store.engine
    with engine.begin() as db:
        person = db.execute(sa.select(subscribers).where(subscribers.c.email == TEMPLATE)).one()
        profile = db.execute(sa.select(profiles).where(profiles.c.subscriber_id == person.id)).one()
        found = db.execute(sa.select(matches).where(matches.c.profile_id == profile.id)).all()
        assert len(found) == PAPERS, found
        people = []
        for n in range(count):
            row = {k: v for k, v in person._asdict().items() if k != "id"}
            email = f"reader{n}@example.org"
            row |= {
                "email": email,
                "email_key": identity.mailbox_key(email),
                "token": secrets.token_urlsafe(24),
            }
            people.append(row)
        ids = db.execute(
            subscribers.insert().returning(subscribers.c.id, sort_by_parameter_order=True), people
        ).scalars()
        base = {k: v for k, v in profile._asdict().items() if k not in ("id", "subscriber_id")}
        profile_ids = db.execute(
            profiles.insert().returning(profiles.c.id, sort_by_parameter_order=True),
            [{**base, "subscriber_id": i} for i in ids],
        ).scalars()
        rows = [{**m._asdict(), "profile_id": pid} for pid in list(profile_ids) for m in found]
        for start in range(0, len(rows), 20_000):
            db.execute(matches.insert(), rows[start : start + 20_000])
        db.execute(
            subscribers.update().where(subscribers.c.id == person.id).values(status="paused")
        )
        db.execute(sa.text("ANALYZE"))
    return Workload(app, {"window_end": person.window_end, "next_window_at": person.next_window_at})


def make_due(work: Workload) -> None:
    """Every digest due again: the outbox and the ledger emptied, the windows put back."""
    with work.app.store.engine.begin() as db:
        db.execute(sent.delete())
        db.execute(deliveries.delete())
        db.execute(subscribers.update().where(subscribers.c.status == "active").values(work.due))


# -- the runs -------------------------------------------------------------------------------


def start(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """``paperboy ARGS``; what it logs goes to a file beside the config (a pipe nobody reads
    would fill, and stop it)."""
    logs = config.parent / "logs"
    logs.mkdir(exist_ok=True)
    with (logs / f"{args[0]}-{time.monotonic_ns()}.log").open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            env={**os.environ, "PAPERBOY_CONFIG": str(config)},
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_cpu() -> float:
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            try:
                times = process.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += times.user + times.system
    return total


def wait_for_sink(log: Path, before: int, count: int, timeout: float, watch: list[Any]) -> None:
    deadline = time.monotonic() + timeout
    while len(received(log)) - before < count:
        for process in watch:
            if process.poll() is not None:
                raise SystemExit(f"a process ended: {process.args}, exit {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {len(received(log)) - before} of {count} arrived")
        time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_workers(
    work: Workload, config: Path, log: Path, sink_pid: int, workers: int, count: int
) -> dict[str, float]:
    make_due(work)
    work.app.pipeline.clock.at = datetime.now(UTC)  # type: ignore[attr-defined]
    started = time.perf_counter()
    closed = work.app.mailroom.close_windows()
    plan_seconds = time.perf_counter() - started
    assert sum(1 for p in closed if p.delivery_id) == count, len(closed)
    before = len(received(log))
    cpu_before = (cpu([sink_pid]), postgres_cpu())
    began = time.perf_counter()
    processes = [start(config, "worker", "--send-every", "0.5") for _ in range(workers)]
    try:
        wait_for_sink(log, before, count, 3600, processes)
        worker_cpu = cpu([p.pid for p in processes])
        database_cpu = postgres_cpu() - cpu_before[1]  # before the workers' backends end
    finally:
        stop(processes)
    wall = time.perf_counter() - began
    load = os.getloadavg()[0]
    arrived = received(log)[before:]
    first, last = arrived[0][0], arrived[-1][0]
    counts = work.app.mailroom.outbox.counts()
    assert counts == {"sent": count}, counts
    return {
        "plan": plan_seconds,
        "rate": (len(arrived) - 1) / (last - first),
        "wall": wall,
        "load": load,
        "worker cpu": worker_cpu,
        "sink cpu": cpu([sink_pid]) - cpu_before[0],
        "postgres cpu": database_cpu,
        "twice": len(arrived) - len({r for _, r in arrived}),
    }


def run_kill(work: Workload, config: Path, log: Path, count: int) -> dict[str, Any]:
    """``paperboy run`` and two workers; the leader killed when half the digests are out."""
    make_due(work)
    before = len(received(log))
    leader = start(config, "run", "--tick", "1", "--send-every", "1", "--port", "0")
    workers = [start(config, "worker", "--send-every", "0.5") for _ in range(2)]
    try:
        wait_for_sink(log, before, count // 2, 3600, [leader, *workers])
        leader.send_signal(signal.SIGSTOP)  # frozen: what it holds stays as it is
        with work.app.store.engine.connect() as db:
            held = db.execute(
                sa.select(deliveries.c.recipient, messages.c.body.is_not(None))
                .select_from(deliveries)
                .outerjoin(messages)
                .where(
                    deliveries.c.status == "sending",
                    deliveries.c.claimed_by.like(f"%/{leader.pid}/%"),
                )
            ).all()
            planned = db.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar()
        at_kill = len(received(log)) - before
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        wait_for_sink(log, before, count, 3600, workers)
        deadline = time.monotonic() + 60  # the last outcomes written
        while work.app.mailroom.outbox.counts() != {"sent": count}:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        outbox = work.app.mailroom.outbox.counts()
    finally:
        stop([leader, *workers])
    arrived = collections.Counter(r for _, r in received(log)[before:])
    held_by = {r for r, _ in held}
    twice = {r: n for r, n in arrived.items() if n > 1}
    return {
        "planned": planned,
        "at kill": at_kill,
        "held": len(held),
        "held composed": sum(1 for _, composed in held if composed),
        "arrived": len(arrived),
        "lost": count - len(arrived),
        "twice": len(twice),
        "twice not held": sorted(set(twice) - held_by),
        "outbox": outbox,
        "load": os.getloadavg()[0],
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "sink":
        sink(int(sys.argv[2]), sys.argv[3])
        return 0
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--digests", type=int, default=20_000)
    options.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    options.add_argument("--connections", type=int, default=1)
    options.add_argument("--no-kill", action="store_true")
    args = options.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, database("postgresql", Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        port = free_port()
        log = tmp / "sink.log"
        sink_process = subprocess.Popen(
            [sys.executable, __file__, "sink", str(port), str(log)], stdout=subprocess.PIPE
        )
        try:
            assert sink_process.stdout is not None
            assert sink_process.stdout.readline().strip() == b"listening"
            config = tmp / "paperboy.toml"
            config.write_text(
                CONFIG.format(
                    data=tmp / "data", database=url, port=port, connections=args.connections
                )
            )
            print(f"load before: {os.getloadavg()}", flush=True)
            started = time.perf_counter()
            work = build_workload(url, tmp, args.digests)
            print(
                f"{args.digests} subscribers with a digest due, built in"
                f" {time.perf_counter() - started:.0f} s",
                flush=True,
            )
            print(
                f"{'workers':>8}{'plan s':>8}{'msg/s':>8}{'×1':>6}{'wall s':>8}{'load':>6}"
                f"{'cpu ms/msg: workers':>21}{'sink':>6}{'pg':>6}{'twice':>7}",
                flush=True,
            )
            one = None
            for workers in args.workers:
                f = run_workers(work, config, log, sink_process.pid, workers, args.digests)
                one = one or f["rate"]
                per = 1000 / args.digests
                print(
                    f"{workers:>8}{f['plan']:>8.1f}{f['rate']:>8.1f}{f['rate'] / one:>6.2f}"
                    f"{f['wall']:>8.1f}{f['load']:>6.2f}{f['worker cpu'] * per:>21.2f}"
                    f"{f['sink cpu'] * per:>6.2f}{f['postgres cpu'] * per:>6.2f}{f['twice']:>7}",
                    flush=True,
                )
            if not args.no_kill:
                k = run_kill(work, config, log, args.digests)
                print(
                    f"leader killed: planned {k['planned']}; {k['at kill']} at the sink when it"
                    f" was killed, holding {k['held']} ({k['held composed']} composed);"
                    f" arrived {k['arrived']}, lost {k['lost']}, twice {k['twice']}"
                    f" (not held by the leader: {k['twice not held']}); outbox {k['outbox']};"
                    f" load {k['load']:.2f}",
                    flush=True,
                )
            work.app.close()
            said = [
                line
                for path in sorted((tmp / "logs").glob("*.log"))
                for line in path.read_text(errors="replace").splitlines()
            ]
            print(f"the processes logged {len(said)} lines (WARNING and above)", flush=True)
            for line in sorted(set(said))[:10]:
                print(f"  {line[:200]}", flush=True)
        finally:
            sink_process.send_signal(signal.SIGTERM)
            sink_process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
