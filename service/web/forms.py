"""Form input checked field by field: every problem is kept against its field, with what the
visitor typed, so the page shows it beside the field instead of failing."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping

from service import subscribers
from service.errors import InvalidValue, QueryError
from service.match.query import parse_query
from service.model import WEEKDAYS, ProfileSpec, Schedule
from service.web.preview import MAX_QUERY  # a query saved is one the live preview takes

CADENCES = ("daily", "weekly", "instant")
DEFAULT_TIME = "07:30"
MAX_FIELD = 2000  # characters in any one field (queries included)


class Form:
    """What was typed (``values``) and what is wrong with it (``errors``, by field)."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values: dict[str, str] = dict(values or {})
        self.errors: dict[str, str] = {}

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def text(self, name: str, *, required: bool = True, limit: int = MAX_FIELD) -> str:
        value = self.get(name).strip()
        if len(value) > limit:
            self.errors[name] = f"Please keep this to {limit} characters."
        elif any(unicodedata.category(c) == "Cc" for c in value):
            # Line breaks, tabs and NULs: nothing a field means, and no way into a header.
            self.errors[name] = "Please use no line breaks or control characters here."
        elif required and not value:
            self.errors[name] = "Please fill this in."
        return value

    @property
    def ok(self) -> bool:
        return not self.errors

    def take(self, error: InvalidValue | QueryError, field: str | None = None) -> None:
        """Show a checker's error beside its field."""
        if isinstance(error, QueryError):
            self.errors[field or "query"] = str(error)
        else:
            self.errors[field or error.field] = reason(error)


def read_email(form: Form, name: str = "email") -> str:
    text = form.text(name)
    if name in form.errors:
        return text
    try:
        return subscribers.check_email(text)
    except InvalidValue as exc:
        form.errors[name] = reason(exc)
        return text


def read_timezone(form: Form) -> str:
    text = form.text("timezone", required=False) or "UTC"
    if "timezone" in form.errors:
        return text
    try:
        return subscribers.check_timezone(text)
    except InvalidValue:
        form.errors["timezone"] = "Not a time zone we know: use a name such as Europe/Berlin."
        return text


def read_schedule(form: Form) -> str:
    """The schedule as ``Schedule.parse`` reads it, from the cadence, day and time fields."""
    cadence = form.get("cadence", "daily")
    if cadence not in CADENCES:
        form.errors["cadence"] = "Choose daily, weekly or instant."
        return "daily " + DEFAULT_TIME
    if cadence == "instant":
        return "instant"
    at = form.get("time", DEFAULT_TIME).strip()
    day = form.get("day", "mon")
    if cadence == "weekly" and day not in WEEKDAYS:
        form.errors["day"] = "Choose a day of the week."
        day = "mon"
    text = f"daily {at}" if cadence == "daily" else f"weekly {day} {at}"
    try:
        return str(Schedule.parse(text))
    except ValueError:
        form.errors["time"] = "Give a time of day as HH:MM, such as 07:30."
        return text


def read_profile(form: Form, *, query_required: bool = True) -> ProfileSpec:
    """A profile from the name, query and option fields; the query is parsed here. A
    profile with liked papers may go without a query (``query_required`` False)."""
    name = form.text("name")
    query = form.text("query", limit=MAX_QUERY, required=query_required)
    if "query" not in form.errors and query:
        try:
            parse_query(query)
        except QueryError as exc:
            form.take(exc)
    spec = ProfileSpec(
        name=name,
        query=query,
        min_upvotes=_integer(form, "min_upvotes", 0, 0, None),
        max_items=_integer(form, "max_items", 20, 1, 1000),
        alert_threshold=_threshold(form),
        send_when_empty=form.get("send_when_empty") == "on",
    )
    if form.ok:
        try:
            subscribers.check_profile(spec)
        except InvalidValue as exc:
            form.take(exc)
    return spec


def _integer(form: Form, name: str, default: int, least: int, most: int | None) -> int:
    text = form.get(name).strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        form.errors[name] = "Give a whole number."
        return default
    value = int(text)
    if value < least or (most is not None and value > most):
        span = f"from {least} to {most}" if most is not None else f"{least} or more"
        form.errors[name] = f"Give a number {span}."
    return value


def _threshold(form: Form) -> float | None:
    text = form.get("alert_threshold").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if len(text) > 20 or not math.isfinite(value) or value <= 0:
        form.errors["alert_threshold"] = "Give a score above 0, or leave it empty for no alerts."
        return None
    return value


def reason(error: InvalidValue) -> str:
    """The checker's message alone, as a sentence (the value is on the form already)."""
    text = str(error)
    head = f"{error.field} {error.value!r}: "
    text = text[text.find(head) + len(head) :] if head in text else text
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
