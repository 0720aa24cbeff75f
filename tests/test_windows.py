"""Digest windows in the subscriber's zone: daily, weekly, instant, DST changes, downtime."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.model import Schedule
from service.windows import Window, due_window, next_boundary, previous_boundary

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def boundaries(schedule: Schedule, zone: ZoneInfo, start: datetime, count: int) -> list[datetime]:
    out, at = [], start
    for _ in range(count):
        found = next_boundary(schedule, zone, at)
        assert found is not None
        out.append(found)
        at = found
    return out


def test_daily_keeps_local_time_across_spring_forward_and_fall_back() -> None:
    daily = Schedule.parse("daily 07:30")
    # Berlin moves to CEST on 29 March 2026 and back to CET on 25 October 2026.
    spring = boundaries(daily, BERLIN, utc(2026, 3, 27, 12), 4)
    assert spring == [
        utc(2026, 3, 28, 6, 30),  # CET, UTC+1
        utc(2026, 3, 29, 5, 30),  # CEST, UTC+2: 23 hours later
        utc(2026, 3, 30, 5, 30),
        utc(2026, 3, 31, 5, 30),
    ]
    autumn = boundaries(daily, BERLIN, utc(2026, 10, 24, 12), 2)
    assert autumn == [utc(2026, 10, 25, 6, 30), utc(2026, 10, 26, 6, 30)]
    assert {b.astimezone(BERLIN).strftime("%H:%M") for b in spring + autumn} == {"07:30"}


def test_a_time_the_clocks_skip_or_repeat_happens_once() -> None:
    early = Schedule.parse("daily 02:30")
    # 02:30 does not exist in Berlin on 29 March 2026: it falls at 03:30 CEST (01:30 UTC).
    assert boundaries(early, BERLIN, utc(2026, 3, 28, 12), 2) == [
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]
    # 02:30 happens twice on 25 October 2026: the first one counts, once.
    assert boundaries(early, BERLIN, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


def test_weekly_in_new_york() -> None:
    weekly = Schedule.parse("weekly mon 08:00")
    found = boundaries(weekly, NEW_YORK, utc(2026, 10, 28), 3)
    # New York leaves EDT on 1 November 2026.
    assert found == [utc(2026, 11, 2, 13), utc(2026, 11, 9, 13), utc(2026, 11, 16, 13)]
    assert previous_boundary(weekly, NEW_YORK, utc(2026, 11, 9, 12, 59)) == utc(2026, 11, 2, 13)
    assert previous_boundary(weekly, NEW_YORK, utc(2026, 11, 9, 13)) == utc(2026, 11, 9, 13)


def test_a_window_is_due_at_its_boundary_and_not_before() -> None:
    daily = Schedule.parse("daily 07:30")
    start = utc(2026, 6, 1, 12)
    assert due_window(daily, BERLIN, start, None, utc(2026, 6, 2, 5, 29)) is None
    window = due_window(daily, BERLIN, start, None, utc(2026, 6, 2, 5, 30))
    assert window == Window(start, utc(2026, 6, 2, 5, 30))
    assert window.key == "2026-06-01T12:00:00Z/2026-06-02T05:30:00Z"


def test_after_downtime_one_window_covers_the_missed_days() -> None:
    daily = Schedule.parse("daily 07:30")
    start = utc(2026, 6, 1, 5, 30)
    back = utc(2026, 6, 5, 9)  # four boundaries were missed
    window = due_window(daily, BERLIN, start, utc(2026, 6, 2, 5, 30), back)
    assert window == Window(start, utc(2026, 6, 5, 5, 30))
    # Closed, the next one is tomorrow's.
    assert next_boundary(daily, BERLIN, back) == utc(2026, 6, 6, 5, 30)
    assert due_window(daily, BERLIN, window.end, utc(2026, 6, 6, 5, 30), back) is None


def test_instant_closes_a_window_on_every_call() -> None:
    instant = Schedule.parse("instant")
    start = utc(2026, 6, 1)
    assert next_boundary(instant, BERLIN, start) is None
    assert due_window(instant, BERLIN, start, None, start + timedelta(minutes=5)) == Window(
        start, start + timedelta(minutes=5)
    )
    assert due_window(instant, BERLIN, start, None, start) is None


@pytest.mark.parametrize("zone", ["Pacific/Chatham", "Australia/Lord_Howe", "America/St_Johns"])
def test_odd_offsets_every_day_for_a_year(zone: str) -> None:
    daily = Schedule.parse("daily 06:45")
    tz = ZoneInfo(zone)
    found = boundaries(daily, tz, utc(2026, 1, 1), 365)
    assert len(set(found)) == 365
    assert {b.astimezone(tz).strftime("%H:%M") for b in found} == {"06:45"}
    days = [b.astimezone(tz).date() for b in found]
    assert all((b - a).days == 1 for a, b in itertools.pairwise(days))
