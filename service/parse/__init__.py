"""Parsers: pure functions from a ``Snapshot`` to ``Parsed``, one per source kind.

``parse`` picks the parser by the source's kind, or by the snapshot's content when the source
declares none (a drop-in folder may hold captures of every kind).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from service.model import Parsed, Snapshot, SourceKind


class Parser(Protocol):
    def __call__(self, snapshot: Snapshot, options: Mapping[str, Any] | None = None) -> Parsed: ...


MODULES = {
    SourceKind.LISTING: "service.parse.listing",
    SourceKind.HF_DAILY: "service.parse.hf_daily",
    SourceKind.FEED: "service.parse.feed",
}


def detect(snapshot: Snapshot) -> SourceKind:
    """The kind of a snapshot's content."""
    from service.parse.sniff import detect as sniff

    return sniff(snapshot.body, origin=snapshot.origin)


def parse(
    snapshot: Snapshot, kind: SourceKind | None, options: Mapping[str, Any] | None = None
) -> Parsed:
    """Parse with the parser of ``kind`` (recognised from the content when None)."""
    chosen = kind or detect(snapshot)
    parser: Parser = importlib.import_module(MODULES[chosen]).parse
    return parser(snapshot, options)
