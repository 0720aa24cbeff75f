"""Subscribers and their profiles as users declare them: validation and the profiles file.

Pure: text in, values out. The profiles file (``config/profiles.toml``) lists subscribers, each
with an email, a time zone, a schedule and profiles::

    [[subscribers]]
    email = "jane@example.org"
    timezone = "Europe/Berlin"
    schedule = "daily 07:30"          # or "weekly mon 07:30", or "instant"

    [[subscribers.profiles]]
    name = "KV cache"
    query = '"kv cache" OR quantiz*'
    min_upvotes = 0
    max_items = 20
    alert_threshold = 8.0             # optional
    send_when_empty = false
    likes = ["arXiv:2401.00001", "doi:10.1000/xyz", "An exact title"]  # optional

A profile with ``likes`` (papers by arXiv id, DOI or exact title) may leave out its query: it
then ranks by the papers it likes alone.

``read_profiles`` checks each query with the ``check_query`` it is given (the matcher's parser:
this module does not import the matcher), so that a bad query is reported with where it is.
"""

from __future__ import annotations

import json
import math
import tomllib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomli_w
from email_validator import EmailNotValidError, validate_email

from service.errors import InvalidValue, QueryError
from service.identity import mailbox_key
from service.model import ProfileSpec, Schedule

PROFILE_FIELDS = frozenset(
    {"name", "query", "min_upvotes", "max_items", "alert_threshold", "send_when_empty", "likes"}
)
MAX_LIKE = 500  # characters of one entry of a profile's likes: an id, a DOI or a title
SUBSCRIBER_FIELDS = frozenset({"email", "timezone", "schedule", "profiles"})

QueryCheck = Callable[[str], object]
"""Parses a query, raising ``QueryError`` when it is invalid."""


@dataclass(frozen=True, slots=True)
class Declared:
    """A subscriber with its profiles, as a file or an import declares it."""

    email: str
    timezone: str
    schedule: Schedule
    profiles: tuple[ProfileSpec, ...] = ()
    # Papers each profile likes, by profile name, as written (arXiv id, DOI or title).
    likes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def check_email(text: str, where: str | None = None) -> str:
    """The address, normalised (domain lower-cased); ``InvalidValue`` when it is not one.
    Addresses that differ only in case are one mailbox: compare them by
    ``identity.mailbox_key``."""
    try:
        return validate_email(text.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidValue(str(exc), field="email", value=text, where=where) from None


def check_timezone(name: str, where: str | None = None) -> str:
    """An IANA time zone name such as ``Europe/Berlin``."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidValue(
            "not an IANA time zone name such as 'Europe/Berlin' or 'UTC'",
            field="timezone",
            value=name,
            where=where,
        ) from None
    return name


def parse_schedule(text: str, where: str | None = None) -> Schedule:
    """``daily HH:MM``, ``weekly DAY HH:MM`` (mon..sun) or ``instant``."""
    try:
        return Schedule.parse(text)
    except ValueError as exc:
        raise InvalidValue(str(exc), field="schedule", value=text, where=where) from None


def check_profile(spec: ProfileSpec, where: str | None = None) -> ProfileSpec:
    """Check a profile's numbers and name (its query is checked by the matcher)."""
    if not spec.name.strip() or len(spec.name) > 100:
        raise InvalidValue(
            "expected 1 to 100 characters", field="name", value=spec.name, where=where
        )
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in spec.name):  # names feeds, subjects
        raise InvalidValue(
            "expected no control characters", field="name", value=spec.name, where=where
        )
    if spec.min_upvotes < 0:
        raise InvalidValue(
            "expected 0 or more", field="min_upvotes", value=spec.min_upvotes, where=where
        )
    if not 1 <= spec.max_items <= 1000:
        raise InvalidValue(
            "expected 1 to 1000", field="max_items", value=spec.max_items, where=where
        )
    threshold = spec.alert_threshold
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise InvalidValue(
            "expected a finite score above 0",
            field="alert_threshold",
            value=spec.alert_threshold,
            where=where,
        )
    return spec


def read_profiles(text: str, origin: str, check_query: QueryCheck | None = None) -> list[Declared]:
    """Parse a profiles file; ``InvalidValue`` (or ``QueryError``, from ``check_query``) names
    the subscriber, profile and field at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidValue(str(exc), field="file", value=origin) from None
    unknown = set(data) - {"subscribers"}
    if unknown:
        raise InvalidValue(
            "expected only [[subscribers]] tables",
            field="key",
            value=sorted(unknown)[0],
            where=origin,
        )
    result: list[Declared] = []
    seen: set[str] = set()
    for index, entry in enumerate(data.get("subscribers", [])):
        where = f"{origin}: subscribers[{index}]"
        result.append(_declared(entry, where, check_query))
        mailbox = mailbox_key(result[-1].email)
        if mailbox in seen:
            raise InvalidValue("declared twice", field="email", value=result[-1].email, where=where)
        seen.add(mailbox)
    return result


def _declared(entry: Mapping[str, Any], where: str, check_query: QueryCheck | None) -> Declared:
    extra = set(entry) - SUBSCRIBER_FIELDS
    if extra:
        raise InvalidValue(
            f"unknown field; expected {', '.join(sorted(SUBSCRIBER_FIELDS))}",
            field=sorted(extra)[0],
            value=entry[sorted(extra)[0]],
            where=where,
        )
    for name in ("email", "timezone", "schedule"):
        if not isinstance(entry.get(name), str):
            raise InvalidValue("expected a string", field=name, value=entry.get(name), where=where)
    profiles = []
    likes: dict[str, tuple[str, ...]] = {}
    names: set[str] = set()
    for number, raw in enumerate(entry.get("profiles", [])):
        spec = profile_from(raw, f"{where}.profiles[{number}]", check_query)
        if spec.name in names:
            raise InvalidValue("declared twice", field="name", value=spec.name, where=where)
        names.add(spec.name)
        profiles.append(spec)
        if raw.get("likes"):
            likes[spec.name] = tuple(raw["likes"])
    return Declared(
        email=check_email(entry["email"], where),
        timezone=check_timezone(entry["timezone"], where),
        schedule=parse_schedule(entry["schedule"], where),
        profiles=tuple(profiles),
        likes=likes,
    )


def profile_from(
    raw: Mapping[str, Any], where: str, check_query: QueryCheck | None = None
) -> ProfileSpec:
    """A profile from a mapping of its fields, types checked (and its query, given a check).
    Its ``likes`` are checked here and left to the caller."""
    if isinstance(raw.get("name"), str):
        where = f"{where} (name {json.dumps(raw['name'], ensure_ascii=False)})"
    extra = set(raw) - PROFILE_FIELDS
    if extra:
        field = sorted(extra)[0]
        raise InvalidValue(
            f"unknown field; expected {', '.join(sorted(PROFILE_FIELDS))}",
            field=field,
            value=raw[field],
            where=where,
        )
    kinds: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "query": (str,),
        "min_upvotes": (int,),
        "max_items": (int,),
        "alert_threshold": (int, float),
        "send_when_empty": (bool,),
        "likes": (list,),
    }
    liked = _likes(raw.get("likes", []), where)
    required = ("name",) if liked else ("name", "query")  # likes alone are a profile
    for name in required:
        if name not in raw:
            raise InvalidValue("is required", field=name, value=None, where=where)
    for name, value in raw.items():
        wrong = isinstance(value, bool) and bool not in kinds[name]
        if wrong or not isinstance(value, kinds[name]):
            expected = " or ".join(k.__name__ for k in kinds[name])
            raise InvalidValue(f"expected {expected}", field=name, value=value, where=where)
    values = {"query": ""} | dict(raw)
    values.pop("likes", None)
    if "alert_threshold" in values:
        values["alert_threshold"] = float(values["alert_threshold"])
    spec = check_profile(ProfileSpec(**values), where)
    if check_query is not None and (spec.query.strip() or not liked):
        try:
            check_query(spec.query)
        except QueryError as exc:
            raise QueryError(
                f"{where}: query: {exc.reason}", query=exc.query, position=exc.position
            ) from exc
    return spec


def _likes(value: object, where: str) -> tuple[str, ...]:
    """A profile's ``likes``: a list of non-empty strings of at most ``MAX_LIKE`` characters."""
    if not isinstance(value, list):
        raise InvalidValue("expected a list of strings", field="likes", value=value, where=where)
    for item in value:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_LIKE:
            raise InvalidValue(
                f"expected an arXiv id, a DOI or a title (1 to {MAX_LIKE} characters)",
                field="likes",
                value=item,
                where=where,
            )
    return tuple(item.strip() for item in value)


def write_profiles(declared: Iterable[Declared]) -> str:
    """The profiles file for ``declared``: what ``read_profiles`` reads back the same."""
    subscribers = []
    for item in declared:
        profiles = []
        for spec in item.profiles:
            profile: dict[str, Any] = {
                "name": spec.name,
                "query": spec.query,
                "min_upvotes": spec.min_upvotes,
                "max_items": spec.max_items,
                "send_when_empty": spec.send_when_empty,
            }
            if spec.alert_threshold is not None:
                profile["alert_threshold"] = spec.alert_threshold
            if item.likes.get(spec.name):
                profile["likes"] = list(item.likes[spec.name])
            profiles.append(profile)
        subscribers.append(
            {
                "email": item.email,
                "timezone": item.timezone,
                "schedule": str(item.schedule),
                "profiles": profiles,
            }
        )
    return tomli_w.dumps({"subscribers": subscribers})
