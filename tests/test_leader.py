"""Several paperboy processes on one PostgreSQL database: one leads each job at a time, and
windows are closed once however many planners race."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from mail import listing, make_app

from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec
from service.runner import serve
from service.store.database import create_engine
from service.store.leader import leading, lock_key

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin


@pytest.mark.postgres
def test_one_process_leads_a_job_at_a_time(pg_url: str) -> None:
    first, second = create_engine(pg_url), create_engine(pg_url)
    try:
        with (
            leading(first, "plan") as leads,
            leading(second, "plan") as also,
            leading(second, "poll") as other,
        ):
            assert (leads, also, other) == (True, False, True)
        with leading(second, "plan") as later:
            assert later
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_a_leader_that_dies_gives_the_job_up(pg_url: str) -> None:
    dying, other = create_engine(pg_url), create_engine(pg_url)
    try:
        db = dying.connect()
        taken = db.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("plan")})
        assert taken.scalar() is True
        with leading(other, "plan") as leads:
            assert not leads
        db.invalidate()  # the connection drops without unlocking, as when a process is killed
        db.close()
        deadline = time.monotonic() + 5  # the server notices the hang-up a moment later
        while True:
            with leading(other, "plan") as leads:
                if leads or time.monotonic() > deadline:
                    break
            time.sleep(0.01)
        assert leads
    finally:
        dying.dispose()
        other.dispose()


def test_a_single_sqlite_process_always_leads(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'paperboy.db'}")
    try:
        with leading(engine, "plan") as leads, leading(engine, "plan") as again:
            assert leads and again
    finally:
        engine.dispose()


def run_for(app: App, seconds: float) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await serve(app, tick=0.1, send_every=0.1, stop=stop)

    asyncio.run(go())


@pytest.mark.postgres
def test_run_plans_only_while_it_leads(tmp_path: Path, pg_url: str) -> None:
    clock = FixedClock(T0)
    with make_app(tmp_path, pg_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("KV", "kv", send_when_empty=True)
        )
        clock.at = NEXT_MORNING
        other = create_engine(pg_url)
        try:
            with leading(other, "plan") as held:  # another process is planning
                assert held
                run_for(app, 1.0)
                assert app.mailroom.outbox.deliveries() == []
        finally:
            other.dispose()
        run_for(app, 1.0)
        [delivery] = app.mailroom.outbox.deliveries()
    assert delivery.subject == "No new papers"


def test_racing_planners_close_each_window_once(tmp_path: Path, database_url: str) -> None:
    clock = FixedClock(T0)
    with (
        make_app(tmp_path / "a", database_url, clock) as first,
        make_app(tmp_path / "b", database_url, clock) as second,
    ):
        for n in range(20):
            email = f"reader{n}@example.org"
            first.pipeline.roster.save_subscriber(email, "Europe/Berlin", "daily 07:30")
            first.pipeline.roster.save_profile(email, ProfileSpec("KV", "kv", send_when_empty=True))
        clock.at = NEXT_MORNING
        start = threading.Barrier(2)
        planned: list[int] = []
        failures: list[BaseException] = []

        def plan(app: App) -> None:
            start.wait()
            try:
                planned.extend(p.delivery_id for p in app.mailroom.plan() if p.delivery_id)
            except BaseException as exc:  # reported below, in the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=plan, args=(app,)) for app in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        deliveries = first.mailroom.outbox.deliveries()
    assert len(deliveries) == 20 == len(planned)
    assert len({d.recipient for d in deliveries}) == 20


@pytest.mark.postgres
def test_a_process_that_takes_over_polling_counts_papers_afresh(
    tmp_path: Path, pg_url: str
) -> None:
    clock = FixedClock(T0)
    with (
        make_app(tmp_path / "a", pg_url, clock) as poller,
        make_app(tmp_path / "b", pg_url, clock) as follower,
    ):
        first, second = tmp_path / "one.txt", tmp_path / "two.txt"
        first.write_text(listing("Jun 1", ("KV cache paging", "Paged kv cache.", "May 30 3")))
        second.write_text(listing("Jun 1", ("Sparse attention", "Sparse.", "May 30 3")))
        follower.pipeline.ingest.ingest_files([first], captured_at=T0)
        assert follower.pipeline.matching._stats().total == 1
        poller.pipeline.ingest.ingest_files([second], captured_at=T0)
        assert (
            follower.pipeline.matching._stats().total == 1
        )  # the other process's paper is not seen
        held, other = threading.Event(), create_engine(pg_url)

        def lead_for_a_while() -> None:  # another process polls for half a second
            with leading(other, "poll") as leads:
                assert leads
                held.set()
                time.sleep(0.5)

        thread = threading.Thread(target=lead_for_a_while)
        thread.start()
        try:
            assert held.wait(5)
            run_for(follower, 1.5)  # follows, then leads: what the other stored is counted
        finally:
            thread.join()
            other.dispose()
        assert follower.pipeline.matching._stats().total == 2
