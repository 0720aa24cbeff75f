"""Benchmark: the web on a uvicorn server on loopback over 30,000 stored papers.

    python bench/web.py [--papers 30000] [--days 30] [--duration 10] [--connections 16]

Builds a SQLite database in a temporary folder (or ``--data-dir``, reused when it exists):
the papers of ../shared (seeds, Hugging Face JSON, arXiv feeds) and recombined ones up to
``--papers``, ingested as daily arXiv-style RSS captures (with authors) spread over the last
``--days`` days (so all of them are in the live preview's 30-day window by default: its
worst case), with 20
subscribers of 3 profiles each, matched as they arrive. Then starts ``paperboy web`` in a
subprocess and measures, with wrk (``apt-get install wrk``) for a few seconds each:
- requests per second for a feed GET answered 200 (rendered), and for a conditional GET
  answered 304 (If-None-Match);
- the p50/p95 latency of ``GET /preview?q=...`` for typical queries, one request at a time
  (httpx), after a first warm-up request (the time to prepare the window is printed too).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from match import load_papers

from service import tokens
from service.app import build
from service.clock import FixedClock
from service.config import Settings
from service.model import ProfileSpec

QUERIES = [
    "kv cache",
    "diffusion AND video",
    'author:"{author}"',
    "quantiz*",
    '"large language" -survey',
    "(retrieval OR rag) agent*",
]
TOPICS = [
    ("KV cache", '"kv cache" OR kv-cache'),
    ("Diffusion", "diffusion AND (video OR image)"),
    ("Agents", "agent* AND (tool OR planning)"),
    ("Quantisation", "quantiz* OR quantis*"),
    ("RAG", "rag OR retrieval-augmented"),
    ("Speculative", '"speculative decoding"'),
]


def capture(rows: list[tuple[str, str, tuple[str, ...], str]]) -> str:
    """An arXiv-style RSS capture of ``rows`` (title, abstract, authors, arXiv id)."""
    items = "".join(
        f"<item><title>{escape(title)}</title><link>https://arxiv.org/abs/{arxiv_id}</link>"
        f"<description>{escape(abstract)}</description>"
        f"<guid isPermaLink='false'>oai:arXiv.org:{arxiv_id}v1</guid>"
        f"<dc:creator>{escape(', '.join(authors))}</dc:creator></item>"
        for title, abstract, authors, arxiv_id in rows
    )
    return (
        '<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>cs updates</title><link>https://arxiv.org/</link>{items}"
        "</channel></rss>"
    )


def build_database(data: Path, papers: int, days: int) -> str:
    """Ingest ``papers`` papers over ``days`` days; returns an author name for a query."""
    import match

    match.PAPERS = papers
    documents, _, _ = load_papers()
    rng = random.Random(7)
    names = sorted({a for d in documents for a in d.authors}) or ["Jane Doe"]
    seen: set[str] = set()
    rows = []
    for d in documents:
        key = re.sub(r"\W+", " ", d.title.casefold()).strip()
        if key in seen or not d.abstract:
            continue
        seen.add(key)
        authors = d.authors or tuple(rng.sample(names, min(len(names), rng.randint(1, 6))))
        arxiv_id = f"2601.{len(rows):05d}"
        rows.append((" ".join(d.title.split()), " ".join(d.abstract.split()), authors, arxiv_id))
    now = datetime.now(UTC).replace(microsecond=0)
    clock = FixedClock(now - timedelta(days=days) + timedelta(hours=1))
    settings = Settings(data_dir=data, sources=[], profiles_file=data / "none.toml")
    started = time.perf_counter()
    with build(settings, clock=clock) as app:
        roster = app.pipeline.roster
        for i in range(20):
            email = f"reader{i}@example.org"
            roster.save_subscriber(email, "UTC", "daily 07:00")
            for name, query in rng.sample(TOPICS, 3):
                roster.save_profile(email, ProfileSpec(name, query))
        per_day = -(-len(rows) // days)
        for day in range(days):
            chunk = rows[day * per_day : (day + 1) * per_day]
            if not chunk:
                break
            path = data / f"capture-{day:03d}.xml"
            path.write_text(capture(chunk))
            app.pipeline.ingest.ingest_files([path], captured_at=clock.now())
            path.unlink()
            clock.advance(days=1)
        stored = app.store.counts()
    print(f"built: {stored} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return rows[0][2][0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> float:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    codes = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert codes is None, out
    return float(found[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--papers", type=int, default=30_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=40, help="requests per preview query")
    parser.add_argument("--data-dir", type=Path, help="keep the database here (reused)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/web.py needs wrk: apt-get install -y wrk")
    temporary = None
    if args.data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="paperboy-bench-")
        args.data_dir = Path(temporary.name)
    data = args.data_dir
    marker = data / "author.txt"
    if not marker.exists():
        data.mkdir(parents=True, exist_ok=True)
        marker.write_text(build_database(data, args.papers, args.days))
    author = marker.read_text()
    settings = Settings(data_dir=data, sources=[], profiles_file=data / "none.toml")
    with build(settings) as app:
        owner = app.pipeline.subscriptions.subscribers()[0]
        token = tokens.make(owner.id, owner.token, "feeds")
        stored = app.store.counts()["papers"]
    port = free_port()
    env = {**os.environ, "PAPERBOY_CONFIG": str(data / "paperboy.toml")}
    (data / "paperboy.toml").write_text(
        f'data_dir = "{data}"\nprofiles_file = "{data / "none.toml"}"\nsources = []\n'
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "web", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            started = time.perf_counter()
            client.get("/preview", params={"q": "kv cache"})
            warm = time.perf_counter() - started
            feed = f"/feeds/{token}/all.atom"
            first = client.get(feed)
            assert first.status_code == 200, first
            etag = first.headers["etag"]
            size = len(first.content)
            print(f"papers stored: {stored:,} over {args.days} days; feed of {size:,} bytes")
            print(f"first preview (waits for the window to be prepared): {warm * 1000:.0f} ms")
            ok = wrk(base + feed, args.duration, args.connections, {})
            fresh = wrk(base + feed, args.duration, args.connections, {"If-None-Match": etag})
            print(f"feed GET 200: {ok:,.0f} requests/s   (wrk, {args.connections} connections)")
            print(f"feed GET 304: {fresh:,.0f} requests/s   (wrk, {args.connections} connections)")
            print(f"{'preview query':40} {'p50 ms':>8} {'p95 ms':>8} {'found':>6}")
            for text in QUERIES:
                query = text.format(author=author)
                times = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    answer = client.get("/preview", params={"q": query})
                    times.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, answer.text
                found = answer.text.count('class="paper"')
                p95 = statistics.quantiles(times, n=20)[-1]
                print(f"{query:40} {statistics.median(times):8.1f} {p95:8.1f} {found:6}")
            status = Path(f"/proc/{server.pid}/status").read_text()
            rss = int(status.split("VmRSS:")[1].split()[0]) // 1024
            print(f"server memory (RSS) after the previews: {rss} MB")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    main()
