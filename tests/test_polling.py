from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from service.config import SourceSettings
from service.cron import _weekday_names
from service.cron import validate as validate_cron
from service.model import SourceState
from service.polling import (
    RETRY_AFTER_MAX,
    is_due,
    next_check_after_error,
    next_check_after_success,
)

NOW = datetime(2026, 3, 6, 10, 0, tzinfo=UTC)  # a Friday
BASE = timedelta(minutes=5)
CAP = timedelta(hours=24)


class Midpoint(random.Random):
    """An rng whose every draw is the middle of its range: jitter factor 1.0, offset jitter/2."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def source(**fields: Any) -> SourceSettings:
    return SourceSettings.model_validate(
        {"id": "arxiv", "location": "https://export.arxiv.org/rss/cs.AI", **fields}
    )


def after_error(src: SourceSettings, errors: int, **kwargs: Any) -> datetime:
    """When ``src`` is polled after ``errors`` failures in a row (its schedule plays no part)."""
    options: dict[str, Any] = {"backoff_base": BASE, "backoff_max": CAP, "rng": Midpoint()}
    return next_check_after_error(errors, NOW, kwargs.pop("retry_after", None), **options)


def test_interval_without_jitter() -> None:
    assert next_check_after_success(source(interval="90m"), NOW) == NOW + timedelta(minutes=90)


def test_results_are_utc_whatever_zone_now_is_in() -> None:
    berlin = NOW.astimezone(ZoneInfo("Europe/Berlin"))
    got = next_check_after_success(source(interval="1h"), berlin)
    assert got == NOW + timedelta(hours=1)
    assert got.tzinfo is UTC


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_check_after_success(source(), NOW.replace(tzinfo=None))


def test_jitter_stays_within_its_bounds() -> None:
    src = source(interval="1h", jitter="10m")
    rng = random.Random(7)
    got = [next_check_after_success(src, NOW, rng) - NOW for _ in range(500)]
    assert all(timedelta(hours=1) <= delay <= timedelta(hours=1, minutes=10) for delay in got)
    assert max(got) - min(got) > timedelta(minutes=8)
    again = random.Random(7)
    assert next_check_after_success(src, NOW, again) - NOW == got[0]


@pytest.mark.parametrize(
    ("cron", "now", "expected"),
    [
        ("0 6 * * *", NOW, datetime(2026, 3, 7, 6, 0, tzinfo=UTC)),
        ("0 11 * * *", NOW, datetime(2026, 3, 6, 11, 0, tzinfo=UTC)),
        # At a fire time the next one is the following fire, never ``now`` itself.
        ("0 10 * * *", NOW, datetime(2026, 3, 7, 10, 0, tzinfo=UTC)),
        ("*/15 * * * *", NOW + timedelta(seconds=1), NOW + timedelta(minutes=15)),
        # Crontab weekdays: 1-5 is Monday to Friday, 0 and 7 are Sunday.
        ("0 9 * * 1-5", NOW, datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),
        ("0 9 * * 0", NOW, datetime(2026, 3, 8, 9, 0, tzinfo=UTC)),
        ("0 9 * * 7", NOW, datetime(2026, 3, 8, 9, 0, tzinfo=UTC)),
        ("0 9 * * 5-7", NOW, datetime(2026, 3, 7, 9, 0, tzinfo=UTC)),
        ("0 9 * * */2", NOW, datetime(2026, 3, 7, 9, 0, tzinfo=UTC)),
        ("0 9 * * mon,wed", NOW, datetime(2026, 3, 9, 9, 0, tzinfo=UTC)),
        ("0 9 * * 0-0", NOW, datetime(2026, 3, 8, 9, 0, tzinfo=UTC)),
        ("0 9 * * fri-sun", NOW + timedelta(days=1), datetime(2026, 3, 8, 9, 0, tzinfo=UTC)),
        ("30 0 1 * *", NOW, datetime(2026, 4, 1, 0, 30, tzinfo=UTC)),
        ("@daily", NOW, datetime(2026, 3, 7, 0, 0, tzinfo=UTC)),
        ("@weekly", NOW, datetime(2026, 3, 8, 0, 0, tzinfo=UTC)),
    ],
)
def test_cron_is_read_as_crontab_in_utc(cron: str, now: datetime, expected: datetime) -> None:
    src = source(cron=cron, interval="1m")
    assert next_check_after_success(src, now) == expected


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("0-7", "mon,tue,wed,thu,fri,sat,sun"),
        ("5-0", "fri,sat,sun"),
        ("*/2", "tue,thu,sat,sun"),
        ("1-5/2", "mon,wed,fri"),
        ("1/3", "mon,thu,sun"),
        ("SUN,sat,6", "sat,sun"),
    ],
)
def test_crontab_weekdays_are_rewritten_as_names(weekdays: str, expected: str) -> None:
    assert _weekday_names(weekdays) == expected


def test_cron_ignores_the_zone_of_now() -> None:
    tokyo = NOW.astimezone(ZoneInfo("Asia/Tokyo"))  # 19:00 there, 10:00 in UTC
    got = next_check_after_success(source(cron="0 12 * * *"), tokyo)
    assert got == datetime(2026, 3, 6, 12, 0, tzinfo=UTC)


def test_cron_takes_jitter_too() -> None:
    src = source(cron="0 12 * * *", jitter="4m")
    got = next_check_after_success(src, NOW, Midpoint())
    assert got == datetime(2026, 3, 6, 12, 2, tzinfo=UTC)


def test_backoff_doubles_per_error() -> None:
    src = source(interval="1m")
    delays = [after_error(src, errors) - NOW for errors in range(1, 6)]
    assert delays == [BASE * 2**n for n in range(5)]


def test_backoff_is_capped_even_after_very_many_errors() -> None:
    src = source(interval="1m")
    assert after_error(src, 9) - NOW == BASE * 256
    assert after_error(src, 10) - NOW == CAP
    assert after_error(src, 100_000) - NOW == CAP


def test_backoff_jitter_is_twenty_percent_and_never_passes_the_cap() -> None:
    rng = random.Random(3)

    def delay(errors: int) -> timedelta:
        at = next_check_after_error(errors, NOW, None, backoff_base=BASE, backoff_max=CAP, rng=rng)
        return at - NOW

    delays = [delay(3) for _ in range(300)]
    assert all(BASE * 4 * 0.8 <= one <= BASE * 4 * 1.2 for one in delays)
    assert len(set(delays)) > 250
    assert all(CAP * 0.8 <= delay(30) <= CAP for _ in range(300))


def test_no_error_count_backs_off_like_the_first_error() -> None:
    src = source(interval="1m")
    assert after_error(src, 0) == after_error(src, 1) == NOW + BASE


def test_retry_after_is_a_floor() -> None:
    src = source(interval="1m")
    assert after_error(src, 1, retry_after=3600) == NOW + timedelta(hours=1)
    assert after_error(src, 1, retry_after=10) == NOW + BASE
    assert after_error(src, 1, retry_after=0) == NOW + BASE


def test_an_absurd_retry_after_is_bounded() -> None:
    assert after_error(source(), 1, retry_after=1e15) == NOW + RETRY_AFTER_MAX


def test_the_first_failure_waits_backoff_base_whatever_the_schedule() -> None:
    assert after_error(source(interval="6h"), 1) == NOW + BASE
    assert after_error(source(cron="0 6 * * *"), 1) == NOW + BASE
    assert after_error(source(interval="1m"), 1) == NOW + BASE
    assert after_error(source(interval="6h"), 4) == NOW + BASE * 8


@pytest.mark.parametrize(
    ("state", "src", "due"),
    [
        (SourceState("arxiv"), source(), True),
        (SourceState("arxiv", next_check_at=NOW - timedelta(seconds=1)), source(), True),
        (SourceState("arxiv", next_check_at=NOW), source(), True),
        (SourceState("arxiv", next_check_at=NOW + timedelta(seconds=1)), source(), False),
        (SourceState("arxiv"), source(enabled=False), False),
        (SourceState("arxiv", disabled="HTTP 410 Gone"), source(), False),
        (SourceState("arxiv", next_check_at=NOW - timedelta(days=1)), source(enabled=False), False),
    ],
)
def test_is_due(state: SourceState, src: SourceSettings, due: bool) -> None:
    assert is_due(state, src, NOW) is due


@pytest.mark.parametrize(
    "cron", ["0 6 * * *", "*/10 * * * *", "0 9 * * mon-fri", "0 0 29 2 *", "@hourly", "0 0 1 1 *"]
)
def test_validate_cron_accepts(cron: str) -> None:
    validate_cron(cron)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 6 * *", "has 4 fields; expected 5"),
        ("0 6 * * * *", "has 6 fields"),
        ("", "has 0 fields"),
        ("@fortnightly", "has 1 field;"),
        ("61 * * * *", "invalid cron expression '61 \\* \\* \\* \\*'"),
        ("0 25 * * *", "higher than the maximum"),
        ("0 9 * * 8", "'8' is not a weekday"),
        ("0 9 * * 5-1", "runs backwards"),
        ("0 9 * * mon-", "is not a day, a range or a step"),
        ("0 9 1 * 1", "restricts both day-of-month and day-of-week"),
        ("0 0 30 2 *", "never fires"),
        ("every day", "has 2 fields"),
    ],
)
def test_validate_cron_explains_what_is_wrong(cron: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_cron(cron)
