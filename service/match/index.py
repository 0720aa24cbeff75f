"""Matching papers against every profile at once, and scoring each match with its reasons.

Everything is decided by set operations on *keys*. A paper holds: its title and abstract words
(text keys from :mod:`service.match.text`), its title words again as ``t:key``, author and
organisation words as ``a:key`` and ``o:key``, its sources as ``s:id``, every two adjacent
words of a field as ``tag+key key``, and for wildcards the first letters of its words as
``*tag+letters``. A query compiles to a plan in which each group of such terms is one C-level
set test; only long phrases, long wildcards and ``abstract:`` terms look at word positions.

``ProfileIndex`` gives each key its profiles use a small integer id, and holds each profile
as tuples of ids: keys it requires, groups of keys one of each of which it requires, keys it
forbids, and the rest of its plan. It files each profile under the keys of the rarest
positive part of its query (every alternative of an OR), so that every paper it matches
holds one of them. Papers are matched in batches: each key becomes a bit set of the batch's
papers holding it, the profiles filed under the batch's keys are tested once each with a few
operations on those bit sets, and only the (profile, paper) pairs that pass are looked at one
by one, to score them. A batch thus costs time in proportion to the profiles its keys reach
and to the matches, not to profiles × papers. ``match_query`` evaluates one query directly,
for previews.

``DocumentStats.df`` counts the plain keys (words, ``t:``, ``a:``, ``o:``, ``s:``) per document.

Score: the sum, over the query's positive terms (not under a NOT) found in the paper, of
``weight[field] × idf × (1 + ln(occurrences in the field))``, with BM25's idf from
``DocumentStats`` (1.0 without stats; a phrase adds its words' idfs), plus
``upvote_boost × ln(1 + upvotes)``. The reasons list those terms, field by field.
"""

from __future__ import annotations

import gc
import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cache
from itertools import chain, compress, count, pairwise
from operator import attrgetter, itemgetter
from sys import intern
from types import MappingProxyType
from typing import cast

from service.match.query import (
    And,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Scope,
    Source,
    Upvotes,
    Word,
)
from service.match.results import Match, Reason, new_match, new_reason
from service.match.text import balanced, bounds_of, forms_of, pieces, word_forms
from service.model import Paper

__all__ = [
    "FIELD_WEIGHTS",
    "Document",
    "DocumentStats",
    "PreparedDocument",
    "ProfileIndex",
    "document_from_paper",
    "document_terms",
    "match_query",
    "prepare",
    "query_matches",
    "stats_from",
]

# The keys a paper holds, as plans test them: strings, or an index's ids for them.
Held = AbstractSet[Hashable]

FIELD_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"title": 3.0, "abstract": 1.0, "author": 2.0, "org": 2.0, "source": 0.5, "upvotes": 0.0}
)


@dataclass(frozen=True, slots=True)
class Document:
    """A paper as matching sees it: plain values only."""

    id: int
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    org_handle: str = ""
    org_name: str = ""
    sources: tuple[str, ...] = ()
    upvotes: int = 0

    def text(self, field: str) -> str:
        """The text that a ``Reason``'s positions for ``field`` index into."""
        if field == "title":
            return self.title
        if field == "abstract":
            return self.abstract
        if field == "author":
            return ", ".join(a for a in self.authors if a)
        if field == "org":
            return " ".join(part for part in (self.org_handle, self.org_name) if part)
        if field == "source":
            return ", ".join(self.sources)
        if field == "upvotes":
            return str(self.upvotes)
        raise ValueError(f"unknown field {field!r}")


def document_from_paper(paper: Paper) -> Document:
    """The ``Document`` for a stored paper."""
    org = paper.organisation
    return Document(
        id=paper.id,
        title=paper.title,
        abstract=paper.abstract,
        authors=paper.authors,
        org_handle=org.handle if org else "",
        org_name=org.name if org else "",
        sources=paper.sources,
        upvotes=paper.upvotes,
    )


@dataclass(frozen=True, slots=True)
class DocumentStats:
    """How many documents there are, and in how many each key occurs."""

    total: int
    df: Mapping[str, int]


_GAP = ""  # between two authors, or an organisation's handle and name: no phrase spans it
_NORM, _KEY = itemgetter(0), itemgetter(1)


class _FieldText:
    """One field of a document: its keys in order; norms, positions and offsets on demand."""

    __slots__ = (
        "_ends",
        "_forms",
        "_formset",
        "_key_at",
        "_keyset",
        "_norm_at",
        "_norms",
        "_pieces",
        "_starts",
        "_word_forms",
        "keys",
        "segments",
        "words",
    )

    def __init__(self, segments: tuple[tuple[str, int], ...]) -> None:
        self.segments = segments
        # Split once: the words, and their offsets later if a reason needs them (a document
        # kept long sheds the split text, most of its memory: see ``shed``).
        self._pieces: list[list[str]] | None = [pieces(text) for text, _ in segments]
        split_texts = self._pieces
        if len(segments) == 1:
            # Interned: many documents share one string per spelling, not one each.
            written = list(map(intern, split_texts[0][1::2]))
        else:
            written = []
            for split in split_texts:
                if written:
                    written.append(_GAP)
                written += map(intern, split[1::2])
        self.words = written
        # (norm, key) of each word: one lookup, for the norms that wildcards may want later.
        self._word_forms = forms_of(written)
        self.keys = tuple(map(_KEY, self._word_forms))
        self._keyset: frozenset[str] | None = frozenset(self.keys)
        self._norms: tuple[str, ...] | None = None
        self._forms: list[str] | None = None
        self._formset: frozenset[str] | None = None
        self._starts: list[int] | None = None
        self._ends: list[int] = []
        self._key_at: _Bounds | None = None
        self._norm_at: _Bounds | None = None

    @property
    def keyset(self) -> frozenset[str]:
        """The distinct keys."""
        keyset = self._keyset
        if keyset is None:
            keyset = self._keyset = frozenset(self.keys)
        return keyset

    def shed(self) -> None:
        """Forget what was computed on demand (norms, forms, offsets, even the set of keys),
        keeping the words."""
        self._keyset = None
        self._pieces = None
        self._norms = self._forms = self._formset = self._starts = None
        self._ends = []
        self._key_at = self._norm_at = None

    def norms(self) -> tuple[str, ...]:
        """Norms aligned with ``keys``."""
        if self._norms is None:
            self._norms = tuple(map(_NORM, self._word_forms))
        return self._norms

    def formset(self) -> frozenset[str]:
        """Every distinct norm and key."""
        if self._formset is None:
            self._formset = self.keyset.union(self.norms()) - {_GAP}
        return self._formset

    def forms(self) -> list[str]:
        """Every distinct norm and key, sorted, for prefix search."""
        if self._forms is None:
            self._forms = sorted(self.formset())
        return self._forms

    def _bounds(self) -> tuple[list[int], list[int]]:
        """Start and end offsets aligned with ``keys``, in the text of the whole field."""
        if self._starts is None:
            split_texts = self._pieces or [pieces(text) for text, _ in self.segments]
            if len(self.segments) == 1 and not self.segments[0][1]:
                self._starts, self._ends = bounds_of(split_texts[0])
            else:
                starts: list[int] = []
                ends: list[int] = []
                for (_, offset), split in zip(self.segments, split_texts, strict=True):
                    if starts:
                        starts.append(offset)
                        ends.append(offset)
                    begun, ended = bounds_of(split)
                    starts += [offset + a for a in begun]
                    ends += [offset + b for b in ended]
                self._starts, self._ends = starts, ends
        return self._starts, self._ends

    def spans(self) -> list[tuple[int, int]]:
        """Offsets aligned with ``keys``, in the text of the whole field."""
        return list(zip(*self._bounds(), strict=True))

    def offsets(self, at: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """The offsets of the words at these positions."""
        starts, ends = self._bounds()
        if len(at) == 1:
            i = at[0]
            return ((starts[i], ends[i]),)
        return tuple(zip(map(starts.__getitem__, at), map(ends.__getitem__, at), strict=True))

    def _index(self) -> _Bounds:
        if self._key_at is None:
            self._key_at = _bounds(self.keys)
        return self._key_at

    def at(self, key: str) -> list[int]:
        """Where ``key`` occurs."""
        return _find(self.keys, self._key_at or self._index(), key)

    def norm_at(self, norm: str) -> list[int]:
        """Where a word whose norm is ``norm`` occurs."""
        if self._norm_at is None:
            self._norm_at = _bounds(self.norms())
        return _find(self.norms(), self._norm_at, norm)

    def has_prefix(self, stem: str) -> bool:
        forms = self.forms()
        i = bisect_left(forms, stem)
        return i < len(forms) and forms[i].startswith(stem)

    def has_phrase(self, phrase: tuple[str, ...]) -> bool:
        if not self.keyset.issuperset(phrase):
            return False
        n, ks = len(phrase), self.keys
        return any(ks[i : i + n] == phrase for i in self.at(phrase[0]))

    def word_spans(self, key: str) -> tuple[tuple[int, int], ...]:
        """Offsets of ``key``, which the field holds."""
        first, last = self._key_at if self._key_at is not None else self._index()
        i = first[key]
        starts, ends = (self._starts, self._ends) if self._starts is not None else self._bounds()
        if i == last[key]:
            return ((starts[i], ends[i]),)
        return self.offsets(_find(self.keys, (first, last), key))

    def phrase_spans(self, phrase: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
        if not self.keyset.issuperset(phrase):
            return ()
        n, ks = len(phrase), self.keys
        at = [i for i in self.at(phrase[0]) if ks[i : i + n] == phrase]
        if not at:
            return ()
        starts, ends = self._bounds()
        return tuple([self._balanced(starts[i], ends[i + n - 1]) for i in at])

    def _balanced(self, start: int, end: int) -> tuple[int, int]:
        """A phrase's span with the brackets it opens or closes inside it (``text.balanced``)."""
        for text, offset in self.segments:
            if offset <= start <= offset + len(text):
                a, b = balanced(text, start - offset, end - offset)
                return a + offset, b + offset
        return start, end

    def prefix_at(self, stem: str) -> tuple[list[int], tuple[str, ...]] | None:
        """Where the words whose norm or key starts with ``stem`` are, and their keys; None
        if there are none."""
        forms = self._forms if self._forms is not None else self.forms()
        i = bisect_left(forms, stem)
        if i == len(forms) or not forms[i].startswith(stem):
            return None
        keys, form = self.keys, forms[i]
        if i + 1 == len(forms) or not forms[i + 1].startswith(stem):
            # One form: the words whose key it is, and those whose norm it is (which share
            # one key).
            at_key, at_norm = self.at(form), self.norm_at(form)
            if not at_norm or at_key == at_norm:
                return at_key, (form,)
            if not at_key:
                return at_norm, (keys[at_norm[0]],)
            return sorted({*at_key, *at_norm}), (form, keys[at_norm[0]])
        at: list[int] = []
        while i < len(forms) and forms[i].startswith(stem):
            at += self.at(forms[i])
            at += self.norm_at(forms[i])
            i += 1
        at = sorted(set(at))
        return at, tuple(set(map(keys.__getitem__, at)))

    def prefix_spans(self, stem: str) -> tuple[tuple[tuple[int, int], ...], set[str]]:
        """Offsets of the words whose norm or key starts with ``stem``, and their keys."""
        found = self.prefix_at(stem)
        if found is None:
            return (), set()
        return self.offsets(found[0]), set(found[1])


# Where each item of a sequence first occurs, and where it last does.
_Bounds = tuple[dict[str, int], dict[str, int]]


def _bounds(items: tuple[str, ...]) -> _Bounds:
    """Where each item first occurs, and where it last does (a C loop each, where a dict of
    every item's positions would take a Python step per item)."""
    last = len(items) - 1
    return dict(zip(reversed(items), range(last, -1, -1), strict=True)), dict(zip(items, count()))


def _find(items: tuple[str, ...], bounds: _Bounds, item: str) -> list[int]:
    """Where ``item`` occurs in ``items``, whose bounds these are."""
    first, last = bounds
    i = first.get(item)
    if i is None:
        return []
    j = last[item]
    at = [i]
    while i != j:
        i = items.index(item, i + 1, j + 1)
        at.append(i)
    return at


_EMPTY = _FieldText(())


def _segments(parts: Iterable[str], separator: str) -> tuple[tuple[str, int], ...]:
    """Non-empty ``parts`` with their offsets in ``separator.join(non-empty parts)``."""
    out, offset = [], 0
    for part in parts:
        if part:
            out.append((part, offset))
            offset += len(part) + len(separator)
    return tuple(out)


# Keys. A term is "keyed" when one key tells exactly whether a paper has it.

_KEY_TAGS: Mapping[str | None, str] = MappingProxyType(
    {None: "", "title": "t:", "abstract": "", "author": "a:", "org": "o:"}
)
_IDF_TAGS: Mapping[str | None, str] = MappingProxyType(
    {None: "", "title": "", "abstract": "", "author": "a:", "org": "o:"}
)
_TEXT_TERMS = (Word, Phrase, Prefix)
_KEYED = (Word, Phrase, Prefix, Source)
_GROUPS = (And, Or)
# A key every paper holds: the gate of a profile that has no gate.
_ALWAYS = "*"
_ALWAYS_KEYS = frozenset((_ALWAYS,))
# Wildcard stems up to this long are keys; a longer one is keyed by its first letters, then
# checked word by word.
_MAX_STEM = 8
_EVERY_SIZE = tuple(range(2, _MAX_STEM + 1))


class PreparedDocument:
    """A document tokenised once, to evaluate many queries against it (see :func:`prepare`).

    ``terms`` holds its plain keys; :meth:`pairs` its adjacent pairs; :meth:`held` adds
    wildcard letters.
    """

    __slots__ = (
        "_held",
        "_pairs",
        "_spellings",
        "_terms",
        "abstract",
        "author",
        "document",
        "org",
        "sources",
        "title",
    )

    def __init__(self, document: Document) -> None:
        self.document = document
        self.title = _FieldText(((document.title, 0),)) if document.title else _EMPTY
        self.abstract = _FieldText(((document.abstract, 0),)) if document.abstract else _EMPTY
        authors = _segments(document.authors, ", ")
        self.author = _FieldText(authors) if authors else _EMPTY
        org = _segments((document.org_handle, document.org_name), " ")
        self.org = _FieldText(org) if org else _EMPTY
        self.sources = frozenset(s.casefold() for s in document.sources)
        self._terms: frozenset[str] | None = None
        self._held: dict[tuple[int, ...], set[str]] = {}
        self._pairs: frozenset[str] | None = None
        self._spellings: tuple[tuple[str, frozenset[str]], ...] | None = None

    def shed(self) -> None:
        """Forget what was computed on demand, keeping the words: a document kept prepared
        for a long time (see ``match.corpus``) stays small."""
        self._terms = self._pairs = self._spellings = None
        self._held = {}
        for f in (self.title, self.abstract, self.author, self.org):
            if f is not _EMPTY:
                f.shed()

    @property
    def terms(self) -> frozenset[str]:
        """The plain keys: words, ``t:``, ``a:`` and ``o:`` words, ``s:`` sources."""
        if self._terms is None:
            terms = set(self.title.keyset)
            terms.update(self.abstract.keyset)
            terms.update(["t:" + k for k in self.title.keyset])
            terms.update(["a:" + k for k in self.author.keyset])
            terms.update(["o:" + k for k in self.org.keyset])
            terms.update(["s:" + s for s in self.sources])
            terms.difference_update((_GAP, "t:", "a:", "o:"))
            self._terms = frozenset(terms)
        return self._terms

    def pairs(self) -> frozenset[str]:
        """The keys of every two adjacent words of a field (``tag+key key``)."""
        if self._pairs is None:
            pairs: set[str] = set()
            for tag, fields in self._tagged():
                for f in fields:
                    adjacent = map(" ".join, pairwise(f.keys))
                    pairs.update(map(tag.__add__, adjacent) if tag else adjacent)
            self._pairs = frozenset(pairs)
        return self._pairs

    def spellings(self) -> tuple[tuple[str, frozenset[str]], ...]:
        """``(tag, distinct words as written)`` for each group of fields that wildcards with
        that tag search."""
        if self._spellings is None:
            self._spellings = tuple(
                (tag, frozenset().union(*(f.words for f in fields)) - {_GAP})
                for tag, fields in self._tagged()
            )
        return self._spellings

    def held(self, sizes: tuple[int, ...] = ()) -> set[str]:
        """Every key the document holds, with its words' first letters in these counts."""
        held = self._held.get(sizes)
        if held is None:
            held = set(self.terms)
            held.update(self.pairs())
            if sizes:
                for tag, fields in self._tagged():
                    forms = set().union(*(f.formset() for f in fields))
                    marked = ["*" + tag + form for form in forms]
                    for n in sizes:
                        held.update(map(_cut(len(tag) + 1 + n), marked))
            held.add(_ALWAYS)
            if len(self._held) > 1:  # an index's sizes, and every size for previews
                self._held.clear()
            self._held[sizes] = held
        return held

    def _tagged(self) -> Iterable[tuple[str, tuple[_FieldText, ...]]]:
        yield "", tuple(f for f in (self.title, self.abstract) if f is not _EMPTY)
        for tag, f in (("t:", self.title), ("a:", self.author), ("o:", self.org)):
            if f is not _EMPTY:
                yield tag, (f,)

    def fields(self, scope: Scope | None) -> tuple[tuple[str, _FieldText], ...]:
        """``(name, field)`` pairs that a term with this scope searches."""
        if scope is None:
            return (("title", self.title), ("abstract", self.abstract))
        return ((scope, self.field(scope)),)

    def field(self, scope: Scope) -> _FieldText:
        if scope == "title":
            return self.title
        if scope == "abstract":
            return self.abstract
        return self.author if scope == "author" else self.org


@cache
def _cut(n: int) -> Callable[[str], str]:
    """A function giving the first ``n`` characters of a string, without a Python frame."""
    return itemgetter(slice(0, n))


def prepare(document: Document | PreparedDocument) -> PreparedDocument:
    """``document`` tokenised once, to evaluate many queries against it."""
    return document if isinstance(document, PreparedDocument) else PreparedDocument(document)


def document_terms(document: Document | PreparedDocument) -> frozenset[str]:
    """The plain keys that occur in ``document`` (what ``DocumentStats.df`` counts)."""
    return frozenset(prepare(document).terms)


def stats_from(documents: Iterable[Document | PreparedDocument]) -> DocumentStats:
    """Document frequencies of every plain key over ``documents``."""
    df: dict[str, int] = {}
    total = 0
    for document in documents:
        total += 1
        for key in prepare(document).terms:
            df[key] = df.get(key, 0) + 1
    return DocumentStats(total, df)


def _key(node: Node) -> str | None:
    """The key that tells exactly whether a paper has ``node``, if there is one."""
    if isinstance(node, Source):
        return "s:" + node.id
    if isinstance(node, _TEXT_TERMS) and node.scope != "abstract":
        tag = _KEY_TAGS[node.scope]
        if isinstance(node, Word):
            return tag + node.key
        if isinstance(node, Phrase) and len(node.keys) == 2:
            return f"{tag}{node.keys[0]} {node.keys[1]}"
        if isinstance(node, Prefix) and len(node.stem) <= _MAX_STEM:
            return f"*{tag}{node.stem}"
    return None


def _necessary(node: Word | Phrase | Prefix | Source) -> list[str]:
    """Keys every paper having ``node`` holds (each one of them): its key, or its pairs."""
    key = _key(node)
    if key is not None:
        return [key]
    tag = _KEY_TAGS[node.scope] if not isinstance(node, Source) else ""
    if isinstance(node, Phrase):
        return [f"{tag}{a} {b}" for a, b in pairwise(node.keys)]
    if isinstance(node, Prefix):
        return [f"*{tag}{node.stem[:_MAX_STEM]}"]
    assert isinstance(node, Word)
    return [tag + node.key]


def _stem_size(node: Node) -> int | None:
    return min(len(node.stem), _MAX_STEM) if isinstance(node, Prefix) else None


def _nodes(root: Node) -> Iterable[Node]:
    """Every node of a query, depth first."""
    pending = [root]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, _GROUPS):
            pending += node.terms
        elif isinstance(node, Not):
            pending.append(node.term)


# Plans: what a query compiles to for evaluation.


class _Check:
    """A compiled part of a query: ``ok`` tells whether a paper holding ``held`` passes.

    Keys are strings; the index replaces them with its ids for them (see :func:`_rekey`).
    """

    __slots__ = ()

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        raise NotImplementedError


class _All(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys: frozenset[Hashable] = frozenset(keys)

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return self.keys <= held


class _Any(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys: frozenset[Hashable] = frozenset(keys)

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return not self.keys.isdisjoint(held)


class _NoneOf(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys: frozenset[Hashable] = frozenset(keys)

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return self.keys.isdisjoint(held)


class _Every(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: Iterable[_Check]) -> None:
        self.checks = tuple(checks)

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        # A plain loop: all() over a generator costs more than the checks themselves.
        for check in self.checks:  # noqa: SIM110
            if not check.ok(held, d):
                return False
        return True


class _Either(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: Iterable[_Check]) -> None:
        self.checks = tuple(checks)

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        for check in self.checks:  # noqa: SIM110
            if check.ok(held, d):
                return True
        return False


class _Without(_Check):
    __slots__ = ("check",)

    def __init__(self, check: _Check) -> None:
        self.check = check

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return not self.check.ok(held, d)


class _Exact(_Check):
    """A term without a key of its own: its necessary keys first, then word positions."""

    __slots__ = ("needed", "node")

    def __init__(self, node: Word | Phrase | Prefix) -> None:
        self.node = node
        self.needed: frozenset[Hashable] = frozenset(_necessary(node))

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return self.needed <= held and _found(self.node, d)


class _Votes(_Check):
    __slots__ = ("node",)

    def __init__(self, node: Upvotes) -> None:
        self.node = node

    def ok(self, held: Held, d: PreparedDocument) -> bool:
        return _compare(d.document.upvotes, self.node)


def _found(node: Word | Phrase | Prefix, d: PreparedDocument) -> bool:
    """Whether ``d`` has the term, looking at its words."""
    fields = d.fields(node.scope)
    if isinstance(node, Word):
        return any(node.key in f.keyset for _, f in fields)
    if isinstance(node, Phrase):
        return any(f.has_phrase(node.keys) for _, f in fields)
    return any(f.has_prefix(node.stem) for _, f in fields)


def _compare(upvotes: int, node: Upvotes) -> bool:
    op, value = node.op, node.value
    if op == ">=":
        return upvotes >= value
    if op == ">":
        return upvotes > value
    if op == "<=":
        return upvotes <= value
    if op == "<":
        return upvotes < value
    return upvotes == value


def _compile(node: Node, cost: Callable[[Node], float] | None = None) -> _Check:
    """The plan of ``node``; ``cost`` orders each AND's parts, the rarest (likeliest to fail)
    first. Keyed terms of a group become one set test."""
    if isinstance(node, And):
        wanted, unwanted, rest = [], [], []
        for term in node.terms:
            key = _key(term)
            negated = _key(term.term) if isinstance(term, Not) else None
            if key is not None:
                wanted.append(key)
            elif negated is not None:
                unwanted.append(negated)
            else:
                rest.append(term)
        if cost is not None:
            rest.sort(key=cost)
        checks: list[_Check] = [_All(wanted)] if wanted else []
        checks += [_compile(t, cost) for t in rest]
        checks += [_NoneOf(unwanted)] if unwanted else []
        return checks[0] if len(checks) == 1 else _Every(checks)
    if isinstance(node, Or):
        keys = [k for k in map(_key, node.terms) if k is not None]
        alternatives: list[_Check] = [_Any(keys)] if keys else []
        alternatives += [_compile(t, cost) for t in node.terms if _key(t) is None]
        return alternatives[0] if len(alternatives) == 1 else _Either(alternatives)
    if isinstance(node, Not):
        key = _key(node.term)
        return _NoneOf([key]) if key is not None else _Without(_compile(node.term, cost))
    if isinstance(node, Upvotes):
        return _Votes(node)
    key = _key(node)
    if key is not None:
        return _All([key])
    assert not isinstance(node, Source)
    return _Exact(node)


def _sizes(roots: Iterable[Node]) -> tuple[int, ...]:
    """The wildcard letter counts that papers must offer for these queries."""
    found = {size for root in roots for n in _nodes(root) if (size := _stem_size(n))}
    return tuple(sorted(found))


def _plan_keys(check: _Check) -> Iterator[Hashable]:
    """Every key that a plan tests."""
    if isinstance(check, _All | _Any | _NoneOf):
        yield from check.keys
    elif isinstance(check, _Exact):
        yield from check.needed
    elif isinstance(check, _Every | _Either):
        for part in check.checks:
            yield from _plan_keys(part)
    elif isinstance(check, _Without):
        yield from _plan_keys(check.check)


def _rekey(check: _Check, canonical: Callable[[frozenset[Hashable]], frozenset[Hashable]]) -> None:
    """Replace the key sets of a plan with ``canonical`` ones, in place."""
    if isinstance(check, _All | _Any | _NoneOf):
        check.keys = canonical(check.keys)
    elif isinstance(check, _Exact):
        check.needed = canonical(check.needed)
    elif isinstance(check, _Every | _Either):
        for part in check.checks:
            _rekey(part, canonical)
    elif isinstance(check, _Without):
        _rekey(check.check, canonical)


def _stems(root: Node) -> frozenset[str]:
    """The keys of the wildcards of a query (what papers' words are tested for)."""
    return frozenset(_necessary(n)[0] for n in _nodes(root) if isinstance(n, Prefix))


def query_matches(query: Query, document: Document | PreparedDocument) -> bool:
    """Whether ``document`` matches ``query`` (no index, no score)."""
    d = prepare(document)
    return _compile(query.root).ok(d.held(_EVERY_SIZE), d)


# Scoring.


class _Term:
    """A positive query term as scoring sees it; the index shares equal terms of profiles.

    ``probe`` is a key the paper must hold for the term to hit anywhere (``_ALWAYS`` for an
    upvotes condition), so that most terms are dismissed with one set lookup.
    """

    __slots__ = ("fields", "idf_keys", "label", "node", "probe")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.label = _label(node)
        self.probe = _necessary(node)[0] if isinstance(node, _KEYED) else _ALWAYS
        # The fields it searches, and the keys of its idf (for a wildcard, their tag).
        self.fields: tuple[str, ...] = ("upvotes",)
        self.idf_keys: tuple[str, ...] = ()
        if isinstance(node, _TEXT_TERMS):
            tag = _IDF_TAGS[node.scope]
            self.fields = (node.scope,) if node.scope else ("title", "abstract")
            if isinstance(node, Word):
                self.idf_keys = (tag + node.key,)
            elif isinstance(node, Phrase):
                self.idf_keys = tuple(tag + k for k in node.keys)
            else:
                self.idf_keys = (tag,)
        elif isinstance(node, Source):
            self.fields, self.idf_keys = ("source",), ("s:" + node.id,)


def _label(term: Node) -> str:
    """The term as the query wrote it."""
    if isinstance(term, _KEYED) and term.label:
        return term.label
    return str(Query(term))


def _positive_terms(root: Node) -> list[Node]:
    """The terms of ``root`` that are not under a NOT, in query order, once each."""
    found: list[Node] = []
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, _GROUPS):
            pending += reversed(node.terms)
        elif not isinstance(node, Not):
            found.append(node)
    return list({(t, _label(t)): t for t in found}.values())


# What one term brings to a paper: its score, its reasons, and each reason's share of the score.
_Hit = tuple[float, tuple[Reason, ...], tuple[float, ...]]
_NO_HIT: _Hit = (0.0, (), ())


def _merge(score: float, reasons: Sequence[Reason], hit: _Hit) -> tuple[float, list[Reason]]:
    """``score`` and ``reasons`` with a further term's ``hit`` added, less the reasons already
    there: ``"kv cache" OR kv-cache`` hits the same words once, in the score as in the reasons."""
    seen = {(r.field, r.positions) for r in reasons}
    merged = list(reasons)
    for share, reason in zip(hit[2], hit[1], strict=True):
        if (reason.field, reason.positions) not in seen:
            seen.add((reason.field, reason.positions))
            merged.append(reason)
            score += share
    return score, merged


class _Scorer:
    """Scores matches and gives their reasons, remembering each term's result per paper."""

    def __init__(
        self, stats: DocumentStats | None, weights: Mapping[str, float], upvote_boost: float
    ) -> None:
        self.stats = stats
        self.weights = dict(weights)
        self.upvote_boost = upvote_boost
        self._idf: dict[str, float] = {}

    def idf(self, key: str) -> float:
        known = self._idf.get(key)
        if known is None:
            if self.stats is None:
                return 1.0
            n, df = self.stats.total, self.stats.df.get(key, 0)
            known = self._idf[key] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        return known

    def match(
        self,
        profile_id: int,
        hits: Iterable[_Term],
        d: PreparedDocument,
        known: dict[_Term, _Hit],
    ) -> Match:
        """The match of ``d`` for a query whose positive terms whose probe ``d`` holds are
        ``hits`` (in query order); ``known`` remembers what each term brings to ``d``."""
        score = 0.0
        reasons: tuple[Reason, ...] | list[Reason] = ()
        for term in hits:
            found = known.get(term)
            if found is None:
                found = known[term] = self.explain(term, d)
            if found is not _NO_HIT:
                if reasons:
                    score, reasons = _merge(score, reasons, found)
                else:  # often the only term that hits: its tuple will do
                    score, reasons = score + found[0], found[1]
        boost = self.boost(d)
        if boost:
            score += boost
        return new_match(profile_id, d.document.id, score, tuple(reasons))

    def boost(self, d: PreparedDocument) -> float:
        """What the paper's upvotes add to every match of it."""
        upvotes = d.document.upvotes
        if self.upvote_boost and upvotes > 0:
            return self.upvote_boost * math.log1p(upvotes)
        return 0.0

    def explain(self, term: _Term, d: PreparedDocument) -> _Hit:
        """The score and the reasons that one positive term contributes to ``d``: per field
        hit, ``weight × idf × (1 + ln(occurrences))``, added up in field order."""
        node = term.node
        weights, label = self.weights, term.label
        shares: list[float] = []
        reasons: list[Reason] = []
        if isinstance(node, Word):
            key, idf = node.key, 0.0
            for name in term.fields:
                f: _FieldText = getattr(d, name)
                if key in f.keyset:
                    where = f.word_spans(key)
                    if not reasons:
                        idf = self.idf(term.idf_keys[0])
                    shares.append(weights.get(name, 1.0) * idf * (1.0 + math.log(len(where))))
                    reasons.append(new_reason(label, name, where))
        elif isinstance(node, Prefix):
            tag, stem = term.idf_keys[0], node.stem
            for name in term.fields:
                f = getattr(d, name)
                found = f.prefix_at(stem)
                if found is not None:
                    at, matched = found
                    if len(matched) == 1:
                        idf = self.idf(tag + matched[0])
                    else:
                        idf = max([self.idf(tag + k) for k in matched])
                    shares.append(weights.get(name, 1.0) * idf * (1.0 + math.log(len(at))))
                    reasons.append(new_reason(label, name, f.offsets(at)))
        elif isinstance(node, Phrase):
            keys, idf = node.keys, 0.0
            for name in term.fields:
                f = getattr(d, name)
                if f.keyset.issuperset(keys):
                    where = f.phrase_spans(keys)
                    if where:
                        if not reasons:
                            idf = sum(map(self.idf, term.idf_keys))
                        shares.append(weights.get(name, 1.0) * idf * (1.0 + math.log(len(where))))
                        reasons.append(new_reason(label, name, where))
        elif isinstance(node, Source):
            if node.id in d.sources:
                where = tuple(_source_spans(d.document, node.id))
                idf = self.idf(term.idf_keys[0])
                shares.append(weights.get("source", 1.0) * idf * (1.0 + math.log(len(where))))
                reasons.append(new_reason(label, "source", where))
        elif isinstance(node, Upvotes) and _compare(d.document.upvotes, node):
            where = ((0, len(str(d.document.upvotes))),)
            shares.append(0.0)  # it has no idf
            reasons.append(new_reason(label, "upvotes", where))
        return (sum(shares), tuple(reasons), tuple(shares)) if reasons else _NO_HIT


def _source_spans(document: Document, source_id: str) -> list[tuple[int, int]]:
    found, offset = [], 0
    for source in document.sources:
        if source.casefold() == source_id:
            found.append((offset, offset + len(source)))
        offset += len(source) + 2
    return found


def _best_first(matches: list[Match]) -> list[Match]:
    matches.sort(key=lambda m: (m.profile_id, -m.score, m.document_id))
    return matches


def _rank(match: Match) -> tuple[float, int]:
    """Best first, within one profile."""
    return -match.score, match.document_id


_PROFILE_ID = attrgetter("profile_id")


def match_query(
    query: Query,
    documents: Iterable[Document | PreparedDocument],
    stats: DocumentStats | None = None,
    *,
    profile_id: int = 0,
    weights: Mapping[str, float] = FIELD_WEIGHTS,
    upvote_boost: float = 0.0,
) -> list[Match]:
    """The documents matching one query, best first (a preview: no index needed)."""
    scorer = _Scorer(stats, weights, upvote_boost)
    plan, sizes = _compile(query.root), _sizes([query.root])
    terms = tuple(_Term(t) for t in _positive_terms(query.root))
    probes = tuple(t.probe for t in terms)
    found = []
    for document in documents:
        if isinstance(document, PreparedDocument):
            # Prepared to serve many queries: one set of keys fits them all.
            d, held = document, document.held(_EVERY_SIZE)
        else:
            d = PreparedDocument(document)
            held = d.held(sizes)
        if plan.ok(held, d):
            hits = compress(terms, map(held.__contains__, probes))
            found.append(scorer.match(profile_id, hits, d, {}))
    return _best_first(found)


# The index.

_UNANCHORED = math.inf
# What filing under ``_ALWAYS`` costs without statistics: more than any key.
_EVERY_PAPER = 1e9
# Two adjacent words are much rarer than the rarer of the two: a rough, safe guess.
_PAIR_RARITY = 0.25


class _Planner:
    """Chooses the keys to file a query under, and its gate, from document frequencies
    (without statistics, longer words count as rarer)."""

    def __init__(self, stats: DocumentStats | None) -> None:
        self.stats = stats
        self._vocabulary: list[str] | None = None
        self._costs: dict[str, float] = {}
        self._known: dict[int, tuple[float, frozenset[str]]] = {}  # id(node) -> need

    def key_cost(self, key: str) -> float:
        """How many papers hold ``key``, about."""
        known = self._costs.get(key)
        if known is None:
            known = self._costs[key] = self._key_cost(key)
        return known

    def _key_cost(self, key: str) -> float:
        if key.startswith("*"):
            return self._stem_cost(key[1:])
        head, space, tail = key.partition(" ")
        if space:
            tag = head[:2] if head[1:2] == ":" else ""
            return min(self.key_cost(head), self.key_cost(tag + tail)) * _PAIR_RARITY
        if self.stats is None:
            return 100.0 / (1 + len(key))
        # Ties between unseen words go to the longer word.
        return self.stats.df.get(key, 0) + 1.0 / (1 + len(key))

    def _stem_cost(self, tagged_stem: str) -> float:
        if self.stats is None:
            return 300.0 / len(tagged_stem)
        if self._vocabulary is None:
            self._vocabulary = sorted(self.stats.df)
        vocabulary, df = self._vocabulary, self.stats.df
        total, i = 2.0, bisect_left(vocabulary, tagged_stem)
        while i < len(vocabulary) and vocabulary[i].startswith(tagged_stem):
            total += df[vocabulary[i]]
            if total >= self.stats.total:
                break
            i += 1
        return total

    def need(self, node: Node) -> tuple[float, frozenset[str]]:
        """The cheapest keys one of which every match of ``node`` holds, and their cost."""
        known = self._known.get(id(node))
        if known is None:
            known = self._known[id(node)] = self._need(node)
        return known

    def _need(self, node: Node) -> tuple[float, frozenset[str]]:
        if isinstance(node, _KEYED):
            key = min(_necessary(node), key=self.key_cost)
            return self.key_cost(key), frozenset((key,))
        if isinstance(node, And):
            return min(map(self.need, node.terms), key=_cost)
        if isinstance(node, Or):
            needs = [self.need(t) for t in node.terms]
            if any(cost == _UNANCHORED for cost, _ in needs):
                return _UNANCHORED, frozenset()
            return sum(c for c, _ in needs), frozenset().union(*(k for _, k in needs))
        if isinstance(node, Upvotes):
            # Any paper may meet it: the profile is looked at for every paper.
            return (self.stats.total + 1.0 if self.stats else _EVERY_PAPER), _ALWAYS_KEYS
        return _UNANCHORED, frozenset()

    def file(self, root: Node) -> frozenset[str]:
        """The keys to file a query under: those of its rarest part (every alternative of an
        OR), one of which every paper it matches holds.

        Call it first for each query: it forgets the nodes of the previous one.
        """
        self._known.clear()
        return self.need(root)[1]

    def cost(self, node: Node) -> float:
        return self.need(node)[0]


def _cost(need: tuple[float, frozenset[str]]) -> float:
    return need[0]


_NOTHING: frozenset[str] = frozenset()


def _flatten(
    plan: _Check, cost: Callable[[str], float]
) -> tuple[frozenset[str], frozenset[str], tuple[frozenset[str], ...], _Check | None]:
    """A plan as ``(required, forbidden, groups, rest)``: a paper passes when it holds every
    ``required`` key, no ``forbidden`` key, a key of each of the ``groups``, and ``rest``
    (word positions, upvotes, nested groups) passes. ``groups`` also holds keys that the
    parts of ``rest`` need (one of which a paper passing it holds), to test ``rest`` less
    often; they never turn a paper away that ``rest`` would pass."""
    required: set[str] = set()
    forbidden: set[str] = set()
    groups: list[frozenset[str]] = []
    needs: list[frozenset[str]] = []
    rest: list[_Check] = []
    for part in plan.checks if isinstance(plan, _Every) else (plan,):
        if isinstance(part, _All):
            required |= _strings(part.keys)
        elif isinstance(part, _NoneOf):
            forbidden |= _strings(part.keys)
        elif isinstance(part, _Any):
            groups.append(_strings(part.keys))
        else:
            rest.append(part)
            need = _need(part, cost)
            if need:
                needs.append(need)
    return (
        frozenset(required) if required else _NOTHING,
        frozenset(forbidden) if forbidden else _NOTHING,
        (*groups, *needs),
        (rest[0] if len(rest) == 1 else _Every(rest)) if rest else None,
    )


def _strings(keys: frozenset[Hashable]) -> frozenset[str]:
    """The keys of a plan that the index has not rekeyed yet."""
    return cast("frozenset[str]", keys)


def _need(check: _Check, cost: Callable[[str], float]) -> frozenset[str] | None:
    """Keys one of which every paper passing ``check`` holds, if there are such keys."""
    if isinstance(check, _Any):
        return _strings(check.keys)
    if isinstance(check, _All):
        return frozenset((min(_strings(check.keys), key=cost),))
    if isinstance(check, _Exact):
        return frozenset((min(_strings(check.needed), key=cost),))
    if isinstance(check, _Every):
        found = [n for n in (_need(c, cost) for c in check.checks) if n]
        return min(found, key=lambda keys: sum(map(cost, keys))) if found else None
    if isinstance(check, _Either):
        alternatives = [_need(c, cost) for c in check.checks]
        if all(alternatives):
            return frozenset().union(*alternatives)  # type: ignore[arg-type]
    return None  # NOT and upvotes conditions need no key


@dataclass(slots=True, eq=False)
class _Profile:
    """A profile as the index holds it, its keys replaced with the index's ids for them.

    It is filed under ``keys`` (those of the rarest part of its query): every paper it
    matches holds one of them. A paper matches when it holds all ``required`` keys, no
    ``forbidden`` key, a key of each of the ``groups`` and passes ``rest`` (its plan,
    flattened: see :func:`_flatten`). ``terms`` are its positive terms, shared with the
    other profiles, for scoring, and ``probes`` their probes.
    """

    id: int
    query: Query
    required: tuple[int, ...]
    forbidden: tuple[int, ...]
    groups: tuple[tuple[int, ...], ...]
    rest: _Check | None
    terms: tuple[_Term, ...]
    probes: tuple[int, ...]
    keys: frozenset[int]


def _profile_keys(profile: _Profile) -> set[int]:
    """The ids of every key a profile uses."""
    found = set(profile.keys)
    found.update(profile.required, profile.forbidden, profile.probes, *profile.groups)
    if profile.rest is not None:
        found.update(cast("Iterator[int]", _plan_keys(profile.rest)))
    return found


_TAGS = ("", "t:", "a:", "o:")
# Words whose wildcard keys the index remembers, at most (then it starts over).
_SPELLINGS_LIMIT = 200_000
# Papers matched together: each key's papers are a bit set of at most this many bits.
_BATCH = 1024


class ProfileIndex:
    """Every profile's query in one inverted index; matching costs per profile that may
    match and per match, not per profile × paper.

    Papers are matched in batches (of up to ``_BATCH``): a batch's papers are tokenised once
    and each key they hold becomes a bit set of the papers holding it. Only the profiles
    filed under a key of the batch are looked at, once per batch: their query is a few
    operations on those bit sets, and only papers passing them are looked at one by one
    (the rare terms that need word positions, and scoring).

    ``stats`` picks the keys profiles are filed under (rare keys reach few profiles) and
    scores matches; without it, longer words count as rarer and every idf is 1.0. Keys are
    chosen when a profile is added.
    """

    def __init__(
        self,
        profiles: Mapping[int, Query] | Iterable[tuple[int, Query]] = (),
        *,
        stats: DocumentStats | None = None,
        weights: Mapping[str, float] = FIELD_WEIGHTS,
        upvote_boost: float = 0.0,
    ) -> None:
        self.stats = stats
        self.weights = weights
        self.upvote_boost = upvote_boost
        self._planner = _Planner(stats)
        self._profiles: dict[int, _Profile] = {}
        self._filed: dict[int, set[_Profile]] = {}
        # Every key the profiles use has an id (a small int, one object per key): profiles
        # are tuples of ids, and a batch of papers is a list of bit sets indexed by id.
        # ``_ALWAYS`` is 0. Papers' words are looked up in ``_words``, ``_pairs`` and
        # ``_sources`` (by tag) to find the ids they hold, without building strings.
        self._keys: dict[str, int] = {_ALWAYS: 0}
        self._names: list[str] = [_ALWAYS]  # id -> key ("" when free)
        self._users: list[int] = [0]  # id -> profiles using the key
        self._free: list[int] = []
        self._words: dict[str, dict[str, int]] = {tag: {} for tag in _TAGS}
        self._pairs: dict[str, dict[tuple[str, str], int]] = {tag: {} for tag in _TAGS}
        self._sources: dict[str, int] = {}
        self._wildcards = 0  # wildcard keys in use
        # tag -> word as written -> the ids of the wildcard keys that it holds
        self._spellings: dict[str, dict[str, tuple[int, ...]]] = {}
        self._terms: dict[tuple[Node, str], tuple[_Term, list[int]]] = {}  # shared, counted

        self.add_many(profiles.items() if isinstance(profiles, Mapping) else profiles)

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._profiles

    def query(self, profile_id: int) -> Query:
        """The query of an indexed profile."""
        return self._profiles[profile_id].query

    def add(self, profile_id: int, query: Query) -> None:
        """Index a new profile; ``ValueError`` if the id is already indexed."""
        self.add_many([(profile_id, query)])

    def add_many(self, profiles: Iterable[tuple[int, Query]]) -> None:
        """``add`` for many (profile id, query), all or none. Profiles of the same query share
        its plan, made once: at 100,000 profiles, planning each afresh was most of the build."""
        plans: dict[Query, tuple[_Profile, set[int]]] = {}
        chosen: dict[int, tuple[Query, tuple[_Profile, set[int]]]] = {}
        for profile_id, query in profiles:
            if profile_id in self._profiles or profile_id in chosen:
                raise ValueError(f"profile {profile_id} is already indexed")
            planned = plans.get(query)
            if planned is None:
                plan = self._plan(profile_id, query)
                planned = plans[query] = (plan, _profile_keys(plan))
            chosen[profile_id] = (query, planned)
        for profile_id, (query, (plan, used)) in chosen.items():
            self._file(profile_id, query, plan, used)

    def _plan(self, profile_id: int, query: Query) -> _Profile:
        """``query`` as a profile of it holds it, its keys given ids (but not yet counted as
        used, nor its terms as shared)."""
        planner = self._planner
        keys = planner.file(query.root)
        if not keys:
            raise ValueError(f"profile {profile_id}: the query has no term to look for")
        required, forbidden, groups, rest = _flatten(
            _compile(query.root, planner.cost), planner.key_cost
        )
        if rest is not None:
            _rekey(rest, self._ids)
        terms = tuple(_Term(t) for t in _positive_terms(query.root))
        key_id = self._id
        return _Profile(
            id=profile_id,
            query=query,
            required=tuple(map(key_id, required)),
            forbidden=tuple(map(key_id, forbidden)),
            groups=tuple(tuple(map(key_id, group)) for group in groups),
            rest=rest,
            terms=terms,
            probes=tuple(key_id(t.probe) for t in terms),
            keys=frozenset(map(key_id, keys)),
        )

    def _file(self, profile_id: int, query: Query, plan: _Profile, used: set[int]) -> None:
        """Hold a profile of a planned query: its keys (``used``) counted as used, its terms
        shared, and filed."""
        profile = _Profile(
            id=profile_id,
            query=query,
            required=plan.required,
            forbidden=plan.forbidden,
            groups=plan.groups,
            rest=plan.rest,  # read only once planned: shared
            terms=tuple(map(self._share, plan.terms)),
            probes=plan.probes,
            keys=plan.keys,
        )
        users = self._users
        for key in used:
            if not users[key]:
                self._listen(key, True)
            users[key] += 1
        self._profiles[profile.id] = profile
        for key in profile.keys:
            self._filed.setdefault(key, set()).add(profile)

    def remove(self, profile_id: int) -> None:
        """Drop a profile from the index; ``KeyError`` if it is not indexed."""
        profile = self._profiles.pop(profile_id)
        for key in profile.keys:
            filed = self._filed[key]
            filed.discard(profile)
            if not filed:
                del self._filed[key]
        users = self._users
        for key in _profile_keys(profile):
            users[key] -= 1
            if not users[key] and key:
                self._listen(key, False)
                del self._keys[self._names[key]]
                self._names[key] = ""
                self._free.append(key)
        for term in profile.terms:
            shared = (term.node, term.label)
            counted = self._terms[shared][1]
            counted[0] -= 1
            if not counted[0]:
                del self._terms[shared]

    def replace(self, profile_id: int, query: Query) -> None:
        """Index ``query`` for the profile, replacing its previous query if any."""
        if profile_id in self._profiles:
            self.remove(profile_id)
        self.add(profile_id, query)

    def _id(self, key: str) -> int:
        """The index's id for ``key`` (a new one if it has none)."""
        found = self._keys.get(key)
        if found is None:
            if self._free:
                found = self._free.pop()
                self._names[found] = key
            else:
                found = len(self._names)
                self._names.append(key)
                self._users.append(0)
            self._keys[key] = found
        return found

    def _ids(self, keys: frozenset[Hashable]) -> frozenset[Hashable]:
        """The ids of ``keys`` (strings)."""
        return frozenset(self._id(cast(str, key)) for key in keys)

    def _listen(self, key_id: int, used: bool) -> None:
        """Start (``used``) or stop looking for a key in papers."""
        key = self._names[key_id]
        if key == _ALWAYS:
            return
        if key.startswith("*"):
            self._wildcards += 1 if used else -1
            self._spellings.clear()  # words may hold the new key, or ids be reused
            return
        if key.startswith("s:"):
            if used:
                self._sources[key[2:]] = key_id
            else:
                del self._sources[key[2:]]
            return
        tag = key[:2] if key[1:2] == ":" else ""
        first, space, second = key[len(tag) :].partition(" ")
        if space:
            if used:
                self._pairs[tag][first, second] = key_id
            else:
                del self._pairs[tag][first, second]
        elif used:
            self._words[tag][first] = key_id
        else:
            del self._words[tag][first]

    def _share(self, term: _Term) -> _Term:
        """The one ``_Term`` for ``term``'s node (and its label) that all profiles use."""
        key = (term.node, term.label)
        shared = self._terms.get(key)
        if shared is None:
            shared = self._terms[key] = (term, [0])
        shared[1][0] += 1
        return shared[0]

    def _held(self, d: PreparedDocument) -> set[int]:
        """The ids of the keys that ``d`` holds."""
        found: list[Iterable[int | None]] = [map(self._sources.get, d.sources)]
        for tag, fields in d._tagged():
            words, pairs = self._words[tag].get, self._pairs[tag].get
            for f in fields:
                found.append(map(words, f.keyset))
                found.append(map(pairs, pairwise(f.keys)))
        held: set[int] = set(filter(None, chain.from_iterable(found)))
        if self._wildcards:
            for tag, spelled in d.spellings():
                known = self._spellings.setdefault(tag, {})
                missing = spelled.difference(known)
                if missing:
                    if len(known) + len(missing) > _SPELLINGS_LIMIT:
                        known.clear()
                        missing = spelled
                    for word in missing:
                        known[word] = self._wildcard_ids(tag, word)
                held.update(chain.from_iterable(map(known.__getitem__, spelled)))
        held.add(0)  # _ALWAYS
        return held

    def _wildcard_ids(self, tag: str, word: str) -> tuple[int, ...]:
        """The ids of the wildcard keys that ``word`` (as written) holds in fields with
        ``tag``."""
        mark, ours = "*" + tag, self._keys.get
        found = {ours(mark + form[:n]) for form in word_forms(word) for n in _EVERY_SIZE}
        found.discard(None)
        return tuple(found)  # type: ignore[arg-type]

    def _anchored(self, keys: Iterable[int]) -> set[_Profile]:
        """The profiles filed under any of ``keys``."""
        filed = self._filed
        return set().union(*map(filed.__getitem__, filed.keys() & keys))

    def candidates(self, document: Document | PreparedDocument) -> set[int]:
        """Ids of the profiles that the index looks at for ``document`` (those filed under
        a key it holds)."""
        return {p.id for p in self._anchored(self._held(prepare(document)))}

    def match(
        self,
        documents: Iterable[Document | PreparedDocument],
        *,
        stats: DocumentStats | None = None,
    ) -> list[Match]:
        """Every (profile, document) match, by profile id, best first within a profile.

        ``stats`` overrides the index's own statistics for scoring.

        The cyclic garbage collector is paused meanwhile: matching makes many objects and
        no reference cycles, and the collector would otherwise walk them again and again.
        """
        scorer = _Scorer(stats or self.stats, self.weights, self.upvote_boost)
        found: list[Match] = []
        batch: list[PreparedDocument] = []
        batches = 0
        collecting = gc.isenabled()
        gc.disable()
        try:
            for document in documents:
                batch.append(prepare(document))
                if len(batch) == _BATCH:
                    self._match_batch(batch, scorer, found)
                    batches += 1
                    batch = []
            if batch:
                self._match_batch(batch, scorer, found)
                batches += 1
        finally:
            if collecting:
                gc.enable()
        if batches > 1:
            return _best_first(found)
        # Each profile's matches are together, best first: order the profiles.
        found.sort(key=_PROFILE_ID)
        return found

    def _match_batch(
        self, papers: list[PreparedDocument], scorer: _Scorer, found: list[Match]
    ) -> None:
        """Add the matches of a batch of papers to ``found``, by profile, best first.

        Two passes, so that each touches memory in the order it lies: profile by profile,
        which papers match (bit sets) and which of the profile's terms each holds (by their
        probes); then paper by paper, what those terms bring to it (word positions, scores)
        and so the matches. Reading a profile's or a paper's data costs far more when it is
        not in the CPU's cache than the operations on it do, and the first pass goes through
        the profiles once, the second through the papers once.
        """
        held = [self._held(d) for d in papers]
        bits = [0] * len(self._names)  # key id -> the papers holding it, as bits
        for i, keys in enumerate(held):
            bit = 1 << i
            for key in keys:
                bits[key] |= bit
        every = (1 << len(papers)) - 1
        # Profile by profile: which papers match. ``matched`` holds a profile id and its
        # terms that the paper holds per match, ``where`` each paper's slots in it.
        matched: list[tuple[int, tuple[_Term, ...]]] = []
        where: list[list[int]] = [[] for _ in papers]
        several: list[tuple[int, int]] = []  # where profiles with several matches start, end
        for p in self._anchored(set().union(*held)):
            hits = every
            for key in p.required:
                hits &= bits[key]
            if not hits:
                continue
            for group in p.groups:
                some = 0
                for key in group:
                    some |= bits[key]
                hits &= some
                if not hits:
                    break
            else:
                for key in p.forbidden:
                    hits &= ~bits[key]
                if not hits:
                    continue
                rest, first = p.rest, len(matched)
                while hits:  # the papers in order, as ties keep it
                    bit = hits & -hits
                    hits ^= bit
                    i = bit.bit_length() - 1
                    if rest is None or rest.ok(held[i], papers[i]):
                        where[i].append(len(matched))
                        holding = compress(p.terms, map(held[i].__contains__, p.probes))
                        matched.append((p.id, tuple(holding)))
                if len(matched) - first > 1:
                    several.append((first, len(matched)))
        # Paper by paper: what each term of its matches brings to it, and so its matches,
        # into their slots.
        made: list[Match | None] = [None] * len(matched)
        explain = scorer.explain
        for d, slots in zip(papers, where, strict=True):
            known: dict[_Term, _Hit] = {}
            paper_id, boost = d.document.id, scorer.boost(d)
            for slot in slots:
                # As _Scorer.match does, inline: this runs once per match.
                profile_id, terms = matched[slot]
                score = 0.0
                reasons: tuple[Reason, ...] | list[Reason] = ()
                for term in terms:
                    hit = known.get(term)
                    if hit is None:
                        hit = known[term] = explain(term, d)
                    if hit is not _NO_HIT:
                        if reasons:
                            score, reasons = _merge(score, reasons, hit)
                        else:
                            score, reasons = score + hit[0], hit[1]
                if boost:
                    score += boost
                made[slot] = new_match(profile_id, paper_id, score, tuple(reasons))
        for start, end in several:
            made[start:end] = sorted(made[start:end], key=_rank)  # type: ignore[arg-type]
        found += made  # type: ignore[arg-type]
