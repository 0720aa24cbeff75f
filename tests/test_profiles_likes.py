"""Likes in the profiles file: ``likes = [...]`` read (a profile of likes alone needs no
query), checked with where the problem is, imported, exported and read back the same, and a
sync that never undoes a 👎; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from mail import ingest, make_app, rss

from service import subscribers
from service.clock import FixedClock
from service.errors import InvalidValue
from service.match.query import parse_query
from service.model import ProfileSpec

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PAPERS = [
    ("2603.00001", "Galaxy redshift survey of quasars", "Galaxy redshift quasar telescope."),
    ("2603.00002", "Protein folding of membrane enzymes", "Protein enzyme folding membrane."),
    ("2603.00003", "Stellar nebula spectra", "Stellar nebula spectra supernova."),
] + [  # more of both topics: the similarity model needs words seen more than once
    (f"2603.{n:05d}", f"{topic} study {n}", f"{topic} results and methods {n}.")
    for n in range(10, 40)
    for topic in ["Galaxy quasar" if n % 2 else "Protein enzyme"]
]
FILE = """
[[subscribers]]
email = "jane@example.org"
timezone = "UTC"
schedule = "daily 07:00"

[[subscribers.profiles]]
name = "Sky"
likes = ["arXiv:2603.00001", "Stellar nebula spectra", "doi:10.9999/not.stored"]

[[subscribers.profiles]]
name = "Both"
query = "protein"
likes = ["2603.00002"]
"""


def test_likes_are_read_and_a_profile_of_likes_needs_no_query() -> None:
    [jane] = subscribers.read_profiles(FILE, "p.toml", check_query=parse_query)
    assert jane.profiles == (ProfileSpec("Sky", ""), ProfileSpec("Both", "protein"))
    assert jane.likes == {
        "Sky": ("arXiv:2603.00001", "Stellar nebula spectra", "doi:10.9999/not.stored"),
        "Both": ("2603.00002",),
    }
    # Without likes, the query is still required, and an empty one still refused.
    without = FILE.replace('likes = ["2603.00002"]\n', "").replace('query = "protein"', "")
    with pytest.raises(InvalidValue) as caught:
        subscribers.read_profiles(without, "p.toml", check_query=parse_query)
    assert (caught.value.field, caught.value.where) == (
        "query",
        'p.toml: subscribers[0].profiles[1] (name "Both")',
    )


@pytest.mark.parametrize(
    "likes",
    ['"arXiv:2603.00001"', '["ok", 3]', '[""]', '["' + "x" * 501 + '"]'],
)
def test_bad_likes_name_the_file_subscriber_and_profile(likes: str) -> None:
    text = FILE.replace('likes = ["2603.00002"]', f"likes = {likes}")
    with pytest.raises(InvalidValue) as caught:
        subscribers.read_profiles(text, "p.toml", check_query=parse_query)
    assert caught.value.field == "likes"
    assert caught.value.where == 'p.toml: subscribers[0].profiles[1] (name "Both")'


def test_likes_round_trip_through_import_and_export(tmp_path: Path, database_url: str) -> None:
    with make_app(tmp_path / "one", database_url, FixedClock(NOW)) as app:
        ingest(app, tmp_path, "day.xml", rss(*PAPERS))
        declared = subscribers.read_profiles(FILE, "p.toml", check_query=parse_query)
        app.pipeline.roster.import_profiles(declared)
        likes = app.pipeline.likes.of()
        assert len(likes) == 4 and sum(like.paper_id is None for like in likes) == 1
        assert {like.origin for like in likes} == {"file"}
        exported = app.pipeline.roster.export_profiles()
    [again] = subscribers.read_profiles(exported, "export.toml", check_query=parse_query)
    # Stored papers are written by arXiv id (a title too, when the paper has one).
    assert sorted(again.likes["Sky"]) == [
        "arXiv:2603.00001",
        "arXiv:2603.00003",
        "doi:10.9999/not.stored",
    ]
    assert again.likes["Both"] == ("arXiv:2603.00002",)
    assert set(again.profiles) == set(declared[0].profiles)
    # Into an empty store and out again: the same file.
    fresh = tmp_path / "two"
    url = database_url if database_url.startswith("postgresql") else f"sqlite:///{fresh}.db"
    if url == database_url:  # one PostgreSQL database per test: start it afresh
        with make_app(tmp_path / "one", database_url, FixedClock(NOW)) as app:
            app.pipeline.roster.remove_subscriber("jane@example.org")
    with make_app(fresh, url, FixedClock(NOW)) as app:
        app.pipeline.roster.import_profiles([again])
        assert app.pipeline.roster.export_profiles() == exported


def test_a_sync_adds_likes_and_never_undoes_a_vote(tmp_path: Path, database_url: str) -> None:
    with make_app(tmp_path, database_url, FixedClock(NOW)) as app:
        ingest(app, tmp_path, "day.xml", rss(*PAPERS))
        roster, tastes = app.pipeline.roster, app.pipeline.tastes
        roster.sync_profiles(FILE, "p.toml")
        tastes.feedback("jane@example.org", "2603.00001", "down", "Sky")
        tastes.like("jane@example.org", "Sky", [], "web")
        roster.sync_profiles(FILE, "p.toml")  # as at the next start
        votes = {like.ref: like.vote for like in app.pipeline.likes.of()}
        assert votes["arxiv:2603.00001"] == "down"
        assert votes["arxiv:2603.00003"] == "up" and votes["arxiv:2603.00002"] == "up"
        assert len(votes) == 4
