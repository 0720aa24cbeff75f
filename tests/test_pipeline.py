"""Ingesting snapshots end to end, on SQLite and PostgreSQL: counts, events, bad input, folders."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import SEED_ORDER, seed

from service.app import App, build
from service.clock import FixedClock
from service.config import Settings
from service.model import SnapshotOutcome

T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)


def make_app(tmp_path: Path, database_url: str, **settings: object) -> App:
    config = Settings(data_dir=tmp_path / "data", database_url=database_url, **settings)
    return build(config, clock=FixedClock(T0))


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    with make_app(tmp_path, database_url) as built:
        yield built


def ingest_seeds_in_order(
    app: App, seeds: list[Path], source_id: str | None = "inbox"
) -> list[list[int]]:
    """The seeds as captures of one listing (the declared ``inbox``), oldest first."""
    counts = []
    for prefix, captured in SEED_ORDER:
        (summary,) = app.pipeline.ingest.ingest_files(
            [seed(seeds, prefix)], source_id=source_id, captured_at=captured
        )
        assert summary.outcome is SnapshotOutcome.PARSED, summary.error
        counts.append([summary.new, summary.listed, summary.updated, summary.dropped])
    return counts


@pytest.mark.shared
def test_seeds_in_capture_order(app: App, seeds: list[Path]) -> None:
    counts = ingest_seeds_in_order(app, seeds)
    assert [c[0] for c in counts] == [72, 35, 45, 15, 36]
    assert app.store.counts()["papers"] == 203
    # Only one paper changes: 'Draft-based ...' gains its author line and date in 004.
    assert [c[2] for c in counts] == [0, 0, 0, 0, 1]
    (draft,) = app.store.papers(search="Draft-based Approximate Inference for LLMs")
    last = app.store.events(snapshot_id=5)
    (update,) = [e for e in last if e[0] == "updated"]
    assert update[1] == draft.id
    assert {c["field"] for c in update[2]} == {"author_count", "published", "upvotes"}
    assert draft.author_count == 6
    assert draft.published is not None


@pytest.mark.shared
def test_files_given_by_hand_are_not_one_listing_and_drop_nothing(
    app: App, seeds: list[Path]
) -> None:
    counts = ingest_seeds_in_order(app, seeds, source_id=None)
    assert [c[3] for c in counts] == [0, 0, 0, 0, 0]
    assert [c[0] for c in counts] == [72, 35, 45, 15, 36]  # the same papers come in
    assert app.store.counts()["papers"] == 203
    # The same captures as snapshots of one declared listing do drop what each leaves out.
    with make_app(app.settings.data_dir.parent / "listing", "sqlite://") as other:
        assert sum(c[3] for c in ingest_seeds_in_order(other, seeds)) > 0


@pytest.mark.shared
def test_dropped_and_listed_follow_the_previous_snapshot(app: App, seeds: list[Path]) -> None:
    from service.identity import normalise_title
    from service.parse.listing import parse

    ingest_seeds_in_order(app, seeds[:0] or seeds)

    # Independently: what 004 drops is what 000 had and 004 has not.
    def titles(prefix: str) -> set[str]:
        from service.model import Snapshot

        body = seed(seeds, prefix).read_bytes()
        parsed = parse(Snapshot("x", prefix, body, fetched_at=T0))
        return {normalise_title(p.title) for p in parsed.papers}

    events = app.store.events(snapshot_id=5)
    dropped = [e for e in events if e[0] == "dropped"]
    assert len(dropped) == len(titles("000") - titles("004"))


@pytest.mark.shared
def test_the_same_bytes_again_change_nothing(app: App, seeds: list[Path]) -> None:
    ingest_seeds_in_order(app, seeds)
    before = app.store.counts()
    for prefix, captured in SEED_ORDER:
        (summary,) = app.pipeline.ingest.ingest_files(
            [seed(seeds, prefix)], source_id="inbox", captured_at=captured
        )
        assert summary.outcome is SnapshotOutcome.UNCHANGED
    after = app.store.counts()
    assert after["snapshots"] == before["snapshots"] + 5
    assert {k: v for k, v in after.items() if k != "snapshots"} == {
        k: v for k, v in before.items() if k != "snapshots"
    }


BAD_INPUTS = {
    "empty.txt": b"",
    "binary.bin": bytes(range(256)) * 64,
    "page.html": b"<!DOCTYPE html><html><body>Daily Papers</body></html>",
    "latin1.txt": "new\n\nCaf\xe9\n".encode("latin-1"),
    "truncated.txt": (
        b"new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        b"byAK and the research community\n\nDec 26\n\nA Title\n\nAn abstract\n\n"
        b"  \xe2\x80\xa2 3 authors\n"
    ),
    "baddate.txt": (
        b"new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
        b"byAK and the research community\n\nDec 26\n\nA Title\n\nAn abstract\n\n"
        b"  \xe2\x80\xa2 3 authors\n\xc2\xb7\nDecember 5th\n"
    ),
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_and_changes_nothing(
    app: App, seeds: list[Path], tmp_path: Path, name: str
) -> None:
    ingest_seeds_in_order(app, seeds)
    before = app.store.counts()
    papers_before = app.store.papers(limit=None)
    bad = tmp_path / name
    bad.write_bytes(BAD_INPUTS[name])
    (summary,) = app.pipeline.ingest.ingest_files([bad])
    assert summary.outcome is SnapshotOutcome.REJECTED
    assert summary.error is not None
    assert summary.error.startswith(f"{bad}: line ")
    assert re.match(r": line \d+: expected ", summary.error[len(str(bad)) :])
    after = app.store.counts()
    assert after["snapshots"] == before["snapshots"] + 1
    assert {k: v for k, v in after.items() if k != "snapshots"} == {
        k: v for k, v in before.items() if k != "snapshots"
    }
    assert app.store.papers(limit=None) == papers_before


def test_a_file_over_the_size_limit_is_rejected(tmp_path: Path, database_url: str) -> None:
    big = tmp_path / "huge.txt"
    with big.open("wb") as out:
        out.truncate(100 * 1024 * 1024)  # 100 MiB, sparse on disk
    with make_app(tmp_path, database_url) as app:
        (summary,) = app.pipeline.ingest.ingest_files([big])
        assert summary.outcome is SnapshotOutcome.REJECTED
        assert "100.0 MiB" in (summary.error or "")
        assert "fetch.max_bytes" in (summary.error or "")
        assert app.store.counts()["papers"] == 0
        import sqlalchemy as sa

        from service.store.tables import snapshots

        with app.store.engine.connect() as db:
            row = db.execute(sa.select(snapshots.c.outcome, snapshots.c.body_hash)).one()
    # Recorded with its hash, read in pieces: the sha256 of 100 MiB of zero bytes.
    zeros = hashlib.sha256()
    for _ in range(100):
        zeros.update(bytes(1024 * 1024))
    assert tuple(row) == ("rejected", zeros.hexdigest())


@pytest.mark.shared
def test_a_100_mb_listing_within_a_raised_limit_is_ingested(
    tmp_path: Path, seeds: list[Path]
) -> None:
    body = seed(seeds, "004").read_bytes()
    header_end = body.index(b"May 8\n") + len(b"May 8\n")
    blocks = body[header_end:]
    repeats = 100 * 1024 * 1024 // len(blocks) + 1
    big = tmp_path / "huge.txt"
    with big.open("wb") as out:
        out.write(body[:header_end])
        for _ in range(repeats):
            out.write(blocks)
    from service.config import FetchSettings

    url = f"sqlite:///{tmp_path / 'big.db'}"
    with make_app(tmp_path, url, fetch=FetchSettings(max_bytes=200 * 1024 * 1024)) as app:
        (summary,) = app.pipeline.ingest.ingest_files(
            [big], captured_at=datetime(2026, 5, 8, tzinfo=UTC)
        )
    assert summary.outcome is SnapshotOutcome.PARSED
    assert summary.papers == 46 * repeats
    assert summary.new == 46


@pytest.mark.shared
def test_a_folder_with_one_bad_file_ingests_the_others(
    tmp_path: Path, database_url: str, seeds: list[Path]
) -> None:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    for prefix, captured in SEED_ORDER:
        copy = inbox / seed(seeds, prefix).name
        shutil.copy(seed(seeds, prefix), copy)
        # Files dropped at capture time carry their capture time as mtime.
        os.utime(copy, (captured.timestamp() + 3600, captured.timestamp() + 3600))
    (inbox / "zz-broken.txt").write_bytes(b"\x00\x01 not a listing")
    (inbox / "half-written.txt.part").write_bytes(b"ignored until renamed")
    with make_app(tmp_path, database_url) as app:
        summaries = app.pipeline.ingest.poll("inbox")
        by_outcome = {s.origin.rsplit("/", 1)[-1]: s for s in summaries}
        assert by_outcome["zz-broken.txt"].outcome is SnapshotOutcome.REJECTED
        parsed = [s for s in summaries if s.outcome is SnapshotOutcome.PARSED]
        # Applied in capture order, whatever the file names say.
        assert [s.new for s in parsed] == [72, 35, 45, 15, 36]
        assert app.store.counts()["papers"] == 203
        # Each file is taken once: the next poll finds nothing new.
        assert app.pipeline.ingest.poll("inbox") == []
        (row,) = [r for r in app.store.list_sources() if r.id == "inbox"]
        assert row.state.errors == 0
        assert row.state.last_success_at == T0
        assert row.papers == 46


def test_a_title_first_paper_gains_its_arxiv_id(app: App, tmp_path: Path) -> None:
    from service.model import Organisation, PaperIn, Parsed, Snapshot
    from service.pipeline.ingest import _Prepared
    from service.store.repository import SnapshotRecord

    def feed(source: str, papers: tuple[PaperIn, ...], at: datetime) -> list[int]:
        app.store.declare_sources([(source, None, source)], at)
        snapshot = Snapshot(source, source, repr(papers).encode(), fetched_at=at, captured_at=at)
        digest = hashlib.sha256(repr(papers).encode()).hexdigest()
        record = SnapshotRecord(source, source, at, at, digest, 1)
        summary = app.pipeline.ingest._commit(_Prepared(snapshot, record, Parsed(papers, at)))
        return [summary.new, summary.listed, summary.updated]

    title_only = PaperIn(
        title="MoE$^2$: Optimizing Collaborative Inference", organisation=Organisation("a", "A")
    )
    with_id = PaperIn(
        title="MoE^2: Optimizing Collaborative Inference",
        arxiv_id="2501.09410",
        version=2,
        authors=("Lyudong Jin", "Yanning Zhang"),
    )
    assert feed("listing", (title_only,), T0) == [1, 0, 0]
    assert feed("hf", (with_id,), T0) == [0, 1, 1]
    (paper,) = app.store.papers()
    assert paper.arxiv_id == "2501.09410"
    assert paper.key == "arxiv:2501.09410"
    assert paper.sources == ("hf", "listing")
    newer = PaperIn(title="Another title entirely", arxiv_id="2501.09410", version=3)
    assert feed("arxiv", (newer,), T0) == [0, 1, 1]
    assert app.store.counts()["papers"] == 1
    assert app.store.papers()[0].version == 3


# -- listings: unchanged blocks are skipped, with the same outcome as reading everything ---------


def _block(
    title: str, abstract: str = "An abstract.", meta: str = "  • 3 authors", day: str = "May 2 5"
) -> str:
    return f"{title}\n\n{abstract}" + (f"\n\n{meta}\n·\n{day}" if meta else "")


def _capture(*blocks: str, page: str = "May 8") -> bytes:
    head = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    body = "\n\n".join(blocks)
    return f"{head}byAK and the research community\n\n{page}\n\n{body}\n".encode()


_A = _block("Alpha: a paper")
_B = _block("Beta", day="Apr 30 7")
_B2 = _block("Beta", day="Apr 30 9")
_C = _block("Gamma Rays", meta="ByteDance-Seed ByteDance Seed", day="Dec 30, 2024 12")
_C_AGAIN = _block("Gamma Rays", meta="ByteDance-Seed ByteDance Seed", day="Dec 30, 2024 13")
_D = _block("Delta", abstract="Dropped, then back byte for byte.")
_E = _block("Epsilon without meta lines", meta="")
_E2 = _block("Epsilon without meta lines", abstract="A new abstract.", meta="")
_F = _block("Phi", meta="  • 1 author", day="Mar 31, 2023")
_G = _block("Gee", day="Jan 1")
_H = _block("Eta, new on day two")
_I = _block("Iota, from a stale capture")
_A_STALE = _block("Alpha: a paper", abstract="An older abstract.")
_J = _block("注意力 Études: “Quoted” Titles", meta="")
_LATER = (_A, _B2, _C, _D, _E2, _F, _G, _H, _J)

# Steps of captures, each step taken by one call (capture times are the files' mtimes).
LISTING_STEPS: list[list[tuple[bytes, datetime]]] = [
    [(_capture(_A, _B, _C, _D, _E, _C_AGAIN, _F, _G), datetime(2026, 5, 8, tzinfo=UTC))],
    [(_capture(_A, _B2, _C, _E2, _H, _G, _G, _F, _J), datetime(2026, 5, 9, tzinfo=UTC))],
    [(_capture(_A, _B2, _D, _H, _F, _G, _C, _J), datetime(2026, 5, 10, tzinfo=UTC))],
    [(_capture(_A_STALE, _I, _B, _C), datetime(2026, 5, 9, 12, tzinfo=UTC))],
    [(_capture(*_LATER, page="Jan 3"), datetime(2027, 1, 3, tzinfo=UTC))],
    # Prepared together: the first drops A, the second (prepared before the first is applied)
    # shows A again exactly as the store last saw it.
    [
        (_capture(*_LATER[1:], page="Jan 4"), datetime(2027, 1, 4, tzinfo=UTC)),
        (_capture(*_LATER, page="Jan 5"), datetime(2027, 1, 5, tzinfo=UTC)),
    ],
    [(_capture(*_LATER, page="Jan 5").replace(b"\n", b"\r\n"), datetime(2027, 1, 6, tzinfo=UTC))],
    [(_capture(*_LATER, _A, page="Jan 5"), datetime(2027, 1, 7, tzinfo=UTC))],
]


def _run_listing_steps(app: App, folder: Path) -> dict[str, list[object]]:
    import sqlalchemy as sa

    from service.store.tables import paper_sources

    folder.mkdir()
    seen: dict[str, list[object]] = {"summaries": [], "events": [], "papers": [], "sources": []}
    query = sa.select(
        paper_sources.c.paper_id,
        paper_sources.c.source_id,
        paper_sources.c.first_seen_at,
        paper_sources.c.last_seen_at,
        paper_sources.c.present,
    ).order_by(paper_sources.c.paper_id, paper_sources.c.source_id)
    for step, captures in enumerate(LISTING_STEPS):
        paths = []
        for index, (body, captured) in enumerate(captures):
            path = folder / f"{step}-{index}.txt"
            path.write_bytes(body)
            os.utime(path, (captured.timestamp(), captured.timestamp()))
            paths.append(path)
        for summary in app.pipeline.ingest.ingest_files(paths, source_id="inbox"):
            counts = (summary.new, summary.listed, summary.updated, summary.dropped)
            seen["summaries"].append((summary.outcome, summary.papers, counts, summary.captured_at))
            if summary.snapshot_id is not None:
                seen["events"].append(app.store.events(summary.snapshot_id))
        # Entry ids are minted at random: equal runs differ in them alone.
        seen["papers"].append([replace(p, entry_id="") for p in app.store.papers(limit=None)])
        with app.store.engine.connect() as db:
            seen["sources"].append([tuple(row) for row in db.execute(query)])
    return seen


def test_skipping_unchanged_listing_blocks_changes_no_outcome(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.parse import listing

    read = listing.read
    papers_read: list[tuple[int, int]] = []

    def counting_read(*args: object) -> object:
        parsed = read(*args)  # type: ignore[arg-type]
        if isinstance(parsed, listing.Capture) and parsed.blocks is not None:
            papers_read.append((len(parsed.papers), len(parsed.blocks)))
        return parsed

    monkeypatch.setattr(listing, "read", counting_read)
    with make_app(tmp_path / "fast", database_url) as app:
        fast = _run_listing_steps(app, tmp_path / "fast-files")
    # Each capture was read fast, most of the later ones only in part.
    assert len(papers_read) == 9
    assert sum(read * 2 < blocks for read, blocks in papers_read) >= 4
    # The reference reads every capture line by line: no blocks, no skipping, field fingerprints.
    monkeypatch.setattr(listing, "read", read)
    monkeypatch.setattr(listing, "scan", lambda snapshot: None)
    with make_app(tmp_path / "slow", f"sqlite:///{tmp_path / 'slow.db'}") as app:
        slow = _run_listing_steps(app, tmp_path / "slow-files")
    assert fast == slow
    kinds = {kind for events in fast["events"] for kind, _, _ in events}  # type: ignore[attr-defined]
    assert kinds == {"new", "listed", "updated", "dropped"}


def test_an_ingest_leaves_the_sqlite_page_cache_as_it_found_it(tmp_path: Path) -> None:
    with make_app(tmp_path, f"sqlite:///{tmp_path / 'cache.db'}") as app:
        with app.store.engine.connect() as db:
            usual = db.exec_driver_sql("PRAGMA cache_size").scalar()
        (summary,) = app.pipeline.ingest.ingest_files(
            [_write(tmp_path / "one.txt", _capture(_A, _B))], captured_at=T0
        )
        assert summary.outcome is SnapshotOutcome.PARSED
        with app.store.engine.connect() as db:
            assert db.exec_driver_sql("PRAGMA cache_size").scalar() == usual


def _write(path: Path, body: bytes) -> Path:
    path.write_bytes(body)
    return path


def test_a_listing_of_more_papers_than_one_insert_holds_is_stored_whole(
    app: App, tmp_path: Path
) -> None:
    from service.model import Snapshot
    from service.parse.listing import parse
    from service.store.repository import ROWS_PER_INSERT

    def meta(i: int) -> str:
        if i % 7 == 0:
            return ""  # no meta lines: no count, organisation, date or upvotes
        return f"Org-{i} Org {i}" if i % 3 == 0 else f"  • {i % 9 + 1} authors"

    count = 2 * ROWS_PER_INSERT + 17
    body = _capture(
        *(
            _block(f"Paper {i}", f"Abstract {i}.", meta(i), f"Apr {i % 28 + 1} {i}")
            for i in range(count)
        )
    )
    (summary,) = app.pipeline.ingest.ingest_files(
        [_write(tmp_path / "many.txt", body)], captured_at=T0
    )
    assert (summary.outcome, summary.papers, summary.new) == (SnapshotOutcome.PARSED, count, count)
    expected = parse(Snapshot("x", "many.txt", body, fetched_at=T0, captured_at=T0)).papers
    stored = {p.title: p for p in app.store.papers()}
    for paper in expected:
        got = stored[paper.title]
        assert (got.abstract, got.author_count, got.organisation, got.published) == (
            paper.abstract,
            paper.author_count,
            paper.organisation,
            paper.published,
        )
        assert (got.upvotes, got.arxiv_id, got.doi, got.version) == (
            paper.upvotes or 0,
            None,
            None,
            None,
        )
    events = app.store.events(summary.snapshot_id or 0)
    assert [kind for kind, _, _ in events] == ["new"] * count
    assert [stored[p.title].id for p in expected] == [paper_id for _, paper_id, _ in events]


@pytest.mark.shared
def test_the_upvote_boost_setting_lifts_popular_papers(
    tmp_path: Path, database_url: str, seeds: list[Path]
) -> None:
    import math

    from service.config import MatchSettings

    found = {}
    for boost in (0.0, 0.5):
        folder = tmp_path / str(boost)
        with make_app(folder, database_url, matching=MatchSettings(upvote_boost=boost)) as app:
            if boost == 0.0:
                ingest_seeds_in_order(app, seeds)
            matches = app.pipeline.matching.preview("cache", limit=500)
            found[boost] = {p.key: (p.upvotes, m.score) for p, m in matches}
    assert found[0.0].keys() == found[0.5].keys()
    assert any(upvotes for upvotes, _ in found[0.0].values())
    for key, (upvotes, plain) in found[0.0].items():
        assert found[0.5][key][1] == pytest.approx(plain + 0.5 * math.log1p(upvotes))
