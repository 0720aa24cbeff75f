"""What matching returns: a ``Match`` per (profile, paper) with the ``Reason``\\ s for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# Matching makes these by the hundred thousand: a frozen dataclass's __init__ sets each field
# through object.__setattr__, which costs several times what setting the slots directly does.
_new = object.__new__
_slot: Any = getattr
_set_term, _set_field, _set_positions = (_slot(Reason, f).__set__ for f in Reason.__slots__)
_set_profile, _set_document, _set_score, _set_reasons = (
    _slot(Match, f).__set__ for f in Match.__slots__
)


def new_reason(term: str, field: str, positions: tuple[tuple[int, int], ...]) -> Reason:
    """``Reason(term, field, positions)``, made faster (the same object)."""
    reason: Reason = _new(Reason)
    _set_term(reason, term)
    _set_field(reason, field)
    _set_positions(reason, positions)
    return reason


def new_match(
    profile_id: int, document_id: int, score: float, reasons: tuple[Reason, ...]
) -> Match:
    """``Match(profile_id, document_id, score, reasons)``, made faster (the same object)."""
    match: Match = _new(Match)
    _set_profile(match, profile_id)
    _set_document(match, document_id)
    _set_score(match, score)
    _set_reasons(match, reasons)
    return match
