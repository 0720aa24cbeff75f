"""Benchmark: the database's size after N days of daily polls, with and without retention,
projected to a year.

Each simulated day, as ``paperboy run`` would do it:

- 18:00 UTC: two sources are polled. ``arxiv``: an arXiv-sized listing of 1,000 new papers
  (the five seeds' real titles and abstracts, titled afresh; the bench of issue 13's papers),
  plus 100 papers of the past week listed again, half of them with a revised abstract (arXiv
  replacements); yesterday's papers leave it. ``hf``: a Hugging Face-sized listing of 50 seed
  papers, 30 of them yesterday's.
- 16:00 UTC the next day: every subscriber's daily window closes (digests of about ten papers,
  1-3 topic profiles each, as in bench/cycle.py), the outbox is drained into a sink that takes
  every message, and the cleanup job runs.

Two runs side by side: "kept" keeps everything (events, snapshots and sent bodies for ever);
"retention" keeps events, snapshots and sent bodies ``--keep`` days (the defaults are 90, 90
and 30: the script also projects those). After each day the database's live bytes are
measured (SQLite: pages in use, after a checkpoint, per table with its indexes via ``dbstat``;
PostgreSQL: ``pg_total_relation_size`` per table after a VACUUM). The year's size is the last
day's plus the mean growth per day over the last ``--slope`` days times the days left.

    .venv/bin/python bench/retention.py [--days 60] [--subscribers 1000] [--keep 30]
        [--store sqlite|postgresql]
    # or the two runs in parallel, then the report:
    ... --only kept --save kept.json & ... --only retention --save retention.json
    ... --report kept.json retention.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cycle import TOPICS, database, declared, seed_papers

from service.app import build
from service.clock import FixedClock
from service.config import (
    FetchSettings,
    MailSettings,
    RetentionSettings,
    Settings,
    SourceSettings,
)
from service.model import PaperIn, SourceKind

START = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
HEAD = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\nJan 5\n\n"
)
FOREVER = timedelta(days=36500)
RUNS = ("kept", "retention")
TABLES = ("papers", "paper_keys", "paper_sources", "events", "snapshots", "matches")
TABLES += ("deliveries", "sent")


class Sink:
    """A relay that takes every message at once."""

    async def send(self, sender: str, recipients: Sequence[str], message: bytes) -> str:
        return "250 taken"

    async def close(self) -> None:
        return None


def entry(title: str, abstract: str, authors: int) -> str:
    return f"{title}\n\n{abstract}\n\n  • {authors} authors\n·\nJan 5\n\n"


def arxiv_day(day: int, seeds: list[PaperIn], rng: random.Random) -> bytes:
    """Day ``day``'s 1,000 new papers and 100 of the past week again (half revised)."""
    parts = [HEAD]
    for n in range(1000):
        seed = seeds[(day * 1000 + n) % len(seeds)]
        first, second = TOPICS[(2 * n + day) % len(TOPICS)], TOPICS[(2 * n + 1) % len(TOPICS)]
        title = f"{seed.title.rstrip('.')}: {first} meets {second} (day {day}, {n})"
        abstract = f"{seed.abstract} We study {first} and {second} at scale."
        parts.append(entry(title, abstract, 1 + (n % 12)))
    for k in range(100 if day else 0):
        back = rng.randint(max(0, day - 7), day - 1)
        n = rng.randrange(1000)
        seed = seeds[(back * 1000 + n) % len(seeds)]
        first, second = TOPICS[(2 * n + back) % len(TOPICS)], TOPICS[(2 * n + 1) % len(TOPICS)]
        title = f"{seed.title.rstrip('.')}: {first} meets {second} (day {back}, {n})"
        abstract = f"{seed.abstract} We study {first} and {second} at scale."
        if k % 2:
            abstract += f" Revised on day {day}."
        parts.append(entry(title, abstract, 1 + (n % 12)))
    return "".join(parts).encode()


def hf_day(day: int, seeds: list[PaperIn]) -> bytes:
    """50 seed papers: 30 of yesterday's and 20 more."""
    start = day * 20
    return (HEAD + "".join(entry(s.title, s.abstract, 5) for s in seeds_at(seeds, start))).encode()


def seeds_at(seeds: list[PaperIn], start: int) -> list[PaperIn]:
    return [seeds[(start + i) % len(seeds)] for i in range(50)]


def sizes(engine: sa.Engine) -> dict[str, int]:
    """Live bytes per table (with its indexes) and in all."""
    out: dict[str, int] = {}
    with engine.connect() as db:
        out["bodies kept"] = int(
            db.execute(
                sa.text("SELECT count(*) FROM deliveries WHERE message IS NOT NULL")
            ).scalar_one()
        )
        out["delivery rows"] = int(
            db.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one()
        )
        if db.dialect.name == "sqlite":
            db.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            owner = dict(db.exec_driver_sql("SELECT name, tbl_name FROM sqlite_master").all())
            for name, size in db.exec_driver_sql(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
            ).all():
                table = owner.get(name, name)
                out[table] = out.get(table, 0) + int(size)
            pages = db.exec_driver_sql("PRAGMA page_count").scalar_one()
            free = db.exec_driver_sql("PRAGMA freelist_count").scalar_one()
            page = db.exec_driver_sql("PRAGMA page_size").scalar_one()
            out["total"] = (pages - free) * page
            out["file"] = pages * page
        else:
            db.commit()
            raw = db.connection.dbapi_connection
            assert raw is not None
            raw.autocommit = True  # type: ignore[attr-defined]
            raw.cursor().execute("VACUUM")
            raw.autocommit = False  # type: ignore[attr-defined]
            for table in TABLES:
                out[table] = int(
                    db.execute(sa.text(f"SELECT pg_total_relation_size('{table}')")).scalar_one()
                )
            out["total"] = int(
                db.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
            )
            out["file"] = out["total"]
    return out


def simulate(kind: str, days: int, count: int, keep: int | None) -> list[dict[str, int]]:
    """Run ``days`` days; the sizes after each."""
    rng = random.Random(15)
    seeds = seed_papers()
    people = declared(count, rng)
    kept = timedelta(days=keep) if keep else timedelta(0)
    out: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as tmp_name, database(kind, Path(tmp_name)) as url:
        tmp = Path(tmp_name)
        (tmp / "arxiv.txt").write_bytes(b"")
        (tmp / "hf.txt").write_bytes(b"")
        settings = Settings(
            data_dir=tmp,
            database_url=url,
            profiles_file=tmp / "none.toml",
            fetch=FetchSettings(max_bytes=1 << 30),
            mail=MailSettings(keep_sent=kept if keep else FOREVER),
            retention=RetentionSettings(events=kept, snapshots=kept),
            sources=[
                SourceSettings(id=name, kind=SourceKind.LISTING, location=str(tmp / f"{name}.txt"))
                for name in ("arxiv", "hf")
            ],
        )
        clock = FixedClock(START)
        with build(settings, clock=clock, sender=Sink()) as app:
            app.pipeline.roster.import_profiles(people)
            for day in range(days):
                clock.at = START + timedelta(days=day, hours=1)
                (tmp / "arxiv.txt").write_bytes(arxiv_day(day, seeds, rng))
                (tmp / "hf.txt").write_bytes(hf_day(day, seeds))
                app.pipeline.ingest.poll("arxiv")
                app.pipeline.ingest.poll("hf")
                clock.at = START + timedelta(days=day + 1, hours=-1)
                app.mailroom.plan()
                asyncio.run(app.mailroom.send())
                tidied = app.pipeline.cleanup()
                measured = sizes(app.store.engine)
                out.append(measured)
                print(
                    f"  {'retention' if keep else 'kept':<10} day {day + 1:>3}: "
                    f"{measured['total'] / 2**20:8.1f} MB live, {measured['file'] / 2**20:8.1f} MB"
                    f" file; cleanup {tuple(tidied)}; bodies kept {measured['bodies kept']}"
                    f" of {measured['delivery rows']}",
                    flush=True,
                )
    return out


def projected(series: list[dict[str, int]], key: str, slope_days: int, at: int = 365) -> float:
    last = series[-1][key]
    first = series[-1 - slope_days][key]
    return last + (last - first) / slope_days * (at - len(series))


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--days", type=int, default=60)
    options.add_argument("--subscribers", type=int, default=1000)
    options.add_argument("--keep", type=int, default=30)
    options.add_argument("--slope", type=int, default=14)
    options.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    options.add_argument(
        "--only", choices=["kept", "retention"], help="run one of the two (with --save)"
    )
    options.add_argument("--save", type=Path, help="write the run's sizes to this JSON file")
    options.add_argument(
        "--report", type=Path, nargs=2, metavar=("KEPT", "RETENTION"), help="report saved runs"
    )
    args = options.parse_args()
    if args.days <= args.keep + args.slope:
        options.error("--days must exceed --keep + --slope (to measure the steady growth)")
    runs: dict[str, Any] = {}
    if args.report:
        runs = {
            name: json.loads(path.read_text()) for name, path in zip(RUNS, args.report, strict=True)
        }
        args.days = len(runs["kept"])
    else:
        for name in [args.only] if args.only else RUNS:
            keep = args.keep if name == "retention" else None
            runs[name] = simulate(args.store, args.days, args.subscribers, keep)
            if args.save:
                args.save.write_text(json.dumps(runs[name]))
        if args.only:
            return 0
    mb = 2**20
    print(f"\n{args.store}, {args.subscribers} subscribers, {args.days} days; MB live:")
    print(f"{'day':>4}{'kept':>10}{'retention':>11}")
    for day in range(args.days):
        kept, kept_r = runs["kept"][day]["total"], runs["retention"][day]["total"]
        if day % 5 == 4 or day == args.days - 1:
            print(f"{day + 1:>4}{kept / mb:>10.1f}{kept_r / mb:>11.1f}")
    print(f"\nper table at day {args.days} (MB) and growth per day over the last {args.slope}:")
    for table in (*TABLES, "total"):
        cells = ""
        for name in ("kept", "retention"):
            series = runs[name]
            now = series[-1].get(table, 0)
            grow = (now - series[-1 - args.slope].get(table, 0)) / args.slope
            cells += f"{now / mb:>10.1f}{grow / mb:>8.2f}/d"
        print(f"{table:<14}{cells}")
    year_kept = projected(runs["kept"], "total", args.slope)
    year_kept_r = projected(runs["retention"], "total", args.slope)
    # The defaults keep events and snapshots 90 days, sent bodies 30: the retention run's
    # steady state plus 90 - keep more days of events and snapshots (their bytes per day as the
    # run that keeps them measured).
    per_day = sum(
        (runs["kept"][-1].get(t, 0) - runs["kept"][-1 - args.slope].get(t, 0)) / args.slope
        for t in ("events", "snapshots")
    )
    year_default = year_kept_r + per_day * (90 - args.keep)
    if args.keep != 30:
        print("(the default projection assumes --keep 30, as mail.keep_sent's default)")
    print(
        f"\nprojected for 365 days: kept {year_kept / mb:.0f} MB, retention {args.keep} days "
        f"{year_kept_r / mb:.0f} MB, the defaults (events and snapshots 90 days, sent bodies "
        f"30) {year_default / mb:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
