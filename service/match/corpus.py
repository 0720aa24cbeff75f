"""Documents kept prepared for previews: one query matched against many papers, fast.

A :class:`Corpus` holds papers tokenised once (:class:`PreparedDocument`) and postings from
each key (and each word's norm, for wildcards) to the documents that hold it. A search narrows
the query to the documents that can match it through the postings, then evaluates and scores
only those, exactly as :func:`match_query` does. Documents are added and dropped one by one,
so a caller keeps the corpus in step with what arrives and what ages out.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from itertools import compress

from service.match.index import (
    _ALWAYS,
    _KEY_TAGS,
    FIELD_WEIGHTS,
    Document,
    DocumentStats,
    PreparedDocument,
    _best_first,
    _Check,
    _compile,
    _Either,
    _Every,
    _Exact,
    _plan_keys,
    _positive_terms,
    _Scorer,
    _Term,
    _Without,
)
from service.match.query import And, Node, Or, Phrase, Prefix, Query, Source, Word
from service.match.results import Match

_NORM = "~"  # postings of a norm that differs from its word's key: "~" + tag + norm
_TAG_FIELDS = {"": ("title", "abstract"), "t:": ("title",), "a:": ("author",), "o:": ("org",)}


class Corpus:
    def __init__(self) -> None:
        self._documents: dict[int, PreparedDocument] = {}
        self._postings: dict[str, list[int]] = {}
        self._stale = 0  # ids left in postings by documents dropped or replaced
        self._vocabulary: list[str] | None = None  # sorted posting keys, for wildcards

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, document_id: int) -> bool:
        return document_id in self._documents

    def ids(self) -> Iterator[int]:
        return iter(list(self._documents))

    def add(self, document: Document) -> None:
        """Add ``document``, or replace the one with its id."""
        if document.id in self._documents:
            self.discard(document.id)
        prepared = PreparedDocument(document)
        postings = self._postings
        grew = False
        for key in _posting_keys(prepared):
            ids = postings.get(key)
            if ids is None:
                postings[key] = [document.id]
                grew = True
            else:
                ids.append(document.id)
        prepared.shed()
        self._documents[document.id] = prepared
        if grew:
            self._vocabulary = None

    def discard(self, document_id: int) -> None:
        """Drop a document (its postings are cleaned up in bulk, later)."""
        if self._documents.pop(document_id, None) is not None:
            self._stale += 1
            if self._stale > max(1000, len(self._documents) // 4):
                self._compact()

    def _compact(self) -> None:
        live = self._documents
        self._postings = {
            key: kept
            for key, ids in self._postings.items()
            if (kept := [i for i in ids if i in live])
        }
        self._stale = 0
        self._vocabulary = None

    def search(
        self,
        query: Query,
        stats: DocumentStats | None,
        *,
        upvote_boost: float = 0.0,
        allowed: Callable[[int], bool] | None = None,
        limit: int | None = None,
    ) -> list[Match]:
        """The best ``limit`` (or all) documents matching ``query`` (and ``allowed``, when
        given), best first, scored as :func:`match_query` scores them.

        Every match is scored from word counts alone; only the ``limit`` best are explained
        (their reasons' offsets found), which is most of the work of a match.
        """
        narrowed = self._candidates(query.root)
        ids: Iterable[int] = self._documents if narrowed is None else narrowed
        scorer = _Scorer(stats, FIELD_WEIGHTS, upvote_boost)
        plan = _compile(query.root)
        terms = tuple(_Term(t) for t in _positive_terms(query.root))
        probes = tuple(t.probe for t in terms)
        holding = _Holding(self, {*_plan_keys(plan), *probes})
        wildcards = {
            id(t): self._wildcard(t.idf_keys[0], t.node.stem)
            for t in terms
            if isinstance(t.node, Prefix)
        }
        ranked: list[tuple[float, int, list[_Term]]] = []
        touched = []
        # Most plans read only the key tuples, which stay; those that look at words in
        # other ways (and wildcards' norms) leave things to shed in every paper they saw.
        shed_all = bool(wildcards) or _looks_at_words(plan)
        for document_id in ids:
            d = self._documents.get(document_id)
            if d is None or (allowed is not None and not allowed(document_id)):
                continue
            if shed_all:
                touched.append(d)
            held = holding.of(d)
            if plan.ok(held, d):
                hits = list(compress(terms, map(held.__contains__, probes)))
                ranked.append((-_score(scorer, hits, d, wildcards), document_id, hits))
        ranked.sort(key=lambda r: (r[0], r[1]))
        chosen = ranked if limit is None else ranked[:limit]
        found = [scorer.match(0, hits, self._documents[i], {}) for _, i, hits in chosen]
        for d in touched or [self._documents[i] for _, i, _ in chosen]:
            d.shed()  # keep the corpus small: offsets are computed again when next needed
        return _best_first(found)

    # -- narrowing ------------------------------------------------------------------------------

    def _candidates(self, node: Node) -> set[int] | None:
        """A superset of the documents that can match ``node``; None for "any of them"."""
        if isinstance(node, Word):
            return self._posting(_KEY_TAGS[node.scope] + node.key)
        if isinstance(node, Phrase):
            tag = _KEY_TAGS[node.scope]
            return _intersection([self._posting(tag + key) for key in node.keys])
        if isinstance(node, Prefix):
            return self._prefixed(_KEY_TAGS[node.scope], node.stem)
        if isinstance(node, Source):
            return self._posting("s:" + node.id)
        if isinstance(node, And):
            parts = [c for t in node.terms if (c := self._candidates(t)) is not None]
            return _intersection(parts) if parts else None
        if isinstance(node, Or):
            union: set[int] = set()
            for term in node.terms:
                part = self._candidates(term)
                if part is None:
                    return None
                union |= part
            return union
        return None  # Not, Upvotes: any document

    def _posting(self, key: str) -> set[int]:
        return set(self._postings.get(key, ()))

    def _prefixed(self, tag: str, stem: str) -> set[int]:
        """Documents with a word (key or norm) in the fields of ``tag`` starting with
        ``stem``."""
        found: set[int] = set()
        for head in (tag + stem, _NORM + tag + stem):
            for entry in self._starting(head):
                found.update(self._postings[entry])
        return found

    def _starting(self, head: str) -> list[str]:
        """The posting keys that start with ``head``."""
        if self._vocabulary is None:
            self._vocabulary = sorted(self._postings)
        vocabulary, found = self._vocabulary, []
        i = bisect_left(vocabulary, head)
        while i < len(vocabulary) and vocabulary[i].startswith(head):
            found.append(vocabulary[i])
            i += 1
        return found

    def _wildcard(self, tag: str, stem: str) -> _Wildcard:
        """What scoring a wildcard needs: the keys and the norms (of words whose key
        differs) that start with ``stem`` in the fields of ``tag``, and the documents that
        have such a norm."""
        keys = frozenset(e[len(tag) :] for e in self._starting(tag + stem))
        entries = self._starting(_NORM + tag + stem)
        norms = frozenset(e[len(_NORM + tag) :] for e in entries)
        with_norms: set[int] = set()
        for entry in entries:
            with_norms.update(self._postings[entry])
        return _Wildcard(keys, norms, with_norms)


def _looks_at_words(check: _Check) -> bool:
    """Whether a plan checks words beyond its keys (see ``match.index._Exact``)."""
    if isinstance(check, _Exact):
        return True
    if isinstance(check, _Every | _Either):
        return any(map(_looks_at_words, check.checks))
    if isinstance(check, _Without):
        return _looks_at_words(check.check)
    return False


class _Holding:
    """Which of a plan's keys a document holds (what ``PreparedDocument.held`` gives, for
    these keys only: nothing is kept per document). Plain keys and wildcards are looked up
    in the postings, once per search; only adjacent words are looked for in the paper."""

    def __init__(self, corpus: Corpus, keys: Iterable[Hashable]) -> None:
        self.always = _ALWAYS in keys
        self.posted: list[tuple[str, set[int]]] = []
        self.pairs: list[tuple[str, tuple[str, ...], str, str]] = []
        for key in keys:
            if not isinstance(key, str) or key == _ALWAYS:
                continue
            if key.startswith("*"):  # "*" + tag + the first letters of a wildcard's stem
                tag, stem = _split_tag(key[1:])
                self.posted.append((key, corpus._prefixed(tag, stem)))
                continue
            tag, rest = _split_tag(key)
            first, space, second = rest.partition(" ")
            if space:  # two adjacent words
                self.pairs.append((key, _TAG_FIELDS[tag], first, second))
            else:  # a plain key: "s:" + source, or a word with its tag
                self.posted.append((key, corpus._posting(key)))

    def of(self, d: PreparedDocument) -> set[Hashable]:
        i = d.document.id
        held: set[Hashable] = {key for key, ids in self.posted if i in ids}
        for key, names, first, second in self.pairs:
            if any(_adjacent(getattr(d, name).keys, first, second) for name in names):
                held.add(key)
        if self.always:
            held.add(_ALWAYS)
        return held


def _occurrences(keys: tuple[str, ...], phrase: tuple[str, ...]) -> int:
    """How often ``phrase`` occurs in ``keys`` (whose set holds its first word)."""
    first, n = phrase[0], len(phrase)
    found, i = 0, -1
    while True:
        try:
            i = keys.index(first, i + 1)
        except ValueError:
            return found
        if keys[i : i + n] == phrase:
            found += 1


def _adjacent(keys: tuple[str, ...], first: str, second: str) -> bool:
    """Whether ``second`` follows ``first`` somewhere in ``keys`` (searched at C speed)."""
    last = len(keys) - 1
    try:
        i = keys.index(first)
    except ValueError:
        return False
    while i < last:
        if keys[i + 1] == second:
            return True
        try:
            i = keys.index(first, i + 1)
        except ValueError:
            return False
    return False


@dataclass(frozen=True, slots=True)
class _Wildcard:
    keys: frozenset[str]
    norms: frozenset[str]
    with_norms: set[int]


def _score(
    scorer: _Scorer, hits: list[_Term], d: PreparedDocument, wildcards: dict[int, _Wildcard]
) -> float:
    """The score ``scorer.match`` gives, added up in the same order (so equal to the last
    bit), from word counts: no offsets are found for words and phrases."""
    score = 0.0
    for term in hits:
        node = term.node
        if isinstance(node, Word):
            part, idf, key = 0.0, 0.0, node.key
            for name in term.fields:
                f = getattr(d, name)
                times = f.keys.count(key)  # one pass over a tuple: no set is kept per paper
                if times:
                    if not part and not idf:
                        idf = scorer.idf(term.idf_keys[0])
                    weight = scorer.weights.get(name, 1.0)
                    part += weight * idf * (1.0 + math.log(times))
        elif isinstance(node, Phrase):
            part, idf, phrase = 0.0, 0.0, node.keys
            for name in term.fields:
                f = getattr(d, name)
                times = _occurrences(f.keys, phrase)
                if times:
                    if not idf:
                        idf = sum(map(scorer.idf, term.idf_keys))
                    weight = scorer.weights.get(name, 1.0)
                    part += weight * idf * (1.0 + math.log(times))
        elif isinstance(node, Prefix):
            part, wildcard = 0.0, wildcards[id(term)]
            for name in term.fields:
                f = getattr(d, name)
                keys = wildcard.keys.intersection(f.keys)
                times = sum(map(f.keys.count, keys))
                if d.document.id in wildcard.with_norms:
                    # Words whose norm starts with the stem where their key does not: counted
                    # too, as ``prefix_at`` does.
                    extra = wildcard.norms.intersection(f.norms())
                    if extra:
                        more = [k for n, k in f._word_forms if n in extra and k not in keys]
                        times += len(more)
                        keys = keys.union(more)
                if times:
                    tag = term.idf_keys[0]
                    idf = max([scorer.idf(tag + k) for k in keys])
                    weight = scorer.weights.get(name, 1.0)
                    part += weight * idf * (1.0 + math.log(times))
        else:
            part = scorer.explain(term, d)[0]
        score += part
    boost = scorer.boost(d)
    return score + boost if boost else score


def _split_tag(key: str) -> tuple[str, str]:
    return (key[:2], key[2:]) if key[1:2] == ":" else ("", key)


def _posting_keys(d: PreparedDocument) -> set[str]:
    """The keys a document is filed under: its plain keys, and the norms of its words that
    differ from the word's own key (wildcards match either)."""
    keys = set(d.terms)
    for tag, names in _TAG_FIELDS.items():
        for name in names:
            f = getattr(d, name)
            keys.update(
                _NORM + tag + norm for norm, key in set(f._word_forms) if norm != key and norm
            )
    return keys


def _intersection(parts: list[set[int]]) -> set[int]:
    parts.sort(key=len)
    result = parts[0]
    for part in parts[1:]:
        result &= part
        if not result:
            break
    return result
