"""Profiles by example: liked papers named by hand or from a library, 👍/👎 feedback, and the
similarity matches made per snapshot, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mail import ingest, make_app, rss

from service.app import App
from service.cli import main
from service.clock import FixedClock
from service.errors import InvalidValue
from service.model import ProfileSpec
from service.parse.library import reference

ASTRO = [
    "galaxy",
    "redshift",
    "telescope",
    "stellar",
    "supernova",
    "cosmic",
    "nebula",
    "quasar",
    "photometry",
    "spectra",
]
BIO = [
    "protein",
    "enzyme",
    "genome",
    "membrane",
    "receptor",
    "mutation",
    "folding",
    "ligand",
    "sequencing",
    "antibody",
]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def papers(start: int, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(arXiv id, title, abstract): even numbers about the sky, odd ones about proteins
    (the topic is known from the number, independently of the model)."""
    rng = random.Random(seed)
    made = []
    for n in range(start, start + count):
        words = ASTRO if n % 2 == 0 else BIO
        title = " ".join(rng.sample(words, 4)).capitalize() + f" {n}"
        made.append((f"2603.{n:05d}", title, " ".join(rng.sample(words, 8)) + " results."))
    return made


World = tuple[App, list[tuple[str, str, str]]]


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    """An app with a day of 40 papers stored and one subscriber, jane@example.org."""
    with make_app(tmp_path, database_url, FixedClock(NOW)) as app:
        day = papers(1, 40, seed=1)
        ingest(app, tmp_path, "day1.xml", rss(*day))
        app.pipeline.roster.save_subscriber("jane@example.org", "UTC", "daily 07:00")
        yield app, day


def matched(app: App, profile_id: int) -> dict[str, list[dict[str, object]]]:
    """arXiv id -> reasons of the profile's matches."""
    found = {}
    stored = {p.id: p for p in app.pipeline.store.all_papers()}
    for paper_id, _, reasons in app.pipeline.subscriptions.matches(profile_id):
        found[stored[paper_id].arxiv_id or ""] = reasons
    return found


def test_liked_papers_rank_their_topic_and_say_why(tmp_path: Path, world: World) -> None:
    app, day = world

    profile = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("sky", ""))
    saved = app.pipeline.tastes.like(
        "jane@example.org",
        "sky",
        [reference(day[1][0]), reference(day[3][1]), reference("10.1000/not.yet")],
        "cli",
    )
    assert [like.paper_id is not None for like in saved] == [True, True, False]
    # The next day: only sky papers match, each naming the liked paper it is closest to.
    new = papers(101, 40, seed=2)
    ingest(app, tmp_path, "day2.xml", rss(*new))
    found = matched(app, profile.id)
    assert found, "the profile matched some of the new papers"
    topics = {int(arxiv_id.split(".")[1]) % 2 for arxiv_id in found}
    assert topics == {0}
    likes = {day[1][1], day[3][1]}
    for reasons in found.values():
        first = reasons[0]
        assert first["field"] == "like"
        assert str(first["term"]).removeprefix("like: ") in likes
        assert any(r["field"] in ("title", "abstract") and r["positions"] for r in reasons)
    assert len(found) <= 20
    assert day[1][0] not in found, "a liked paper is not offered again"


def test_a_paper_voted_down_never_comes_back(tmp_path: Path, world: World) -> None:
    app, day = world

    profile = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("sky", ""))
    app.pipeline.tastes.like("jane@example.org", "sky", [reference(day[0][0])], "cli")
    new = papers(101, 40, seed=2)
    ingest(app, tmp_path, "day2.xml", rss(*new))
    found = matched(app, profile.id)
    victim = sorted(set(found) & {i for i, _, _ in new})[0]
    app.pipeline.tastes.feedback("jane@example.org", victim, "down")
    assert victim not in matched(app, profile.id)
    # The paper changes and is matched again: still not for this profile.
    changed = [(i, t + " revised", a) if i == victim else (i, t, a) for i, t, a in new]
    ingest(app, tmp_path, "day2b.xml", rss(*changed))
    assert victim not in matched(app, profile.id)
    assert matched(app, profile.id), "the others are still there"
    # Cleared, it may come back.
    app.pipeline.tastes.feedback("jane@example.org", victim, "clear")
    assert victim in matched(app, profile.id)


def test_a_like_waits_for_its_paper(tmp_path: Path, world: World) -> None:
    app, _ = world

    profile = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("bio", "protein"))
    later = papers(201, 1, seed=3)[0]  # odd: a protein paper, not stored yet
    saved = app.pipeline.tastes.like("jane@example.org", "bio", [reference(later[0])], "cli")
    assert saved[0].paper_id is None
    arriving = papers(301, 30, seed=4)
    ingest(app, tmp_path, "day2.xml", rss(later, *arriving))
    [like] = app.pipeline.likes.of([profile.id])
    assert like.paper_id is not None
    found = {i: r for i, r in matched(app, profile.id).items() if i in {a[0] for a in arriving}}
    assert found
    assert all(reasons[-1]["field"] != "like" for reasons in found.values())
    assert all(any(r["term"] == f"like: {later[1]}" for r in reasons) for reasons in found.values())


def test_a_query_decides_what_can_match(tmp_path: Path, world: World) -> None:
    app, day = world

    profile = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("sky", "quasar"))
    app.pipeline.tastes.like("jane@example.org", "sky", [reference(day[0][0])], "cli")
    new = papers(101, 40, seed=2)
    ingest(app, tmp_path, "day2.xml", rss(*new))
    found = {i: r for i, r in matched(app, profile.id).items() if i in {n[0] for n in new}}
    with_word = {i for i, t, a in new if "quasar" in f"{t} {a}".lower()}
    assert set(found) == with_word
    for reasons in found.values():
        fields = {r["field"] for r in reasons}
        assert "like" in fields
        assert any(r["term"] == "quasar" for r in reasons)


def test_feedback_needs_a_stored_paper_and_a_profile(tmp_path: Path, world: World) -> None:
    app, day = world

    with pytest.raises(InvalidValue, match="no stored paper"):
        app.pipeline.tastes.feedback("jane@example.org", "2999.99999", "up")
    app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("a", "quasar"))
    app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("b", "protein"))
    with pytest.raises(InvalidValue, match="--profile"):
        app.pipeline.tastes.feedback("jane@example.org", day[0][0], "up")
    profile, _ = app.pipeline.tastes.feedback("jane@example.org", day[0][0], "up", "a")
    assert profile.spec.name == "a"
    assert [like.vote for like in app.pipeline.likes.of([profile.id])] == ["up"]


def stored_models(app: App) -> dict[int, tuple[str, datetime]]:
    """Profile id -> (features version, when stored) of every stored similarity model."""
    import sqlalchemy as sa

    from service.store.tables import similarity_models

    with app.pipeline.store.engine.connect() as db:
        rows = db.execute(sa.select(similarity_models)).all()
    return {r.profile_id: (r.version, r.updated_at) for r in rows}


def test_a_restart_loads_the_models_instead_of_retraining_them(
    tmp_path: Path, database_url: str
) -> None:
    clock = FixedClock(NOW)
    with make_app(tmp_path, database_url, clock) as app:
        ingest(app, tmp_path, "day1.xml", rss(*papers(1, 40, seed=1)))
        app.pipeline.roster.save_subscriber("jane@example.org", "UTC", "daily 07:00")
        sky = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("sky", ""))
        bio = app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("bio", ""))
        day = papers(1, 40, seed=1)
        # (day[n] is paper n + 1: sky papers are even, protein papers odd)
        app.pipeline.tastes.like("jane@example.org", "sky", [reference(day[1][0])], "cli")
        app.pipeline.tastes.like("jane@example.org", "bio", [reference(day[0][0])], "cli")
        before = stored_models(app)
        assert set(before) == {sky.id, bio.id}
        # A click retrains the clicked profile's model alone.
        clock.advance(minutes=1)
        app.pipeline.tastes.feedback("jane@example.org", day[2][0], "up", "bio")
        after = stored_models(app)
        assert after[sky.id] == before[sky.id]
        assert after[bio.id][1] == clock.now() and after[bio.id][0] == before[sky.id][0]
    # Restarted (a new process, the same database): the next day's papers are matched by the
    # stored models, none retrained, the features not refitted.
    clock.advance(hours=1)
    with make_app(tmp_path, database_url, clock) as app:
        ingest(app, tmp_path, "day2.xml", rss(*papers(101, 40, seed=2)))
        assert stored_models(app) == after
        found = matched(app, sky.id)
        assert found and {int(i.split(".")[1]) % 2 for i in found} == {0}
        found = matched(app, bio.id)
        assert found and {int(i.split(".")[1]) % 2 for i in found} == {1}
        # What the restarted process says of a match names the liked paper (read afresh).
        assert all(r[0]["term"] == f"like: {day[1][1]}" for r in matched(app, sky.id).values())
        # Likes changed while it was down (another worker, the CLI): retrained on next use.
        app.pipeline.tastes.like("jane@example.org", "sky", [reference(day[3][0])], "cli")
        assert stored_models(app)[sky.id][1] == clock.now()


def alerts(app: App) -> int:
    import sqlalchemy as sa

    from service.store.tables import deliveries

    with app.pipeline.store.engine.connect() as db:
        query = sa.select(sa.func.count()).where(deliveries.c.kind == "alert")
        return int(db.execute(query).scalar_one())


@pytest.mark.parametrize("threshold", [1.0, 50.0])
def test_a_likes_only_profile_alerts_past_its_threshold_on_the_similarity_scale(
    tmp_path: Path, database_url: str, threshold: float
) -> None:
    from mail import BASE, FROM

    from service.app import build
    from service.config import MailSettings, MatchSettings, Settings

    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        sources=[],
        mail=MailSettings.model_validate({"from_address": FROM, "base_url": BASE}),
        matching=MatchSettings(similar_rate=0.25),  # a quarter of these few papers match
    )
    with build(settings, clock=FixedClock(NOW)) as app:
        day = papers(1, 40, seed=1)
        ingest(app, tmp_path, "day1.xml", rss(*day))
        app.pipeline.roster.save_subscriber("jane@example.org", "UTC", "daily 07:00")
        spec = ProfileSpec("sky", "", alert_threshold=threshold)
        profile = app.pipeline.roster.save_profile("jane@example.org", spec)
        app.pipeline.tastes.like("jane@example.org", "sky", [reference(day[1][0])], "cli")
        new = papers(101, 40, seed=2)
        ingest(app, tmp_path, "day2.xml", rss(*new))
        stored = {p.id: p.arxiv_id for p in app.pipeline.store.all_papers()}
        scores = [
            score
            for paper_id, score, _ in app.pipeline.subscriptions.matches(profile.id)
            if stored[paper_id] in {n[0] for n in new}
        ]
        assert scores and min(scores) > 1.0  # a match by likes alone is past the cut: above 1
        # 1: every similarity match is worth an alert; 50: far past what any paper reaches.
        assert max(scores) < 50
        assert alerts(app) == (1 if threshold == 1.0 else 0)


# -- the commands ---------------------------------------------------------------------------


def test_profile_add_with_likes_and_a_library_file(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with make_app(tmp_path, database_url, FixedClock(NOW)) as app:
        day = papers(1, 40, seed=1)
        ingest(app, tmp_path, "day1.xml", rss(*day))
        app.pipeline.roster.save_subscriber("jane@example.org", "UTC", "daily 07:00")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAPERBOY_DATABASE_URL", database_url)

    def cli(*args: str) -> tuple[int, str, str]:
        status = main(["--data-dir", str(tmp_path / "data"), *args])
        out = capsys.readouterr()
        return status, out.out, out.err

    library = tmp_path / "mine.bib"
    library.write_text(
        "@article{doe_sky_2026,\n"
        f"\ttitle = {{{day[4][1]}}},\n"
        f"\turl = {{http://arxiv.org/abs/{day[4][0]}}},\n"
        "}\n\n"
        "@misc{roe_unknown_2026,\n"
        "\ttitle = {A paper nobody stored},\n"
        "\tdoi = {10.5555/nothing.here},\n"
        "}\n"
    )
    status, out, err = cli(
        "profile",
        "add",
        "jane@example.org",
        "sky",
        "--like",
        day[0][0],
        "--like-file",
        str(library),
    )
    assert (status, err) == (0, "")
    assert "2 liked papers found, 1 not stored yet" in out
    assert "not stored yet: A paper nobody stored" in out
    # A broken file: the line named, nothing stored.
    broken = tmp_path / "broken.bib"
    broken.write_text("@article{x,\n  title = {Open brace,\n  year = 2020\n")
    status, out, err = cli(
        "profile", "add", "jane@example.org", "other", "--like-file", str(broken)
    )
    assert status == 1
    assert f"{broken}" in err
    assert "line 2" in err
    status, out, _ = cli("profile", "list", "jane@example.org")
    assert "other" not in out
    # Neither a query nor likes.
    status, _, err = cli("profile", "add", "jane@example.org", "empty")
    assert status == 1
    assert "QUERY, --like or --like-file" in err
    # Feedback.
    status, out, err = cli("feedback", "jane@example.org", day[1][0], "down")
    assert (status, err) == (0, "")
    assert "refused" in out
    status, _, err = cli("feedback", "jane@example.org", "Nothing by this title", "up")
    assert status == 1
    assert "no stored paper" in err


def test_the_digest_says_which_liked_paper_a_match_is_like() -> None:
    from service.digest import Hit
    from service.match.results import Reason
    from service.render.papers import why

    hit = Hit(
        "sky",
        1.2,
        (
            Reason("like: Supernova light curves", "like", ()),
            Reason("supernova", "title", ((0, 9),)),
            Reason("supernova", "abstract", ((4, 13),)),
        ),
    )
    assert why(hit) == "sky: like: Supernova light curves, supernova (title, abstract)"


def test_scikit_learn_waits_until_somebody_likes_a_paper() -> None:
    """Importing it takes seconds: a command that matches no similarity profile never does."""
    import subprocess
    import sys

    code = "import sys, service.cli; print('sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
