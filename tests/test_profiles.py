"""Subscribers and profiles: declared three ways, checked on save, matched on ingest."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import SEED_ORDER, seed

from service.app import App, build
from service.cli import main
from service.clock import FixedClock
from service.config import Settings
from service.errors import InvalidValue, QueryError
from service.match.query import parse_query
from service.model import Cadence, ProfileSpec, Schedule
from service.store.tables import profiles, subscribers
from service.subscribers import Declared, read_profiles

T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "profiles.example.toml"


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, sources=[])
    with build(settings, clock=FixedClock(T0)) as built:
        yield built


def test_subscriber_fields_are_checked(app: App) -> None:
    saved = app.pipeline.roster.save_subscriber(
        "Jane.Doe@Example.ORG", "Europe/Berlin", "weekly Mon 07:30"
    )
    assert saved.email == "Jane.Doe@example.org"
    assert saved.schedule.cadence is Cadence.WEEKLY
    assert str(saved.schedule) == "weekly mon 07:30"
    for email, zone, schedule, field in [
        ("not-an-address", "UTC", "daily 07:00", "email"),
        ("a@b.org", "Mars/Olympus", "daily 07:00", "timezone"),
        ("a@b.org", "UTC", "daily 25:00", "schedule"),
        ("a@b.org", "UTC", "fortnightly", "schedule"),
    ]:
        with pytest.raises(InvalidValue) as caught:
            app.pipeline.roster.save_subscriber(email, zone, schedule)
        assert caught.value.field == field
    assert [s.email for s in app.pipeline.subscriptions.subscribers()] == ["Jane.Doe@example.org"]


def test_a_profile_name_with_control_characters_is_refused(app: App) -> None:
    app.pipeline.roster.save_subscriber("ann@example.org", "UTC", "instant")
    for name in ("KV\x1b[2J", "KV\ncache", "KV\x00"):
        with pytest.raises(InvalidValue, match="expected no control characters") as caught:
            app.pipeline.roster.save_profile("ann@example.org", ProfileSpec(name, "kv"))
        assert caught.value.field == "name"
    fine = ProfileSpec("KV\u00a0cache 👩\u200d💻 语言", "kv")  # no-break space, a joiner
    app.pipeline.roster.save_profile("ann@example.org", fine)


def test_an_invalid_query_is_refused_when_saved_with_a_caret(app: App) -> None:
    app.pipeline.roster.save_subscriber("a@b.org", "UTC", "daily 07:00")
    with pytest.raises(QueryError) as caught:
        app.pipeline.roster.save_profile("a@b.org", ProfileSpec("broken", 'kv "cache'))
    lines = str(caught.value).splitlines()
    assert lines[-1].index("^") - 2 == caught.value.position == 3
    assert app.pipeline.subscriptions.profiles() == []
    with pytest.raises(InvalidValue, match="no such subscriber"):
        app.pipeline.roster.save_profile("nobody@b.org", ProfileSpec("x", "kv"))


def test_the_profiles_file_is_synced_created_updated_removed(app: App, tmp_path: Path) -> None:
    app.pipeline.roster.save_subscriber("by-hand@example.org", "UTC", "instant")
    text = EXAMPLE.read_text()
    assert app.pipeline.roster.sync_profiles(text, "profiles.toml") == (2, 3)
    subs = app.pipeline.subscriptions
    assert {s.email for s in subs.subscribers()} == {
        "by-hand@example.org",
        "jane@example.org",
        "sam@example.org",
    }
    changed = text.replace('name = "ByteDance Seed"', 'name = "Seed"').replace(
        'email = "sam@example.org"', 'email = "sam@example.net"'
    )
    app.pipeline.roster.sync_profiles(changed, "profiles.toml")
    emails = {s.email for s in subs.subscribers()}
    assert emails == {"by-hand@example.org", "jane@example.org", "sam@example.net"}
    jane = subs.subscriber("jane@example.org")
    assert jane is not None
    assert {p.spec.name for p in subs.profiles(jane.id)} == {"KV cache", "Seed"}


def test_a_bad_profiles_file_changes_nothing(app: App) -> None:
    app.pipeline.roster.sync_profiles(EXAMPLE.read_text(), "profiles.toml")
    before = app.pipeline.roster.export_profiles()
    broken = EXAMPLE.read_text().replace("quantiz*", "quantiz* AND (")
    with pytest.raises(QueryError):
        app.pipeline.roster.sync_profiles(broken, "profiles.toml")
    wrong_zone = EXAMPLE.read_text().replace("America/New_York", "America/Gotham")
    with pytest.raises(InvalidValue, match=r"profiles.toml: subscribers\[1\]: timezone"):
        app.pipeline.roster.sync_profiles(wrong_zone, "profiles.toml")
    assert app.pipeline.roster.export_profiles() == before


def test_a_profiles_file_says_where_a_bad_value_is() -> None:
    text = EXAMPLE.read_text()
    kv = r'x: subscribers\[0\]\.profiles\[0\] \(name "KV cache"\): alert_threshold'
    for value in ["inf", "nan", "-inf", "0"]:
        with pytest.raises(InvalidValue, match=kv):
            read_profiles(text.replace("alert_threshold = 8.0", f"alert_threshold = {value}"), "x")
    broken = text.replace("quantiz*", "quantiz* AND (")
    assert read_profiles(broken, "x")  # the queries are the matcher's to check
    with pytest.raises(QueryError) as caught:
        read_profiles(broken, "x", check_query=parse_query)
    first, query, caret = str(caught.value).splitlines()
    assert first.startswith('x: subscribers[1].profiles[0] (name "Quantisation"): query: ')
    assert caret.index("^") - 2 == caught.value.position
    assert caught.value.query == query.strip()


def _stored(app: App, prefix: str) -> list[dict[str, object]]:
    """The rows of the subscribers whose address starts with ``prefix``, and of their profiles,
    but for what differs by nature (ids, the address, the secret token)."""
    with app.store.engine.connect() as db:
        owners = db.execute(
            sa.select(subscribers).where(subscribers.c.email.startswith(prefix))
        ).all()
        held = db.execute(
            sa.select(profiles).where(profiles.c.subscriber_id.in_([o.id for o in owners]))
        ).all()
    names = {o.id: o.email.removeprefix(prefix) for o in owners}
    apart = {"id", "email", "email_key", "token", "subscriber_id"}
    rows = [{**o._asdict(), "who": names[o.id]} for o in owners]
    rows += [{**p._asdict(), "who": names[p.subscriber_id]} for p in held]
    return sorted(({k: v for k, v in row.items() if k not in apart} for row in rows), key=repr)


def test_an_import_stores_what_saving_one_by_one_does(app: App) -> None:
    """An import writes in bulk (COPY on PostgreSQL): the same rows as the one-by-one path."""
    roster = app.pipeline.roster

    def declared(prefix: str, query: str, schedule: str) -> list[Declared]:
        return [
            Declared(
                f"{prefix}{n}@example.org",
                zone,
                Schedule.parse(schedule),
                (ProfileSpec("A", query, 2, 7, 3.5, True), ProfileSpec("B", "tab\tüber")),
            )
            for n, zone in enumerate(["UTC", "Asia/Tokyo", "America/New_York"])
        ]

    for query, schedule in [("kv OR cache", "daily 07:30"), ('"kv cache"', "weekly mon 08:00")]:
        assert roster.import_profiles(declared("bulk", query, schedule)) == (3, 6)
        for item in declared("single", query, schedule):
            roster.save_subscriber(item.email, item.timezone, str(item.schedule))
            for spec in item.profiles:
                roster.save_profile(item.email, spec)
        assert _stored(app, "bulk") == _stored(app, "single")
        assert len(_stored(app, "bulk")) == 9


def test_export_then_import_round_trips(app: App, tmp_path: Path) -> None:
    app.pipeline.roster.sync_profiles(EXAMPLE.read_text(), "profiles.toml")
    exported = app.pipeline.roster.export_profiles()

    def by_email(text: str) -> dict[str, object]:
        return {
            d.email: (d.timezone, d.schedule, sorted(d.profiles, key=lambda p: p.name))
            for d in read_profiles(text, "x")
        }

    assert by_email(exported) == by_email(EXAMPLE.read_text())


@pytest.mark.shared
def test_new_papers_are_matched_against_every_profile_on_ingest(
    app: App, seeds: list[Path]
) -> None:
    app.pipeline.roster.save_subscriber("a@b.org", "UTC", "daily 07:00")
    kv = app.pipeline.roster.save_profile("a@b.org", ProfileSpec("kv", '"kv cache"'))
    rag = app.pipeline.roster.save_profile("a@b.org", ProfileSpec("rag", "title:rag"))
    for prefix, captured in SEED_ORDER:
        app.pipeline.ingest.ingest_files([seed(seeds, prefix)], captured_at=captured)
    papers = {p.id: p for p in app.store.papers(limit=None)}
    kv_expected = {
        pid
        for pid, p in papers.items()
        if re.search(r"\bkv\W+caches?\b", f"{p.title} {p.abstract}", re.IGNORECASE)
    }
    rag_expected = {pid for pid, p in papers.items() if re.search(r"\bRAG\b", p.title, re.I)}
    kv_found = {pid for pid, _, _ in app.pipeline.subscriptions.matches(kv.id)}
    rag_found = {pid for pid, _, _ in app.pipeline.subscriptions.matches(rag.id)}
    assert kv_found == kv_expected
    assert len(kv_found) > 10
    assert rag_found == rag_expected
    best = app.pipeline.subscriptions.matches(kv.id)[0]
    assert best[2][0]["term"] == "kv cache"
    assert {r["field"] for r in best[2]} <= {"title", "abstract"}


@pytest.mark.shared
def test_preview_cli_json(
    tmp_path: Path, seeds: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    for prefix, captured in SEED_ORDER:
        main([*data, "ingest", str(seed(seeds, prefix)), "--captured-at", captured.isoformat()])
    capsys.readouterr()
    assert main([*data, "preview", "title:(kv cache) OR org:ByteDance-Seed", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows
    assert rows == sorted(rows, key=lambda r: -r["score"])
    for row in rows:
        text = row["title"]
        title_hits = [r for r in row["reasons"] if r["field"] == "title"]
        for reason in title_hits:
            for start, end in reason["positions"]:
                assert re.fullmatch(r"kv|caches?", text[start:end], re.IGNORECASE)
    shadow = next(r for r in rows if r["title"].startswith("ShadowKV"))
    assert {r["field"] for r in shadow["reasons"]} >= {"title", "org"}
    assert main([*data, "preview", "kv AND (", "--json"]) == 1
    assert "^" in capsys.readouterr().err
