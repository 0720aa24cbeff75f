"""Benchmark: digests rendered and assembled per second (HTML + text + inlined CSS + MIME).

Run from the project root: ``.venv/bin/python bench/digest.py [--subscribers 2000]``.
Each digest has 20 papers taken from the listing seeds in ../shared/seeds (real titles and
abstracts), spread over three profiles with matched terms marked; each subscriber gets a
different selection. The figure covers ``EmailRenderer.render``: Jinja2 for both parts,
css-inline on the HTML, the email package building and serialising the MIME message. Target on
this 2-core machine (issue 4): at least 1,000 digests/s.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.digest import Candidate, Digest, compose
from service.match.results import Reason
from service.model import DeliveryKind, Paper, Profile, ProfileSpec, Schedule, Snapshot, Subscriber
from service.parse import parse
from service.render.email import EmailRenderer, Letterhead
from service.render.templates import environment
from service.windows import Window

SHARED = Path(__file__).resolve().parents[2] / "shared"
NOW = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)
TERMS = ("model", "language", "learning", "data", "agent", "inference", "cache", "video")


def papers() -> list[Paper]:
    out: list[Paper] = []
    for path in sorted((SHARED / "seeds").glob("*.txt")):
        snapshot = Snapshot("bench", path.name, path.read_bytes(), NOW, NOW)
        for item in parse(snapshot, None, {}).papers:
            out.append(
                Paper(
                    id=len(out) + 1,
                    key=f"title:{len(out) + 1}",
                    title=item.title,
                    abstract=item.abstract,
                    author_count=item.author_count,
                    organisation=item.organisation,
                    published=item.published,
                    upvotes=item.upvotes or 0,
                    arxiv_id=f"2606.{len(out) + 1:05d}" if len(out) % 2 else None,
                )
            )
    return out


def reasons(paper: Paper, rng: random.Random) -> tuple[Reason, ...]:
    found = []
    for term in rng.sample(TERMS, 3):
        for field, text in (("title", paper.title), ("abstract", paper.abstract)):
            spans = tuple((m.start(), m.end()) for m in re.finditer(rf"\b{term}s?\b", text, re.I))
            if spans:
                found.append(Reason(term, field, spans[:5]))
    return tuple(found) or (Reason(TERMS[0], "title", ((0, 1),)),)


def digests(count: int, pool: list[Paper]) -> list[Digest]:
    rng = random.Random(4)
    window = Window(NOW - timedelta(days=1), NOW)
    out = []
    for n in range(count):
        owner = Subscriber(
            n + 1,
            f"reader{n}@example.org",
            "Europe/Berlin",
            Schedule.parse("daily 07:30"),
            token=f"secret{n}",
        )
        profiles = [
            Profile(3 * n + i, n + 1, ProfileSpec(name, name))
            for i, name in enumerate(("KV cache", "Agents", "Video generation"))
        ]
        chosen = rng.sample(pool, 20)
        found = [
            Candidate(profiles[i % 3], paper, rng.uniform(1, 9), reasons(paper, rng))
            for i, paper in enumerate(chosen)
        ]
        digest = compose(owner, DeliveryKind.DIGEST, window, found)
        assert digest is not None and len(digest.items) == 20
        out.append(digest)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pool = papers()
    batch = digests(args.subscribers, pool)
    renderer = EmailRenderer(
        environment(),
        Letterhead("paperboy <digest@papers.example.org>", "https://papers.example.org"),
    )
    renderer.render(batch[0], NOW)  # templates compiled before timing
    rates, sizes = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        for digest in batch:
            sizes.append(len(renderer.render(digest, NOW).message))
        rates.append(len(batch) / (time.perf_counter() - start))
    print(f"digests: {len(batch)} subscribers x 20 papers, {len(pool)} papers from the seeds")
    print(f"message size: median {statistics.median(sizes) / 1024:.1f} KiB")
    best, median = max(rates), statistics.median(rates)
    print(f"rendered and assembled: best {best:,.0f} digests/s, median {median:,.0f}")
    print("target (issue 4): 1,000 digests/s")


if __name__ == "__main__":
    main()
