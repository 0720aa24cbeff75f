"""What matching returns: a ``Match`` per (profile, paper) with the ``Reason``\\ s for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.model import slots_maker

__all__ = ["Match", "Reason", "new_match", "new_reason"]


@dataclass(frozen=True, slots=True)
class Reason:
    """A query term that hit one field of the paper.

    ``term`` is the term as written in the query (``KV-cache``, ``quantiz*``); ``field`` is
    ``title``, ``abstract``, ``author``, ``org``, ``source`` or ``upvotes``; ``positions`` are
    ``(start, end)`` offsets into ``Document.text(field)``, in order.
    """

    term: str
    field: str
    positions: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Match:
    """A paper matching a profile's query; a higher ``score`` is a better match."""

    profile_id: int
    document_id: int
    score: float
    reasons: tuple[Reason, ...]


# Matching makes these by the hundred thousand: made without the frozen dataclass's __init__.
new_reason: Callable[[str, str, tuple[tuple[int, int], ...]], Reason] = slots_maker(
    Reason, "term", "field", "positions"
)
new_match: Callable[[int, int, float, tuple[Reason, ...]], Match] = slots_maker(
    Match, "profile_id", "document_id", "score", "reasons"
)
