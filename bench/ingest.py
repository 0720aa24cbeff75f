"""Benchmark: listing parse throughput and ingest throughput into SQLite.

Prints, on the machine it runs on:
- the listing parser's MB/s on the five seeds' blocks repeated to about 50 MB in one capture,
  side by side with plain UTF-8 decoding of the same bytes (best and median of ``--runs``);
- ingest papers/s (read the file, parse, diff and store into a SQLite file, in one transaction)
  for first-time papers, and for a re-poll of the same listing where 99% of the papers are known;
  each of ``--runs`` runs on a fresh database, best and median.

    python bench/ingest.py [--mb 50] [--papers 30000] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from service.app import build
from service.clock import FixedClock
from service.config import FetchSettings, Settings
from service.model import PaperIn, Snapshot
from service.parse.listing import parse

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"
AT = datetime(2026, 5, 8, tzinfo=UTC)


def seed_papers() -> list[PaperIn]:
    """The 260 entries of the five seeds, each dated in the year the bench captures in."""
    papers = []
    for path in sorted(SEEDS.glob("*.txt")):
        papers.extend(parse(Snapshot("seed", str(path), path.read_bytes(), fetched_at=AT)).papers)
    return papers


def render(paper: PaperIn, suffix: str) -> str:
    """One entry in the listing text format."""
    text = f"{paper.title}{suffix}\n\n{paper.abstract}\n\n"
    if paper.published is None:
        return text
    meta = (
        f"{paper.organisation.handle} {paper.organisation.name}"
        if paper.organisation
        else f"  • {paper.author_count} authors"
    )
    day = f"{paper.published:%b} {paper.published.day}"
    if paper.published.year != AT.year:
        day += f", {paper.published.year}"
    if paper.upvotes:
        day += f" {paper.upvotes}"
    return f"{text}{meta}\n·\n{day}\n\n"


def capture(papers: list[PaperIn], size: int, *, unique: bool) -> bytes:
    """One listing of about ``size`` bytes; with ``unique`` each copy's titles differ."""
    head = (
        "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        "byAK and the research community\n\nMay 8\n\n"
    )
    parts = [head]
    total = len(head)
    copy = 0
    while total < size:
        for paper in papers:
            text = render(paper, f" (copy {copy})" if unique else "")
            parts.append(text)
            total += len(text)
        copy += 1
    return "".join(parts).encode()


def repoll(first: bytes, papers: int) -> bytes:
    """The same listing with 1% of its ``papers`` replaced by new ones (their titles changed)."""
    lines = first.decode().split("\n")
    changed = 0
    limit = max(1, papers // 100)
    for i, line in enumerate(lines):
        if line.endswith(")") and "(copy " in line and changed < limit and i > 12:
            lines[i] = line + " revised"
            changed += 1
    return "\n".join(lines).encode()


def best(runs: int, action: Callable[[], object]) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--mb", type=float, default=50)
    options.add_argument("--papers", type=int, default=30000)
    options.add_argument("--runs", type=int, default=3)
    args = options.parse_args()
    if not SEEDS.is_dir():
        print(f"no seeds at {SEEDS}", file=sys.stderr)
        return 2
    blocks = seed_papers()

    body = capture(blocks, int(args.mb * 1e6), unique=False)
    mb = len(body) / 1e6
    snapshot = Snapshot("bench", "bench", body, fetched_at=AT, captured_at=AT)
    papers = len(parse(snapshot).papers)
    decode_best, decode_median = best(args.runs, lambda: body.decode("utf-8"))
    parse_best, parse_median = best(args.runs, lambda: parse(snapshot))
    print(f"listing parse: {mb:.1f} MB, {papers} entries, best of {args.runs}")
    print(f"  plain utf-8 decode  {mb / decode_best:9.0f} MB/s   (median {mb / decode_median:.0f})")
    print(f"  listing parser      {mb / parse_best:9.0f} MB/s   (median {mb / parse_median:.0f})")
    print(f"  parser / decode     {decode_best / parse_best:9.3f}")

    size = int(len(body) * args.papers / papers)
    first = capture(blocks, size, unique=True)
    again = b""
    firsts: list[float] = []
    agains: list[float] = []
    for _ in range(args.runs):  # each run on a fresh database
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp), fetch=FetchSettings(max_bytes=1 << 30), sources=[]
            )
            with build(settings, clock=FixedClock(AT)) as app:
                path = Path(tmp) / "first.txt"
                path.write_bytes(first)
                start = time.perf_counter()
                (summary,) = app.pipeline.ingest.ingest_files([path], captured_at=AT)
                firsts.append(time.perf_counter() - start)
                again = again or repoll(first, summary.new)
                path2 = Path(tmp) / "again.txt"
                path2.write_bytes(again)
                later = datetime(2026, 5, 9, tzinfo=UTC)
                start = time.perf_counter()
                (second,) = app.pipeline.ingest.ingest_files([path2], captured_at=later)
                agains.append(time.perf_counter() - start)
    new = summary.new
    print(
        f"ingest into SQLite: {summary.papers} entries, {new} distinct new papers, "
        f"best of {args.runs} (a fresh database each)"
    )
    print(
        f"  first time          {new / min(firsts):9.0f} new papers/s  ({min(firsts):.2f} s; "
        f"median {new / statistics.median(firsts):.0f})"
    )
    print(
        f"  re-poll 99% known   {second.papers / min(agains):9.0f} papers/s  "
        f"({min(agains):.2f} s; median {second.papers / statistics.median(agains):.0f}; "
        f"{second.new} new, {second.dropped} dropped)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
