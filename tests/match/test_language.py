"""The query language on the seeds, each operator against a set computed here with regexes."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.errors import QueryError
from service.match.index import Document, ProfileIndex, match_query, stats_from
from service.match.query import parse_query
from service.model import Snapshot
from service.parse.listing import parse

AT = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def documents(seeds: list[Path]) -> list[Document]:
    seen: dict[str, Document] = {}
    for path in seeds:
        for paper in parse(Snapshot("s", str(path), path.read_bytes(), fetched_at=AT)).papers:
            org = paper.organisation
            seen.setdefault(
                paper.title,
                Document(
                    id=len(seen) + 1,
                    title=paper.title,
                    abstract=paper.abstract,
                    authors=(),
                    org_handle=org.handle if org else "",
                    org_name=org.name if org else "",
                    sources=("listing",),
                    upvotes=paper.upvotes or 0,
                ),
            )
    return list(seen.values())


def found(query: str, documents: list[Document]) -> set[int]:
    return {m.document_id for m in match_query(parse_query(query), documents)}


def where(documents: list[Document], test: object) -> set[int]:
    return {d.id for d in documents if test(d)}  # type: ignore[operator]


def text(d: Document) -> str:
    return f"{d.title}\n{d.abstract}"


def has(pattern: str, value: str) -> bool:
    return re.search(pattern, value, re.IGNORECASE) is not None


CASES = {
    '"kv cache"': lambda d: has(r"\bkv\W+caches?\b", text(d)),
    "speculative decoding": lambda d: (
        has(r"\bspeculative\b", text(d))
        and has(r"\bdecod(e|es|ing)\b", text(d))
        and has(r"\bdecoding\b", text(d))
    ),
    "privacy OR encrypted": lambda d: (
        has(r"\bprivacy\b", text(d)) or has(r"\bencrypted\b", text(d))
    ),
    "inference NOT memory": lambda d: (
        has(r"\binferences?\b", text(d)) and not has(r"\bmemory\b", text(d))
    ),
    "inference -memory": lambda d: (
        has(r"\binferences?\b", text(d)) and not has(r"\bmemory\b", text(d))
    ),
    "title:attention": lambda d: has(r"\battentions?\b", d.title),
    "abstract:quantization": lambda d: has(r"\bquantizations?\b", d.abstract),
    "title:quantiz*": lambda d: has(r"\bquantiz\w*", d.title),
    "title:caches": lambda d: has(r"\bcaches?\b", d.title),
    "org:ByteDance-Seed": lambda d: d.org_handle == "ByteDance-Seed",
    'org:"ByteDance Seed"': lambda d: d.org_name == "ByteDance Seed",
    "llm upvotes>=10": lambda d: has(r"\bllms?\b", text(d)) and d.upvotes >= 10,
    "title:(kv OR attention) cache": lambda d: (
        (has(r"\bkv\b", d.title) or has(r"\battentions?\b", d.title))
        and has(r"\bcaches?\b", text(d))
    ),
    "moe": lambda d: has(r"\bmoes?\b", re.sub(r"[$^_{}\\]", "", text(d))),
    "rag": lambda d: has(r"\brags?\b", text(d)),
    "gpu": lambda d: has(r"\bgpus?\b", text(d)),
    "gpus": lambda d: has(r"\bgpus?\b", text(d)),
    "cpu": lambda d: has(r"\bcpus?\b", text(d)),
    "CPUs": lambda d: has(r"\bcpus?\b", text(d)),
    # "LMs" is the plural of LM; "LMS" and "lms" are words of their own.
    "lm": lambda d: has(r"\blm\b", text(d)) or re.search(r"\bLMs\b", text(d)) is not None,
    "LMs": lambda d: has(r"\blm\b", text(d)) or re.search(r"\bLMs\b", text(d)) is not None,
    "LLMs": lambda d: has(r"\bllms?\b", text(d)),
}


@pytest.mark.shared
@pytest.mark.parametrize("query", sorted(CASES))
def test_each_operator_on_the_seeds(query: str, documents: list[Document]) -> None:
    expected = where(documents, CASES[query])
    assert found(query, documents) == expected
    assert expected, "the case should select something"


@pytest.mark.shared
def test_rag_is_a_whole_word(documents: list[Document]) -> None:
    storage = where(documents, lambda d: has(r"storage", text(d)))
    assert storage
    assert not (
        found("rag", documents) & (storage - where(documents, lambda d: has(r"\brags?\b", text(d))))
    )


@pytest.mark.shared
def test_the_index_agrees_with_one_query_at_a_time(documents: list[Document]) -> None:
    words = sorted({w.lower() for d in documents for w in re.findall(r"[A-Za-z]{5,}", d.title)})
    rng = random.Random(7)
    queries: dict[int, str] = {}
    for number in range(300):
        picked = rng.sample(words, rng.randint(1, 3))
        shape = rng.choice(["and", "or", "phrase", "not", "title"])
        if shape == "or":
            query = " OR ".join(picked)
        elif shape == "phrase":
            query = f'"{picked[0]} {picked[-1]}"' if len(picked) > 1 else picked[0]
        elif shape == "not" and len(picked) > 1:
            query = f"{picked[0]} -{picked[1]}"
        elif shape == "title":
            query = f"title:{picked[0][:5]}*"
        else:
            query = " ".join(picked)
        queries[number] = query
    stats = stats_from(documents)
    index = ProfileIndex({n: parse_query(q) for n, q in queries.items()}, stats=stats)
    by_index = {(m.profile_id, m.document_id) for m in index.match(documents)}
    one_by_one = {
        (n, m.document_id)
        for n, q in queries.items()
        for m in match_query(parse_query(q), documents, stats)
    }
    assert by_index == one_by_one
    # Changing profiles one by one ends where a fresh build does.
    for n in range(0, 300, 3):
        index.remove(n)
    for n in range(1, 300, 3):
        index.replace(n, parse_query("cache"))
    fresh = ProfileIndex(
        {n: parse_query("cache" if n % 3 == 1 else q) for n, q in queries.items() if n % 3},
        stats=stats,
    )
    assert {(m.profile_id, m.document_id) for m in index.match(documents)} == {
        (m.profile_id, m.document_id) for m in fresh.match(documents)
    }


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("", 0),
        ('kv "cache', 3),
        ("(kv cache", 0),
        ("kv cache)", 8),
        ("kv OR", 3),
        ("foo:bar", 0),
        ("upvotes>=abc", 9),
        ("NOT kv", 0),
    ],
)
def test_errors_point_at_the_problem(query: str, position: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert caught.value.position == position, str(caught.value)
    assert str(caught.value).splitlines()[-1].index("^") - 2 == position


def test_hostile_input_is_an_error_or_a_match() -> None:
    docs = [
        Document(1, "A (KV) cache.*+? [x]", "", (), "", "", (), 0),
        Document(2, "Another KV paper", "", (), "", "", (), 0),
    ]
    # Regex metacharacters are punctuation: they separate words and match nothing themselves.
    assert found(r".*+? kv", docs) == {1, 2}
    assert found(r"kv .*+?", docs) == {1, 2}
    assert found("[x] kv", docs) == {1}
    assert found("kv ^$|", docs) == {1, 2}
    with pytest.raises(QueryError) as caught:
        parse_query(r".*+?[](){}|\^$ kv")  # "()" is an empty group, at position 6
    assert (caught.value.position, caught.value.reason) == (6, "empty parentheses")
    with pytest.raises(QueryError):
        parse_query(" ".join(f"w{i}" for i in range(10_000)))
    with pytest.raises(QueryError):
        parse_query("🚀🚀")
    assert found("café", [Document(2, "Cafe au lait", "", (), "", "", (), 0)]) == {2}
