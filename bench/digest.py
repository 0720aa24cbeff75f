"""Benchmark: milliseconds to render a digest (HTML + text + inlined CSS + MIME), per core.

Run from the project root: ``.venv/bin/python bench/digest.py [--subscribers 2000]
[--baseline ../other-checkout]``. Papers come from the listing seeds in ../shared/seeds (real
titles and abstracts), with matched terms marked. Two workloads: ``distinct``, 20 papers per
digest chosen and marked at random for each subscriber (nothing is shown twice alike: the worst
case), and ``shared``, the daily cycle's (bench/cycle.py: profiles shared by many subscribers,
each query finding the same papers for all, ~10 papers a digest). The figure covers
``EmailRenderer.render`` with a fresh renderer per run (as a rendering process starts): Jinja2
for both parts, CSS inlining, the MIME message. With ``--baseline`` the same runs are made with
another checkout's code, alternating, and both are printed side by side (issue 4's target was
1,000 digests/s, 1 ms; issue 13's plan budget needs well under 1 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
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


def subscriber(n: int) -> Subscriber:
    return Subscriber(
        n + 1,
        f"reader{n}@example.org",
        "Europe/Berlin",
        Schedule.parse("daily 07:30"),
        token=f"secret{n}",
    )


def distinct(count: int, pool: list[Paper]) -> list[Digest]:
    """Every digest different: 20 papers each, chosen and marked at random per subscriber, so
    that almost no paper is shown twice for the same reasons (the worst case)."""
    rng = random.Random(4)
    window = Window(NOW - timedelta(days=1), NOW)
    out = []
    for n in range(count):
        owner = subscriber(n)
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


def shared(count: int, pool: list[Paper]) -> list[Digest]:
    """The daily cycle's digests (bench/cycle.py): 200 profiles' queries, each finding the
    same 5 papers for everyone who has it; each subscriber has 1-3 of them (~10 papers)."""
    rng = random.Random(13)
    window = Window(NOW - timedelta(days=1), NOW)
    topics = []
    for t in range(200):
        found = [(paper, reasons(paper, rng)) for paper in rng.sample(pool, 5)]
        topics.append((f"Topic {t}", found))
    out = []
    for n in range(count):
        owner = subscriber(n)
        candidates = []
        for i, (name, found) in enumerate(rng.sample(topics, rng.choice((1, 2, 2, 3)))):
            profile = Profile(3 * n + i, n + 1, ProfileSpec(name, name))
            candidates += [Candidate(profile, p, 5.0, r) for p, r in found]
        digest = compose(owner, DeliveryKind.DIGEST, window, candidates)
        assert digest is not None
        out.append(digest)
    return out


WORKLOADS = {"distinct": distinct, "shared": shared}


def measure(workload: str, count: int) -> tuple[float, float, float]:
    """(CPU ms per digest, median KiB per message, papers per digest) of rendering ``count``
    digests of ``workload`` with a fresh renderer (as a rendering process starts)."""
    batch = WORKLOADS[workload](count, papers())
    env = environment()
    head = Letterhead("paperboy <digest@papers.example.org>", "https://papers.example.org")
    EmailRenderer(env, head).render(batch[0], NOW)  # templates compiled before timing
    renderer = EmailRenderer(env, head)
    start = time.process_time()  # CPU time: other processes' load changes it less than wall
    sizes = [len(renderer.render(digest, NOW).message) for digest in batch]
    ms = (time.process_time() - start) * 1000 / len(batch)
    shown = sum(len(d.items) for d in batch) / len(batch)
    return ms, statistics.median(sizes) / 1024, shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. from git worktree or git archive) measured side by side",
    )
    parser.add_argument("--one", nargs=2, metavar=("WORKLOAD", "TREE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a single measurement, in a process of its own: printed as JSON
        print(json.dumps(measure(args.one[0], args.subscribers)))
        return
    trees = {"this tree": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    print(f"{args.subscribers} digests a run, {args.runs} runs, each in a fresh process")
    print(f"{'workload':<10}{'tree':<12}{'CPU ms':>10}{'best':>8}{'KiB':>8}{'papers':>8}")
    for workload in WORKLOADS:
        figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():  # alternating, so that the load hits both alike
                figures[name].append(one(workload, tree, args.subscribers))
        for name, runs in figures.items():
            ms = [r[0] for r in runs]
            print(
                f"{workload:<10}{name:<12}{statistics.median(ms):>10.2f}{min(ms):>8.2f}"
                f"{runs[0][1]:>8.1f}{runs[0][2]:>8.1f}",
                flush=True,
            )


def one(workload: str, tree: Path, count: int) -> tuple[float, float, float]:
    """``measure`` run with ``tree``'s code, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(Path(__file__).resolve()), "--subscribers", str(count)]
    done = subprocess.run(
        [*command, "--one", workload, str(tree)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{tree}: {done.stderr}")
    ms, kib, shown = json.loads(done.stdout)
    return ms, kib, shown


if __name__ == "__main__":
    main()
