"""When to poll a source next: interval or cron, jitter, error backoff, Retry-After. Pure.

Every function takes ``now`` (aware) and returns aware UTC datetimes; local time plays no
part, and cron expressions are evaluated in UTC.

Cron expressions are standard 5-field crontab lines (minute hour day-of-month month
day-of-week) or one of ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``, ``@annually``. Weekday numbers follow crontab (0 and 7 are Sunday), not
APScheduler 3 (0 is Monday): they are rewritten as names before APScheduler sees them.
Restricting both day-of-month and day-of-week is refused, because crontab reads it as
"either" and APScheduler as "both".
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

from service.config import SourceSettings
from service.model import SourceState

ERROR_JITTER = 0.2
"""Error backoff is scaled by a uniform factor in [1 - ERROR_JITTER, 1 + ERROR_JITTER]."""

RETRY_AFTER_MAX = timedelta(days=30)
"""A longer Retry-After is read as this, so that absurd values cannot overflow a datetime."""

_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ITEM = re.compile(r"(?P<range>\*|(?P<first>\w+)(?:-(?P<last>\w+))?)(?:/(?P<step>\d+))?")

_NEVER_CHECK_FROM = datetime(2001, 1, 1, tzinfo=UTC)  # a leap day falls within 4 years
_rng = random.Random()


def next_check_after_success(
    source: SourceSettings, now: datetime, rng: random.Random | None = None
) -> datetime:
    """The next scheduled check (strictly after ``now``) plus a jitter in [0, source.jitter]."""
    spread = source.jitter.total_seconds()
    offset = (_rng if rng is None else rng).uniform(0, spread) if spread > 0 else 0.0
    return _scheduled(source, now) + timedelta(seconds=offset)


def next_check_after_error(
    source: SourceSettings,
    errors: int,
    now: datetime,
    retry_after: float | None,
    backoff_base: timedelta,
    backoff_max: timedelta,
    rng: random.Random | None = None,
) -> datetime:
    """When to retry after ``errors`` consecutive failures (this one included).

    The backoff is ``backoff_base * 2**(errors - 1)`` scaled by a factor in [0.8, 1.2] (see
    ``ERROR_JITTER``) and then capped at ``backoff_max``. The result is never earlier than
    ``retry_after`` seconds from now nor than the source's next regular, unjittered check:
    failures never make a source polled more often than when it works.
    """
    at = _utc(now) + backoff(errors, backoff_base, backoff_max, rng)
    if retry_after is not None and retry_after > 0:
        wait = min(retry_after, RETRY_AFTER_MAX.total_seconds())
        at = max(at, _utc(now) + timedelta(seconds=wait))
    return max(at, _scheduled(source, now))


def backoff(
    failures: int, base: timedelta, cap: timedelta, rng: random.Random | None = None
) -> timedelta:
    """``base * 2**(failures - 1)``, scaled by a factor in [0.8, 1.2], capped at ``cap``.

    Shared by source polling and mail delivery retries."""
    exponent = min(max(failures, 1) - 1, 64)
    factor = (_rng if rng is None else rng).uniform(1 - ERROR_JITTER, 1 + ERROR_JITTER)
    return timedelta(
        seconds=min(base.total_seconds() * 2.0**exponent * factor, cap.total_seconds())
    )


def is_due(state: SourceState, source: SourceSettings, now: datetime) -> bool:
    """Whether ``source`` should be polled at ``now``: enabled and its check time reached."""
    if not source.enabled or state.disabled:
        return False
    return state.next_check_at is None or state.next_check_at <= now


def validate_cron(expr: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``expr`` is a cron expression we run."""
    _trigger(expr)


def _scheduled(source: SourceSettings, now: datetime) -> datetime:
    now = _utc(now)
    if source.cron is None:
        return now + source.interval
    # APScheduler returns ``now`` itself when it is a fire time; a check just made there
    # must not be due again at once.
    fire: datetime = _trigger(source.cron).get_next_fire_time(None, now + timedelta(microseconds=1))
    return fire.astimezone(UTC)


@lru_cache(maxsize=256)
def _trigger(expr: str) -> CronTrigger:
    line = _MACROS.get(expr.strip().lower(), expr)
    fields = line.split()
    if len(fields) != len(_FIELDS):
        raise ValueError(
            f"cron expression {expr!r} has {len(fields)} field{'s' * (len(fields) != 1)}; "
            "expected 5 "
            f"({' '.join(_FIELDS)}) or a macro such as @daily"
        )
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            f"cron expression {expr!r} restricts both day-of-month and day-of-week; "
            "restrict only one of them"
        )
    try:
        fields[4] = _weekday_names(fields[4])
        trigger = CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
    if trigger.get_next_fire_time(None, _NEVER_CHECK_FROM) is None:
        raise ValueError(f"cron expression {expr!r} never fires (no such date)")
    return trigger


def _weekday_names(field: str) -> str:
    """A crontab day-of-week field as a list of names APScheduler 3 reads the same way."""
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.split(","):
        match = _DAY_ITEM.fullmatch(item.strip().lower())
        if match is None:
            raise ValueError(f"day-of-week {item!r} is not a day, a range or a step")
        step = 1 if match["step"] is None else int(match["step"])
        if step < 1:
            raise ValueError(f"day-of-week step in {item!r} must be at least 1")
        if match["range"] == "*":
            first, last = 0, 6
        else:
            first = _weekday(match["first"])
            if match["last"] is not None:
                last = _weekday(match["last"])
                if last == 0 < first:  # "fri-sun", "5-0": Sunday closes the week
                    last = 7
                if last < first:
                    raise ValueError(f"day-of-week range {item!r} runs backwards")
            else:
                last = first if match["step"] is None else 7  # "1/2" runs to the week's end
        days.update(day % 7 for day in range(first, last + 1, step))
    monday_first = sorted(days, key=lambda day: (day - 1) % 7)
    return ",".join(_DAY_NAMES[day] for day in monday_first)


def _weekday(token: str) -> int:
    """A crontab weekday, 0-7 with 0 and 7 both Sunday, or a three-letter name."""
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
