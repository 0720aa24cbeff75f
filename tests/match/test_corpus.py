"""The preview corpus finds, scores and explains exactly what ``match_query`` does."""

from __future__ import annotations

import dataclasses
import random

import pytest

from match.test_index import EXTRA, random_query, seed_documents, vocabulary
from service.errors import QueryError
from service.match.corpus import Corpus
from service.match.index import Document, DocumentStats, match_query, prepare, stats_from
from service.match.query import Query, parse_query


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return seed_documents()


@pytest.fixture(scope="module")
def stats(docs: list[Document]) -> DocumentStats:
    return stats_from(docs)


@pytest.fixture(scope="module")
def profiles(docs: list[Document]) -> dict[int, Query]:
    """Random queries of every kind (as the index tests draw them)."""
    rng = random.Random(20260601)
    words_, phrases = vocabulary(docs + EXTRA)
    found: dict[int, Query] = {}
    while len(found) < 400:
        try:
            found[len(found)] = parse_query(random_query(rng, words_, phrases))
        except QueryError:
            continue
    return found


@pytest.mark.shared
def test_corpus_search_equals_match_query(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    papers = docs + EXTRA
    corpus = Corpus()
    for d in papers:
        corpus.add(d)
    prepared = [prepare(d) for d in papers]
    matched = 0
    for query in profiles.values():
        expected = match_query(query, prepared, stats)
        assert corpus.search(query, stats) == expected, str(query)
        assert corpus.search(query, stats, limit=3) == expected[:3], str(query)
        matched += bool(expected)
    assert matched > 100, "too few queries match to test anything"
    # Searching leaves nothing behind in the papers kept (they stay small).
    for kept in corpus._documents.values():
        assert kept._terms is None and not kept._held
        for f in (kept.title, kept.abstract, kept.author, kept.org):
            assert f._keyset is None or not f.keys
            assert f._starts is None and f._key_at is None and f._forms is None
            assert f._norms is None or not f.keys
            assert f._pieces is None or not f.keys
    boosted = parse_query("model* OR inference")
    assert corpus.search(boosted, stats, upvote_boost=2.0) == match_query(
        boosted, prepared, stats, upvote_boost=2.0
    )


@pytest.mark.shared
def test_corpus_follows_added_replaced_and_dropped_papers(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    corpus = Corpus()
    for d in docs:
        corpus.add(d)
    current = {d.id: d for d in docs}
    for d in docs[::3]:
        corpus.discard(d.id)
        del current[d.id]
    for d in docs[1::5]:
        changed = dataclasses.replace(d, title=d.title + " with a quantized kv cache")
        corpus.add(changed)
        current[d.id] = changed
    assert len(corpus) == len(current)
    assert sorted(corpus.ids()) == sorted(current)
    prepared = [prepare(d) for d in current.values()]
    for query in [*list(profiles.values())[:150], parse_query("quantiz* kv")]:
        assert corpus.search(query, stats) == match_query(query, prepared, stats), str(query)
    allowed = set(list(current)[:40])
    query = parse_query("model OR learning OR quantiz*")
    assert corpus.search(query, stats, allowed=allowed.__contains__) == match_query(
        query, [p for p in prepared if p.document.id in allowed], stats
    )


def test_wildcards_count_words_by_key_and_by_norm() -> None:
    papers = [
        Document(1, "LMs and LMS agents", "The agents of many caches cache."),
        Document(2, "An agent", "Cached caches, and agentic agents."),
        Document(3, "Nothing here", "lms alone"),
    ]
    corpus = Corpus()
    for d in papers:
        corpus.add(d)
    stats = stats_from(papers)
    prepared = [prepare(d) for d in papers]
    for text in ("lms*", "lm*", "agents*", "agent*", "cach*", "caches*", "title:agen*", "ca* ag*"):
        query = parse_query(text)
        expected = match_query(query, prepared, stats)
        assert expected, text
        assert corpus.search(query, stats) == expected, text
