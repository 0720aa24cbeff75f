"""Matching papers against every profile at once, and scoring each match with its reasons.

``ProfileIndex`` files each profile under *anchor* terms, chosen so that every paper its query
matches contains one of them: the rarest positive part of an AND (a word, two adjacent words of
a phrase, a wildcard's first letters), every alternative of an OR. An AND with two or more
such parts is filed under its two rarest, and a paper must hit both to make the profile a
candidate. A paper's words name its candidates; only those are evaluated, so a batch costs
time in proportion to the candidate (profile, paper) pairs, not to profiles × papers.
``match_query`` evaluates one query directly, for previews.

Index keys (also the keys of ``DocumentStats.df``): a title or abstract word is its text key
(:mod:`service.match.text`), an author word ``a:key``, an organisation word ``o:key`` and a
source ``s:id``. Unscoped query words search the title and the abstract.

Score: the sum over the query's positive terms (those not under a NOT) found in the paper of
``weight[field] × idf × (1 + ln(occurrences in field))``, with BM25's idf from
``DocumentStats`` (1.0 without stats; a phrase adds its words' idfs), plus
``upvote_boost × ln(1 + upvotes)``. The reasons list those terms, field by field.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import pairwise
from types import MappingProxyType
from typing import Any

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
from service.match.text import keys, norms, spans
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
_TAGS: Mapping[str | None, str] = MappingProxyType(
    {None: "", "title": "", "abstract": "", "author": "a:", "org": "o:"}
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
    """How many documents there are, and in how many each index key occurs."""

    total: int
    df: Mapping[str, int]


_GAP = ""  # between two authors, or an organisation's handle and name: no phrase spans it


class _FieldText:
    """One field of a document: its keys in order; norms, positions and offsets on demand."""

    __slots__ = ("_at_key", "_at_norm", "_forms", "_norms", "_spans", "keys", "keyset", "segments")

    def __init__(self, segments: tuple[tuple[str, int], ...]) -> None:
        self.segments = segments
        found: list[str] = []
        for text, _ in segments:
            if found:
                found.append(_GAP)
            found.extend(keys(text))
        self.keys = tuple(found)
        self.keyset = frozenset(found)
        self._norms: tuple[str, ...] | None = None
        self._forms: list[str] | None = None
        self._at_key: dict[str, list[int]] | None = None
        self._at_norm: dict[str, list[int]] | None = None
        self._spans: tuple[tuple[int, int], ...] = ()

    def norms(self) -> tuple[str, ...]:
        """Norms aligned with ``keys``."""
        if self._norms is None:
            found: list[str] = []
            for text, _ in self.segments:
                if found:
                    found.append(_GAP)
                found.extend(norms(text))
            self._norms = tuple(found)
        return self._norms

    def forms(self) -> list[str]:
        """Every distinct norm and key, sorted, for prefix search."""
        if self._forms is None:
            found = set(self.keyset)
            found.update(self.norms())
            found.discard(_GAP)
            self._forms = sorted(found)
        return self._forms

    def _where(self) -> dict[str, list[int]]:
        """Positions of each key (and fills the offsets of each position)."""
        if self._at_key is None:
            at_key: dict[str, list[int]] = {}
            for i, key in enumerate(self.keys):
                at_key.setdefault(key, []).append(i)
            offsets: list[tuple[int, int]] = []
            for text, offset in self.segments:
                if offsets:
                    offsets.append((offset, offset))
                offsets.extend((offset + a, offset + b) for a, b in spans(text))
            self._at_key, self._spans = at_key, tuple(offsets)
        return self._at_key

    def has_prefix(self, stem: str) -> bool:
        forms = self.forms()
        i = bisect_left(forms, stem)
        return i < len(forms) and forms[i].startswith(stem)

    def has_phrase(self, phrase: tuple[str, ...]) -> bool:
        if not self.keyset.issuperset(phrase):
            return False
        return next(self._phrase_starts(phrase), None) is not None

    def _phrase_starts(self, phrase: tuple[str, ...]) -> Iterator[int]:
        ks, n, i = self.keys, len(phrase), -1
        while True:
            try:
                i = ks.index(phrase[0], i + 1)
            except ValueError:
                return
            if ks[i : i + n] == phrase:
                yield i

    def word_spans(self, key: str) -> list[tuple[int, int]]:
        at = self._where().get(key, ())
        return [self._spans[i] for i in at]

    def phrase_spans(self, phrase: tuple[str, ...]) -> list[tuple[int, int]]:
        if not self.keyset.issuperset(phrase):
            return []
        self._where()
        offsets, last = self._spans, len(phrase) - 1
        return [(offsets[i][0], offsets[i + last][1]) for i in self._phrase_starts(phrase)]

    def prefix_spans(self, stem: str) -> tuple[list[tuple[int, int]], set[str]]:
        """Offsets of the words whose norm or key starts with ``stem``, and their keys."""
        at_key = self._where()
        if self._at_norm is None:
            self._at_norm = {}
            for i, (norm, key) in enumerate(zip(self.norms(), self.keys, strict=True)):
                if norm != key:
                    self._at_norm.setdefault(norm, []).append(i)
        forms, at_norm = self.forms(), self._at_norm
        found: set[int] = set()
        i = bisect_left(forms, stem)
        while i < len(forms) and forms[i].startswith(stem):
            found.update(at_key.get(forms[i], ()))
            found.update(at_norm.get(forms[i], ()))
            i += 1
        ordered = sorted(found)
        return [self._spans[i] for i in ordered], {self.keys[i] for i in ordered}


_EMPTY = _FieldText(())


def _segments(parts: Iterable[str], separator: str) -> tuple[tuple[str, int], ...]:
    """Non-empty ``parts`` with their offsets in ``separator.join(non-empty parts)``."""
    out, offset = [], 0
    for part in parts:
        if part:
            out.append((part, offset))
            offset += len(part) + len(separator)
    return tuple(out)


class PreparedDocument:
    """A document tokenised once, to evaluate many queries against it (see :func:`prepare`)."""

    __slots__ = ("abstract", "author", "document", "org", "sources", "terms", "title")

    def __init__(self, document: Document) -> None:
        self.document = document
        self.title = _FieldText(((document.title, 0),)) if document.title else _EMPTY
        self.abstract = _FieldText(((document.abstract, 0),)) if document.abstract else _EMPTY
        authors = _segments(document.authors, ", ")
        self.author = _FieldText(authors) if authors else _EMPTY
        org = _segments((document.org_handle, document.org_name), " ")
        self.org = _FieldText(org) if org else _EMPTY
        self.sources = frozenset(s.casefold() for s in document.sources)
        terms = set(self.title.keyset)
        terms.update(self.abstract.keyset)
        terms.update(["a:" + k for k in self.author.keyset if k])
        terms.update(["o:" + k for k in self.org.keyset if k])
        terms.update(["s:" + s for s in self.sources])
        terms.discard(_GAP)
        self.terms = terms

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


def prepare(document: Document | PreparedDocument) -> PreparedDocument:
    """``document`` tokenised once, to evaluate many queries against it."""
    return document if isinstance(document, PreparedDocument) else PreparedDocument(document)


def document_terms(document: Document | PreparedDocument) -> frozenset[str]:
    """The index keys that occur in ``document`` (what ``DocumentStats.df`` counts)."""
    return frozenset(prepare(document).terms)


def stats_from(documents: Iterable[Document | PreparedDocument]) -> DocumentStats:
    """Document frequencies of every index key over ``documents``."""
    df: dict[str, int] = {}
    total = 0
    for document in documents:
        total += 1
        for key in prepare(document).terms:
            df[key] = df.get(key, 0) + 1
    return DocumentStats(total, df)


def _holds(node: Node, d: PreparedDocument) -> bool:
    """Whether ``d`` satisfies ``node``: the inner loop of matching."""
    if isinstance(node, Word):
        if node.scope is None:
            return node.key in d.terms
        return node.key in d.field(node.scope).keyset
    # Plain loops: all()/any() over a generator cost more than the rest of the check.
    if isinstance(node, And):
        for term in node.terms:  # noqa: SIM110
            if not _holds(term, d):
                return False
        return True
    if isinstance(node, Or):
        for term in node.terms:  # noqa: SIM110
            if _holds(term, d):
                return True
        return False
    if isinstance(node, Not):
        return not _holds(node.term, d)
    if isinstance(node, Phrase):
        if node.scope is None:
            return d.title.has_phrase(node.keys) or d.abstract.has_phrase(node.keys)
        return d.field(node.scope).has_phrase(node.keys)
    if isinstance(node, Prefix):
        if node.scope is None:
            return d.title.has_prefix(node.stem) or d.abstract.has_prefix(node.stem)
        return d.field(node.scope).has_prefix(node.stem)
    if isinstance(node, Source):
        return node.id in d.sources
    return _compare(d.document.upvotes, node)


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


def query_matches(query: Query, document: Document | PreparedDocument) -> bool:
    """Whether ``document`` matches ``query`` (no index, no score)."""
    return _holds(query.root, prepare(document))


def _positive_terms(node: Node) -> list[Node]:
    """The terms of ``node`` that are not under a NOT, in query order."""
    if isinstance(node, And | Or):
        return [leaf for term in node.terms for leaf in _positive_terms(term)]
    return [] if isinstance(node, Not) else [node]


class _Scorer:
    """Scores matches and gives their reasons; remembers each term's result per document."""

    def __init__(
        self, stats: DocumentStats | None, weights: Mapping[str, float], upvote_boost: float
    ) -> None:
        self.stats = stats
        self.weights = weights
        self.upvote_boost = upvote_boost
        self._idf: dict[str, float] = {}
        self._document: PreparedDocument | None = None
        self._known: dict[int, tuple[float, tuple[Reason, ...]]] = {}

    def idf(self, key: str) -> float:
        if self.stats is None:
            return 1.0
        known = self._idf.get(key)
        if known is None:
            n, df = self.stats.total, self.stats.df.get(key, 0)
            known = self._idf[key] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        return known

    def match(self, profile_id: int, terms: tuple[Node, ...], d: PreparedDocument) -> Match:
        """The match of ``d`` for a query whose positive terms are ``terms``."""
        if d is not self._document:
            # Terms are keyed by identity: the index shares equal terms between profiles.
            self._document, self._known = d, {}
        known = self._known
        score = 0.0
        reasons: list[Reason] = []
        for term in terms:
            found = known.get(id(term))
            if found is None:
                found = known[id(term)] = self._explain(term, d)
            if found[1]:
                score += found[0]
                reasons += found[1]
        upvotes = d.document.upvotes
        if self.upvote_boost and upvotes > 0:
            score += self.upvote_boost * math.log1p(upvotes)
        return Match(profile_id, d.document.id, score, tuple(reasons))

    def _explain(self, term: Node, d: PreparedDocument) -> tuple[float, tuple[Reason, ...]]:
        """The score and the reasons that one positive term contributes."""
        label = _label(term)
        hits: list[tuple[str, list[tuple[int, int]], float]] = []
        if isinstance(term, Word):
            idf = self.idf(_TAGS[term.scope] + term.key)
            for name, f in d.fields(term.scope):
                if term.key in f.keyset:
                    hits.append((name, f.word_spans(term.key), idf))
        elif isinstance(term, Phrase):
            tag = _TAGS[term.scope]
            idf = sum(self.idf(tag + k) for k in term.keys)
            for name, f in d.fields(term.scope):
                hits.append((name, f.phrase_spans(term.keys), idf))
        elif isinstance(term, Prefix):
            for name, f in d.fields(term.scope):
                if f.has_prefix(term.stem):
                    found, matched = f.prefix_spans(term.stem)
                    idf = max(self.idf(_TAGS[term.scope] + k) for k in matched)
                    hits.append((name, found, idf))
        elif isinstance(term, Source):
            if term.id in d.sources:
                hits.append(
                    ("source", _source_spans(d.document, term.id), self.idf("s:" + term.id))
                )
        elif isinstance(term, Upvotes) and _compare(d.document.upvotes, term):
            hits.append(("upvotes", [(0, len(str(d.document.upvotes)))], 0.0))
        score = 0.0
        reasons = []
        for name, found, idf in hits:
            if found:
                score += self.weights.get(name, 1.0) * idf * (1.0 + math.log(len(found)))
                reasons.append(Reason(label, name, tuple(found)))
        return score, tuple(reasons)


def _label(term: Node) -> str:
    """The term as the query wrote it."""
    if isinstance(term, Word | Phrase | Prefix | Source) and term.label:
        return term.label
    return str(Query(term))


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
    terms = tuple(dict.fromkeys(_positive_terms(query.root)))
    found = []
    for document in documents:
        d = prepare(document)
        if _holds(query.root, d):
            found.append(scorer.match(profile_id, terms, d))
    return _best_first(found)


_UNANCHORED = math.inf
# Two adjacent words are much rarer than the rarer of the two: a rough, safe guess.
_PAIR_RARITY = 0.25
_FIELD_TAGS = ("", "a:", "o:")


class _Planner:
    """Chooses anchors, rarest first, from document frequencies (or from word length)."""

    def __init__(self, stats: DocumentStats | None) -> None:
        self.stats = stats
        self._vocabulary: list[str] | None = None

    def word_cost(self, key: str) -> float:
        if self.stats is None:
            return 100.0 / (1 + len(key))
        # Ties between unseen words go to the longer word.
        return self.stats.df.get(key, 0) + 1.0 / (1 + len(key))

    def prefix_cost(self, tagged_stem: str) -> float:
        if self.stats is None:
            return 300.0 / len(tagged_stem)
        if self._vocabulary is None:
            self._vocabulary = sorted(self.stats.df)
        vocabulary, df = self._vocabulary, self.stats.df
        total, i = 0.0, bisect_left(vocabulary, tagged_stem)
        while i < len(vocabulary) and vocabulary[i].startswith(tagged_stem):
            total += df[vocabulary[i]]
            if total >= self.stats.total:
                break
            i += 1
        return total + 2.0

    def anchors(self, node: Node) -> tuple[float, list[str]]:
        """The cheapest index entries one of which every match of ``node`` contains.

        Entries are keys; ``tag+key key`` for two adjacent words of a phrase; or ``*`` + a
        prefix bucket (tag + first 3 letters) for a wildcard.
        """
        if isinstance(node, Word):
            key = _TAGS[node.scope] + node.key
            return self.word_cost(key), [key]
        if isinstance(node, Phrase):
            tag, ks = _TAGS[node.scope], node.keys
            cost, pair = min(
                (min(self.word_cost(tag + a), self.word_cost(tag + b)), f"{tag}{a} {b}")
                for a, b in pairwise(ks)
            )
            return cost * _PAIR_RARITY, [pair]
        if isinstance(node, Prefix):
            tag = _TAGS[node.scope]
            return self.prefix_cost(tag + node.stem), ["*" + tag + node.stem[:3]]
        if isinstance(node, Source):
            key = "s:" + node.id
            return (self.word_cost(key) if self.stats else 1000.0), [key]
        if isinstance(node, And):
            return min((self.anchors(t) for t in node.terms), key=_cost)
        if isinstance(node, Or):
            total, entries = 0.0, []
            for term in node.terms:
                cost, found = self.anchors(term)
                total += cost
                entries.extend(found)
            return total, entries
        return _UNANCHORED, []

    def levels(self, root: Node) -> tuple[list[str], list[str]]:
        """Two sets of entries a match contains one of each: from the two rarest AND parts."""
        if isinstance(root, And):
            parts = sorted((self.anchors(t) for t in root.terms), key=_cost)
            parts = [p for p in parts if p[0] != _UNANCHORED] or parts
            if len(parts) > 1:
                return parts[0][1], parts[1][1]
            return parts[0][1], parts[0][1]
        entries = self.anchors(root)[1]
        return entries, entries

    def plan(self, node: Node) -> Node:
        """``node`` with each AND's rarest terms first, so that evaluation fails fast."""
        if isinstance(node, And):
            ordered = sorted((self.plan(t) for t in node.terms), key=self.cost)
            return And(tuple(ordered))
        if isinstance(node, Or):
            return Or(tuple(self.plan(t) for t in node.terms))
        return node

    def cost(self, node: Node) -> float:
        return self.anchors(node)[0]


def _cost(anchors: tuple[float, list[str]]) -> float:
    return anchors[0]


def _required(node: Node) -> frozenset[str]:
    """Index keys that every document matching ``node`` contains."""
    if isinstance(node, Word):
        return frozenset((_TAGS[node.scope] + node.key,))
    if isinstance(node, Phrase):
        return frozenset(_TAGS[node.scope] + k for k in node.keys)
    if isinstance(node, Source):
        return frozenset(("s:" + node.id,))
    if isinstance(node, And):
        return frozenset().union(*(_required(t) for t in node.terms))
    if isinstance(node, Or):
        return frozenset.intersection(*(_required(t) for t in node.terms))
    return frozenset()


@dataclass(slots=True, eq=False)
class _Profile:
    """A profile as the index holds it.

    ``plan`` is the query reordered for fast evaluation; ``required`` holds keys every match
    contains (a subset test rejects most candidates at C speed); ``terms`` are its positive
    terms, shared with equal terms of other profiles; ``first`` and ``second`` its entries.
    """

    id: int
    query: Query
    plan: Node
    required: frozenset[str]
    terms: tuple[Node, ...]
    first: tuple[str, ...]
    second: tuple[str, ...]


@dataclass(slots=True, eq=False)
class _Posting:
    """The profiles filed under one entry, at each of the two levels."""

    first: set[_Profile]
    second: set[_Profile]


class ProfileIndex:
    """Every profile's query in one inverted index; matching costs per candidate, not profile.

    ``stats`` picks anchors (rare terms make few candidates) and scores matches; without it
    anchors favour long words and every idf is 1.0. Anchors are chosen when a profile is added.
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
        self._by_key: dict[str, _Posting] = {}  # keys and adjacent-word pairs
        self._by_prefix: dict[str, _Posting] = {}  # tag + a wildcard's first 3 letters
        self._short_prefixes = 0  # entries for 2-letter wildcards
        # The first words of the pair entries, per field tag, counted: what a paper looks up.
        self._pair_heads: dict[str, dict[str, int]] = {tag: {} for tag in _FIELD_TAGS}
        self._shared: dict[tuple[Node, str], list[Any]] = {}  # term -> [term, users]
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
        first, second = planner.levels(query.root)
        if not first or not second:
            raise ValueError(f"profile {profile_id}: the query has no term to look for")
        profile = _Profile(
            id=profile_id,
            query=query,
            plan=planner.plan(query.root),
            required=_required(query.root),
            terms=tuple(self._share(t) for t in dict.fromkeys(_positive_terms(query.root))),
            first=tuple(dict.fromkeys(first)),
            second=tuple(dict.fromkeys(second)),
        )
        self._profiles[profile_id] = profile
        for entry in profile.first:
            self._posting(entry).first.add(profile)
        for entry in profile.second:
            self._posting(entry).second.add(profile)

    def remove(self, profile_id: int) -> None:
        """Drop a profile from the index; ``KeyError`` if it is not indexed."""
        profile = self._profiles.pop(profile_id)
        for entry in profile.first:
            self._posting(entry).first.discard(profile)
        for entry in profile.second:
            self._posting(entry).second.discard(profile)
        for entry in {*profile.first, *profile.second}:
            posting = self._posting(entry)
            if not posting.first and not posting.second:
                self._drop(entry)
        for term in profile.terms:
            shared = self._shared[(term, _label(term))]
            shared[1] -= 1
            if not shared[1]:
                del self._shared[(term, _label(term))]

    def replace(self, profile_id: int, query: Query) -> None:
        """Index ``query`` for the profile, replacing its previous query if any."""
        if profile_id in self._profiles:
            self.remove(profile_id)
        self.add(profile_id, query)

    def _share(self, term: Node) -> Node:
        """The one instance of ``term`` (with its label) that all profiles use."""
        shared = self._shared.setdefault((term, _label(term)), [term, 0])
        shared[1] += 1
        return shared[0]  # type: ignore[no-any-return]

    def _posting(self, entry: str) -> _Posting:
        """The posting of ``entry``, created (and registered for lookups) if new."""
        table, key = (self._by_prefix, entry[1:]) if entry[0] == "*" else (self._by_key, entry)
        posting = table.get(key)
        if posting is None:
            posting = table[key] = _Posting(set(), set())
            if table is self._by_prefix:
                self._short_prefixes += len(_split_tag(key)[1]) < 3
            elif " " in key:
                tag, head = _split_tag(key.partition(" ")[0])
                self._pair_heads[tag][head] = self._pair_heads[tag].get(head, 0) + 1
        return posting

    def _drop(self, entry: str) -> None:
        if entry[0] == "*":
            del self._by_prefix[entry[1:]]
            self._short_prefixes -= len(_split_tag(entry[1:])[1]) < 3
            return
        del self._by_key[entry]
        if " " in entry:
            tag, head = _split_tag(entry.partition(" ")[0])
            heads = self._pair_heads[tag]
            heads[head] -= 1
            if not heads[head]:
                del heads[head]

    def candidates(self, document: Document | PreparedDocument) -> set[int]:
        """Ids of the profiles that the index evaluates for ``document`` (for diagnostics)."""
        return {p.id for p in self._candidates(prepare(document))}

    def _candidates(self, d: PreparedDocument) -> set[_Profile]:
        """Profiles with an entry of each level in ``d``: set operations, no per-profile work."""
        get = self._by_key.get
        hits = [p for p in map(get, d.terms) if p is not None]
        tagged = (("", d.title), ("", d.abstract), ("a:", d.author), ("o:", d.org))
        for tag, f in tagged:
            heads = self._pair_heads[tag]
            if not heads or heads.keys().isdisjoint(f.keyset):
                continue
            ks = f.keys
            for i in range(len(ks) - 1):
                if ks[i] in heads:
                    posting = get(f"{tag}{ks[i]} {ks[i + 1]}")
                    if posting is not None:
                        hits.append(posting)
        if self._by_prefix:
            by_prefix, short = self._by_prefix.get, self._short_prefixes
            for tag, f in tagged:
                if f is _EMPTY:
                    continue
                for form in f.forms():
                    posting = by_prefix(tag + form[:3])
                    if posting is not None:
                        hits.append(posting)
                    if short and len(form) > 2:
                        posting = by_prefix(tag + form[:2])
                        if posting is not None:
                            hits.append(posting)
        first: set[_Profile] = set()
        for posting in hits:
            first.update(posting.first)
        found: set[_Profile] = set()
        if first:
            for posting in hits:
                if posting.second:
                    found |= first.intersection(posting.second)
        return found

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
        found = []
        for document in documents:
            d = prepare(document)
            terms = d.terms
            for profile in self._candidates(d):
                if profile.required <= terms and _holds(profile.plan, d):
                    found.append(scorer.match(profile.id, profile.terms, d))
        return _best_first(found)


def _split_tag(entry: str) -> tuple[str, str]:
    """``("a:", "doe")`` for ``"a:doe"``; keys themselves never hold a colon."""
    return (entry[:2], entry[2:]) if entry[1:2] == ":" else ("", entry)
