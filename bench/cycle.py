"""Benchmark: the daily cycle (issue 13) at a given number of subscribers, per stage.

Builds the workload the issue describes and times each stage on SQLite (a temporary file) and
PostgreSQL (a fresh database on 127.0.0.1:5432, dropped afterwards), side by side:

- import: the subscribers and their 1-3 profiles, as ``paperboy profiles import`` does;
- ingest + match: one listing of 1,000 new papers (the five seeds' real titles and abstracts,
  each given two topics of 400, so that a profile's phrase finds about five papers and a
  digest holds about ten), parsed, stored and matched against every profile;
- plan: every subscriber's window closes (everyone is due at 07:00 in their own zone): the
  window moved and a delivery to compose recorded (what the leader's plan job does), then each
  digest composed (candidates, papers, ledger, read in bulk) and rendered into the outbox, by
  processes across the cores, each batch as soon as its windows are closed: ``paperboy plan``,
  ``Mailroom.plan()``;
- send: the outbox drained into a local maildir, what ``paperboy worker`` (and ``paperboy
  run``'s own sender) does. (Under ``paperboy run`` the senders compose what they claim, so
  composing and sending overlap; here they are timed apart, as the issue's stages are.)

For each stage: seconds and the peak resident memory of the process during it (sampled every
20 ms from /proc); after sending, per digest: the message's KB, the KB the database stores for it
("stored": PostgreSQL compresses it) and its papers.

    .venv/bin/python bench/cycle.py --subscribers 1000 10000 [--stores sqlite postgresql]
        [--profile plan]  # cProfile of one stage, top 25 by cumulative time
        [--stages import ingest+match]  # stop after these (each needs the ones before it)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from service import subscribers
from service.app import build
from service.clock import FixedClock
from service.config import FetchSettings, Settings
from service.model import PaperIn, ProfileSpec, Schedule, Snapshot
from service.parse.listing import parse
from service.store.tables import deliveries, messages

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
PG_SERVER = os.environ.get("PAPERBOY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The day: subscribers join at 17:00 UTC the day before, the papers come in at 18:00 UTC, and
# at 16:00 UTC on the day every zone below is past 07:00 (Los Angeles is UTC-7 in June).
JOINED = datetime(2026, 6, 1, 17, 0, tzinfo=UTC)
INGESTED = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
DUE = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)
ZONES = (
    "America/Los_Angeles",
    "America/New_York",
    "America/Sao_Paulo",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Shanghai",
    "Asia/Tokyo",
)
ADJECTIVES = [
    "sparse",
    "contrastive",
    "causal",
    "federated",
    "adversarial",
    "hierarchical",
    "multilingual",
    "probabilistic",
    "quantized",
    "recurrent",
    "equivariant",
    "differentiable",
    "generative",
    "robust",
    "efficient",
    "continual",
    "symbolic",
    "geometric",
    "spectral",
    "temporal",
]
NOUNS = [
    "attention",
    "retrieval",
    "planning",
    "distillation",
    "segmentation",
    "alignment",
    "tokenization",
    "reconstruction",
    "navigation",
    "compression",
    "reasoning",
    "pretraining",
    "calibration",
    "decoding",
    "grounding",
    "forecasting",
    "editing",
    "captioning",
    "tracking",
    "unlearning",
]
TOPICS = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]  # 400 two-word topics
PAPERS = 1000


class Peak:
    """The process's peak resident memory while a stage runs, sampled from /proc."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with Path("/proc/self/statm").open() as statm:
                rss = int(statm.read().split()[1]) * page
            self.peak = max(self.peak, rss)
            self._stop.wait(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def seed_papers() -> list[PaperIn]:
    papers = []
    for path in sorted(SEEDS.glob("*.txt")):
        papers.extend(parse(Snapshot("seed", str(path), path.read_bytes(), JOINED)).papers)
    return papers


def listing(seeds: list[PaperIn], rng: random.Random) -> bytes:
    """A listing of ``PAPERS`` new papers: each a seed's text, titled afresh and given two of
    the 400 topics, so that every topic is found in about five papers."""
    parts = [
        "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        "byAK and the research community\n\nJun 1\n\n"
    ]
    for n in range(PAPERS):
        seed = seeds[n % len(seeds)]
        first, second = TOPICS[(2 * n) % len(TOPICS)], TOPICS[(2 * n + 1) % len(TOPICS)]
        title = f"{seed.title.rstrip('.')}: {first} meets {second} (part {n // len(seeds) + 1})"
        abstract = f"{seed.abstract} We study {first} and {second} at scale."
        parts.append(f"{title}\n\n{abstract}\n\n  • {rng.randint(1, 12)} authors\n·\nJun 1\n\n")
    return "".join(parts).encode()


def declared(count: int, rng: random.Random) -> list[subscribers.Declared]:
    """``count`` subscribers, each with 1-3 profiles of a topic phrase each, due daily at 07:00
    in one of eight zones."""
    out = []
    for n in range(count):
        chosen = rng.sample(TOPICS, rng.choice((1, 2, 2, 3)))
        specs = tuple(
            ProfileSpec(name=topic.title(), query=f'"{topic}"', max_items=20) for topic in chosen
        )
        out.append(
            subscribers.Declared(
                email=f"reader{n}@example.org",
                timezone=ZONES[n % len(ZONES)],
                schedule=Schedule.parse("daily 07:00"),
                profiles=specs,
            )
        )
    return out


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'paperboy.db'}"
        return
    name = f"paperboy_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        PG_SERVER.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def stage(
    figures: dict[str, Any], name: str, action: Callable[[], object], profile: str | None
) -> Any:
    profiler = cProfile.Profile() if profile == name else None
    with Peak() as peak:
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = action()
        if profiler is not None:
            profiler.disable()
        figures[name] = (time.perf_counter() - start, peak.peak)
    seconds, peak_bytes = figures[name]
    # Each stage as it ends, so that a long run shows where it is.
    print(f"  {name}: {seconds:.1f} s, peak {peak_bytes / 2**20:.0f} MB", flush=True)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        figures[f"{name} profile"] = out.getvalue()
    return result


STAGES = ("import", "ingest+match", "plan", "send")


def cycle(kind: str, count: int, profile: str | None, last: str = STAGES[-1]) -> dict[str, Any]:
    rng = random.Random(13)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name, database(kind, Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        people = declared(count, rng)
        body = listing(seed_papers(), rng)
        settings = Settings(
            data_dir=tmp,
            database_url=url,
            profiles_file=tmp / "none.toml",
            fetch=FetchSettings(max_bytes=1 << 30),
            sources=[],
        )
        clock = FixedClock(JOINED)
        with build(settings, clock=clock) as app:
            pipeline = app.pipeline
            stage(figures, "import", lambda: pipeline.roster.import_profiles(people), profile)
            if last == "import":
                return figures
            clock.at = INGESTED
            path = tmp / "day.txt"
            path.write_bytes(body)
            (summary,) = stage(
                figures,
                "ingest+match",
                lambda: pipeline.ingest.ingest_files([path], captured_at=INGESTED),
                profile,
            )
            assert summary.new == PAPERS, summary
            if last == "ingest+match":
                return figures
            clock.at = DUE
            planned = stage(figures, "plan", app.mailroom.plan, profile)
            result = stage(figures, "send", lambda: asyncio.run(app.mailroom.send()), profile)
            figures["sent"] = result.sent
            with app.store.engine.connect() as db:
                queued, shown = db.execute(
                    sa.select(sa.func.count(), sa.func.sum(deliveries.c.papers))
                ).one()
                # Stored: as the database keeps the bytes (PostgreSQL compresses them).
                stored = sa.func.pg_column_size if kind == "postgresql" else sa.func.length
                size, kept = db.execute(
                    sa.select(
                        sa.func.sum(sa.func.length(messages.c.body)),
                        sa.func.sum(stored(messages.c.body)),
                    )
                ).one()
            figures["digests"] = (int(queued), len(planned))
            figures["bytes/digest"] = int(size or 0) / max(1, int(queued))
            figures["stored/digest"] = int(kept or 0) / max(1, int(queued))
            figures["papers/digest"] = int(shown or 0) / max(1, int(queued))
    return figures


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10000])
    options.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"])
    options.add_argument("--profile", choices=STAGES)
    options.add_argument("--stages", nargs="+", choices=STAGES, default=STAGES)
    args = options.parse_args()
    stages = STAGES[: max(STAGES.index(s) for s in args.stages) + 1]
    print(
        f"{'store':<11}{'subscribers':>12}"
        + "".join(f"{s + ' s':>15}{'peak MB':>9}" for s in stages)
        + f"{'total s':>9}"
        + (
            f"{'digests':>9}{'KB/digest':>10}{'stored':>8}{'papers':>8}" if "send" in stages else ""
        ),
        flush=True,
    )
    for count in args.subscribers:
        for kind in args.stores:
            figures = cycle(kind, count, args.profile, stages[-1])
            cells = "".join(f"{figures[s][0]:>15.1f}{figures[s][1] / 2**20:>9.0f}" for s in stages)
            total = sum(figures[s][0] for s in stages)
            sent = ""
            if "digests" in figures:
                sent = (
                    f"{figures['digests'][0]:>9}{figures['bytes/digest'] / 1024:>10.1f}"
                    f"{figures['stored/digest'] / 1024:>8.1f}{figures['papers/digest']:>8.1f}"
                )
            print(f"{kind:<11}{count:>12}{cells}{total:>9.1f}{sent}", flush=True)
            for s in stages:
                if f"{s} profile" in figures:
                    print(figures[f"{s} profile"], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
