"""Liked papers on the manage page over a real server: a profile of likes alone saved from the
form, papers named by hand or in a library file (unknown ones reported and kept, a broken file
a clear error that changes nothing), removing one, likes kept when a profile is saved or
renamed, and the live preview of a likes profile before it is saved; SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mail import ingest, rss

from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec

from .serve import Visitor, field_errors, free_port, serving, web_app
from .topics import SKY, papers

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EMAIL = "jane@example.org"


DAY = papers(1, 40, seed=1)
BIBTEX = """@article{sky2026,
  title = {TITLE},
  author = {Doe, Jane},
  journal = {arXiv},
  eprint = {EPRINT},
  year = {2026}
}

@article{unknown2025,
  title = {A paper nobody stored},
  doi = {10.9999/nothing.here},
  year = {2025}
}
""".replace("TITLE", DAY[3][1]).replace("EPRINT", DAY[3][0])


Site = tuple[App, Visitor, str]


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    """Jane's manage page, read by a visitor, over a day of 40 stored papers."""
    clock = FixedClock(NOW)
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app, serving(app, port) as base:
        ingest(app, tmp_path, "day.xml", rss(*DAY))
        owner = app.pipeline.roster.save_subscriber(EMAIL, "UTC", "daily 07:00")
        token = app.pipeline.membership.token(owner, "manage")
        visitor = Visitor(base)
        assert visitor.get(f"/manage/{token}").status_code == 200
        yield app, visitor, f"/manage/{token}"
        visitor.close()


def likes_of(app: App, name: str) -> dict[str, str]:
    """label or stored title -> vote, of one of Jane's profiles."""
    profile = app.pipeline.tastes.profile(EMAIL, name)
    titles = {p.id: p.title for p in app.pipeline.store.all_papers()}
    return {
        titles[like.paper_id] if like.paper_id else like.label: like.vote
        for like in app.pipeline.likes.of([profile.id])
    }


def shown_titles(fragment: str) -> list[str]:
    """The titles of the papers a preview fragment shows, in order."""
    found = re.findall(r'<a class="paper-title" href="[^"]*">(.*?)</a>', fragment, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", title)) for title in found]


def profile_form(**fields: str) -> dict[str, str]:
    return {"original": "", "name": "Sky", "query": "", "max_items": "20", "min_upvotes": "0"} | (
        fields
    )


def test_a_profile_of_likes_alone_is_saved_and_unknown_papers_are_reported_and_kept(
    site: Site,
) -> None:
    app, visitor, manage = site
    # Neither a query nor a liked paper: the query is asked for.
    page = visitor.post(f"{manage}/profile", profile_form())
    assert page.status_code == 422 and field_errors(page.text)["query"] == "Please fill this in."
    assert app.pipeline.subscriptions.profiles() == []

    likes = f"{DAY[1][0]}\n10.9999/nothing.here\n"
    page = visitor.post(f"{manage}/profile", profile_form(likes=likes))
    assert page.status_code == 200
    assert "1 liked paper added." in page.text and "10.9999/nothing.here" in page.text
    [profile] = app.pipeline.subscriptions.profiles()
    assert profile.spec == ProfileSpec("Sky", "")
    assert likes_of(app, "Sky") == {DAY[1][1]: "up", "10.9999/nothing.here": "up"}
    # The page lists them, the one not stored marked so.
    assert html.escape(DAY[1][1]) in page.text and "not here yet" in page.text

    # Saved again with other numbers (and no query): the likes stay.
    original = {"original": "Sky"}
    page = visitor.post(f"{manage}/profile", profile_form(max_items="5") | original)
    assert page.status_code == 200 and "The profile is saved." in page.text
    assert likes_of(app, "Sky") == {DAY[1][1]: "up", "10.9999/nothing.here": "up"}
    # Renamed: the likes move with it.
    page = visitor.post(f"{manage}/profile", profile_form(name="Stars") | original)
    assert [p.spec.name for p in app.pipeline.subscriptions.profiles()] == ["Stars"]
    assert likes_of(app, "Stars") == {DAY[1][1]: "up", "10.9999/nothing.here": "up"}


def test_papers_from_a_library_file_and_removing_one(site: Site) -> None:
    app, visitor, manage = site
    app.pipeline.roster.save_profile(EMAIL, ProfileSpec("Sky", "galaxy"))
    visitor.get(manage)
    upload = {"library": ("My Library.bib", BIBTEX.encode(), "application/x-bibtex")}
    page = visitor.post(f"{manage}/likes", {"original": "Sky", "likes": ""}, files=upload)
    assert page.status_code == 200
    assert "1 liked paper added." in page.text and "A paper nobody stored" in page.text
    assert likes_of(app, "Sky") == {DAY[3][1]: "up", "A paper nobody stored": "up"}

    # A broken file: the line named, nothing stored.
    broken = {"library": ("broken.bib", b"@article{x,\n  title = {Open\n", "text/plain")}
    page = visitor.post(f"{manage}/likes", {"original": "Sky", "likes": ""}, files=broken)
    assert page.status_code == 422
    error = field_errors(page.text)["p1-library"]
    assert error.startswith("broken.bib: line ") and "expected" in error
    assert len(likes_of(app, "Sky")) == 2
    # Nothing named at all.
    page = visitor.post(f"{manage}/likes", {"original": "Sky", "likes": " "})
    assert page.status_code == 422 and "Name a paper a line" in page.text

    # Remove the one that is stored, then the one that waits.
    for label in (DAY[3][1], "A paper nobody stored"):
        page = visitor.get(manage)
        shown = page.text.split(html.escape(label), 1)[1]
        ref = html.unescape(shown.split('name="ref" value="', 1)[1].split('"', 1)[0])
        page = visitor.post(f"{manage}/unlike", {"original": "Sky", "ref": ref})
        assert page.status_code == 200 and "taken off the list" in page.text
        assert label not in likes_of(app, "Sky")
    assert likes_of(app, "Sky") == {}
    # Another subscriber's profile name, or none: the plain 404.
    page = visitor.post(f"{manage}/likes", {"original": "Nope", "likes": DAY[1][0]})
    assert page.status_code == 404


def test_the_preview_shows_an_example_digest_for_one_liked_paper(site: Site) -> None:
    app, visitor, manage = site
    # Before saving: one liked paper (cold start) is enough.
    liked_id, liked_title, _ = DAY[1]  # about the sky
    answer = visitor.client.get("/preview", params={"q": "", "likes": liked_id})
    assert answer.status_code == 200
    titles = shown_titles(answer.text)
    assert titles and liked_title not in titles, "the liked paper itself is not offered"
    assert all(t.split()[0].lower() in SKY for t in titles), titles
    assert f"like: {html.escape(liked_title)}" in answer.text
    assert "/feedback/" not in answer.text  # no profile yet: nothing to vote for
    # With a query, the query decides what can come.
    answer = visitor.client.get("/preview", params={"q": "galaxy", "likes": liked_id})
    shown = shown_titles(answer.text)
    assert shown and all("galaxy" in (t + a).lower() for _, t, a in DAY if t in shown)
    assert len(shown) == sum("galaxy" in (t + a).lower() for _, t, a in DAY[:1] + DAY[2:])
    # A paper not stored: said so.
    answer = visitor.client.get("/preview", params={"likes": "Nothing like this title"})
    assert "Not stored here (yet)" in answer.text and "Nothing like this title" in answer.text

    # A saved profile's preview counts its stored likes and offers 👍/👎 on each paper.
    profile = app.pipeline.roster.save_profile(EMAIL, ProfileSpec("Sky", ""))
    app.pipeline.tastes.feedback(EMAIL, liked_id, "up", "Sky")
    answer = visitor.client.get(f"{manage}/preview/{profile.id}")
    assert answer.status_code == 200 and answer.text.count("/feedback/") >= 2
    first = answer.text.split('href="/feedback/', 1)[1].split('"', 1)[0]
    assert visitor.get(f"/feedback/{first}").status_code == 200
    assert visitor.client.get(f"/manage/wrong/preview/{profile.id}").status_code == 404
    assert visitor.client.get(f"{manage}/preview/{profile.id + 1}").status_code == 404
