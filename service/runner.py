"""``paperboy run``: APScheduler runs the "do what is due" jobs; due times live in the database."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from service.app import App

log = logging.getLogger(__name__)


def run(app: App, *, tick: float = 30.0) -> None:
    """Poll due sources every ``tick`` seconds until SIGTERM or SIGINT; finish the job in hand."""
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        app.pipeline.poll,
        "interval",
        seconds=tick,
        id="poll",
        coalesce=True,
        max_instances=1,
        next_run_time=app.pipeline.clock.now(),
    )

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the job in hand, then stopping", signum)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("paperboy running: %d sources", len(app.settings.sources))
    scheduler.start()
