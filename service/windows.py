"""Digest windows: when a subscriber's digest is due, worked out in their time zone.

A daily or weekly schedule names a local wall-clock time; each such moment is a *boundary*, and
a window runs from one delivered boundary to the next. Boundaries are computed from the local
date each time (never by adding 24 hours), so 07:30 stays 07:30 across DST changes. A local time
that a spring-forward gap skips falls at the same offset as before the change (02:30 becomes
03:30); one that a fall-back repeats is its first occurrence. Everything here is pure: ``now``
comes in as an argument, datetimes going in and out are aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from service.model import Cadence, Schedule


@dataclass(frozen=True, slots=True)
class Window:
    """The span ``(start, end]`` that one digest covers."""

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """Stable text naming the window: a delivery is unique per subscriber, kind and key."""
        return f"{_iso(self.start)}/{_iso(self.end)}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(schedule: Schedule, day: date, zone: ZoneInfo) -> datetime | None:
    """The boundary on a local day, in UTC; None when the schedule has none that day."""
    if schedule.at is None or schedule.cadence is Cadence.INSTANT:
        return None
    if schedule.cadence is Cadence.WEEKLY and day.weekday() != schedule.weekday:
        return None
    local = datetime.combine(day, schedule.at, tzinfo=zone)
    return local.astimezone(UTC)


def next_boundary(schedule: Schedule, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first boundary strictly after ``after``; None for an instant schedule."""
    if schedule.cadence is Cadence.INSTANT:
        return None
    first = after.astimezone(zone).date() - timedelta(days=1)
    for offset in range(9):
        moment = _at(schedule, first + timedelta(days=offset), zone)
        if moment is not None and moment > after:
            return moment
    raise AssertionError(f"no boundary within 8 days of {after} for {schedule}")


def previous_boundary(schedule: Schedule, zone: ZoneInfo, now: datetime) -> datetime | None:
    """The last boundary at or before ``now``; None for an instant schedule."""
    if schedule.cadence is Cadence.INSTANT:
        return None
    last = now.astimezone(zone).date() + timedelta(days=1)
    for offset in range(9):
        moment = _at(schedule, last - timedelta(days=offset), zone)
        if moment is not None and moment <= now:
            return moment
    raise AssertionError(f"no boundary within 8 days before {now} for {schedule}")


def due_window(
    schedule: Schedule,
    zone: ZoneInfo,
    window_end: datetime,
    next_window_at: datetime | None,
    now: datetime,
) -> Window | None:
    """The window to close now, or None when none is due.

    ``window_end`` is where the last closed window ended (for a new subscriber: when they
    subscribed). After downtime the window reaches back to it: one digest covers every missed
    boundary. An instant schedule closes a window on every call.
    """
    if schedule.cadence is Cadence.INSTANT:
        return Window(window_end, now) if now > window_end else None
    due = next_window_at or next_boundary(schedule, zone, window_end)
    if due is None or due > now:
        return None
    end = previous_boundary(schedule, zone, now)
    if end is None or end <= window_end:
        return None
    return Window(window_end, end)
