"""Cron expressions: standard 5-field crontab lines read as APScheduler triggers, in UTC. Pure.

A line is minute hour day-of-month month day-of-week, or one of ``@hourly``, ``@daily``,
``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``, ``@annually``. Weekday numbers follow
crontab (0 and 7 are Sunday), not APScheduler 3 (0 is Monday): they are rewritten as names
before APScheduler sees them. Restricting both day-of-month and day-of-week is refused, because
crontab reads it as "either" and APScheduler as "both". Settings check a source's expression
when they are loaded, so a bad one never reaches a poll.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from apscheduler.triggers.cron import CronTrigger

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


def validate(expr: str) -> None:
    """Raise ValueError, saying what is wrong, unless ``expr`` is a cron expression we run."""
    trigger(expr)


@lru_cache(maxsize=256)
def trigger(expr: str) -> CronTrigger:
    """The trigger that fires on ``expr``'s times (UTC); ValueError says what is wrong."""
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
        built = CronTrigger.from_crontab(" ".join(fields), timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expr!r}: {exc}") from None
    if built.get_next_fire_time(None, _NEVER_CHECK_FROM) is None:
        raise ValueError(f"cron expression {expr!r} never fires (no such date)")
    return built


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
