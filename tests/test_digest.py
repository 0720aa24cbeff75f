"""What a digest holds: each paper once with every reason, best first, capped, subject."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from service.digest import Candidate, compose, source_notes, wants_alert
from service.match.results import Reason
from service.model import (
    DeliveryKind,
    Paper,
    Profile,
    ProfileSpec,
    Schedule,
    SourceState,
    Subscriber,
)
from service.windows import Window

NOW = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=1), NOW)
ANN = Subscriber(1, "ann@example.org", "Europe/Berlin", Schedule.parse("daily 07:30"))


def paper(n: int, upvotes: int = 0) -> Paper:
    return Paper(
        id=n, key=f"title:p{n}", title=f"Paper {n}", upvotes=upvotes, published=date(2026, 6, 1)
    )


def profile(n: int, name: str, **spec: object) -> Profile:
    return Profile(n, 1, ProfileSpec(name=name, query=name, **spec))  # type: ignore[arg-type]


def hit(term: str, field: str = "title") -> tuple[Reason, ...]:
    return (Reason(term, field, ((0, 3),)),)


KV = profile(1, "KV cache", max_items=2)
PRIVACY = profile(2, "privacy")


def test_a_paper_in_several_profiles_appears_once_with_every_reason() -> None:
    found = [
        Candidate(KV, paper(1), 5.0, hit("kv")),
        Candidate(PRIVACY, paper(1), 7.0, hit("privacy", "abstract")),
        Candidate(PRIVACY, paper(2), 3.0, hit("privacy")),
    ]
    digest = compose(ANN, DeliveryKind.DIGEST, WINDOW, found)
    assert digest is not None
    assert [s.profile for s in digest.sections] == ["privacy"]
    assert [i.paper.id for i in digest.items] == [1, 2]  # best first
    first = digest.items[0]
    assert [h.profile for h in first.hits] == ["privacy", "KV cache"]
    assert digest.paper_ids == (1, 2)
    assert digest.subject == "2 new papers: privacy (2)"


def test_sections_are_capped_with_and_n_more() -> None:
    found = [Candidate(KV, paper(n), float(n), hit("kv")) for n in range(1, 6)]
    found.append(Candidate(PRIVACY, paper(9), 1.0, hit("privacy")))
    digest = compose(ANN, DeliveryKind.DIGEST, WINDOW, found)
    assert digest is not None
    kv = digest.sections[0]
    assert [i.paper.id for i in kv.items] == [5, 4]
    assert kv.more == 3
    assert digest.paper_ids == (5, 4, 9)  # what is left out is not recorded as sent
    assert digest.subject == "6 new papers: KV cache (5), privacy (1)"


def test_min_upvotes_holds_a_paper_back() -> None:
    popular = profile(3, "popular", min_upvotes=10)
    assert (
        compose(ANN, DeliveryKind.DIGEST, WINDOW, [Candidate(popular, paper(1, 9), 1.0, ())])
        is None
    )
    digest = compose(ANN, DeliveryKind.DIGEST, WINDOW, [Candidate(popular, paper(1, 10), 1.0, ())])
    assert digest is not None
    assert digest.paper_ids == (1,)


def test_an_empty_window_sends_nothing_unless_asked() -> None:
    assert compose(ANN, DeliveryKind.DIGEST, WINDOW, []) is None
    digest = compose(ANN, DeliveryKind.DIGEST, WINDOW, [], send_when_empty=True)
    assert digest is not None
    assert digest.sections == ()
    assert digest.subject == "No new papers"
    notes = ("Source hf-daily has been failing for 2 days.",)
    failing = compose(ANN, DeliveryKind.DIGEST, WINDOW, [], notes=notes, send_when_empty=True)
    assert failing is not None
    assert failing.subject == "No new papers (a source is failing)"


def test_subject_is_one_line_whatever_the_names_hold() -> None:
    odd = profile(4, "evil\r\nBcc: victim@example.org")
    digest = compose(ANN, DeliveryKind.DIGEST, WINDOW, [Candidate(odd, paper(1), 1.0, ())])
    assert digest is not None
    assert "\r" not in digest.subject and "\n" not in digest.subject
    alert = compose(
        ANN,
        DeliveryKind.ALERT,
        WINDOW,
        [Candidate(KV, Paper(id=2, key="k", title="A\nB\r\nC"), 1.0, ())],
    )
    assert alert is not None
    assert alert.subject == "Alert: A B C"


def test_alerts_want_a_threshold_or_a_followed_author() -> None:
    plain = Candidate(KV, paper(1), 5.0, hit("kv"))
    assert not wants_alert(plain)
    sharp = profile(5, "sharp", alert_threshold=4.0)
    assert wants_alert(Candidate(sharp, paper(1), 5.0, hit("kv")))
    assert not wants_alert(Candidate(sharp, paper(1), 3.9, hit("kv")))
    assert wants_alert(Candidate(KV, paper(1), 0.1, hit("Jane Doe", "author")))
    assert wants_alert(Candidate(KV, paper(1), 0.1, hit("ByteDance-Seed", "org")))


def test_sources_failing_for_more_than_a_day_are_named() -> None:
    day = timedelta(days=1)
    created = NOW - 10 * day
    states = [
        (SourceState("ok", last_success_at=NOW - 2 * day), created),  # quiet, not failing
        (
            SourceState(
                "flaky", last_success_at=NOW - 3 * day, errors=4, last_error="HTTP 503\nbusy"
            ),
            created,
        ),
        (SourceState("new", errors=1, last_error="timeout"), NOW - day / 2),  # failing < a day
        (SourceState("gone", errors=1, disabled="gone (HTTP 410)"), created),
    ]
    assert source_notes(states, NOW, day) == (
        "Source flaky has been failing for 3 days: HTTP 503 busy.",
        "Source gone is disabled: gone (HTTP 410).",
    )
