"""Parsers: pure functions from a ``Snapshot`` to ``Parsed``, one per source kind.

``parse`` picks the parser by the source's kind, or by the snapshot's content when the source
declares none (a drop-in folder may hold captures of every kind).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from service.model import Parsed, Snapshot, SourceKind
from service.parse import feed, hf_daily, listing, sniff

Parser = Callable[[Snapshot, Mapping[str, Any] | None], Parsed]

PARSERS: dict[SourceKind, Parser] = {
    SourceKind.LISTING: listing.parse,
    SourceKind.HF_DAILY: hf_daily.parse,
    SourceKind.FEED: feed.parse,
}


def parse(
    snapshot: Snapshot, kind: SourceKind | None, options: Mapping[str, Any] | None = None
) -> Parsed:
    """Parse with the parser of ``kind`` (recognised from the content when None)."""
    chosen = kind or sniff.detect(snapshot.body, origin=snapshot.origin)
    return PARSERS[chosen](snapshot, options)
