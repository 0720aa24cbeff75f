"""The decider: parsed papers plus what the store knows → what to change, as events.

Pure: the pipeline looks up what the decider needs (``Known`` per key, ``Stored`` fields for the
papers whose content may have changed) and hands it in with ``now``; the store applies the
resulting ``Plan`` in one transaction. Identical input against the state it produced yields an
empty plan.

Merge rules: a source never blanks a field (a value it does not give — ``None``, empty — leaves
the stored one alone); a title only changes when its normalised form does; arXiv versions only
go up. A snapshot captured before the source's latest one (``stale``) only adds papers and fills
empty fields: it neither drops papers nor overwrites newer values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from service import clean
from service.identity import arxiv_key, normalise_title, title_key
from service.model import (
    Change,
    Incoming,
    Known,
    NewPaper,
    Organisation,
    PaperIn,
    Plan,
    Stored,
    Update,
)

# Fields whose change is worth an ``updated`` event; the others are kept up to date silently.
TOLD = frozenset(
    {"title", "abstract", "arxiv_id", "version", "authors", "author_count", "organisation",
     "published", "upvotes", "links", "doi"}
)  # fmt: skip


def identify(
    papers: Iterable[PaperIn], fingerprints: Iterable[str] | None = None
) -> list[Incoming]:
    """Give each parsed paper its keys (arXiv first) and a fingerprint of its content: the
    ``fingerprints`` given (by a parser that knows all a paper's content depends on, such as
    the bytes of its block), else ``fingerprint(paper)``. Every paper that may enter the store
    passes here, so here its text and links are cleaned (see ``service.clean``)."""
    cleaned = map(clean.paper, papers)
    pairs: Iterable[tuple[PaperIn, str]] = (
        ((paper, fingerprint(paper)) for paper in cleaned)
        if fingerprints is None
        else zip(cleaned, fingerprints, strict=True)
    )
    return [Incoming(paper, _keys(paper), print_) for paper, print_ in pairs]


def _keys(paper: PaperIn) -> tuple[str, ...]:
    by_title = title_key(paper.title)
    keys = (by_title,) if by_title else ()
    return (arxiv_key(paper.arxiv_id), *keys) if paper.arxiv_id else keys


def fingerprint(paper: PaperIn) -> str:
    """A digest of everything a source says about a paper, to skip unchanged ones quickly."""
    digest = hashlib.blake2b(paper.title.encode(), digest_size=16)
    digest.update(b"\x1f")
    digest.update(paper.abstract.encode())
    rest = (
        paper.arxiv_id,
        paper.version,
        paper.doi,
        paper.authors,
        paper.author_count,
        paper.organisation,
        paper.published,
        paper.upvotes,
        sorted(paper.links.items()) if paper.links else None,
        paper.categories,
        paper.keywords,
        paper.summary,
    )
    digest.update(repr(rest).encode())
    return digest.hexdigest()


# An incoming item is a parsed paper, or the id of a paper this source shows exactly as it did
# last time, present (the parser's fingerprint of the bytes equals the stored one): such an
# entry was not even parsed. Both take part in the decision in their order.
Item = Incoming | int


def resolve(incoming: Sequence[Item], known: Mapping[str, Known]) -> list[Known | None]:
    """The known paper each incoming one is, or None: by arXiv id, else by title (None for
    unchanged entries, which need no resolving).

    A title match is refused when both sides carry different arXiv ids: two papers may share a
    title.
    """
    result: list[Known | None] = []
    for item in incoming:
        found = None
        if isinstance(item, int):
            result.append(None)
            continue
        for key in item.keys:
            hit = known.get(key)
            if hit is None:
                continue
            theirs, ours = hit.arxiv_id, item.paper.arxiv_id
            if key.startswith("title:") and theirs and ours and theirs != ours:
                continue
            found = hit
            break
        result.append(found)
    return result


def needs_compare(incoming: Sequence[Item], matches: Sequence[Known | None]) -> set[int]:
    """Ids of matched papers whose content in this source may have changed (by their first
    entry: ``decide`` takes a repeated entry for no more than a repeat)."""
    seen: set[int] = set()
    result = set()
    for item, hit in zip(incoming, matches, strict=True):
        paper_id = item if isinstance(item, int) else hit.paper_id if hit is not None else None
        if paper_id is None or paper_id in seen:
            continue
        seen.add(paper_id)
        if hit is not None and not isinstance(item, int) and hit.fingerprint != item.fingerprint:
            result.add(paper_id)
    return result


def identify_blocks(
    known: Sequence[Sequence[int] | None],
    entries: Callable[[int], Sequence[tuple[PaperIn, str]]],
    describe: Callable[[int, int], tuple[int | None, str]],
) -> tuple[list[Item], Callable[[int], tuple[int | None, str]]]:
    """``identify`` for a snapshot in blocks of bytes, each holding one or more entries.

    ``known[block]`` is the ids of the present papers a block shows exactly as the store last
    saw them (its bytes are fingerprinted as those papers are), or None: those entries become
    paper ids, unparsed. ``entries(block)`` parses the others: entries with fingerprints.
    Returns the items in order, and the (line, title) of an unparsed item by its position, for
    messages (``describe(block, entry)`` gives them, parsing no more than it must).
    """
    papers: list[PaperIn] = []
    prints: list[str] = []
    order: list[int | None] = []  # per item: an unparsed entry's paper id, or None
    unparsed: dict[int, tuple[int, int]] = {}  # position -> (block, entry)
    for block, ids in enumerate(known):
        if ids is None:
            for paper, print_ in entries(block):
                papers.append(paper)
                prints.append(print_)
                order.append(None)
        else:
            for entry, paper_id in enumerate(ids):
                unparsed[len(order)] = (block, entry)
                order.append(paper_id)
    incoming = iter(identify(papers, prints))
    items: list[Item] = [next(incoming) if paper_id is None else paper_id for paper_id in order]

    def at(position: int) -> tuple[int | None, str]:
        return describe(*unparsed[position])

    return items, at


def keys_of(incoming: Iterable[Item]) -> list[str]:
    """The keys to look up for the parsed items."""
    return [key for item in incoming if not isinstance(item, int) for key in item.keys]


def decide(
    incoming: Sequence[Item],
    matches: Sequence[Known | None],
    stored: Mapping[int, Stored],
    present: Iterable[int],
    *,
    known_keys: Mapping[str, Known],
    stale: bool = False,
    whole: bool = True,
    new_announce: frozenset[str] = frozenset({"new", "cross"}),
    unparsed: Callable[[int], tuple[int | None, str]] | None = None,
) -> Plan:
    """Compare one snapshot's papers with the store: new, listed, updated, dropped.

    Only a ``whole`` snapshot (all that its source lists now) drops what it leaves out; a
    ``stale`` one (captured before the source's latest) and a partial one (files given by hand,
    which are not one listing) never do.

    An arXiv entry announced as something other than ``new_announce`` (a replacement) updates
    a known paper but never makes a new one. An unchanged entry (a paper id, see ``Item``)
    only counts as seen; ``unparsed(position)`` gives its line and title, for the note when it
    is a repeat.
    """
    new: list[NewPaper] = []
    new_keys: set[str] = set()
    listed: list[int] = []
    updates: list[Update] = []
    aliases: list[tuple[str, int]] = []
    fingerprints: list[tuple[int, str]] = []
    notes: list[str] = []
    seen: set[int] = set()
    for position, (item, hit) in enumerate(zip(incoming, matches, strict=True)):
        if isinstance(item, int):
            # Shown byte for byte as before, and present: nothing changes but being seen.
            if item in seen:
                assert unparsed is not None, "unchanged entries need unparsed"
                line, title = unparsed(position)
                notes.append(f"line {line}: {title[:60]!r} listed twice")
            else:
                seen.add(item)
            continue
        if hit is None:
            announce = item.paper.announce
            if announce is not None and announce not in new_announce:
                notes.append(f"{item.paper.title[:60]!r}: {announce} of a paper not seen before")
                continue
            keys = item.keys
            for key in keys:
                if key in known_keys or key in new_keys:  # only the unclaimed keys are its own
                    keys = tuple(k for k in keys if k not in known_keys and k not in new_keys)
                    break
            if not keys or (item.paper.arxiv_id and keys[0] != item.keys[0]):
                notes.append(f"line {item.paper.line}: {item.paper.title[:60]!r} listed twice")
                continue
            new_keys.update(keys)
            new.append(NewPaper(item.paper, keys, item.fingerprint))
            continue
        paper_id = hit.paper_id
        if paper_id in seen:
            notes.append(f"line {item.paper.line}: {item.paper.title[:60]!r} listed twice")
            continue
        seen.add(paper_id)
        if hit.fingerprint is None or (not hit.present and not stale):
            listed.append(paper_id)
        if hit.fingerprint != item.fingerprint:
            fingerprints.append((paper_id, item.fingerprint))
            before = stored.get(paper_id)
            if before is not None:
                update = compare(paper_id, before, item.paper, fill_only=stale)
                if update is not None:
                    updates.append(update)
        for key in item.keys:
            if key not in known_keys and key not in new_keys:
                new_keys.add(key)
                aliases.append((key, paper_id))
    dropped = tuple(sorted(set(present) - seen)) if whole and not stale else ()
    return Plan(
        new=tuple(new),
        listed=tuple(listed),
        updates=tuple(updates),
        dropped=dropped,
        aliases=tuple(aliases),
        fingerprints=tuple(fingerprints),
        notes=tuple(notes),
    )


def compare(paper_id: int, before: Stored, paper: PaperIn, *, fill_only: bool) -> Update | None:
    """The fields of ``before`` that ``paper`` changes, by the merge rules in the docstring."""
    values: dict[str, Any] = {}
    for name, old, new in _candidates(before, paper):
        if new is None or new in ("", ()) or new == old:
            continue
        if fill_only and old not in (None, "", (), {}):
            continue
        values[name] = new
    if not values:
        return None
    # Fill-only snapshots are old news: they complete a paper without telling anyone.
    told = not fill_only and any(name in TOLD for name in values)
    changes = tuple(
        Change(name, _jsonable(getattr(before, name)), _jsonable(value))
        for name, value in values.items()
    )
    return Update(paper_id, values, changes, told)


def _candidates(before: Stored, paper: PaperIn) -> Iterable[tuple[str, Any, Any]]:
    if normalise_title(paper.title) != normalise_title(before.title):
        yield "title", before.title, paper.title
    if " ".join(paper.abstract.split()) != " ".join(before.abstract.split()):
        yield "abstract", before.abstract, paper.abstract
    yield "arxiv_id", before.arxiv_id, None if before.arxiv_id else paper.arxiv_id
    if paper.version is not None and (before.version or 0) < paper.version:
        yield "version", before.version, paper.version
    yield "doi", before.doi, paper.doi
    yield "authors", before.authors, paper.authors
    count = paper.author_count
    if count is not None and not paper.authors and before.authors and count == len(before.authors):
        count = None
    yield "author_count", before.author_count, count
    yield "organisation", before.organisation, paper.organisation
    yield "published", before.published, paper.published
    yield "upvotes", before.upvotes, paper.upvotes
    if paper.links:
        merged = {**before.links, **paper.links}
        yield "links", dict(before.links), merged if merged != dict(before.links) else None
    yield "categories", before.categories, paper.categories
    yield "keywords", before.keywords, paper.keywords
    yield "summary", before.summary, paper.summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, Organisation):
        return {"handle": value.handle, "name": value.name}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
