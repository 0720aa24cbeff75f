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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise
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
from service.match.text import keys_of, norms_of, spans, words
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
    """One field of a document: its keys in order; norms and offsets on demand."""

    __slots__ = ("_forms", "_norms", "_spans", "keys", "keyset", "segments", "words")

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
        self._spans: list[tuple[int, int]] | None = None

    def norms(self) -> tuple[str, ...]:
        """Norms aligned with ``keys``."""
        if self._norms is None:
            self._norms = tuple(norms_of(self.words))
        return self._norms

    def forms(self) -> list[str]:
        """Every distinct norm and key, sorted, for prefix search."""
        if self._forms is None:
            found = self.keyset.union(self.norms())
            self._forms = sorted(found - {_GAP})
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

    def has_prefix(self, stem: str) -> bool:
        forms = self.forms()
        i = bisect_left(forms, stem)
        return i < len(forms) and forms[i].startswith(stem)

    def has_phrase(self, phrase: tuple[str, ...]) -> bool:
        if not self.keyset.issuperset(phrase):
            return False
        n = len(phrase)
        return any(self.keys[i : i + n] == phrase for i in _positions(self.keys, phrase[0]))

    def word_spans(self, key: str) -> list[tuple[int, int]]:
        offsets = self.spans()
        return [offsets[i] for i in _positions(self.keys, key)]

    def phrase_spans(self, phrase: tuple[str, ...]) -> list[tuple[int, int]]:
        if not self.keyset.issuperset(phrase):
            return []
        offsets, n, ks = self.spans(), len(phrase), self.keys
        return [
            (offsets[i][0], offsets[i + n - 1][1])
            for i in _positions(self.keys, phrase[0])
            if ks[i : i + n] == phrase
        ]

    def prefix_spans(self, stem: str) -> tuple[list[tuple[int, int]], set[str]]:
        """Offsets of the words whose norm or key starts with ``stem``, and their keys."""
        forms, at = self.forms(), set()
        i = bisect_left(forms, stem)
        while i < len(forms) and forms[i].startswith(stem):
            at.update(_positions(self.keys, forms[i]))
            at.update(_positions(self.norms(), forms[i]))
            i += 1
        offsets, ks = self.spans(), self.keys
        return [offsets[i] for i in sorted(at)], {ks[i] for i in at}


def _positions(items: tuple[str, ...], item: str) -> list[int]:
    """Where ``item`` occurs in ``items``."""
    found, i = [], -1
    try:
        while True:
            i = items.index(item, i + 1)
            found.append(i)
    except ValueError:
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


class PreparedDocument:
    """A document tokenised once, to evaluate many queries against it (see :func:`prepare`).

    ``terms`` holds the document's index keys, plus ``t:key`` for its title words.
    """

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
        terms.update(["t:" + k for k in self.title.keyset])
        terms.update(["a:" + k for k in self.author.keyset if k])
        terms.update(["o:" + k for k in self.org.keyset if k])
        terms.update(["s:" + s for s in self.sources])
        terms.difference_update((_GAP, "t:"))
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


# Evaluation. A query compiles to a plan in which the words of each AND, OR or NOT group
# become one set test against the document's keys, done at C speed.

_KEY_TAGS: Mapping[str | None, str] = MappingProxyType(
    {None: "", "title": "t:", "abstract": "", "author": "a:", "org": "o:"}
)
_FIELD_TAGS: Mapping[str | None, str] = MappingProxyType(
    {None: "", "title": "", "abstract": "", "author": "a:", "org": "o:"}
)


@dataclass(frozen=True, slots=True)
class _AllOf:
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class _AnyOf:
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class _NoneOf:
    keys: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Every:
    terms: tuple[_Plan, ...]


@dataclass(frozen=True, slots=True)
class _Either:
    terms: tuple[_Plan, ...]


@dataclass(frozen=True, slots=True)
class _Without:
    term: _Plan


_Plan = _AllOf | _AnyOf | _NoneOf | _Every | _Either | _Without | Word | Phrase | Prefix | Upvotes


_LABELLED = (Word, Phrase, Prefix, Source)
_GROUPS = (And, Or)
_KEYED = (Word, Source)


def _term_key(node: Word | Source) -> str:
    """The key in ``PreparedDocument.terms`` of a word or source (for an abstract: anywhere)."""
    return "s:" + node.id if isinstance(node, Source) else _KEY_TAGS[node.scope] + node.key


def _set_key(node: Node) -> str | None:
    """The key of a term that is exactly one membership test in ``PreparedDocument.terms``."""
    if isinstance(node, Source) or (isinstance(node, Word) and node.scope != "abstract"):
        return _term_key(node)
    return None


def _compile(node: Node, cost: Callable[[Node], float] | None = None) -> _Plan:
    """The plan of ``node``; ``cost`` orders each AND's other terms, rarest first."""
    if isinstance(node, And):
        wanted, unwanted, rest = set(), set(), []
        for term in node.terms:
            key = _set_key(term)
            unkey = _set_key(term.term) if isinstance(term, Not) else None
            if key is not None:
                wanted.add(key)
            elif unkey is not None:
                unwanted.add(unkey)
            else:
                rest.append(term)
        if cost is not None:
            rest.sort(key=cost)
        parts: list[_Plan] = [_AllOf(frozenset(wanted))] if wanted else []
        parts += [_compile(t, cost) for t in rest]
        parts += [_NoneOf(frozenset(unwanted))] if unwanted else []
        return parts[0] if len(parts) == 1 else _Every(tuple(parts))
    if isinstance(node, Or):
        keys = {k for t in node.terms if (k := _set_key(t)) is not None}
        alternatives: list[_Plan] = [_AnyOf(frozenset(keys))] if keys else []
        alternatives += [_compile(t, cost) for t in node.terms if _set_key(t) is None]
        return alternatives[0] if len(alternatives) == 1 else _Either(tuple(alternatives))
    if isinstance(node, Not):
        key = _set_key(node.term)
        return _NoneOf(frozenset((key,))) if key is not None else _Without(_compile(node.term))
    key = _set_key(node)
    if key is not None:
        return _AllOf(frozenset((key,)))
    assert not isinstance(node, Source)
    return node


def _passes(plan: _Plan, d: PreparedDocument) -> bool:
    """Whether ``d`` satisfies ``plan``: the inner loop of matching."""
    if isinstance(plan, _AllOf):
        return plan.keys <= d.terms
    # Plain loops: all()/any() over a generator cost more than the rest of the check.
    if isinstance(plan, _Every):
        for term in plan.terms:  # noqa: SIM110
            if not _passes(term, d):
                return False
        return True
    if isinstance(plan, _AnyOf):
        return not plan.keys.isdisjoint(d.terms)
    if isinstance(plan, _NoneOf):
        return plan.keys.isdisjoint(d.terms)
    if isinstance(plan, _Either):
        for term in plan.terms:  # noqa: SIM110
            if _passes(term, d):
                return True
        return False
    if isinstance(plan, Phrase):
        if plan.scope is None:
            return d.title.has_phrase(plan.keys) or d.abstract.has_phrase(plan.keys)
        return d.field(plan.scope).has_phrase(plan.keys)
    if isinstance(plan, Prefix):
        if plan.scope is None:
            return d.title.has_prefix(plan.stem) or d.abstract.has_prefix(plan.stem)
        return d.field(plan.scope).has_prefix(plan.stem)
    if isinstance(plan, Word):
        return plan.scope is not None and plan.key in d.field(plan.scope).keyset
    if isinstance(plan, _Without):
        return not _passes(plan.term, d)
    return _compare(d.document.upvotes, plan)


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
    return _passes(_compile(query.root), prepare(document))


# Scoring.


class _Term:
    """A positive query term as scoring sees it; the index shares equal terms of profiles.

    ``probe`` is a key the document must hold for the term to hit anywhere (None: no
    shortcut), so that most terms are dismissed with one set lookup.
    """

    __slots__ = ("label", "node", "probe")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.label = _label(node)
        self.probe: str | None = None
        if isinstance(node, _KEYED):
            self.probe = _term_key(node)
        elif isinstance(node, Phrase):
            self.probe = _KEY_TAGS[node.scope] + node.keys[0]


def _label(term: Node) -> str:
    """The term as the query wrote it."""
    if isinstance(term, _LABELLED) and term.label:
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
    """Scores matches and gives their reasons, remembering each term's result per document."""

    def __init__(
        self, stats: DocumentStats | None, weights: Mapping[str, float], upvote_boost: float
    ) -> None:
        self.stats = stats
        self.weights = weights
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

    def match(self, profile_id: int, terms: tuple[_Term, ...], d: PreparedDocument) -> Match:
        """The match of ``d`` for a query whose positive terms are ``terms``."""
        if d is not self._document:
            self._document, self._known = d, {}
        known, held = self._known, d.terms
        score = 0.0
        reasons: list[Reason] = []
        for term in terms:
            if term.probe is not None and term.probe not in held:
                continue
            found = known.get(term)
            if found is None:
                found = known[term] = self._explain(term, d)
            if found[1]:
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
            idf = self.idf(_FIELD_TAGS[node.scope] + node.key)
            for name, f in d.fields(node.scope):
                if node.key in f.keyset:
                    hits.append((name, f.word_spans(node.key), idf))
        elif isinstance(node, Phrase):
            tag = _FIELD_TAGS[node.scope]
            idf = sum(self.idf(tag + k) for k in node.keys)
            for name, f in d.fields(node.scope):
                hits.append((name, f.phrase_spans(node.keys), idf))
        elif isinstance(node, Prefix):
            for name, f in d.fields(node.scope):
                if f.has_prefix(node.stem):
                    found, matched = f.prefix_spans(node.stem)
                    idf = max(self.idf(_FIELD_TAGS[node.scope] + k) for k in matched)
                    hits.append((name, found, idf))
        elif isinstance(node, Source):
            if node.id in d.sources:
                hits.append(
                    ("source", _source_spans(d.document, node.id), self.idf("s:" + node.id))
                )
        elif isinstance(node, Upvotes) and _compare(d.document.upvotes, node):
            hits.append(("upvotes", [(0, len(str(d.document.upvotes)))], 0.0))
        if not hits:
            return _NO_HIT
        score = 0.0
        reasons = []
        for name, found, idf in hits:
            if found:
                score += self.weights.get(name, 1.0) * idf * (1.0 + math.log(len(found)))
                reasons.append(Reason(term.label, name, tuple(found)))
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
    plan = _compile(query.root)
    terms = tuple(_Term(t) for t in _positive_terms(query.root))
    found = []
    for document in documents:
        d = prepare(document)
        if _passes(plan, d):
            found.append(scorer.match(profile_id, terms, d))
    return _best_first(found)


# The index.

_UNANCHORED = math.inf
# Two adjacent words are much rarer than the rarer of the two: a rough, safe guess.
_PAIR_RARITY = 0.25
# A wildcard is filed under its first letters, at most this many.
_BUCKET = 4


class _Planner:
    """Chooses anchors, rarest first, from document frequencies (or from word length)."""

    def __init__(self, stats: DocumentStats | None) -> None:
        self.stats = stats
        self._vocabulary: list[str] | None = None
        self._prefix_costs: dict[str, float] = {}
        self._known: dict[int, tuple[float, list[str]]] = {}  # id(node) -> anchors, one query

    def word_cost(self, key: str) -> float:
        if self.stats is None:
            return 100.0 / (1 + len(key))
        # Ties between unseen words go to the longer word.
        return self.stats.df.get(key, 0) + 1.0 / (1 + len(key))

    def prefix_cost(self, tagged_stem: str) -> float:
        if self.stats is None:
            return 300.0 / len(tagged_stem)
        known = self._prefix_costs.get(tagged_stem)
        if known is not None:
            return known
        if self._vocabulary is None:
            self._vocabulary = sorted(self.stats.df)
        vocabulary, df = self._vocabulary, self.stats.df
        total, i = 2.0, bisect_left(vocabulary, tagged_stem)
        while i < len(vocabulary) and vocabulary[i].startswith(tagged_stem):
            total += df[vocabulary[i]]
            if total >= self.stats.total:
                break
            i += 1
        self._prefix_costs[tagged_stem] = total
        return total

    def anchors(self, node: Node) -> tuple[float, list[str]]:
        """The cheapest index entries one of which every match of ``node`` contains.

        Entries are keys; ``tag+key key`` for two adjacent words of a phrase; or ``*`` + tag +
        a wildcard's first letters.
        """
        known = self._known.get(id(node))
        if known is None:
            known = self._known[id(node)] = self._anchors(node)
        return known

    def _anchors(self, node: Node) -> tuple[float, list[str]]:
        if isinstance(node, _KEYED):
            key = _term_key(node)
            return self.word_cost(key), [key]
        if isinstance(node, Phrase):
            tag, ks = _FIELD_TAGS[node.scope], node.keys
            cost, pair = min(
                (min(self.word_cost(tag + a), self.word_cost(tag + b)), f"{tag}{a} {b}")
                for a, b in pairwise(ks)
            )
            return cost * _PAIR_RARITY, [pair]
        if isinstance(node, Prefix):
            tag = _FIELD_TAGS[node.scope]
            return self.prefix_cost(tag + node.stem), ["*" + tag + node.stem[:_BUCKET]]
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
        """Two sets of entries a match holds one of each of: the two rarest parts of an AND.

        Call it first for each query: it forgets the nodes of the previous one.
        """
        self._known.clear()
        if isinstance(root, And):
            parts = sorted((self.anchors(t) for t in root.terms), key=_cost)
            if len(parts) > 1 and parts[1][0] != _UNANCHORED:
                return parts[0][1], parts[1][1]
            return parts[0][1], parts[0][1]
        entries = self.anchors(root)[1]
        return entries, entries

    def cost(self, node: Node) -> float:
        return self.anchors(node)[0]


def _cost(anchors: tuple[float, list[str]]) -> float:
    return anchors[0]


@dataclass(slots=True, eq=False)
class _Profile:
    """A profile as the index holds it: its plan, positive terms and index entries."""

    id: int
    query: Query
    plan: _Plan
    terms: tuple[_Term, ...]
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
        self._by_key: dict[str, _Posting] = {}  # keys, and pairs of adjacent words
        self._by_prefix: dict[str, _Posting] = {}  # tag + a wildcard's first letters
        self._bucket_sizes: dict[int, int] = {}  # length of a wildcard bucket -> entries
        # The first words of the pair entries, per field tag, counted: what a paper looks up.
        self._pair_heads: dict[str, dict[str, int]] = {"": {}, "a:": {}, "o:": {}}
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
        first, second = planner.levels(query.root)
        if not first or not second:
            raise ValueError(f"profile {profile_id}: the query has no term to look for")
        profile = _Profile(
            id=profile_id,
            query=query,
            plan=_compile(query.root, planner.cost),
            terms=tuple(self._share(t) for t in _positive_terms(query.root)),
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
            key = (term.node, term.label)
            users = self._terms[key][1]
            users[0] -= 1
            if not users[0]:
                del self._terms[key]

    def replace(self, profile_id: int, query: Query) -> None:
        """Index ``query`` for the profile, replacing its previous query if any."""
        if profile_id in self._profiles:
            self.remove(profile_id)
        self.add(profile_id, query)

    def _share(self, node: Node) -> _Term:
        """The one ``_Term`` for ``node`` (and its label) that all profiles use."""
        key = (node, _label(node))
        shared = self._terms.get(key)
        if shared is None:
            shared = self._terms[key] = (_Term(node), [0])
        shared[1][0] += 1
        return shared[0]

    def _posting(self, entry: str) -> _Posting:
        """The posting of ``entry``, created (and made findable) if new."""
        table, key = (self._by_prefix, entry[1:]) if entry[0] == "*" else (self._by_key, entry)
        posting = table.get(key)
        if posting is None:
            posting = table[key] = _Posting(set(), set())
            if table is self._by_prefix:
                size = len(_split_tag(key)[1])
                self._bucket_sizes[size] = self._bucket_sizes.get(size, 0) + 1
            elif " " in key:
                tag, head = _split_tag(key.partition(" ")[0])
                self._pair_heads[tag][head] = self._pair_heads[tag].get(head, 0) + 1
        return posting

    def _drop(self, entry: str) -> None:
        if entry[0] == "*":
            del self._by_prefix[entry[1:]]
            size = len(_split_tag(entry[1:])[1])
            self._bucket_sizes[size] -= 1
            if not self._bucket_sizes[size]:
                del self._bucket_sizes[size]
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
            in_bucket = self._by_prefix.get
            text_forms = d.title.keyset.union(
                d.title.norms(), d.abstract.keyset, d.abstract.norms()
            )
            for tag, forms in (("", text_forms), ("a:", d.author.forms()), ("o:", d.org.forms())):
                for size in self._bucket_sizes:
                    probes = {tag + f[:size] for f in forms if len(f) >= size}
                    hits += [p for p in map(in_bucket, probes) if p is not None]
        first: set[_Profile] = set()
        second: set[_Profile] = set()
        for posting in hits:
            first.update(posting.first)
            second.update(posting.second)
        return first & second

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
            for profile in self._candidates(d):
                if _passes(profile.plan, d):
                    found.append(scorer.match(profile.id, profile.terms, d))
        return _best_first(found)


def _split_tag(entry: str) -> tuple[str, str]:
    """``("a:", "doe")`` for ``"a:doe"``; keys themselves never hold a colon."""
    return (entry[:2], entry[2:]) if entry[1:2] == ":" else ("", entry)
