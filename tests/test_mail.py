"""Digests and alerts as email, through a real SMTP server: headers, both parts, links,
escaping, retries, failures, crash safety, alerts and their limits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from deliver.smtpd import Answer, SmtpSink
from mail import BASE, ingest, listing, maildir_messages, make_app, parse, parts, rss, send

from service import tokens
from service.app import App
from service.clock import FixedClock
from service.digest import Candidate, compose
from service.errors import MailConfigError
from service.mailroom import LEASE
from service.match.results import Reason
from service.model import (
    DeliveryKind,
    DeliveryStatus,
    Paper,
    Profile,
    ProfileSpec,
    SourceState,
)
from service.render.email import EmailRenderer, Letterhead
from service.render.templates import environment
from service.windows import Window

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)  # 14:00 in Berlin
NEXT_MORNING = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
EVIL = '<script>alert("x")</script> & "Quotes" in KV cache'


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def smtp_app(
    tmp_path: Path, database_url: str, clock: FixedClock, sink: SmtpSink, **mail: object
) -> App:
    return make_app(tmp_path, database_url, clock, sender="smtp", smtp=sink.settings(), **mail)


def subscribe(app: App, email: str = "ann@example.org", schedule: str = "daily 07:30") -> None:
    app.pipeline.roster.save_subscriber(email, "Europe/Berlin", schedule)
    app.pipeline.roster.save_profile(email, ProfileSpec("KV cache", '"kv cache"'))
    app.pipeline.roster.save_profile(email, ProfileSpec("Privacy", "privacy OR private"))


def test_a_digest_arrives_over_smtp_with_headers_parts_links_and_escaping(
    tmp_path: Path, database_url: str, clock: FixedClock, sink: SmtpSink
) -> None:
    with smtp_app(tmp_path, database_url, clock, sink) as app:
        subscribe(app)
        ingest(
            app,
            tmp_path,
            "listing.txt",
            listing(
                "Jun 1",
                (EVIL, "We shrink the KV-cache of long prompts.", "May 30 12"),
                ("Private inference", "Privacy for everyone.", None),
                ("Unrelated", "Nothing to see.", "May 30 1"),
            ),
        )
        ingest(
            app,
            tmp_path,
            "arxiv.xml",
            rss(("2606.00001", "Paging the kv cache", "A paged kv cache for serving.")),
        )
        assert app.mailroom.plan() == []  # not yet 07:30 in Berlin
        clock.at = NEXT_MORNING
        planned = app.mailroom.plan()
        assert [(p.email, p.papers) for p in planned] == [("ann@example.org", 3)]
        assert send(app).sent == 1
        [received] = sink.messages
        delivery = app.mailroom.outbox.deliveries()[0]
        owner = app.pipeline.roster.subscriber("ann@example.org")

    assert received.recipients == ("ann@example.org",)
    assert received.sender == "digest@papers.example.org"
    message = parse(received.content)
    assert message["Subject"] == "3 new papers: KV cache (2), Privacy (1)"
    assert message["From"] == "paperboy <digest@papers.example.org>"
    assert message["To"] == "ann@example.org"
    assert message["Reply-To"] == "help@papers.example.org"
    assert parsedate_to_datetime(message["Date"]) == NEXT_MORNING
    assert message["Message-ID"] == delivery.message_id
    assert re.fullmatch(r"<digest\.\d+\.[0-9a-f]{16}@papers\.example\.org>", delivery.message_id)
    assert message["List-Id"] == "paperboy <digests.papers.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    token = https.rsplit("/", 1)[1]
    assert https == f"{BASE}/unsubscribe/{token}"
    assert tokens.verify(token, owner.token, "unsubscribe")
    assert not tokens.verify(token, owner.token, "feeds")
    assert mailto == f"mailto:digest@papers.example.org?subject=unsubscribe%20{token}"

    text, html = parts(message)
    # The title is intact in text, escaped in HTML; nothing executable reaches the HTML.
    assert EVIL in text
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; "Quotes"' in html
    assert "<script" not in html.lower()
    assert "<img" not in html.lower() and "<link" not in html.lower()
    # CSS is inlined; only the dark-mode and narrow-screen media queries stay in a style tag.
    assert re.search(r'<a class="title" [^>]*style="font-size: 16px', html)
    assert "prefers-color-scheme: dark" in html
    assert re.search(r"<style>\s*@media", html)
    # Links: arXiv abstract page when the id is known, else a search; PDF when known.
    assert 'href="https://arxiv.org/abs/2606.00001"' in html
    assert 'href="https://arxiv.org/pdf/2606.00001"' in html
    assert "https://huggingface.co/papers?q=Private+inference" in text
    # Matched terms are marked in the snippet and the reasons name profile and terms.
    assert re.search(r"<mark[^>]*>KV-cache</mark>", html)
    assert "*KV-cache*" in text
    assert "Matched KV cache: kv cache (title, abstract)" in text
    assert "Matched Privacy: privacy (abstract), private (title)" in text
    assert "Jane Doe, John Roe" in text
    assert "May 30 2026" not in text and "30 May 2026 · 12 upvotes" in text
    assert f"{BASE}/manage/" in text and f"{BASE}/feeds/" in text


def test_no_cr_or_lf_from_any_field_reaches_a_header(tmp_path: Path) -> None:
    from service.model import Schedule, Subscriber

    owner = Subscriber(7, "bob@example.org", "UTC", Schedule.parse("instant"), token="s3cret")
    evil = Profile(1, 7, ProfileSpec("kv\r\nBcc: victim@example.org", "kv"))
    paper = Paper(id=1, key="title:x", title="Injected\r\nBcc: victim@example.org")
    reason = (Reason("kv", "title", ((0, 2),)),)
    renderer = EmailRenderer(environment(), Letterhead("paperboy <p@example.org>", BASE))
    for kind in DeliveryKind:
        window = Window(T0, T0 + timedelta(hours=1))
        digest = compose(owner, kind, window, [Candidate(evil, paper, 1.0, reason)])
        assert digest is not None
        raw = renderer.render(digest, T0).message
        message = parse(raw)
        assert message["Bcc"] is None
        assert "victim@example.org" in message["Subject"]  # folded into the one line
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert not re.search(rb"^Bcc:", head, re.MULTILINE)


def test_a_server_answering_451_then_accepting_gets_the_message_through(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with SmtpSink(answers=[Answer("451 4.3.0 Try again later")] * 2) as sink:
        with smtp_app(tmp_path, database_url, clock, sink, retry_base="1m") as app:
            subscribe(app)
            ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
            clock.at = NEXT_MORNING
            app.mailroom.plan()
            assert send(app).retried == 1
            [row] = app.mailroom.outbox.deliveries()
            assert row.status is DeliveryStatus.PENDING and row.attempts == 1
            assert "451" in (row.last_error or "")
            assert send(app).sent == 0  # the retry is not due yet
            clock.advance(minutes=2)
            assert send(app).retried == 1
            clock.advance(minutes=5)
            assert send(app).sent == 1
            [row] = app.mailroom.outbox.deliveries()
            assert row.status is DeliveryStatus.SENT and row.attempts == 3
        assert len(sink.messages) == 1


def test_a_550_marks_the_delivery_failed_with_the_reply(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with SmtpSink(then=Answer("550 5.1.1 No such user", at="RCPT")) as sink:
        with smtp_app(tmp_path, database_url, clock, sink) as app:
            subscribe(app)
            ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
            clock.at = NEXT_MORNING
            app.mailroom.plan()
            result = send(app)
            assert (result.sent, result.failed) == (0, 1)
            [row] = app.mailroom.outbox.deliveries(DeliveryStatus.FAILED)
            assert "550" in (row.last_error or "") and "No such user" in (row.last_error or "")
            clock.advance(days=1)
            assert send(app).failed == 0  # never tried again
        assert sink.messages == []


def test_transient_failures_end_dead_after_max_attempts(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with (
        SmtpSink(then=Answer("421 4.7.0 Busy")) as sink,
        smtp_app(tmp_path, database_url, clock, sink, max_attempts=3) as app,
    ):
        subscribe(app)
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        clock.at = NEXT_MORNING
        app.mailroom.plan()
        outcomes = []
        for _ in range(3):
            outcomes.append(send(app))
            clock.advance(hours=7)
        assert [(r.retried, r.dead) for r in outcomes] == [(1, 0), (1, 0), (0, 1)]
        [row] = app.mailroom.outbox.deliveries(DeliveryStatus.DEAD)
        assert row.attempts == 3


def test_a_crash_loses_nothing_and_repeats_only_the_message_in_flight(
    tmp_path: Path, database_url: str, clock: FixedClock, sink: SmtpSink
) -> None:
    with smtp_app(tmp_path, database_url, clock, sink) as app:
        subscribe(app)
        subscribe(app, "bob@example.org")
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        clock.at = NEXT_MORNING
        assert len(app.mailroom.plan()) == 2
        assert app.mailroom.plan() == []  # the windows are closed: a second run adds nothing
        # A sender claims both and dies before sending either.
        assert len(app.mailroom.outbox.claim(clock.now(), LEASE, 10)) == 2
    with smtp_app(tmp_path, database_url, clock, sink) as app:  # restarted
        assert app.mailroom.plan() == []
        assert send(app).sent == 0  # still claimed by the dead sender
        clock.advance(seconds=LEASE.total_seconds() + 1)
        assert send(app).sent == 2
        assert send(app).sent == 0
    assert sorted(m.recipients[0] for m in sink.messages) == ["ann@example.org", "bob@example.org"]


def test_a_graceful_stop_gives_back_what_it_did_not_try(
    tmp_path: Path, database_url: str, clock: FixedClock, sink: SmtpSink
) -> None:
    with smtp_app(tmp_path, database_url, clock, sink) as app:
        for name in ("ann", "bob", "cid"):
            subscribe(app, f"{name}@example.org")
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        clock.at = NEXT_MORNING
        app.mailroom.plan()
        sender = app.mailroom.sender
        assert sender is not None
        original = sender.send

        async def stop_after_first(*args: object) -> str:
            reply = await original(*args)  # type: ignore[arg-type]
            app.mailroom.stop()  # SIGTERM arrives while the first message is in flight
            return reply

        sender.send = stop_after_first  # type: ignore[method-assign]
        assert send(app).sent == 1
        counts = app.mailroom.outbox.counts()
        assert counts == {"sent": 1, "pending": 2}
        assert [d.attempts for d in app.mailroom.outbox.deliveries(DeliveryStatus.PENDING)] == [
            0,
            0,
        ]
    assert len(sink.messages) == 1


def test_alerts_go_out_after_the_poll_and_are_not_repeated_in_the_digest(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock, alerts_per_hour=1) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("People", 'author:"Jane Doe"')
        )
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV cache", '"kv cache"'))
        ingest(
            app,
            tmp_path,
            "one.xml",
            rss(("2606.00001", "Paging the kv cache", "A paged kv cache.")),
        )
        [alert] = app.mailroom.outbox.deliveries()
        assert alert.kind is DeliveryKind.ALERT and alert.papers == 1
        assert alert.subject == "Alert: Paging the kv cache"
        # A second alert-worthy paper within the hour is over the limit: it waits for the digest.
        clock.advance(minutes=20)
        ingest(app, tmp_path, "two.xml", rss(("2606.00002", "Another kv cache", "More.")))
        assert len(app.mailroom.outbox.deliveries()) == 1
        clock.at = NEXT_MORNING
        app.mailroom.plan()
        assert send(app).sent == 2
        alert_message, digest_message = maildir_messages(app)
    assert alert_message["Subject"] == "Alert: Paging the kv cache"
    text, _ = parts(digest_message)
    assert digest_message["Subject"] == "1 new paper: KV cache (1)"
    assert "Another kv cache" in text and "Paging the kv cache" not in text
    assert re.search(r"Matched KV cache: .*; People: .*Jane Doe.* \(author\)", text)


def test_a_new_subscribers_first_digest_holds_the_last_days_papers(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        # Ingested two days and three hours before subscribing: only the second is in the day.
        clock.advance(days=-2)
        ingest(app, tmp_path, "old.xml", rss(("2606.00001", "Old kv cache", "Before.")))
        clock.advance(days=2, hours=-3)
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 4")))
        clock.advance(hours=3)
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", '"kv cache"'))
        assert app.mailroom.plan() == []  # not due before the next 07:30, though a day back
        clock.at = NEXT_MORNING
        (planned,) = app.mailroom.plan()
        assert planned.papers == 1
        assert send(app).sent == 1
        (message,) = maildir_messages(app)
    assert message["Subject"] == "1 new paper: KV (1)"
    assert "A kv cache" in parts(message)[0] and "Old kv cache" not in parts(message)[0]


def test_two_alerts_of_one_moment_have_their_own_message_ids_kept_on_retry(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with SmtpSink(answers=[Answer("451 4.3.0 Try again later")]) as sink:
        with smtp_app(tmp_path, database_url, clock, sink, alerts_per_hour=5) as app:
            app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
            app.pipeline.roster.save_profile(
                "ann@example.org", ProfileSpec("People", 'author:"Jane Doe"')
            )
            # Two polls in the same second, each finding a paper worth an alert.
            ingest(app, tmp_path, "one.xml", rss(("2606.00001", "Paging the kv cache", "A.")))
            ingest(app, tmp_path, "two.xml", rss(("2606.00002", "Another kv cache", "B.")))
            first, second = app.mailroom.outbox.deliveries()
            assert first.message_id != second.message_id
            assert send(app).retried == 1
            clock.advance(hours=1)
            assert send(app).sent == 1
        ids = sorted(parse(m.content)["Message-ID"] for m in sink.messages)
    assert ids == sorted([first.message_id, second.message_id])


def test_a_profile_added_later_catches_up_on_its_open_window_only(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("Privacy", "privacy"))
        ingest(app, tmp_path, "old.xml", rss(("2606.00001", "Old kv cache", "Before.")))
        clock.at = NEXT_MORNING  # the window closes: the old paper is in no window to come
        app.mailroom.plan()
        clock.advance(hours=2)
        ingest(
            app,
            tmp_path,
            "new.xml",
            rss(
                ("2606.00002", "Paging the kv cache", "A paged kv cache."),
                ("2606.00003", "Sparse attention", "Attention made sparse."),
            ),
        )
        assert app.mailroom.outbox.deliveries() == []  # no profile wants them yet
        clock.advance(hours=1)
        # A new profile finds what came in since the last digest, without an alert.
        app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("KV", '"kv cache"', alert_threshold=0.01)
        )
        assert app.mailroom.outbox.deliveries() == []
        # A changed query drops what the old one matched and catches up with the new one.
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("Sparse", "paged"))
        sparse = app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("Sparse", "attention")
        )
        found = app.pipeline.subscriptions.matches(sparse.id)
        assert [app.store.papers(ids=[paper_id])[0].title for paper_id, _, _ in found] == [
            "Sparse attention"
        ]
        clock.at = NEXT_MORNING + timedelta(days=1)
        [planned] = app.mailroom.plan()
        assert planned.papers == 2
        send(app)
        [digest] = maildir_messages(app)  # the first morning had nothing to send
    text, _ = parts(digest)
    assert digest["Subject"] in (
        "2 new papers: KV (1), Sparse (1)",
        "2 new papers: Sparse (1), KV (1)",
    )
    assert "Paging the kv cache" in text and "Sparse attention" in text
    assert "Old kv cache" not in text


def test_an_update_worth_telling_is_told_once(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(
            "ann@example.org", ProfileSpec("Popular KV", '"kv cache"', min_upvotes=5)
        )

        def capture(upvotes: int, day: int) -> None:
            text = listing(f"Jun {day}", ("Big kv cache", "Abstract.", f"May 30 {upvotes}"))
            ingest(app, tmp_path, f"day{day}.txt", text)

        capture(2, 1)
        clock.at = NEXT_MORNING
        assert [p.papers for p in app.mailroom.plan()] == [0]  # below the minimum: waits
        capture(7, 2)  # upvotes pass the minimum: worth telling
        clock.advance(days=1)
        assert [p.papers for p in app.mailroom.plan()] == [1]
        capture(9, 3)  # told already
        clock.advance(days=1)
        assert [p.papers for p in app.mailroom.plan()] == [0]
        assert send(app).sent == 1


def test_an_empty_window_sends_a_note_only_when_asked_and_names_failing_sources(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("ann@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile("ann@example.org", ProfileSpec("KV", "kv"))
        app.pipeline.roster.save_subscriber("bob@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(
            "bob@example.org", ProfileSpec("KV", "kv", send_when_empty=True)
        )
        clock.at = NEXT_MORNING
        assert sorted((p.email, p.delivery_id is not None) for p in app.mailroom.plan()) == [
            ("ann@example.org", False),
            ("bob@example.org", True),
        ]
        app.store.save_state(
            SourceState(
                "files", last_success_at=T0 - timedelta(days=2), errors=5, last_error="HTTP 503"
            )
        )
        clock.advance(days=1)
        app.mailroom.plan()
        send(app)
        healthy, failing = maildir_messages(app)
    assert healthy["Subject"] == "No new papers"
    assert "All sources are healthy." in parts(healthy)[0]
    assert failing["Subject"] == "No new papers (a source is failing)"
    assert "Source files has been failing for 3 days: HTTP 503." in parts(failing)[0]


def test_an_empty_digest_claims_healthy_sources_only_when_none_is_failing(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        app.pipeline.roster.save_subscriber("bob@example.org", "Europe/Berlin", "daily 07:30")
        app.pipeline.roster.save_profile(
            "bob@example.org", ProfileSpec("KV", "kv", send_when_empty=True)
        )
        # Failing since an hour ago: too soon to be named, yet not healthy.
        clock.at = NEXT_MORNING
        app.store.save_state(
            SourceState(
                "files", last_success_at=clock.at - timedelta(hours=1), errors=1, last_error="x"
            )
        )
        app.mailroom.plan()
        send(app)
        (message,) = maildir_messages(app)
    text, html = parts(message)[:2]
    assert message["Subject"] == "No new papers"
    assert "Nothing new matched your profiles in this period." in text
    assert "healthy" not in text and "healthy" not in html


def test_instant_subscribers_get_a_message_after_each_poll_that_finds_something(
    tmp_path: Path, database_url: str, clock: FixedClock
) -> None:
    with make_app(tmp_path, database_url, clock) as app:
        subscribe(app, schedule="instant")
        ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
        clock.advance(minutes=1)
        assert [p.papers for p in app.mailroom.plan()] == [1]
        clock.advance(minutes=1)
        assert [p.papers for p in app.mailroom.plan()] == [0]  # nothing new: nothing sent
        ingest(app, tmp_path, "b.txt", listing("Jun 1", ("Private kv cache", "y", "May 30 1")))
        clock.advance(minutes=1)
        assert [p.papers for p in app.mailroom.plan()] == [1]
        assert send(app).sent == 2


@pytest.mark.parametrize(
    ("server", "settings", "says"),
    [
        ({"security": "none"}, {"security": "starttls"}, "STARTTLS extension not supported"),
        ({"login": ("ann", "s3cret")}, {"password": "wrong"}, "refused the login: 535"),
        ({"security": "starttls"}, {}, "certificate verify failed"),
    ],
)
def test_a_mail_server_unusable_as_configured_stops_sending_and_counts_no_attempt(
    tmp_path: Path,
    database_url: str,
    clock: FixedClock,
    server: dict[str, object],
    settings: dict[str, object],
    says: str,
) -> None:
    with SmtpSink(**server) as sink:  # type: ignore[arg-type]
        smtp = sink.settings(**settings)
        with make_app(tmp_path, database_url, clock, sender="smtp", smtp=smtp) as app:
            for name in ("ann", "bob"):
                subscribe(app, f"{name}@example.org")
            ingest(app, tmp_path, "a.txt", listing("Jun 1", ("A kv cache", "x", "May 30 1")))
            clock.at = NEXT_MORNING
            app.mailroom.plan()
            with pytest.raises(MailConfigError, match=says):
                send(app)
            assert sink.connections == 1  # one try for the batch, not one per message
            rows = app.mailroom.outbox.deliveries()
            assert [(r.status, r.attempts) for r in rows] == [(DeliveryStatus.PENDING, 0)] * 2
            assert all(says in (r.last_error or "") for r in rows)
        assert sink.messages == []
