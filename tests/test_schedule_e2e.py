"""End to end: the seeds arrive in capture order over two days under a controlled clock; two
subscribers in different zones get exactly the expected digests over real SMTP, each once, and
a restart in the middle duplicates nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SEED_ORDER, seed
from deliver.smtpd import SmtpSink
from mail import make_app, parse, parts, send

from service.app import App
from service.clock import FixedClock
from service.identity import normalise_title
from service.latex import to_text
from service.model import ProfileSpec, Snapshot
from service.parse import parse as parse_snapshot

DAY1 = datetime(2026, 6, 1, tzinfo=UTC)
# Profiles with one word each, so that the expected sets come from a plain regex.
PROFILES = {
    "ann@example.org": (
        "Europe/Berlin",
        "daily 07:30",
        {"Diffusion": "diffusion", "Robots": "robot"},
    ),
    "bob@example.org": (
        "America/New_York",
        "daily 18:00",
        {"Inference": "inference", "Video": "video"},
    ),
}
# When each seed lands (UTC), in capture order.
ARRIVALS = {
    "001": DAY1 + timedelta(hours=3),
    "003": DAY1 + timedelta(hours=12),
    "002": DAY1 + timedelta(hours=23),
    "000": DAY1 + timedelta(days=1, hours=9),
    "004": DAY1 + timedelta(days=1, hours=21),
}
# The digests due: Berlin 07:30 is 05:30 UTC in June; New York 18:00 is 22:00 UTC.
DUE = {
    "ann@example.org": [DAY1 + timedelta(days=d, hours=5, minutes=30) for d in (0, 1, 2)],
    "bob@example.org": [DAY1 + timedelta(days=d, hours=22) for d in (0, 1)],
}
CRASH_AT = DAY1 + timedelta(days=1, hours=5, minutes=30)  # ann's second digest is queued


def expected_digests(seeds: list[Path]) -> dict[str, list[set[str]]]:
    """Per subscriber, per due time: the titles matching any profile by regex among the seeds
    that arrived in that window, less those an earlier digest already sent. Titles are compared
    normalised (the identity rule of issue 2): "MoE$^2$: ..." and "MoE^2: ..." are one paper."""
    papers: dict[str, list[tuple[str, str]]] = {}
    for prefix, captured in SEED_ORDER:
        snapshot = Snapshot("t", prefix, seed(seeds, prefix).read_bytes(), captured, captured)
        parsed = parse_snapshot(snapshot, None, {})
        papers[prefix] = [(p.title, p.abstract) for p in parsed.papers]
    out: dict[str, list[set[str]]] = {}
    for email, (_, _, profiles) in PROFILES.items():
        words = [re.compile(rf"\b{w}s?\b", re.IGNORECASE) for w in profiles.values()]
        sent: set[str] = set()
        start = DAY1
        out[email] = []
        for due in DUE[email]:
            titles = {
                shown(title)
                for prefix, at in ARRIVALS.items()
                if start <= at <= due
                for title, abstract in papers[prefix]
                if any(w.search(title) or w.search(abstract) for w in words)
            }
            out[email].append(titles - sent)
            sent |= titles
            start = due
    return out


def digest_titles(raw: bytes) -> set[str]:
    text, _ = parts(parse(raw))
    return {shown(line[2:]) for line in text.splitlines() if line.startswith("* ")}


def shown(title: str) -> str:
    """A title as compared here: as the mail shows it (``MoE$^2$`` reads MoE²), folded as
    paper identity folds it, spaces left out (``MoE^2`` in another capture is the same)."""
    return normalise_title(to_text(title)).replace(" ", "")


@pytest.mark.shared
def test_two_days_of_digests_arrive_exactly_once(
    tmp_path: Path, database_url: str, seeds: list[Path]
) -> None:
    clock = FixedClock(DAY1)
    expected = expected_digests(seeds)
    # A window with nothing new sends nothing (no profile here asks for empty digests).
    expected = {email: [titles for titles in due if titles] for email, due in expected.items()}
    assert [len(v) for v in expected.values()] == [2, 2]
    with SmtpSink() as sink:
        app = make_app(tmp_path, database_url, clock, sender="smtp", smtp=sink.settings())
        for email, (zone, schedule, profiles) in PROFILES.items():
            app.pipeline.roster.save_subscriber(email, zone, schedule)
            for name, query in profiles.items():
                app.pipeline.roster.save_profile(email, ProfileSpec(name, query, max_items=100))
        try:
            app = run_two_days(app, clock, tmp_path, database_url, sink, seeds)
        finally:
            app.close()
        received = list(sink.messages)

    by_recipient: dict[str, list[set[str]]] = {}
    for message in received:
        by_recipient.setdefault(message.recipients[0], []).append(digest_titles(message.content))
    for email in expected:
        got, want = by_recipient.get(email, []), expected[email]
        assert len(got) == len(want), email
        for index, (a, b) in enumerate(zip(got, want, strict=True)):
            assert a == b, (email, index, sorted(a - b), sorted(b - a))
    ids = [parse(m.content)["Message-ID"] for m in received]
    assert len(set(ids)) == len(ids) == 4


def run_two_days(
    app: App,
    clock: FixedClock,
    tmp_path: Path,
    database_url: str,
    sink: SmtpSink,
    seeds: list[Path],
) -> App:
    """What ``paperboy run``'s jobs do, every 30 minutes of the controlled clock."""
    captured = dict(SEED_ORDER)
    end = DAY1 + timedelta(days=2, hours=6)
    while clock.now() <= end:
        for prefix, at in ARRIVALS.items():
            if at == clock.now():
                [summary] = app.pipeline.ingest.ingest_files(
                    [seed(seeds, prefix)], captured_at=captured[prefix]
                )
                assert summary.outcome.value == "parsed"
        app.pipeline.ingest.poll()
        app.mailroom.plan()
        if clock.now() == CRASH_AT:
            # The process dies after planning, before sending; a new one starts.
            app.close()
            app = make_app(tmp_path, database_url, clock, sender="smtp", smtp=sink.settings())
            assert app.mailroom.plan() == []
        send(app)
        clock.advance(minutes=30)
    return app
