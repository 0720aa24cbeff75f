"""Matching: queries against the seed papers, the index against a naive loop, reasons, scores."""

from __future__ import annotations

import gc
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

import service.match.index as index_module
from service.errors import QueryError
from service.match.index import (
    Document,
    DocumentStats,
    ProfileIndex,
    document_from_paper,
    document_terms,
    match_query,
    prepare,
    query_matches,
    stats_from,
)
from service.match.query import (
    And,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Query,
    Source,
    Upvotes,
    Word,
    parse_query,
)
from service.match.results import Match, Reason, new_match, new_reason
from service.match.text import balanced, scan
from service.model import Organisation, Paper

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"

# --- the seed papers, read with a simple extraction of our own ---------------------------------

_DATE = re.compile(r"[A-Z][a-z]{2} \d{1,2}(?:, \d{4})?(?: (\d+))?")


def seed_documents() -> list[Document]:
    """One document per distinct title; ``sources`` name the seed files it appears in."""
    if not SEEDS.is_dir():
        message = f"{SEEDS} is missing: the listing seeds live in ../shared/seeds"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    found: dict[str, Document] = {}
    for path in sorted(SEEDS.glob("*.txt")):
        source = "seed-" + path.name[:3]
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        i = lines.index("byAK and the research community") + 2
        while i + 1 < len(lines):
            title, abstract = lines[i], lines[i + 1]
            handle = name = ""
            upvotes = 0
            if i + 4 < len(lines) and lines[i + 3] == "·":
                meta = lines[i + 2].strip()
                if not meta.startswith("•"):
                    handle, _, name = meta.partition(" ")
                date = _DATE.fullmatch(lines[i + 4])
                assert date, lines[i + 4]
                upvotes = int(date[1] or 0)
                i += 5
            else:
                i += 2
            known = found.get(title)
            sources = (*known.sources, source) if known else (source,)
            found[title] = Document(
                id=known.id if known else len(found),
                title=title,
                abstract=abstract,
                org_handle=handle,
                org_name=name,
                sources=tuple(dict.fromkeys(sources)),
                upvotes=max(upvotes, known.upvotes if known else 0),
            )
    return list(found.values())


@pytest.fixture(scope="module")
def docs() -> list[Document]:
    return seed_documents()


@pytest.fixture(scope="module")
def stats(docs: list[Document]) -> DocumentStats:
    return stats_from(docs)


def ids(matches: Iterable[Match]) -> set[int]:
    return {m.document_id for m in matches}


def word(pattern: str) -> re.Pattern[str]:
    """``pattern`` as whole words, any case; ``_`` and punctuation separate words."""
    return re.compile(rf"(?<![^\W_])(?:{pattern})(?![^\W_])", re.IGNORECASE)


def where(docs: list[Document], test: Callable[[Document], bool]) -> set[int]:
    return {d.id for d in docs if test(d)}


def text(d: Document) -> tuple[str, str]:
    return d.title, d.abstract


def anywhere(pattern: re.Pattern[str], d: Document) -> bool:
    return any(pattern.search(t) for t in text(d))


# --- queries against the seeds, each against an expectation computed with plain regexes ----

KV_CACHE = word(r"kv[\W_]+caches?")
SPECULATIVE = word("speculative")
DECODING = word("decodings?")
PRIVACY = word("privac(?:y|ies)")
UNLEARNING = word("unlearnings?")
INFERENCE = word("inferences?")
LLM = word("llms?")
SURVEY = word("surveys?")
QUANTIZ = re.compile(r"(?<![^\W_])quantiz", re.IGNORECASE)
MOE = word("moes?")
CACHE = word("caches?")
POLICY = word("polic(?:y|ies)")
BENCHMARK = word("benchmarks?")
LLMS_PHRASE = word(r"large[\W_]+language[\W_]+models?")


EXPECTATIONS: list[tuple[str, Callable[[Document], bool]]] = [
    ('"kv cache"', lambda d: anywhere(KV_CACHE, d)),
    ("KV-cache", lambda d: anywhere(KV_CACHE, d)),
    ("speculative decoding", lambda d: anywhere(SPECULATIVE, d) and anywhere(DECODING, d)),
    ("speculative AND decoding", lambda d: anywhere(SPECULATIVE, d) and anywhere(DECODING, d)),
    ("privacy OR unlearning", lambda d: anywhere(PRIVACY, d) or anywhere(UNLEARNING, d)),
    ("inference -llm", lambda d: anywhere(INFERENCE, d) and not anywhere(LLM, d)),
    ("inference NOT llm", lambda d: anywhere(INFERENCE, d) and not anywhere(LLM, d)),
    ("title:survey", lambda d: bool(SURVEY.search(d.title))),
    ("abstract:survey", lambda d: bool(SURVEY.search(d.abstract))),
    (
        "title:(privacy benchmark)",
        lambda d: bool(PRIVACY.search(d.title) and BENCHMARK.search(d.title)),
    ),
    ('abstract:"large language models"', lambda d: bool(LLMS_PHRASE.search(d.abstract))),
    ("quantiz*", lambda d: anywhere(QUANTIZ, d)),
    ("caches", lambda d: anywhere(CACHE, d)),
    ("policies", lambda d: anywhere(POLICY, d)),
    ("moe", lambda d: anywhere(MOE, d)),
    ("title:moe", lambda d: bool(MOE.search(d.title))),
    ("org:ByteDance-Seed", lambda d: bool(word(r"bytedance[\W_]+seed").search(org(d)))),
    ('org:"ByteDance Seed"', lambda d: bool(word(r"bytedance[\W_]+seed").search(org(d)))),
    ("org:bytedance", lambda d: bool(word("bytedance").search(org(d)))),
    ("inference upvotes>=5", lambda d: anywhere(INFERENCE, d) and d.upvotes >= 5),
    ("inference upvotes<1", lambda d: anywhere(INFERENCE, d) and d.upvotes < 1),
    # An upvotes condition alone, or as an alternative, files the profile for every paper.
    ("upvotes>=10", lambda d: d.upvotes >= 10),
    ("upvotes>=3 -inference", lambda d: d.upvotes >= 3 and not anywhere(INFERENCE, d)),
    ("inference OR upvotes>=10", lambda d: anywhere(INFERENCE, d) or d.upvotes >= 10),
    ("source:seed-003 inference", lambda d: "seed-003" in d.sources and anywhere(INFERENCE, d)),
    (
        "(privacy OR unlearning) -title:benchmark",
        lambda d: (
            (anywhere(PRIVACY, d) or anywhere(UNLEARNING, d)) and not BENCHMARK.search(d.title)
        ),
    ),
]


def org(d: Document) -> str:
    return f"{d.org_handle} {d.org_name}"


@pytest.mark.shared
@pytest.mark.parametrize(("query", "expected"), EXPECTATIONS, ids=[q for q, _ in EXPECTATIONS])
def test_queries_on_the_seeds(
    docs: list[Document], stats: DocumentStats, query: str, expected: Callable[[Document], bool]
) -> None:
    want = where(docs, expected)
    assert want, f"the seeds hold no paper for {query!r}: a useless test"
    assert ids(match_query(parse_query(query), docs, stats)) == want
    index = ProfileIndex({1: parse_query(query)}, stats=stats)
    assert ids(index.match(docs)) == want


@pytest.mark.shared
def test_the_seeds_are_what_the_design_says(docs: list[Document]) -> None:
    # 204 distinct titles: "MoE$^2$: ..." and "MoE^2: ..." are one paper captured twice.
    assert len(docs) == 204
    moe = [d for d in docs if d.title.startswith(("MoE$^2$:", "MoE^2:"))]
    assert len(moe) == 2
    query = parse_query('title:"moe 2 optimizing collaborative inference"')
    assert ids(match_query(query, docs)) == {d.id for d in moe}


# --- the index against a naive loop, on random profiles -----------------------------------------


@cache
def tokens_of(text: str) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    found = scan(text)
    return (
        tuple(t.key for t in found),
        tuple(t.norm for t in found),
        frozenset(t.key for t in found),
    )


def reference(node: Node, d: Document) -> bool:
    """A slow, direct reading of the query language, independent of the compiled plans."""
    if isinstance(node, And):
        return all(reference(t, d) for t in node.terms)
    if isinstance(node, Or):
        return any(reference(t, d) for t in node.terms)
    if isinstance(node, Not):
        return not reference(node.term, d)
    if isinstance(node, Source):
        return node.id in {s.casefold() for s in d.sources}
    if isinstance(node, Upvotes):
        return {
            ">=": d.upvotes >= node.value,
            ">": d.upvotes > node.value,
            "<=": d.upvotes <= node.value,
            "<": d.upvotes < node.value,
            "=": d.upvotes == node.value,
        }[node.op]
    scope = node.scope  # type: ignore[union-attr]
    segments = {
        None: [d.title, d.abstract],
        "title": [d.title],
        "abstract": [d.abstract],
        "author": list(d.authors),
        "org": [d.org_handle, d.org_name],
    }[scope]
    for segment in segments:
        keys, norms, keyset = tokens_of(segment)
        if isinstance(node, Word) and node.key in keyset:
            return True
        if isinstance(node, Phrase) and keyset.issuperset(node.keys):
            n = len(node.keys)
            if any(keys[i : i + n] == node.keys for i in range(len(keys))):
                return True
        if isinstance(node, Prefix) and any(form.startswith(node.stem) for form in (*keys, *norms)):
            return True
    return False


EXTRA = [
    Document(
        id=1000,
        title="KV-Cache Compression for Llama3 Serving",
        abstract="We quantize the key-value cache to 4bit; caches shrink. 大语言模型推理 🚀",
        authors=("Jane Doe", "Zhang Wei", "José Núñez"),
        org_handle="ByteDance-Seed",
        org_name="ByteDance Seed",
        sources=("arxiv-cs-lg", "hf-daily"),
        upvotes=42,
    ),
    Document(
        id=1001,
        title=r"$\mathbf{MoE}$ routing policies",
        abstract="A survey of mixture-of-experts routing policy design, with Gaussian noise.",
        authors=("John Doe",),
        org_handle="amazon",
        org_name="Amazon",
        sources=("hf-daily",),
        upvotes=3,
    ),
]


def vocabulary(docs: list[Document]) -> tuple[list[str], list[str]]:
    """Title words found in at most 5% of the papers, and adjacent title words."""
    df = stats_from(docs).df
    words_, phrases = set(), set()
    for d in docs:
        found = [t.norm for t in scan(d.title)]
        words_.update(w for t, w in zip(scan(d.title), found, strict=True) if df[t.key] <= 10)
        phrases.update(f'"{a} {b}"' for a, b in pairwise(found))
    return sorted(words_), sorted(phrases)


def random_query(rng: random.Random, words_: list[str], phrases: list[str]) -> str:
    def term() -> str:
        roll = rng.random()
        if roll < 0.45:
            text = rng.choice(words_)
        elif roll < 0.7:
            text = rng.choice(phrases)
        elif roll < 0.8:
            stem = rng.choice([w for w in words_ if len(w) > 4])
            text = stem[: rng.randint(2, len(stem) - 1)] + "*"
        elif roll < 0.85:
            text = rng.choice(['author:"jane doe"', "author:doe", "author:nunez", "author:zh*"])
        elif roll < 0.9:
            text = rng.choice(["org:bytedance", 'org:"bytedance seed"', "org:amazon"])
        elif roll < 0.95:
            text = rng.choice(["source:hf-daily", "source:seed-001", "source:arxiv-cs-lg"])
        else:
            text = rng.choice(["inference", "llm", "model", "reasoning"])
        if rng.random() < 0.15 and not text.startswith(("author:", "org:", "source:")):
            text = rng.choice(("title:", "abstract:")) + text
        return text

    groups = []
    for _ in range(rng.randint(1, 3)):
        alternatives = [term() for _ in range(rng.randint(1, 4))]
        groups.append(
            alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})"
        )
    for _ in range(rng.choice((0, 0, 1, 2))):
        groups.append("-" + term())
    if rng.random() < 0.1:
        groups.append(f"upvotes{rng.choice(('>=', '<', '='))}{rng.randint(0, 5)}")
    if rng.random() < 0.1:
        return " OR ".join(groups[:2]) if len(groups) > 1 and groups[1][0] != "-" else groups[0]
    return " ".join(groups)


@pytest.fixture(scope="module")
def profiles(docs: list[Document]) -> dict[int, Query]:
    rng = random.Random(20240601)
    words_, phrases = vocabulary(docs + EXTRA)
    found: dict[int, Query] = {}
    while len(found) < 400:
        try:
            found[len(found)] = parse_query(random_query(rng, words_, phrases))
        except QueryError:
            continue  # e.g. an OR branch made only of NOT terms
    return found


@pytest.mark.shared
def test_index_matches_exactly_like_a_naive_loop(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    papers = docs + EXTRA
    prepared = [prepare(d) for d in papers]
    index = ProfileIndex(profiles, stats=stats)
    got = index.match(papers)
    naive = [
        m for pid, q in profiles.items() for m in match_query(q, prepared, stats, profile_id=pid)
    ]
    assert got == sorted(naive, key=lambda m: (m.profile_id, -m.score, m.document_id))
    assert len({m.profile_id for m in got}) > 100, "too few profiles match to test anything"
    assert len(got) < len(profiles) * len(papers) / 10, "the profiles match nearly everything"

    pairs = {(m.profile_id, m.document_id) for m in got}
    for pid, query in profiles.items():
        for d, p in zip(papers, prepared, strict=True):
            assert ((pid, d.id) in pairs) == reference(query.root, d) == query_matches(query, p)


@pytest.mark.shared
def test_the_index_evaluates_candidates_not_every_profile(docs: list[Document]) -> None:
    lonely = {i: parse_query(f"zq{i}x OR qz{i}y") for i in range(1000)}
    index = ProfileIndex(lonely, stats=stats_from(docs))
    assert all(not index.candidates(d) for d in docs)
    paper = Document(id=1, title="Notes on zq17x", abstract="and qz999y")
    assert index.candidates(paper) == {17, 999}
    assert ids(index.match([paper])) == {1}
    assert {m.profile_id for m in index.match([paper])} == {17, 999}


@pytest.mark.shared
def test_incremental_changes_equal_a_fresh_build(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    papers = docs + EXTRA
    first, later = dict(list(profiles.items())[:250]), dict(list(profiles.items())[250:])
    index = ProfileIndex(first, stats=stats)
    for pid in range(60):
        index.remove(pid)
    for pid in range(60, 120):
        index.replace(pid, later[250 + pid - 60])
    for pid, query in later.items():
        index.add(pid, query)
    index.replace(9999, parse_query("quantiz* OR moe"))

    final = {pid: q for pid, q in first.items() if pid >= 60}
    final.update({pid: later[250 + pid - 60] for pid in range(60, 120)})
    final.update(later)
    final[9999] = parse_query("quantiz* OR moe")
    fresh = ProfileIndex(final, stats=stats)
    assert len(index) == len(fresh) == len(final)
    assert index.match(papers) == fresh.match(papers)

    for pid in list(final):
        index.remove(pid)
    assert len(index) == 0
    assert index.match(papers) == []
    assert not index._filed, "postings of removed profiles must go"
    assert not index._wildcards and not index._terms and not index._spellings
    assert index._keys == {"*": 0} and not any(index._users) and not index._sources
    assert not any(index._words.values()) and not any(index._pairs.values())


@pytest.mark.shared
def test_profiles_sharing_queries_are_indexed_as_if_one_by_one(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    """``add_many`` plans a query once for all the profiles that have it (equal queries
    parsed apart too); each profile is still its own: matched, removed and counted alone."""
    papers = docs + EXTRA
    queries = list(profiles.values())[:40]
    shared = {n: parse_query(str(queries[n % 40])) for n in range(400)}
    bulk = ProfileIndex(stats=stats)
    bulk.add_many(shared.items())
    single = ProfileIndex(stats=stats)
    for pid, query in shared.items():
        single.add(pid, query)
    assert bulk.match(papers) == single.match(papers)
    assert len({m.profile_id for m in bulk.match(papers)}) > 100
    for pid in range(0, 400, 3):
        bulk.remove(pid)
        single.remove(pid)
    assert bulk.match(papers) == single.match(papers)
    for pid in [p for p in range(400) if p % 3]:
        bulk.remove(pid)
    assert not bulk._filed and not bulk._terms and not any(bulk._users)


def test_a_profile_refused_by_add_many_leaves_the_index_as_it_was() -> None:
    index = ProfileIndex({1: parse_query("kv")})
    for refused in (
        [(2, parse_query("llm")), (1, parse_query("moe"))],
        [(3, parse_query("a")), (3, parse_query("b"))],
    ):
        with pytest.raises(ValueError, match="already indexed"):
            index.add_many(refused)
        assert len(index) == 1 and 2 not in index and 3 not in index
    assert {m.profile_id for m in index.match([Document(id=1, title="kv llm moe a b")])} == {1}


def test_index_refuses_duplicates_and_unknown_ids() -> None:
    index = ProfileIndex({1: parse_query("kv")})
    with pytest.raises(ValueError, match="already indexed"):
        index.add(1, parse_query("llm"))
    with pytest.raises(KeyError):
        index.remove(2)
    index.replace(1, parse_query("llm"))
    assert str(index.query(1)) == "llm"
    assert 1 in index
    assert 2 not in index


# --- reasons and scores -----------------------------------------------------------------------


@pytest.mark.shared
def test_reasons_point_at_the_words_that_matched(
    docs: list[Document], stats: DocumentStats, profiles: dict[int, Query]
) -> None:
    papers = {d.id: d for d in docs + EXTRA}
    checked = 0
    for m in ProfileIndex(profiles, stats=stats).match(papers.values()):
        assert m.reasons, m
        for reason in m.reasons:
            if reason.field == "upvotes":
                continue
            field_text = papers[m.document_id].text(reason.field)
            assert reason.positions == tuple(sorted(reason.positions))
            for start, end in reason.positions:
                checked += 1
                assert_spells(reason.term, reason.field, field_text[start:end])
                # A bracket the span opens or closes is closed or opened just outside it
                # only when that partner could not be taken in.
                assert balanced(field_text, start, end) == (start, end), (reason, field_text)
    assert checked > 500


def assert_spells(term: str, field: str, found: str) -> None:
    """``found`` (a slice of the paper) is what the query term ``term`` asks for."""
    if field == "source":
        assert found.casefold() == term.casefold()
        return
    written = scan(term.rstrip("*"))
    got = scan(found)
    assert got, (term, found)
    if term.endswith("*"):
        assert len(got) == 1 and (
            got[0].norm.startswith(written[0].norm) or got[0].key.startswith(written[0].norm)
        ), (term, found)
    else:
        assert [t.key for t in got] == [t.key for t in written], (term, found)
    # A span starts and ends at a word, or at a bracket whose partner it holds: "(KV) cache".
    inner = found[1:] if found[:1] in "([{" and found[1:] else found
    inner = inner[:-1] if inner[-1:] in ")]}" and inner[:-1] else inner
    assert inner[:1].isalnum() and inner[-1:].isalnum(), (term, found)


def test_reasons_on_a_paper_by_hand() -> None:
    paper = EXTRA[0]
    (m,) = match_query(
        parse_query('"kv cache" quantiz* author:"jane doe" org:ByteDance-Seed 语言模型'), [paper]
    )
    shown = {
        (r.term, r.field): [paper.text(r.field)[a:b] for a, b in r.positions] for r in m.reasons
    }
    assert {k: [s.lower() for s in v] for k, v in shown.items()} == {
        ("kv cache", "title"): ["kv-cache"],
        ("quantiz*", "abstract"): ["quantize"],
        ("jane doe", "author"): ["jane doe"],
        ("ByteDance-Seed", "org"): ["bytedance-seed", "bytedance seed"],
        ("语言模型", "abstract"): ["语言模型"],
    }


def test_a_phrase_hit_marks_balanced_brackets_around_its_words() -> None:
    paper = Document(id=1, title="Fast (KV) cache eviction", abstract="key-value (KV) cache")
    (m,) = match_query(parse_query('"kv cache" "value kv"'), [paper])
    shown = [paper.text(r.field)[a:b] for r in m.reasons for a, b in r.positions]
    assert shown == ["(KV) cache", "(KV) cache", "value (KV)"]


def test_alternatives_that_hit_the_same_words_count_once() -> None:
    paper = Document(id=1, title="A kv-cache", abstract="The KV cache and a kv cache.")
    stats = DocumentStats(10, {})
    (both,) = match_query(parse_query('"kv cache" OR kv-cache'), [paper], stats)
    (one,) = match_query(parse_query('"kv cache"'), [paper], stats)
    assert both.score == one.score
    assert [(r.term, r.field, r.positions) for r in both.reasons] == [
        (r.term, r.field, r.positions) for r in one.reasons
    ]
    # Alternatives that hit different words still add up.
    (other,) = match_query(parse_query('"kv cache" OR title:a'), [paper], stats)
    assert other.score > one.score


def test_title_hits_outscore_abstract_hits_and_rare_words_outscore_common_ones() -> None:
    in_title = Document(id=1, title="Speculative decoding", abstract="Fast text.")
    in_abstract = Document(id=2, title="Fast text", abstract="Speculative decoding.")
    filler = [Document(id=10 + i, title=f"decoding note {i}", abstract="") for i in range(20)]
    stats = stats_from([in_title, in_abstract, *filler])
    (a,), (b,) = (
        match_query(parse_query("speculative"), [d], stats) for d in (in_title, in_abstract)
    )
    assert a.score > b.score
    rare = match_query(parse_query("speculative"), [in_title], stats)[0].score
    common = match_query(parse_query("decoding"), [in_title], stats)[0].score
    assert rare > common
    order = match_query(parse_query("speculative"), [in_abstract, in_title], stats)
    assert [m.document_id for m in order] == [1, 2]


def test_upvotes_boost_when_asked() -> None:
    low = Document(id=1, title="kv cache", upvotes=1)
    high = Document(id=2, title="kv cache", upvotes=100)
    plain = match_query(parse_query("kv"), [low, high])
    assert plain[0].score == plain[1].score
    boosted = match_query(parse_query("kv"), [low, high], upvote_boost=1.0)
    assert [m.document_id for m in boosted] == [2, 1]
    index = ProfileIndex({5: parse_query("kv")}, upvote_boost=1.0)
    assert [m.document_id for m in index.match([low, high])] == [2, 1]


def test_negated_terms_are_no_reasons() -> None:
    paper = Document(id=1, title="kv cache for llm serving", abstract="")
    (m,) = match_query(parse_query("kv -survey (llm OR gpu)"), [paper])
    assert [r.term for r in m.reasons] == ["kv", "llm"]


# --- hostile and odd input ----------------------------------------------------------------------

ODD = [
    Document(id=1, title="🚀 Rocket-fast KV cache 🚀", abstract="emoji ✨ everywhere ✨"),
    Document(id=2, title="大语言模型推理加速", abstract="基于缓存的方法"),
    Document(id=3, title="Résumé of naïve Bayes", abstract="José Núñez and Ångström units"),
    Document(id=4, title=r"Regex .*+?[](){}|\^$ in titles", abstract="a.b c|d (e) [f]"),
    Document(id=5, title="", abstract=""),
]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kv cache", {1}),
        ("rocket", {1}),
        ("语言模型", {2}),
        ("模型推理", {2}),
        ("title:缓存", set()),
        ("abstract:缓存", {2}),
        ("resume naive", {3}),
        ("Résumé", {3}),
        ("nunez angstrom", {3}),
        ("regex titles", {4}),
        ("a.b", {4}),
        ("c|d", {4}),
        ("[f]", {4}),
        ("kv.*cache", {1}),
        ("^kv$", {1}),
    ],
)
def test_odd_papers_and_queries(query: str, expected: set[int]) -> None:
    assert ids(match_query(parse_query(query), ODD)) == expected
    assert ids(ProfileIndex({1: parse_query(query)}).match(ODD)) == expected


@pytest.mark.parametrize("query", ["🚀", "✨ ✨", r".*+?[](){}|\^$", "()", "[]", r"\d+", "*", "|"])
def test_odd_queries_are_refused_with_a_position(query: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert 0 <= caught.value.position <= len(query)


def test_a_ten_thousand_term_query_is_refused() -> None:
    with pytest.raises(QueryError, match="too long"):
        parse_query(" ".join(["kv"] * 10_000))


def test_a_thousand_term_query_matches_correctly() -> None:
    query = parse_query(" OR ".join(f"w{i}" for i in range(999)) + " OR cache")
    assert ids(ProfileIndex({1: query}).match(ODD)) == {1}


# --- plumbing ---------------------------------------------------------------------------------


def test_document_from_paper() -> None:
    paper = Paper(
        id=7,
        key="arxiv:2410.21465",
        title="T",
        abstract="A",
        authors=("Jane Doe",),
        organisation=Organisation("ByteDance-Seed", "ByteDance Seed"),
        upvotes=4,
        sources=("hf-daily",),
        first_seen_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    assert document_from_paper(paper) == Document(
        id=7,
        title="T",
        abstract="A",
        authors=("Jane Doe",),
        org_handle="ByteDance-Seed",
        org_name="ByteDance Seed",
        sources=("hf-daily",),
        upvotes=4,
    )
    bare = document_from_paper(Paper(id=8, key="t:x", title="X"))
    assert (bare.org_handle, bare.org_name, bare.authors) == ("", "", ())


def test_stats_count_documents_per_key() -> None:
    papers = [
        Document(id=1, title="KV caches", abstract="kv cache", authors=("Jane Doe",)),
        Document(id=2, title="Other", abstract="cache", sources=("HF",)),
    ]
    stats = stats_from(papers)
    assert stats.total == 2
    assert stats.df["cach"] == 2
    assert stats.df["kv"] == 1
    assert stats.df["t:kv"] == 1
    assert stats.df["a:doe"] == 1
    assert stats.df["s:hf"] == 1
    assert document_terms(papers[1]) == {"other", "t:other", "cach", "s:hf"}


def test_field_texts_that_positions_index_into() -> None:
    d = Document(
        id=1,
        title="t",
        authors=("A B", "", "C"),
        org_handle="h",
        org_name="Name",
        sources=("x", "y"),
        upvotes=12,
    )
    assert [d.text(f) for f in ("author", "org", "source", "upvotes")] == [
        "A B, C",
        "h Name",
        "x, y",
        "12",
    ]
    with pytest.raises(ValueError, match="unknown field"):
        d.text("body")
    (m,) = match_query(parse_query("author:c source:y upvotes>10"), [d])
    assert [(r.field, r.positions) for r in m.reasons] == [
        ("author", ((5, 6),)),
        ("source", ((3, 4),)),
        ("upvotes", ((0, 2),)),
    ]


def test_phrases_do_not_span_two_authors_or_handle_and_name() -> None:
    d = Document(id=1, title="t", authors=("Jane Doe", "Zhang Wei"), org_handle="a-b", org_name="c")
    assert query_matches(parse_query('author:"jane doe"'), d)
    assert not query_matches(parse_query('author:"doe zhang"'), d)
    assert query_matches(parse_query("org:a-b"), d)
    assert not query_matches(parse_query('org:"b c"'), d)
    assert not ProfileIndex({1: parse_query('author:"doe zhang"')}).match([d])


# --- the index's batches and flattened plans, on queries with every kind of part ----------------


def nested_query(
    rng: random.Random, words_: list[str], phrases: list[str], longer: list[str]
) -> str:
    """A query with the parts that bit sets alone cannot decide: phrases of three words and
    more, wildcards of more than eight letters, ``abstract:`` terms, groups within groups,
    NOT groups and upvotes; and with the ones that they can."""
    long_words = [w for w in words_ if len(w) > 10] or words_

    def leaf() -> str:
        roll = rng.random()
        if roll < 0.3:
            text = rng.choice(words_)
        elif roll < 0.45:
            text = rng.choice(phrases)
        elif roll < 0.55:
            text = rng.choice(longer)
        elif roll < 0.7:
            stem = rng.choice([w for w in words_ if len(w) > 4])
            text = stem[: rng.randint(2, len(stem) - 1)] + "*"
        elif roll < 0.75:
            text = rng.choice(long_words)[:-1] + "*"
        elif roll < 0.82:
            text = rng.choice(["source:hf-daily", "source:seed-001", "org:bytedance", "author:doe"])
        elif roll < 0.88:
            return f"upvotes>={rng.randint(0, 30)}"
        else:
            text = rng.choice(["inference", "model", "llm", "reasoning"])
        if rng.random() < 0.2 and not text.startswith(("author:", "org:", "source:")):
            text = rng.choice(("title:", "abstract:")) + text
        return text

    def group(depth: int) -> str:
        parts = [
            group(depth + 1) if depth < 2 and rng.random() < 0.3 else leaf()
            for _ in range(rng.randint(1, 3))
        ]
        if len(parts) == 1:
            return parts[0]
        return "(" + (" OR " if rng.random() < 0.6 else " ").join(parts) + ")"

    parts = [group(0) for _ in range(rng.randint(1, 3))]
    parts += [
        "-" + (group(1) if rng.random() < 0.3 else leaf()) for _ in range(rng.choice((0, 1, 2)))
    ]
    return " ".join(parts)


@pytest.fixture(scope="module")
def nested_profiles(docs: list[Document]) -> dict[int, Query]:
    rng = random.Random(20240602)
    words_, phrases = vocabulary(docs + EXTRA)
    longer = sorted(
        {
            '"' + " ".join(t.norm for t in scan(d.title)[i : i + 3]) + '"'
            for d in docs
            for i in range(len(scan(d.title)) - 2)
        }
    )
    found: dict[int, Query] = {}
    while len(found) < 300:
        try:
            found[len(found)] = parse_query(nested_query(rng, words_, phrases, longer))
        except QueryError:
            continue  # e.g. an OR branch made only of an upvotes condition
    return found


@pytest.mark.shared
@pytest.mark.parametrize("batch", [1, 5, 64, index_module._BATCH])
def test_index_matches_like_a_naive_loop_in_batches_of_any_size(
    docs: list[Document],
    stats: DocumentStats,
    nested_profiles: dict[int, Query],
    batch: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_module, "_BATCH", batch)
    papers = docs + EXTRA
    index = ProfileIndex(nested_profiles, stats=stats)
    held = [p for p in index._profiles.values() if p.rest is not None]
    assert len(held) > 50, "too few queries need word positions to test them"
    got = index.match(papers)
    prepared = [prepare(d) for d in papers]
    naive = [
        m
        for pid, q in nested_profiles.items()
        for m in match_query(q, prepared, stats, profile_id=pid)
    ]
    assert got == sorted(naive, key=lambda m: (m.profile_id, -m.score, m.document_id))
    assert len({m.profile_id for m in got}) > 50, "too few profiles match to test anything"
    pairs = {(m.profile_id, m.document_id) for m in got}
    for pid, query in list(nested_profiles.items())[:100]:
        for d in papers:
            assert ((pid, d.id) in pairs) == reference(query.root, d), (str(query), d.id)


@pytest.mark.shared
def test_flattened_plans_decide_exactly_like_the_plans(
    docs: list[Document], stats: DocumentStats, nested_profiles: dict[int, Query]
) -> None:
    """The bit set tests (required, forbidden, groups, with the keys that the rest needs)
    then the rest: never a match turned away, never one let in."""
    cost = index_module._Planner(stats).key_cost
    papers = [prepare(d) for d in docs + EXTRA]
    held = [p.held(index_module._EVERY_SIZE) for p in papers]
    needs = 0
    for query in nested_profiles.values():
        plan = index_module._compile(query.root)
        required, forbidden, groups, rest = index_module._flatten(plan, cost)
        needs += rest is not None and len(groups) > sum(
            isinstance(c, index_module._Any)
            for c in (plan.checks if isinstance(plan, index_module._Every) else (plan,))
        )
        for p, keys in zip(papers, held, strict=True):
            cheap = (
                required <= keys
                and forbidden.isdisjoint(keys)
                and all(not group.isdisjoint(keys) for group in groups)
            )
            if plan.ok(keys, p):
                assert cheap, (str(query), p.document.id)
            assert plan.ok(keys, p) == (cheap and (rest is None or rest.ok(keys, p)))
    assert needs > 50, "too few plans with keys needed by their rest"


@pytest.mark.shared
def test_key_ids_given_back_are_not_mistaken_for_their_old_keys(docs: list[Document]) -> None:
    papers = docs + EXTRA
    index = ProfileIndex({1: parse_query("quantiz*"), 2: parse_query("moe")})
    assert index.match(papers)  # remembers which words hold quantiz*
    index.remove(1)  # its wildcard's id is free
    index.add(3, parse_query("rout* OR polic*"))  # new wildcards, maybe that id
    index.replace(2, parse_query('"kv cache" -quantiz*'))
    fresh = ProfileIndex(
        {3: parse_query("rout* OR polic*"), 2: parse_query('"kv cache" -quantiz*')}
    )
    assert index.match(papers) == fresh.match(papers)
    assert ids(m for m in index.match(papers) if m.profile_id == 3) == ids(
        match_query(parse_query("rout* OR polic*"), papers)
    )


def test_a_wildcard_added_after_matching_is_looked_for() -> None:
    papers = [Document(id=1, title="Quantized routing"), Document(id=2, title="Routers")]
    index = ProfileIndex({1: parse_query("quantiz*")})
    assert ids(index.match(papers)) == {1}
    index.add(2, parse_query("rout*"))
    assert {(m.profile_id, m.document_id) for m in index.match(papers)} == {(1, 1), (2, 1), (2, 2)}


def test_match_pauses_the_collector_and_restores_it() -> None:
    index = ProfileIndex({1: parse_query("kv")})
    paper = Document(id=1, title="kv cache")
    seen: list[bool] = []

    def papers() -> Iterator[Document]:
        seen.append(gc.isenabled())
        yield paper

    assert gc.isenabled()
    assert ids(index.match(papers())) == {1}
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        index.match([paper])
        assert not gc.isenabled()
    finally:
        gc.enable()

    def broken() -> Iterator[Document]:
        yield paper
        raise RuntimeError("the feed broke")

    with pytest.raises(RuntimeError, match="feed broke"):
        index.match(broken())
    assert gc.isenabled()


def test_the_fast_constructors_make_the_same_objects() -> None:
    reason = new_reason("KV", "title", ((0, 2),))
    assert reason == Reason("KV", "title", ((0, 2),))
    assert hash(reason) == hash(Reason("KV", "title", ((0, 2),)))
    match = new_match(1, 2, 0.5, (reason,))
    assert match == Match(1, 2, 0.5, (Reason("KV", "title", ((0, 2),)),))
    assert repr(match) == repr(Match(1, 2, 0.5, (reason,)))
    with pytest.raises(FrozenInstanceError):
        match.score = 1.0  # type: ignore[misc]
