"""Matching papers against every profile at once, and scoring each match with its reasons.

``ProfileIndex`` files each profile under a few *anchor* terms, chosen so that every paper the
query matches contains at least one of them: the rarest positive term of an AND, every
alternative of an OR. A paper's words then name the candidate profiles; only those are
evaluated, so a batch costs time in proportion to the candidate (profile, paper) pairs, not to
profiles × papers. ``match_query`` evaluates one query directly, for previews.

Index keys (also the keys of ``DocumentStats.df``): a title or abstract word is its text key
(:mod:`service.match.text`), an author word ``a:key``, an organisation word ``o:key`` and a
source ``s:id``. Unscoped query words search the title and the abstract.

Score: the sum over the terms that hit of ``weight[field] × idf × (1 + ln(hits in field))``,
with BM25's idf from ``DocumentStats`` (1.0 without stats), plus
``upvote_boost × ln(1 + upvotes)``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
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
from service.match.text import keys, norms, scan
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
            return ", ".join(self.authors)
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
    """One field of a document: its keys in order; offsets and norms are computed on demand."""

    __slots__ = ("_at_key", "_at_norm", "_forms", "_spans", "keys", "keyset", "segments")

    def __init__(self, segments: tuple[tuple[str, int], ...]) -> None:
        self.segments = segments
        found: list[str] = []
        for text, _ in segments:
            if found:
                found.append(_GAP)
            found.extend(keys(text))
        self.keys = tuple(found)
        self.keyset = frozenset(found)
        self._forms: list[str] | None = None
        self._spans: tuple[tuple[int, int], ...] = ()
        self._at_key: dict[str, list[int]] | None = None
        self._at_norm: dict[str, list[int]] = {}

    def forms(self) -> list[str]:
        """Every distinct norm and key, sorted, for prefix search."""
        if self._forms is None:
            found = set(self.keyset)
            for text, _ in self.segments:
                found.update(norms(text))
            found.discard(_GAP)
            self._forms = sorted(found)
        return self._forms

    def _where(self) -> dict[str, list[int]]:
        """Positions of each key; also fills offsets and the positions of each norm."""
        if self._at_key is None:
            at_key: dict[str, list[int]] = {}
            spans: list[tuple[int, int]] = []
            for text, offset in self.segments:
                if spans:
                    spans.append((offset, offset))
                for token in scan(text):
                    at_key.setdefault(token.key, []).append(len(spans))
                    if token.norm != token.key:
                        self._at_norm.setdefault(token.norm, []).append(len(spans))
                    spans.append((offset + token.start, offset + token.end))
            self._spans, self._at_key = tuple(spans), at_key
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
        spans, last = self._spans, len(phrase) - 1
        return [(spans[i][0], spans[i + last][1]) for i in self._phrase_starts(phrase)]

    def prefix_spans(self, stem: str) -> tuple[list[tuple[int, int]], set[str]]:
        """Offsets of the words whose norm or key starts with ``stem``, and their keys."""
        at_key, at_norm = self._where(), self._at_norm
        forms = self.forms()
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
    out, offset = [], 0
    for part in parts:
        if part:
            out.append((part, offset))
            offset += len(part) + len(separator)
    return tuple(out)


class PreparedDocument:
    """A document tokenised once for evaluating many queries (see :func:`prepare`)."""

    __slots__ = ("abstract", "author", "document", "org", "sources", "terms", "title")

    def __init__(self, document: Document) -> None:
        self.document = document
        self.title = _FieldText(((document.title, 0),)) if document.title else _EMPTY
        self.abstract = _FieldText(((document.abstract, 0),)) if document.abstract else _EMPTY
        self.author = _FieldText(_segments(document.authors, ", ")) if document.authors else _EMPTY
        org = _segments((document.org_handle, document.org_name), " ")
        self.org = _FieldText(org) if org else _EMPTY
        self.sources = frozenset(s.casefold() for s in document.sources)
        terms = set(self.title.keyset)
        terms.update(self.abstract.keyset)
        terms.update(["a:" + k for k in self.author.keyset])
        terms.update(["o:" + k for k in self.org.keyset])
        terms.update(["s:" + s for s in self.sources])
        terms.difference_update((_GAP, "a:", "o:"))
        self.terms = terms

    def fields(self, scope: Scope | None) -> tuple[tuple[str, _FieldText], ...]:
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
    """Whether ``d`` satisfies ``node``; the hot loop of matching."""
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
        return any(f.has_phrase(node.keys) for _, f in d.fields(node.scope))
    if isinstance(node, Prefix):
        return any(f.has_prefix(node.stem) for _, f in d.fields(node.scope))
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


class _Scorer:
    """Scores a match and explains it, with idf from ``stats``."""

    def __init__(
        self, stats: DocumentStats | None, weights: Mapping[str, float], upvote_boost: float
    ) -> None:
        self.stats = stats
        self.weights = weights
        self.upvote_boost = upvote_boost
        self._idf: dict[str, float] = {}

    def idf(self, key: str) -> float:
        if self.stats is None:
            return 1.0
        known = self._idf.get(key)
        if known is None:
            n, df = self.stats.total, self.stats.df.get(key, 0)
            known = self._idf[key] = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        return known

    def match(self, profile_id: int, root: Node, d: PreparedDocument) -> Match:
        hits: dict[tuple[str, str], tuple[list[tuple[int, int]], float]] = {}
        self._collect(root, d, hits)
        score = 0.0
        reasons = []
        for (term, field), (spans, idf) in hits.items():
            spans.sort()
            score += self.weights.get(field, 1.0) * idf * (1.0 + math.log(len(spans)))
            reasons.append(Reason(term, field, tuple(spans)))
        upvotes = d.document.upvotes
        if self.upvote_boost and upvotes > 0:
            score += self.upvote_boost * math.log1p(upvotes)
        return Match(profile_id, d.document.id, score, tuple(reasons))

    def _collect(
        self,
        node: Node,
        d: PreparedDocument,
        hits: dict[tuple[str, str], tuple[list[tuple[int, int]], float]],
    ) -> None:
        def hit(term: str, field: str, spans: list[tuple[int, int]], idf: float) -> None:
            if spans:
                known = hits.setdefault((term, field), ([], idf))[0]
                known.extend(s for s in spans if s not in known)

        if isinstance(node, And):
            for term in node.terms:
                self._collect(term, d, hits)
        elif isinstance(node, Or):
            for term in node.terms:
                if _holds(term, d):
                    self._collect(term, d, hits)
        elif isinstance(node, Word):
            for name, f in d.fields(node.scope):
                idf = self.idf(_TAGS[node.scope] + node.key)
                hit(node.label or node.text, name, f.word_spans(node.key), idf)
        elif isinstance(node, Phrase):
            tag = _TAGS[node.scope]
            idf = sum(self.idf(tag + k) for k in node.keys)
            label = node.label or " ".join(node.texts)
            for name, f in d.fields(node.scope):
                hit(label, name, f.phrase_spans(node.keys), idf)
        elif isinstance(node, Prefix):
            for name, f in d.fields(node.scope):
                spans, matched = f.prefix_spans(node.stem)
                idf = max((self.idf(_TAGS[node.scope] + k) for k in matched), default=0.0)
                hit(node.label or node.stem + "*", name, spans, idf)
        elif isinstance(node, Source):
            if node.id in d.sources:
                spans = _source_spans(d.document, node.id)
                hit(node.label or node.id, "source", spans, self.idf("s:" + node.id))
        elif isinstance(node, Upvotes) and _compare(d.document.upvotes, node):
            shown = f"upvotes{node.op}{node.value}"
            hit(shown, "upvotes", [(0, len(str(d.document.upvotes)))], 0.0)


def _source_spans(document: Document, source_id: str) -> list[tuple[int, int]]:
    spans, offset = [], 0
    for source in document.sources:
        if source.casefold() == source_id:
            spans.append((offset, offset + len(source)))
        offset += len(source) + 2
    return spans


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
    found = []
    for document in documents:
        d = prepare(document)
        if _holds(query.root, d):
            found.append(scorer.match(profile_id, query.root, d))
    return _best_first(found)


@dataclass(slots=True, eq=False)
class _Profile:
    """A profile as the index holds it: its query, an evaluation plan and its index entries.

    ``required`` holds keys every match contains: a subset test rejects most candidates.
    """

    id: int
    query: Query
    plan: Node
    required: frozenset[str]
    anchors: tuple[str, ...]
    prefixes: tuple[str, ...]


_UNANCHORED = math.inf
# Two adjacent words are much rarer than the rarer of the two: a rough, safe guess.
_PAIR_RARITY = 0.25
_FIELD_TAGS = ("", "a:", "o:")


class _Planner:
    """Chooses anchors (rarest terms first) from document frequencies, or from word length."""

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

    def cost(self, node: Node) -> float:
        return self.anchors(node)[0]

    def anchors(self, node: Node) -> tuple[float, list[str]]:
        """The cheapest set of index entries one of which every match contains.

        Entries are keys; two adjacent words of a phrase, ``"tag+key key"``; or ``*`` + a
        prefix bucket for wildcards.
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
            tagged = _TAGS[node.scope] + node.stem
            bucket = "*" + _TAGS[node.scope] + node.stem[:3]
            return self.prefix_cost(tagged), [bucket]
        if isinstance(node, Source):
            key = "s:" + node.id
            return (self.word_cost(key) if self.stats else 1000.0), [key]
        if isinstance(node, And):
            return min((self.anchors(t) for t in node.terms), key=_first)
        if isinstance(node, Or):
            total, entries = 0.0, []
            for term in node.terms:
                cost, found = self.anchors(term)
                total += cost
                entries.extend(found)
            return total, entries
        return _UNANCHORED, []

    def plan(self, node: Node) -> Node:
        """``node`` with each AND's rarest terms first, so that evaluation fails fast."""
        if isinstance(node, And):
            return And(tuple(sorted((self.plan(t) for t in node.terms), key=self.cost)))
        if isinstance(node, Or):
            return Or(tuple(self.plan(t) for t in node.terms))
        return node


def _first(pair: tuple[float, list[str]]) -> float:
    return pair[0]


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


class ProfileIndex:
    """Every profile's query in one inverted index.

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
        self._by_key: dict[str, set[_Profile]] = {}
        self._by_prefix: dict[str, set[_Profile]] = {}
        self._short_prefixes = 0  # profiles anchored on a 2-character wildcard stem
        # First words of the phrase anchors, by field tag, counted: the pairs a paper looks up.
        self._pair_heads: dict[str, dict[str, int]] = {tag: {} for tag in _FIELD_TAGS}
        pairs = profiles.items() if isinstance(profiles, Mapping) else profiles
        for profile_id, query in pairs:
            self.add(profile_id, query)

    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self._profiles

    def query(self, profile_id: int) -> Query:
        """The query of a profile in the index."""
        return self._profiles[profile_id].query

    def add(self, profile_id: int, query: Query) -> None:
        """Index a new profile; ``ValueError`` if the id is already indexed."""
        if profile_id in self._profiles:
            raise ValueError(f"profile {profile_id} is already indexed")
        planner = self._planner
        cost, entries = planner.anchors(query.root)
        if cost == _UNANCHORED:
            raise ValueError(f"profile {profile_id}: the query has no term to look for")
        anchors = tuple(dict.fromkeys(e for e in entries if not e.startswith("*")))
        prefixes = tuple(dict.fromkeys(e[1:] for e in entries if e.startswith("*")))
        profile = _Profile(
            profile_id, query, planner.plan(query.root), _required(query.root), anchors, prefixes
        )
        self._profiles[profile_id] = profile
        for key in anchors:
            self._by_key.setdefault(key, set()).add(profile)
            if " " in key:
                tag, head = _split_tag(key.partition(" ")[0])
                self._pair_heads[tag][head] = self._pair_heads[tag].get(head, 0) + 1
        for bucket in prefixes:
            self._by_prefix.setdefault(bucket, set()).add(profile)
            self._short_prefixes += _is_short(bucket)

    def remove(self, profile_id: int) -> None:
        """Drop a profile from the index; ``KeyError`` if it is not indexed."""
        profile = self._profiles.pop(profile_id)
        for index, entries in (
            (self._by_key, profile.anchors),
            (self._by_prefix, profile.prefixes),
        ):
            for entry in entries:
                holders = index[entry]
                holders.discard(profile)
                if not holders:
                    del index[entry]
        for key in profile.anchors:
            if " " in key:
                tag, head = _split_tag(key.partition(" ")[0])
                heads = self._pair_heads[tag]
                heads[head] -= 1
                if not heads[head]:
                    del heads[head]
        self._short_prefixes -= sum(_is_short(b) for b in profile.prefixes)

    def replace(self, profile_id: int, query: Query) -> None:
        """Index ``query`` for the profile, replacing its previous query if any."""
        if profile_id in self._profiles:
            self.remove(profile_id)
        self.add(profile_id, query)

    def candidates(self, document: Document | PreparedDocument) -> set[int]:
        """Ids of the profiles the index would evaluate for ``document`` (for diagnostics)."""
        return {p.id for p in self._candidates(prepare(document))}

    def _candidates(self, d: PreparedDocument) -> set[_Profile]:
        found: set[_Profile] = set()
        by_key = self._by_key
        for key in d.terms:
            holders = by_key.get(key)
            if holders:
                found.update(holders)
        tagged = (("", d.title), ("", d.abstract), ("a:", d.author), ("o:", d.org))
        for tag, f in tagged:
            heads = self._pair_heads[tag]
            if not heads or heads.keys().isdisjoint(f.keyset):
                continue
            ks = f.keys
            for i in range(len(ks) - 1):
                if ks[i] in heads:
                    holders = by_key.get(f"{tag}{ks[i]} {ks[i + 1]}")
                    if holders:
                        found.update(holders)
        if self._by_prefix:
            by_prefix, short = self._by_prefix, self._short_prefixes
            for tag, f in tagged:
                if f is _EMPTY:
                    continue
                for form in f.forms():
                    holders = by_prefix.get(tag + form[:3])
                    if holders:
                        found.update(holders)
                    if short and len(form) > 2:
                        holders = by_prefix.get(tag + form[:2])
                        if holders:
                            found.update(holders)
        return found

    def match(
        self,
        documents: Iterable[Document | PreparedDocument],
        *,
        stats: DocumentStats | None = None,
    ) -> list[Match]:
        """Every (profile, document) match, grouped by profile id and best first within it.

        ``stats`` overrides the index's own statistics for scoring.
        """
        scorer = _Scorer(stats or self.stats, self.weights, self.upvote_boost)
        found = []
        for document in documents:
            d = prepare(document)
            terms = d.terms
            for profile in self._candidates(d):
                if profile.required <= terms and _holds(profile.plan, d):
                    found.append(scorer.match(profile.id, profile.query.root, d))
        return _best_first(found)


def _split_tag(entry: str) -> tuple[str, str]:
    """``("a:", "doe")`` for ``"a:doe"``; keys themselves never hold a colon."""
    return (entry[:2], entry[2:]) if entry[1:2] == ":" else ("", entry)


def _is_short(bucket: str) -> int:
    return int(len(_split_tag(bucket)[1]) < 3)
