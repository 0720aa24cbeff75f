"""Benchmark: N profiles matched against 1,000 papers, with the index and with a naive loop.

Run from the project root: ``.venv/bin/python bench/match.py [--sizes 1000,10000,100000]``.
Papers come from ../shared (the listing seeds, Hugging Face daily-papers JSON, arXiv feeds);
profile queries are drawn at random (seeded) from their titles and abstracts. Each size runs in
a fresh process so that its peak memory is its own; each timing is the best of ``--repeat``
runs (3). The naive loop (``match_query`` per profile over the same tokenised papers) is timed
on the first 1,000 profiles: its one-time part (tokenising the papers and their keys) once,
its time per profile extrapolated linearly to N. A second baseline shares nothing: each
(profile, paper) pair tokenises its paper again (timed on 20 profiles, extrapolated). The notes
under the table say how each figure was measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from service.match.index import (
    Document,
    ProfileIndex,
    match_query,
    prepare,
    stats_from,
)
from service.match.query import parse_query
from service.match.results import Match
from service.match.text import scan
from service.model import Snapshot
from service.parse import parse

SHARED = Path(__file__).resolve().parents[2] / "shared"
PAPERS = 1_000
SEED = 20240601
NAIVE_SUBSET = 1_000  # profiles timed with the naive loop; the rest is extrapolated
PER_PAIR_SUBSET = 20  # profiles timed with the per-pair loop (each pair tokenises its paper)

_STOPWORD_TEXT = """
    a an and are as at be by can for from has have in into is it its of on or our over such
    that the their these this those to under via was we were which while with without using
    based towards toward new than both also more most not only show shows paper propose
    proposed approach method methods results however between through across each two three
    one other they them then there here when where what how all any may large model models"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


# --- papers -------------------------------------------------------------------------------


def real_papers() -> Iterator[tuple[str, str, tuple[str, ...], str, str, int]]:
    """Papers from the seeds and the fixtures, read by paperboy's own parsers."""
    files = [
        *sorted((SHARED / "seeds").glob("*.txt")),
        *sorted((SHARED / "fixtures/hf_daily_papers/api_json").glob("*.json")),
        *sorted((SHARED / "fixtures/arxiv").glob("*/*")),
    ]
    now = datetime.now(UTC)
    for path in files:
        snapshot = Snapshot("bench", str(path), path.read_bytes(), fetched_at=now)
        for paper in parse(snapshot, None).papers:
            org = paper.organisation
            handle, name = (org.handle, org.name) if org else ("", "")
            yield paper.title, paper.abstract, paper.authors, handle, name, paper.upvotes or 0


def load_papers() -> tuple[list[Document], int, int]:
    """``PAPERS`` documents: real ones first, then recombined variants; and both counts."""
    seen: set[str] = set()
    real: list[tuple[str, str, tuple[str, ...], str, str, int]] = []
    for paper in real_papers():
        key = " ".join(t.key for t in scan(paper[0]))
        if key and paper[1] and key not in seen:
            seen.add(key)
            real.append(paper)
    rng = random.Random(SEED)
    papers = list(real[:PAPERS])
    while len(papers) < PAPERS:
        a, b = rng.sample(real, 2)
        head, tail = a[0].split(), b[0].split()
        title = " ".join(head[: len(head) // 2 + 1] + tail[len(tail) // 2 :])
        sentences = re.split(r"(?<=\.) ", a[1]) + re.split(r"(?<=\.) ", b[1])
        abstract = " ".join(rng.sample(sentences, min(len(sentences), 8)))
        papers.append((title, abstract, a[2] or b[2], a[3], a[4], rng.randint(0, 60)))
    sources = ("hf-daily", "arxiv-cs-lg", "arxiv-cs-cl", "listing")
    documents = [
        Document(
            id=i,
            title=t,
            abstract=ab,
            authors=au,
            org_handle=h,
            org_name=n,
            sources=tuple(rng.sample(sources, rng.randint(1, 2))),
            upvotes=u,
        )
        for i, (t, ab, au, h, n, u) in enumerate(papers)
    ]
    return documents, min(len(real), PAPERS), len(papers) - min(len(real), PAPERS)


# --- profiles -----------------------------------------------------------------------------


class Vocabulary:
    """Words and phrases of the papers' titles and abstracts, authors and organisations.

    A profile is about a topic: a share of its terms (``topical``) comes from one paper, the
    rest from anywhere; the larger the share, the more papers each profile matches.
    Single words found in more than ``COMMON`` of the papers are left out (nobody subscribes to
    "data"); phrases (adjacent title words) may be made of common words.
    """

    COMMON = 0.05

    def __init__(self, documents: list[Document], topical: float) -> None:
        self.topical = topical
        df: dict[str, int] = {}
        per_doc: list[tuple[list[str], list[str]]] = []
        for doc in documents:
            title = [t.norm for t in scan(doc.title)]
            words = {w for w in title + [t.norm for t in scan(doc.abstract)] if _content(w)}
            for w in words:
                df[w] = df.get(w, 0) + 1
            phrases = [f"{a} {b}" for a, b in pairwise(title) if _content(a) and _content(b)]
            per_doc.append((sorted(words), phrases))
        limit = self.COMMON * len(documents)
        self.topics = [([w for w in ws if df[w] <= limit], ps) for ws, ps in per_doc]
        self.words = sorted(w for w, n in df.items() if n <= limit)
        self.phrases = sorted({p for _, ps in per_doc for p in ps})
        self.authors = sorted({a for d in documents for a in d.authors})
        self.orgs = sorted({d.org_handle for d in documents if d.org_handle})

    def term(self, rng: random.Random, topic: tuple[list[str], list[str]]) -> str:
        on_topic = rng.random() < self.topical and topic[0]
        words, phrases = topic if on_topic else (self.words, self.phrases)
        roll = rng.random()
        if roll < 0.25 and phrases:
            text = f'"{rng.choice(phrases)}"'
        elif roll < 0.33:
            long = [w for w in rng.sample(words, min(8, len(words))) if len(w) >= 6]
            if long:
                word = rng.choice(long)
                return word[: rng.randint(4, min(7, len(word) - 1))] + "*"
            text = rng.choice(words)
        elif roll < 0.36 and self.authors:
            return f'author:"{rng.choice(self.authors)}"'
        elif roll < 0.38 and self.orgs:
            return f"org:{rng.choice(self.orgs)}"
        else:
            text = rng.choice(words)
        return f"title:{text}" if rng.random() < 0.15 else text


def _content(word: str) -> bool:
    return len(word) >= 3 and not word.isdigit() and word not in _STOPWORDS


def make_query(vocabulary: Vocabulary, rng: random.Random) -> str:
    """5-20 terms: up to two required terms and OR groups of 2-6 alternatives, ANDed; NOTs."""
    topic = rng.choice(vocabulary.topics)
    size = rng.randint(5, 20)
    negatives = rng.choice((0, 0, 1, 2, 3)) if size > 6 else 0
    positives = [vocabulary.term(rng, topic) for _ in range(size - negatives)]
    required = rng.choice((0, 1, 1, 2))
    parts, rest = positives[:required], positives[required:]
    while rest:
        alone = len(rest) <= 6 and (parts or len(rest) < 4)
        take = len(rest) if alone else rng.randint(2, min(6, len(rest) - 2))
        group, rest = rest[:take], rest[take:]
        parts.append(group[0] if len(group) == 1 else "(" + " OR ".join(group) + ")")
    parts += ["-" + vocabulary.term(rng, topic) for _ in range(negatives)]
    if rng.random() < 0.1:
        parts.append(f"upvotes>={rng.randint(1, 20)}")
    if rng.random() < 0.05:
        parts.append("source:hf-daily")
    return " ".join(parts)


# --- one size, in its own process ---------------------------------------------------------


def _rss_kib() -> int:
    with Path("/proc/self/statm").open() as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def run_size(n: int, topical: float, repeat: int) -> dict[str, float]:
    documents, _, _ = load_papers()
    stats = stats_from(documents)
    rng = random.Random(SEED + n)
    vocabulary = Vocabulary(documents, topical)
    texts = [make_query(vocabulary, rng) for _ in range(n)]

    rss_before = _rss_kib()
    started = time.perf_counter()
    queries = [parse_query(t) for t in texts]
    parsed = time.perf_counter()
    index = ProfileIndex(enumerate(queries), stats=stats)
    built = time.perf_counter()
    # A service builds its index once and keeps it: the collector need not scan it again.
    gc.collect()
    gc.freeze()
    frozen = time.perf_counter()
    match_times, gc_times = [], []
    for _ in range(repeat):
        matches: list[Match] = []  # the previous run's results go first
        before = time.perf_counter()
        matches = index.match(documents)
        after = time.perf_counter()
        # match() pauses the cyclic collector; this is its pass over the results, deferred.
        gc.collect()
        match_times.append(after - before)
        gc_times.append(time.perf_counter() - after)
    peak_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before

    anchored = sum(len(index.candidates(d)) for d in documents)

    subset = queries[:NAIVE_SUBSET]
    naive_started = time.perf_counter()
    prepared = [prepare(d) for d in documents]
    first = match_query(subset[0], prepared, stats, profile_id=0)  # fills each paper's keys
    naive_once = time.perf_counter() - naive_started
    naive_times = []
    for _ in range(repeat):
        naive = list(first)
        before = time.perf_counter()
        for profile_id, query in enumerate(subset[1:], start=1):
            naive += match_query(query, prepared, stats, profile_id=profile_id)
        naive_times.append(time.perf_counter() - before)
    if naive != [m for m in matches if m.profile_id < len(subset)]:
        raise SystemExit(f"the index and the naive loop disagree for N={n}")
    per_profile = min(naive_times) / (len(subset) - 1)

    # The loop with nothing shared: each (profile, paper) pair tokenises its paper again.
    few = queries[:PER_PAIR_SUBSET]
    before = time.perf_counter()
    unshared = [
        m for i, q in enumerate(few) for m in match_query(q, documents, stats, profile_id=i)
    ]
    per_pair = (time.perf_counter() - before) / (len(few) * len(documents))
    if unshared != [m for m in matches if m.profile_id < len(few)]:
        raise SystemExit(f"the index and the per-pair loop disagree for N={n}")
    return {
        "n": n,
        "parse": parsed - started,
        "build": built - parsed,
        "freeze": frozen - built,
        "match": min(match_times),
        "match_first": match_times[0],
        "gc": min(gc_times),
        "peak_mib": peak_growth / 1024,
        "matches": len(matches),
        "anchored": anchored,
        "naive_once": naive_once,
        "naive_per_profile": per_profile,
        "naive": naive_once + per_profile * (n - 1),
        "naive_subset": len(subset),
        "per_pair": per_pair,
        "unshared": per_pair * n * len(documents),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--topical",
        type=float,
        default=0.5,
        help="share of a profile's terms taken from one paper (default 0.5)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each timing, the best kept (default 3)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_size(args.one, args.topical, args.repeat)))
        return
    documents, real, synthetic = load_papers()
    print(
        f"papers: {len(documents):,}: {real:,} distinct real papers from ../shared (seeds, HF"
        f" daily-papers JSON, arXiv RSS/API/republished feeds) and {synthetic:,} synthesised by"
        " recombining real titles and abstracts"
    )
    print(
        "profiles: 5-20 terms: up to 2 required terms and OR groups of 2-6 alternatives, ANDed,"
        " NOT terms, ~25% phrases, ~8% wildcards, title:/author:/org: scopes, upvotes>=,"
        f" source:; {args.topical:.0%} of the terms from one paper's words (a topic), the rest"
        f" from all papers' words seen in at most {Vocabulary.COMMON:.0%} of them"
    )
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [
                *(sys.executable, __file__, "--one", str(size)),
                *("--topical", str(args.topical), "--repeat", str(args.repeat)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout))
    print()
    print(
        f"{'profiles':>9} {'parse s':>8} {'index s':>8} {'match s':>8} {'gc s':>6}"
        f" {'peak MiB':>9} {'anchored':>9} {'matches':>8} {'naive s':>8} {'speed-up':>9}"
        f" {'per-pair s':>11} {'speed-up':>9}"
    )
    for r in rows:
        total = r["match"] + r["gc"]
        print(
            f"{r['n']:>9,} {r['parse']:>8.2f} {r['build']:>8.2f} {r['match']:>8.3f}"
            f" {r['gc']:>6.3f} {r['peak_mib']:>9.0f} {r['anchored'] / PAPERS:>9.0f}"
            f" {r['matches']:>8,} {r['naive']:>8.1f} {r['naive'] / total:>8.0f}x"
            f" {r['unshared']:>11,.0f} {r['unshared'] / total:>8,.0f}x"
        )
    print()
    print(
        f"match s: ProfileIndex.match over all the papers, tokenising them included, best of"
        f" {args.repeat} runs in one process (the first: "
        + ", ".join(f"{r['match_first']:.3f}" for r in rows)
        + "), after gc.collect() + gc.freeze() on the built index (as a long-running service"
        " would). match() pauses the cyclic collector while it runs."
    )
    print(
        "gc s: a gc.collect() right after match(): the collector's pass over the results that"
        " match() deferred. The speed-up divides the naive time by match s + gc s."
    )
    print(
        "parse s, index s: compile time (parse_query on every profile; building the index),"
        " apart from match s."
    )
    print(
        "anchored: profiles filed under a key that a paper holds, per paper; match() tests"
        " those of a batch of papers once, with bit sets over the batch."
    )
    print(
        "naive s: every profile against every paper with match_query (papers tokenised once):"
        " the one-time part (tokenising the papers and their keys, with the first profile: "
        + ", ".join(f"{r['naive_once']:.2f}" for r in rows)
        + f" s) plus the time per profile, best of {args.repeat} runs over profiles 2 to"
        f" {NAIVE_SUBSET:,} (ms: "
        + ", ".join(f"{r['naive_per_profile'] * 1000:.2f}" for r in rows)
        + "), extrapolated linearly to N; on those profiles the naive loop and the index give"
        " identical matches."
    )
    print(
        "per-pair s: the same loop with nothing shared: every (profile, paper) pair tokenises"
        f" its paper again (match_query over the unprepared papers), timed once over the first"
        f" {PER_PAIR_SUBSET} profiles (µs per pair: "
        + ", ".join(f"{r['per_pair'] * 1e6:.0f}" for r in rows)
        + "), extrapolated to N × papers; its matches are the index's too. The first speed-up"
        " (against the loop that tokenises each paper once) is the one the targets are read"
        " against."
    )
    print(
        "peak MiB: growth of the process's peak RSS (getrusage ru_maxrss) over its RSS before"
        " parsing, through parse, build and match; each size runs in a fresh process."
    )
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, one process.")


if __name__ == "__main__":
    main()
