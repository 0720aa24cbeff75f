"""Feed-parsing throughput on the republished cs.LG day (237 items): ours, feedparser, lxml.

Run from the repository root: ``.venv/bin/python bench/feed_parse.py [--seconds 3]``. Each
contender parses the same bytes over and over for about ``--seconds``; the table shows the
median of five such rounds, in items per second and input megabytes per second. Our parser
calls feedparser without its HTML sanitising and URI rewriting (it keeps text only), so the row
"same, no HTML rewriting" is the fair baseline for it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import feedparser
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.model import Snapshot  # noqa: E402
from service.parse import feed  # noqa: E402

FIXTURE = ROOT.parent / "shared/fixtures/arxiv/republished/cn-chat-arxiv_cs.LG_2026-08-19.xml"
ROUNDS = 5


def ours(body: bytes) -> int:
    snapshot = Snapshot(source_id="bench", origin=str(FIXTURE), body=body, fetched_at=NOW)
    return len(feed.parse(snapshot).papers)


def feedparser_alone(body: bytes) -> int:
    return len(feedparser.parse(body).entries)


def feedparser_as_we_call_it(body: bytes) -> int:
    entries = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False).entries
    return len(entries)


def lxml_items(body: bytes) -> int:
    root = etree.fromstring(body)
    count = 0
    for item in root.iter("item"):
        item.findtext("title")
        item.findtext("link")
        item.findtext("description")
        count += 1
    return count


NOW = datetime(2026, 8, 19, tzinfo=UTC)
CONTENDERS: dict[str, Callable[[bytes], int]] = {
    "service.parse.feed.parse": ours,
    "feedparser.parse": feedparser_alone,
    "  same, no HTML rewriting": feedparser_as_we_call_it,
    "lxml fromstring + items": lxml_items,
}


def rate(parse: Callable[[bytes], int], body: bytes, seconds: float) -> tuple[float, int]:
    """Parses per second over one round of about ``seconds``, and the item count."""
    items = parse(body)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        parse(body)
        runs += 1
    return runs / elapsed, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one round")
    args = parser.parse_args()
    body = FIXTURE.read_bytes()
    megabytes = len(body) / 1e6
    print(f"{FIXTURE.name}: {len(body):,} bytes, median of {ROUNDS} rounds of {args.seconds}s")
    print(f"{'parser':<26} {'items':>5} {'ms/parse':>9} {'items/s':>9} {'MB/s':>7}")
    for name, parse in CONTENDERS.items():
        rates = []
        for _ in range(ROUNDS):
            per_second, items = rate(parse, body, args.seconds)
            rates.append(per_second)
        median = statistics.median(rates)
        print(
            f"{name:<26} {items:>5} {1000 / median:>9.2f} {items * median:>9,.0f}"
            f" {megabytes * median:>7.2f}"
        )


if __name__ == "__main__":
    main()
