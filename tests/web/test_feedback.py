"""👍/👎 from a delivered digest over a real server: the links in both parts, the page a GET
shows (changing nothing), the POST that records the vote through the same call as
``paperboy feedback``, undo, the one plain 404 for a wrong or revoked link; and what the next
digest makes of it, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from mail import ingest, maildir_messages, parts, rss, send

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.model import ProfileSpec
from service.web.access_log import redact_path

from .serve import Visitor, free_port, serving, web_app
from .topics import BIO, SKY, papers

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
QUERY = " OR ".join(SKY + BIO)  # matches every paper of both topics


World = tuple[App, str, FixedClock, Path]


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    """A served app with a day of 20 papers stored before jane@example.org's window opened,
    her profile "papers" (a query matching both topics) and 20 papers in her open window."""
    clock = FixedClock(NOW)
    port = free_port()
    with web_app(tmp_path, database_url, clock, port) as app, serving(app, port) as base:
        ingest(app, tmp_path, "day0.xml", rss(*papers(1, 20, seed=1)))
        app.pipeline.roster.save_subscriber("jane@example.org", "UTC", "daily 07:00")
        app.pipeline.roster.save_profile("jane@example.org", ProfileSpec("papers", QUERY))
        clock.advance(hours=1)
        ingest(app, tmp_path, "day1.xml", rss(*papers(101, 20, seed=2)))
        yield app, base, clock, tmp_path


def digest(app: App, clock: FixedClock) -> tuple[str, str]:
    """The next digest's (text, HTML): the clock moves to its time and the outbox is sent."""
    clock.at = clock.now().replace(hour=7, minute=1) + timedelta(days=1)
    before = len(maildir_messages(app)) if app.settings.maildir().exists() else 0
    assert [p.email for p in app.mailroom.plan() if p.delivery_id] == ["jane@example.org"]
    send(app)
    messages = maildir_messages(app)
    assert len(messages) == before + 1
    text, page = parts(messages[-1])
    return text.replace("\r\n", "\n"), page


def votes(text: str) -> dict[str, tuple[str, str]]:
    """Paper title -> its (👍, 👎) links, from a digest's plain text."""
    found = {}
    for block in text.split("\n* ")[1:]:
        title = block.split("\n", 1)[0]
        up = re.search(r"More like this: (\S+)", block)
        down = re.search(r"Less like this: (\S+)", block)
        assert up and down, block
        found[title] = (up.group(1), down.group(1))
    return found


def stored_votes(app: App) -> dict[str, str]:
    titles = {p.id: p.title for p in app.pipeline.store.all_papers()}
    return {titles[v.paper_id]: v.vote for v in app.pipeline.likes.of() if v.paper_id}


def test_the_links_ask_on_get_record_on_post_and_undo(world: World) -> None:
    app, base, clock, _ = world
    text, page = digest(app, clock)
    links = votes(text)
    assert len(links) == 20
    for up, down in links.values():
        assert up.startswith(f"{base}/feedback/") and up.endswith("/up")
        assert down == up.removesuffix("/up") + "/down"
        assert html.escape(up) in page and html.escape(down) in page  # the HTML part too
        token = up.split("/")[-2]
        assert len(token.split(".")[-1]) * 6 >= 144  # the signature's bits
    title, (up, down) = sorted(links.items())[0]

    visitor = Visitor(base)
    asked = visitor.get(up.removeprefix(base))
    assert asked.status_code == 200
    assert html.escape(title) in asked.text and "Yes, more like this" in asked.text
    assert asked.text.count("<button") == 1
    assert stored_votes(app) == {}, "a GET changes nothing"

    # No CSRF token (another site's form): refused, nothing recorded.
    forged = httpx.post(up, data={"csrf": "x" * 43})
    assert forged.status_code == 403 and stored_votes(app) == {}

    done = visitor.post(up.removeprefix(base), {})
    assert done.status_code == 200 and "👍 Liked" in done.text
    assert stored_votes(app) == {title: "up"}
    again = visitor.get(up.removeprefix(base))
    assert "likes this paper already" in again.text and "<button" not in again.text

    undone = visitor.post(up.removeprefix(base).removesuffix("/up") + "/clear", {})
    assert undone.status_code == 200 and "Vote taken back" in undone.text
    assert stored_votes(app) == {}

    asked = visitor.get(down.removeprefix(base))
    assert "Yes, less like this" in asked.text
    visitor.post(down.removeprefix(base), {})
    assert stored_votes(app) == {title: "down"}
    visitor.close()


def test_a_wrong_or_revoked_link_is_the_one_plain_404(world: World) -> None:
    app, base, clock, _ = world
    text, _ = digest(app, clock)
    up, _ = next(iter(votes(text).values()))
    path = up.removeprefix(base)
    token = path.split("/")[2]
    plain = httpx.get(f"{base}/no/such/page")
    assert plain.status_code == 404
    subscriber, profile, paper, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    owner = app.pipeline.subscriptions.subscriber("jane@example.org")
    assert owner is not None
    wrong = [
        f"{subscriber}.{profile}.{paper}.{flipped}",
        f"{subscriber}.{profile}.{int(paper) + 1}.{signature}",  # another paper, same signature
        f"{subscriber}.{profile}.{paper}",
        tokens.for_subscriber(owner, "manage"),  # a token for another purpose
        "x" * 40,
    ]
    for bad in wrong:
        for vote in ("up", "down"):
            answer = httpx.get(f"{base}/feedback/{bad}/{vote}")
            assert (answer.status_code, answer.text) == (404, plain.text), bad
    assert httpx.get(f"{base}/feedback/{token}/clear").status_code == 404  # only POST clears
    assert httpx.get(f"{base}/feedback/{token}/sideways").status_code == 404
    visitor = Visitor(base)
    visitor.get("/")
    assert visitor.post(f"/feedback/{wrong[0]}/up", {}).status_code == 404
    # The profile removed: its links are revoked.
    assert httpx.get(up).status_code == 200
    app.pipeline.roster.remove_profile("jane@example.org", "papers")
    answer = httpx.get(up)
    assert (answer.status_code, answer.text) == (404, plain.text)
    visitor.close()


def test_the_next_digest_ranks_by_a_like_and_never_shows_a_refused_paper(world: World) -> None:
    app, base, clock, tmp_path = world
    text, _ = digest(app, clock)
    links = votes(text)
    liked = next(t for t in links if t.split()[0].lower() in SKY)
    visitor = Visitor(base)
    visitor.get(links[liked][0].removeprefix(base))
    visitor.post(links[liked][0].removeprefix(base), {})

    # The next day: sky papers (like the liked one) come first, each saying why.
    clock.advance(hours=2)
    day2 = papers(201, 20, seed=3)
    ingest(app, tmp_path, "day2.xml", rss(*day2))
    text, _ = digest(app, clock)
    shown = list(votes(text))
    assert len(shown) == 20
    assert all(t.split()[0].lower() in SKY for t in shown[:10]), shown
    assert f"like: {liked}" in text

    # 👎 on one of them: gone from the next digest, even when the paper changes.
    refused = shown[0]
    visitor.get(votes(text)[refused][1].removeprefix(base))
    visitor.post(votes(text)[refused][1].removeprefix(base), {})
    clock.advance(hours=2)
    changed = [(i, t + " revised", a) for i, t, a in day2] + papers(301, 4, seed=4)
    ingest(app, tmp_path, "day2b.xml", rss(*changed))
    text, _ = digest(app, clock)
    later = list(votes(text))
    assert refused + " revised" not in later and refused not in later
    assert later, "the other changed papers come again"
    visitor.close()


def test_an_alert_has_the_links_too_and_they_work(world: World) -> None:
    app, base, clock, tmp_path = world
    app.pipeline.roster.save_profile(
        "jane@example.org", ProfileSpec("quasars", "quasar", alert_threshold=0.01)
    )
    clock.advance(hours=1)
    ingest(app, tmp_path, "day1b.xml", rss(*papers(401, 6, seed=5)))
    send(app)
    [alert] = [m for m in maildir_messages(app) if m["Subject"].startswith("Alert")]
    text, page = parts(alert)
    links = votes(text.replace("\r\n", "\n"))
    assert links and all(html.escape(up) in page for up, _ in links.values())
    title, (up, _) = next(iter(links.items()))
    assert "quasar" in title.lower()
    visitor = Visitor(base)
    visitor.get(up.removeprefix(base))
    visitor.post(up.removeprefix(base), {})
    profile = app.pipeline.tastes.profile("jane@example.org", "quasars")
    assert [(like.vote, like.label) for like in app.pipeline.likes.of([profile.id])] == [
        ("up", alert_reference(app, title))
    ]
    visitor.close()


def alert_reference(app: App, title: str) -> str:
    """The label a 👍 from a link records: the paper's arXiv id."""
    [paper] = [p for p in app.pipeline.store.all_papers() if p.title == title]
    assert paper.arxiv_id is not None
    return paper.arxiv_id


def test_feedback_tokens_stay_out_of_the_access_log() -> None:
    assert redact_path("/feedback/1.2.3.abcdef/up") == "/feedback/***/up"


def test_a_feedback_token_is_signed_per_subscriber_profile_and_paper() -> None:
    secret = tokens.new_secret()
    token = tokens._feedback(7, secret, 3, 42)
    assert tokens.feedback_parts(token) == (7, 3, 42)
    assert tokens.verify_feedback(token, secret)
    assert not tokens.verify_feedback(token, tokens.new_secret())  # a new secret revokes it
    signature = token.rsplit(".", 1)[1]
    for other in ("7.3.43", "7.4.42", "8.3.42"):
        assert not tokens.verify_feedback(f"{other}.{signature}", secret)
    # Other purposes' tokens are not feedback tokens, and the reverse.
    assert tokens.feedback_parts(tokens.make(7, secret, "manage")) is None
    assert not tokens.verify(token, secret, "unsubscribe")
