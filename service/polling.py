"""When to poll a source next: interval or cron, jitter, error backoff, Retry-After. Pure.

Every function takes ``now`` (aware) and returns aware UTC datetimes; local time plays no
part, and cron expressions (``service.cron``) are evaluated in UTC.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from service import cron
from service.config import SourceSettings
from service.model import SourceState

ERROR_JITTER = 0.2
"""Error backoff is scaled by a uniform factor in [1 - ERROR_JITTER, 1 + ERROR_JITTER]."""

RETRY_AFTER_MAX = timedelta(days=30)
"""A longer Retry-After is read as this, so that absurd values cannot overflow a datetime."""

_rng = random.Random()


def next_check_after_success(
    source: SourceSettings, now: datetime, rng: random.Random | None = None
) -> datetime:
    """The next scheduled check (strictly after ``now``) plus a jitter in [0, source.jitter]."""
    spread = source.jitter.total_seconds()
    offset = (_rng if rng is None else rng).uniform(0, spread) if spread > 0 else 0.0
    return _scheduled(source, now) + timedelta(seconds=offset)


def next_check_after_error(
    errors: int,
    now: datetime,
    retry_after: float | None,
    backoff_base: timedelta,
    backoff_max: timedelta,
    rng: random.Random | None = None,
) -> datetime:
    """When to retry after ``errors`` consecutive failures (this one included).

    The backoff is ``backoff_base * 2**(errors - 1)`` scaled by a factor in [0.8, 1.2] (see
    ``ERROR_JITTER``) and then capped at ``backoff_max``, whatever the source's schedule: the
    first failure of a daily source is retried after ``backoff_base``, not the next day, and a
    source polled every minute backs off as much. The result is never earlier than
    ``retry_after`` seconds from now.
    """
    at = _utc(now) + backoff(errors, backoff_base, backoff_max, rng)
    if retry_after is not None and retry_after > 0:
        wait = min(retry_after, RETRY_AFTER_MAX.total_seconds())
        at = max(at, _utc(now) + timedelta(seconds=wait))
    return at


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


def _scheduled(source: SourceSettings, now: datetime) -> datetime:
    now = _utc(now)
    if source.cron is None:
        return now + source.interval
    # APScheduler returns ``now`` itself when it is a fire time; a check just made there
    # must not be due again at once.
    after = now + timedelta(microseconds=1)
    fire: datetime = cron.trigger(source.cron).get_next_fire_time(None, after)
    return fire.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)
