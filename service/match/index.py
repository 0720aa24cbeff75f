"""Matching papers against every profile at once, and scoring each match with its reasons.

Everything is decided by set operations on *keys*. A paper holds: its title and abstract words
(text keys from :mod:`service.match.text`), its title words again as ``t:key``, author and
organisation words as ``a:key`` and ``o:key``, its sources as ``s:id``, every two adjacent
words of a field as ``tag+key key``, and for wildcards the first letters of its words as
``*tag+letters``. A query compiles to a plan in which each group of such terms is one C-level
set test; only long phrases, long wildcards and ``abstract:`` terms look at word positions.

``ProfileIndex`` files each profile under the keys of the rarest positive part of its query
(every alternative of an OR), so that every paper it matches holds one of them: the paper's
keys name its candidate profiles. A candidate must then hold a key of a second part of its
query (its *gate*, one set test) before its plan is evaluated. A batch thus costs time in
proportion to the candidate (profile, paper) pairs, not to profiles × papers.
``match_query`` evaluates one query directly, for previews.

``DocumentStats.df`` counts the plain keys (words, ``t:``, ``a:``, ``o:``, ``s:``) per document.

Score: the sum, over the query's positive terms (not under a NOT) found in the paper, of
``weight[field] × idf × (1 + ln(occurrences in the field))``, with BM25's idf from
``DocumentStats`` (1.0 without stats; a phrase adds its words' idfs), plus
``upvote_boost × ln(1 + upvotes)``. The reasons list those terms, field by field.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain, compress, pairwise
from operator import is_not, itemgetter
from types import MappingProxyType

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
from service.match.results import Match, Reason
from service.match.text import keys_of, norms_of, spans, word_forms, words
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


class _FieldText:
    """One field of a document: its keys in order; norms, positions and offsets on demand."""

    __slots__ = (
        "_at",
        "_forms",
        "_formset",
        "_norm_at",
        "_norms",
        "_spans",
        "keys",
        "keyset",
        "segments",
        "words",
    )

    def __init__(self, segments: tuple[tuple[str, int], ...]) -> None:
        self.segments = segments
        written: list[str] = []
        for text, _ in segments:
            if written:
                written.append(_GAP)
            written += words(text)
        self.words = written
        self.keys = tuple(keys_of(written))
        self.keyset = frozenset(self.keys)
        self._norms: tuple[str, ...] | None = None
        self._forms: list[str] | None = None
        self._formset: frozenset[str] | None = None
        self._spans: list[tuple[int, int]] | None = None
        self._at: dict[str, list[int]] | None = None
        self._norm_at: dict[str, list[int]] | None = None

    def norms(self) -> tuple[str, ...]:
        """Norms aligned with ``keys``."""
        if self._norms is None:
            self._norms = tuple(norms_of(self.words))
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

    def spans(self) -> list[tuple[int, int]]:
        """Offsets aligned with ``keys``, in the text of the whole field."""
        if self._spans is None:
            found: list[tuple[int, int]] = []
            for text, offset in self.segments:
                if found:
                    found.append((offset, offset))
                if offset:
                    found += [(offset + a, offset + b) for a, b in spans(text)]
                else:
                    found += spans(text)
            self._spans = found
        return self._spans

    def at(self, key: str) -> list[int]:
        """Where ``key`` occurs."""
        if self._at is None:
            self._at = _where(self.keys)
        return self._at.get(key, [])

    def has_prefix(self, stem: str) -> bool:
        forms = self.forms()
        i = bisect_left(forms, stem)
        return i < len(forms) and forms[i].startswith(stem)

    def has_phrase(self, phrase: tuple[str, ...]) -> bool:
        if not self.keyset.issuperset(phrase):
            return False
        n, ks = len(phrase), self.keys
        return any(ks[i : i + n] == phrase for i in self.at(phrase[0]))

    def word_spans(self, key: str) -> list[tuple[int, int]]:
        offsets = self.spans()
        return [offsets[i] for i in self.at(key)]

    def phrase_spans(self, phrase: tuple[str, ...]) -> list[tuple[int, int]]:
        if not self.keyset.issuperset(phrase):
            return []
        offsets, n, ks = self.spans(), len(phrase), self.keys
        return [
            (offsets[i][0], offsets[i + n - 1][1])
            for i in self.at(phrase[0])
            if ks[i : i + n] == phrase
        ]

    def prefix_spans(self, stem: str) -> tuple[list[tuple[int, int]], set[str]]:
        """Offsets of the words whose norm or key starts with ``stem``, and their keys."""
        forms = self.forms()
        i = bisect_left(forms, stem)
        if i == len(forms) or not forms[i].startswith(stem):
            return [], set()
        if self._at is None:
            self._at = _where(self.keys)
        if self._norm_at is None:
            # Where a word's norm is its key, the key's positions tell.
            differ = list(compress(range(len(self.keys)), map(is_not, self.norms(), self.keys)))
            self._norm_at = _where(tuple(map(self.norms().__getitem__, differ)), differ)
        by_key, by_norm = self._at, self._norm_at
        at: list[int] = []
        while i < len(forms) and forms[i].startswith(stem):
            at += by_key.get(forms[i], ())
            at += by_norm.get(forms[i], ())
            i += 1
        offsets, ks = self.spans(), self.keys
        at = sorted(set(at))
        return [offsets[i] for i in at], {ks[i] for i in at}


def _where(items: Sequence[str], positions: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Positions of each item (``positions`` of the items, if not 0, 1, 2...)."""
    found: dict[str, list[int]] = {}
    for i, item in zip(range(len(items)) if positions is None else positions, items, strict=True):
        listed = found.get(item)
        if listed is None:
            found[item] = [i]
        else:
            listed.append(i)
    return found


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
    """A compiled part of a query: ``ok`` tells whether a paper holding ``held`` passes."""

    __slots__ = ()

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        raise NotImplementedError


class _All(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        return self.keys <= held


class _Any(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        return not self.keys.isdisjoint(held)


class _NoneOf(_Check):
    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(keys)

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        return self.keys.isdisjoint(held)


class _Every(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: Iterable[_Check]) -> None:
        self.checks = tuple(checks)

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        # A plain loop: all() over a generator costs more than the checks themselves.
        for check in self.checks:  # noqa: SIM110
            if not check.ok(held, d):
                return False
        return True


class _Either(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: Iterable[_Check]) -> None:
        self.checks = tuple(checks)

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        for check in self.checks:  # noqa: SIM110
            if check.ok(held, d):
                return True
        return False


class _Without(_Check):
    __slots__ = ("check",)

    def __init__(self, check: _Check) -> None:
        self.check = check

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        return not self.check.ok(held, d)


class _Exact(_Check):
    """A term without a key of its own: its necessary keys first, then word positions."""

    __slots__ = ("needed", "node")

    def __init__(self, node: Word | Phrase | Prefix) -> None:
        self.node = node
        self.needed = frozenset(_necessary(node))

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
        return self.needed <= held and _found(self.node, d)


class _Votes(_Check):
    __slots__ = ("node",)

    def __init__(self, node: Upvotes) -> None:
        self.node = node

    def ok(self, held: set[str], d: PreparedDocument) -> bool:
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


def _plan_keys(check: _Check) -> Iterator[str]:
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


def _rekey(check: _Check, canonical: Callable[[frozenset[str]], frozenset[str]]) -> None:
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


_NO_HIT: tuple[float, tuple[Reason, ...]] = (0.0, ())


class _Scorer:
    """Scores matches and gives their reasons, remembering each term's result per paper."""

    def __init__(
        self, stats: DocumentStats | None, weights: Mapping[str, float], upvote_boost: float
    ) -> None:
        self.stats = stats
        self.weights = dict(weights)
        self.upvote_boost = upvote_boost
        self._idf: dict[str, float] = {}
        self._document: PreparedDocument | None = None
        self._known: dict[_Term, tuple[float, tuple[Reason, ...]]] = {}

    def idf(self, key: str) -> float:
        if self.stats is None:
            return 1.0
        known = self._idf.get(key)
        if known is None:
            n, df = self.stats.total, self.stats.df.get(key, 0)
            known = self._idf[key] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        return known

    def match(
        self,
        profile_id: int,
        terms: tuple[_Term, ...],
        probes: tuple[str, ...],
        held: set[str],
        d: PreparedDocument,
    ) -> Match:
        """The match of ``d`` for a query whose positive terms are ``terms`` (and ``probes``
        their probes)."""
        if d is not self._document:
            self._document, self._known = d, {}
        known = self._known
        score = 0.0
        reasons: list[Reason] = []
        for term in compress(terms, map(held.__contains__, probes)):
            found = known.get(term)
            if found is None:
                found = known[term] = self._explain(term, d)
            if found is not _NO_HIT:
                score += found[0]
                reasons += found[1]
        upvotes = d.document.upvotes
        if self.upvote_boost and upvotes > 0:
            score += self.upvote_boost * math.log1p(upvotes)
        return Match(profile_id, d.document.id, score, tuple(reasons))

    def _explain(self, term: _Term, d: PreparedDocument) -> tuple[float, tuple[Reason, ...]]:
        """The score and the reasons that one positive term contributes to ``d``."""
        node = term.node
        hits: list[tuple[str, list[tuple[int, int]], float]] = []
        if isinstance(node, Word):
            key = node.key
            for name in term.fields:
                f: _FieldText = getattr(d, name)
                if key in f.keyset:
                    hits.append((name, f.word_spans(key), 0.0))
            if hits:
                idf = self.idf(term.idf_keys[0])
                hits = [(name, where, idf) for name, where, _ in hits]
        elif isinstance(node, Phrase):
            for name in term.fields:
                where = getattr(d, name).phrase_spans(node.keys)
                if where:
                    hits.append((name, where, 0.0))
            if hits:
                idf = sum(map(self.idf, term.idf_keys))
                hits = [(name, where, idf) for name, where, _ in hits]
        elif isinstance(node, Prefix):
            tag = term.idf_keys[0]
            for name in term.fields:
                where, matched = getattr(d, name).prefix_spans(node.stem)
                if where:
                    hits.append((name, where, max(self.idf(tag + k) for k in matched)))
        elif isinstance(node, Source):
            if node.id in d.sources:
                where = _source_spans(d.document, node.id)
                hits.append(("source", where, self.idf(term.idf_keys[0])))
        elif isinstance(node, Upvotes) and _compare(d.document.upvotes, node):
            hits.append(("upvotes", [(0, len(str(d.document.upvotes)))], 0.0))
        if not hits:
            return _NO_HIT
        score = 0.0
        reasons = []
        weights, label = self.weights, term.label
        for name, where, idf in hits:
            score += weights.get(name, 1.0) * idf * (1.0 + math.log(len(where)))
            reasons.append(Reason(label, name, tuple(where)))
        return score, tuple(reasons)


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
            found.append(scorer.match(profile_id, terms, probes, held, d))
    return _best_first(found)


# The index.

_UNANCHORED = math.inf
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
        return _UNANCHORED, frozenset()

    def file(self, root: Node) -> tuple[frozenset[str], frozenset[str] | None]:
        """The keys to file a query under (its rarest part's), and a gate from another part.

        Call it first for each query: it forgets the nodes of the previous one.
        """
        self._known.clear()
        if not isinstance(root, And):
            return self.need(root)[1], None
        parts = sorted(map(self.need, root.terms), key=_cost)
        gate = parts[1][1] if parts[1][0] != _UNANCHORED else None
        return parts[0][1], gate

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
            required |= part.keys
        elif isinstance(part, _NoneOf):
            forbidden |= part.keys
        elif isinstance(part, _Any):
            groups.append(part.keys)
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


def _need(check: _Check, cost: Callable[[str], float]) -> frozenset[str] | None:
    """Keys one of which every paper passing ``check`` holds, if there are such keys."""
    if isinstance(check, _Any):
        return check.keys
    if isinstance(check, _All):
        return frozenset((min(check.keys, key=cost),))
    if isinstance(check, _Exact):
        return frozenset((min(check.needed, key=cost),))
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
    """A profile as the index holds it.

    It is filed under ``keys`` (those of the rarest part of its query): every paper it
    matches holds one of them. A paper matches when it holds all ``required`` keys, no
    ``forbidden`` key, a key of each of the ``groups`` and passes ``rest`` (its plan,
    flattened: see :func:`_flatten`). ``terms`` are its positive terms, shared with the
    other profiles, for scoring, and ``probes`` their probes.
    """

    id: int
    query: Query
    required: frozenset[str]
    forbidden: frozenset[str]
    groups: tuple[frozenset[str], ...]
    rest: _Check | None
    terms: tuple[_Term, ...]
    probes: tuple[str, ...]
    keys: frozenset[str]


def _profile_keys(profile: _Profile) -> set[str]:
    """Every key a profile uses."""
    found = set(profile.keys)
    found.update(profile.required, profile.forbidden, profile.probes, *profile.groups)
    if profile.rest is not None:
        found.update(_plan_keys(profile.rest))
    return found


_TAGS = ("", "t:", "a:", "o:")
# Words whose wildcard keys the index remembers, at most (then it starts over).
_SPELLINGS_LIMIT = 200_000
# Papers matched together: each key's papers are a bit set of at most this many bits.
_BATCH = 1024


class ProfileIndex:
    """Every profile's query in one inverted index; matching costs per profile that may
    match, not per profile × paper.

    Papers are matched in batches: a batch's papers are tokenised once and each key they
    hold becomes a bit set of the papers holding it. Only the profiles filed under a key
    of the batch are looked at, once per batch: their query is a few operations on those
    bit sets, and only papers passing them are looked at one by one (scoring, and the rare
    terms that need word positions).

    ``stats`` picks the keys profiles are filed under (rare keys make few candidates) and
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
        self._filed: dict[str, set[_Profile]] = {}
        # Every key the profiles use, once, with how many use it. Papers' words are looked
        # up in ``_words``, ``_pairs`` and ``_sources`` (by tag) to find the keys they hold,
        # without building strings; set tests then compare keys by identity.
        self._keys: dict[str, str] = {}
        self._key_users: dict[str, int] = {}
        self._words: dict[str, dict[str, str]] = {tag: {} for tag in _TAGS}
        self._pairs: dict[str, dict[tuple[str, str], str]] = {tag: {} for tag in _TAGS}
        self._sources: dict[str, str] = {}
        self._wildcards = 0  # wildcard keys in use
        # tag -> word as written -> the wildcard keys that it holds
        self._spellings: dict[str, dict[str, tuple[str, ...]]] = {}
        self._terms: dict[tuple[Node, str], tuple[_Term, list[int]]] = {}  # shared, counted

        pairs = profiles.items() if isinstance(profiles, Mapping) else profiles
        for profile_id, query in pairs:
            self.add(profile_id, query)

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._profiles

    def query(self, profile_id: int) -> Query:
        """The query of an indexed profile."""
        return self._profiles[profile_id].query

    def add(self, profile_id: int, query: Query) -> None:
        """Index a new profile; ``ValueError`` if the id is already indexed."""
        if profile_id in self._profiles:
            raise ValueError(f"profile {profile_id} is already indexed")
        planner = self._planner
        keys, _ = planner.file(query.root)
        if not keys:
            raise ValueError(f"profile {profile_id}: the query has no term to look for")
        plan = _compile(query.root, planner.cost)
        _rekey(plan, self._canonical)
        required, forbidden, groups, rest = _flatten(plan, planner.key_cost)
        terms = tuple(self._share(t) for t in _positive_terms(query.root))
        profile = _Profile(
            id=profile_id,
            query=query,
            required=required,
            forbidden=forbidden,
            groups=groups,
            rest=rest,
            terms=terms,
            probes=tuple(t.probe for t in terms),
            keys=self._canonical(keys),
        )
        users = self._key_users
        for key in _profile_keys(profile):
            count = users.get(key, 0)
            if not count:
                self._listen(key, True)
            users[key] = count + 1
        self._profiles[profile_id] = profile
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
        users = self._key_users
        for key in _profile_keys(profile):
            users[key] -= 1
            if not users[key]:
                del users[key]
                self._listen(key, False)
                del self._keys[key]
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

    def _key(self, key: str) -> str:
        """The index's one copy of ``key``."""
        return self._keys.setdefault(key, key)

    def _canonical(self, keys: frozenset[str]) -> frozenset[str]:
        """``keys`` made of the index's copies."""
        return frozenset(map(self._key, keys))

    def _listen(self, key: str, used: bool) -> None:
        """Start (``used``) or stop looking for ``key`` in papers."""
        if key == _ALWAYS:
            return
        if key.startswith("*"):
            self._wildcards += 1 if used else -1
            if used or not self._wildcards:
                self._spellings.clear()  # words may hold the new key
            return
        if key.startswith("s:"):
            if used:
                self._sources[key[2:]] = key
            else:
                del self._sources[key[2:]]
            return
        tag = key[:2] if key[1:2] == ":" else ""
        first, space, second = key[len(tag) :].partition(" ")
        if space:
            if used:
                self._pairs[tag][first, second] = key
            else:
                del self._pairs[tag][first, second]
        elif used:
            self._words[tag][first] = key
        else:
            del self._words[tag][first]

    def _share(self, node: Node) -> _Term:
        """The one ``_Term`` for ``node`` (and its label) that all profiles use."""
        key = (node, _label(node))
        shared = self._terms.get(key)
        if shared is None:
            term = _Term(node)
            term.probe = self._key(term.probe)
            shared = self._terms[key] = (term, [0])
        shared[1][0] += 1
        return shared[0]

    def _held(self, d: PreparedDocument) -> set[str]:
        """The keys of ``d`` that some profile uses (the index's copies)."""
        found: list[Iterable[str | None]] = [map(self._sources.get, d.sources)]
        for tag, fields in d._tagged():
            words, pairs = self._words[tag].get, self._pairs[tag].get
            for f in fields:
                found.append(map(words, f.keyset))
                found.append(map(pairs, pairwise(f.keys)))
        held: set[str] = set(filter(None, chain.from_iterable(found)))
        if self._wildcards:
            for tag, spelled in d.spellings():
                known = self._spellings.setdefault(tag, {})
                missing = spelled.difference(known)
                if missing:
                    if len(known) + len(missing) > _SPELLINGS_LIMIT:
                        known.clear()
                        missing = spelled
                    for word in missing:
                        known[word] = self._wildcard_keys(tag, word)
                held.update(chain.from_iterable(map(known.__getitem__, spelled)))
        held.add(_ALWAYS)
        return held

    def _wildcard_keys(self, tag: str, word: str) -> tuple[str, ...]:
        """The wildcard keys in use that ``word`` (as written) holds in fields with ``tag``."""
        mark, ours = "*" + tag, self._keys.get
        found = {ours(mark + form[:n]) for form in word_forms(word) for n in _EVERY_SIZE}
        found.discard(None)
        return tuple(found)  # type: ignore[arg-type]

    def _anchored(self, keys: Iterable[str]) -> set[_Profile]:
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
        """
        scorer = _Scorer(stats or self.stats, self.weights, self.upvote_boost)
        found: list[Match] = []
        batch: list[PreparedDocument] = []
        for document in documents:
            batch.append(prepare(document))
            if len(batch) == _BATCH:
                self._match_batch(batch, scorer, found)
                batch = []
        if batch:
            self._match_batch(batch, scorer, found)
        order = [(m.profile_id, -m.score, m.document_id, i) for i, m in enumerate(found)]
        order.sort()
        return [found[i] for *_, i in order]

    def _match_batch(
        self, papers: list[PreparedDocument], scorer: _Scorer, found: list[Match]
    ) -> None:
        held = [self._held(d) for d in papers]
        bits: dict[str, int] = {}  # key -> the papers holding it, as bits
        has = bits.get
        for i, keys in enumerate(held):
            bit = 1 << i
            for key in keys:
                bits[key] = has(key, 0) | bit
        every = (1 << len(papers)) - 1
        matched: list[list[_Profile]] = [[] for _ in papers]
        for p in self._anchored(bits):
            hits = every
            for key in p.required:
                hits &= has(key, 0)
            if not hits:
                continue
            for group in p.groups:
                some = 0
                for key in group:
                    some |= has(key, 0)
                hits &= some
                if not hits:
                    break
            else:
                for key in p.forbidden:
                    hits &= ~has(key, 0)
                rest = p.rest
                while hits:
                    i = hits.bit_length() - 1
                    hits ^= 1 << i
                    if rest is None or rest.ok(held[i], papers[i]):
                        matched[i].append(p)
        for d, keys, profiles in zip(papers, held, matched, strict=True):
            for p in profiles:
                found.append(scorer.match(p.id, p.terms, p.probes, keys, d))
