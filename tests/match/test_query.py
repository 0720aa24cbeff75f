"""The profile query language: what parses to what, and every error with its position."""

from __future__ import annotations

import unicodedata

import pytest

from service.errors import QueryError
from service.match.query import (
    MAX_QUERY_CHARS,
    MAX_TERMS,
    And,
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


def w(text: str, scope: str | None = None) -> Word:
    return Word(text, text, scope)  # type: ignore[arg-type]


def p(*texts: str, scope: str | None = None) -> Phrase:
    return Phrase(texts, texts, scope)  # type: ignore[arg-type]


def root(text: str) -> object:
    return parse_query(text).root


def caret(error: QueryError) -> int:
    """The position in the query that the caret under it points at, on a terminal (where
    emoji and CJK characters take two columns)."""
    lines = str(error).splitlines()
    assert lines[-2] == "  " + error.query
    column, at = lines[-1].index("^") - 2, 0
    for position, char in enumerate(error.query):
        if at == column:
            return position
        at += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return len(error.query)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kv", w("kv")),
        ("kv cache", And((w("kv"), Word("cach", "cache")))),
        ("kv AND llm", And((w("kv"), w("llm")))),
        ('"kv cache"', Phrase(("kv", "cach"), ("kv", "cache"))),
        ("kv-cache", Phrase(("kv", "cach"), ("kv", "cache"))),
        ("llm OR gpu", Or((w("llm"), w("gpu")))),
        ("NOT survey llm", And((Not(Word("survey", "survey")), w("llm")))),
        ("-survey llm", And((Not(Word("survey", "survey")), w("llm")))),
        ('-"kv cache" llm', And((Not(Phrase(("kv", "cach"), ("kv", "cache"))), w("llm")))),
        ("-(a OR b) c", And((Not(Or((w("a"), w("b")))), w("c")))),
        ("title:llm", w("llm", "title")),
        ('abstract:"large model"', p("large", "model", scope="abstract")),
        ("title:(kv llm)", And((w("kv", "title"), w("llm", "title")))),
        ("title:(kv OR -llm) gpu", And((Or((w("kv", "title"), Not(w("llm", "title")))), w("gpu")))),
        ("TITLE:llm", w("llm", "title")),
        ("quantiz*", Prefix("quantiz")),
        ("title:Quantiz*", Prefix("quantiz", "title")),
        ('author:"Jane Doe"', p("jane", "doe", scope="author")),
        ("author:doe", w("doe", "author")),
        ("org:ByteDance-Seed", p("bytedance", "seed", scope="org")),
        ("source:arxiv-cs-LG llm", And((Source("arxiv-cs-lg"), w("llm")))),
        ("source:(hf OR arxiv) llm", And((Or((Source("hf"), Source("arxiv"))), w("llm")))),
        ("llm upvotes>=10", And((w("llm"), Upvotes(">=", 10)))),
        ("llm upvotes>3", And((w("llm"), Upvotes(">", 3)))),
        ("llm upvotes<3", And((w("llm"), Upvotes("<", 3)))),
        ("llm upvotes<=3", And((w("llm"), Upvotes("<=", 3)))),
        ("llm upvotes=0", And((w("llm"), Upvotes("=", 0)))),
        ("NOT NOT llm", w("llm")),
        ('"Hawkeye:Efficient"', p("hawkeye", "efficient")),
        ("MoE$^2$", p("moe", "2")),
        ("Jiménez", Word("jimenez", "jimenez")),
        ("语言模型", p("语", "言", "模", "型")),
        ("kv 🚀", w("kv")),
        ("c++ kv|cache [gpu]", And((w("c"), Phrase(("kv", "cach"), ("kv", "cache")), w("gpu")))),
    ],
)
def test_constructs(text: str, expected: object) -> None:
    assert root(text) == expected


def test_precedence_not_then_and_then_or() -> None:
    assert root("a b OR c d") == Or((And((w("a"), w("b"))), And((w("c"), w("d")))))
    assert root("a OR b c") == Or((w("a"), And((w("b"), w("c")))))
    assert root("NOT a b OR c") == Or((And((Not(w("a")), w("b"))), w("c")))
    assert root("a (b OR c)") == And((w("a"), Or((w("b"), w("c")))))
    assert root("(a b) (c d)") == And((w("a"), w("b"), w("c"), w("d")))


def test_words_remember_how_they_were_written() -> None:
    query = parse_query("KV-Cache OR Quantiz*")
    assert isinstance(query.root, Or)
    assert [t.label for t in query.root.terms] == ["KV-Cache", "Quantiz*"]  # type: ignore[union-attr]
    assert query.text == "KV-Cache OR Quantiz*"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("KV-Cache", '"kv cache"'),
        ("title:(kv cache) -Survey", "title:kv title:cache -survey"),
        ("a OR b c", "a OR b c"),
        ("a (b OR c)", "a (b OR c)"),
        ("-(a OR b) c", "-(a OR b) c"),
        ("org:ByteDance-Seed upvotes>=10", 'org:"bytedance seed" upvotes>=10'),
        ("source:ArXiv-CS quantiz*", "source:arxiv-cs quantiz*"),
        ('source:"my feed" x', 'source:"my feed" x'),
        ("NOT a b", "-a b"),
    ],
)
def test_normalised_rendering(text: str, shown: str) -> None:
    assert str(parse_query(text)) == shown


@pytest.mark.parametrize(
    "text",
    [
        'title:"kv cache" (llm OR gpu*) -author:"jane doe" upvotes>=3',
        "a OR (b c) OR -(d OR e) f",
        "source:hf (org:bytedance OR org:amazon) title:(moe OR experts)",
        "语言模型 Jiménez naïve",
    ],
)
def test_the_rendering_parses_back_to_the_same_query(text: str) -> None:
    query = parse_query(text)
    assert parse_query(str(query)) == query
    assert isinstance(query, Query)


@pytest.mark.parametrize(
    ("text", "position", "says"),
    [
        ("", 0, "empty query"),
        ("   ", 0, "empty query"),
        ("🚀", 0, "empty query"),
        ("kv 🚀 OR", 5, "OR needs a term after it"),
        ("NOT kv", 0, "nothing to look for"),
        ("-kv -cache", 0, "nothing to look for"),
        ("kv OR -cache", 6, "nothing to look for"),
        ("kv (cache OR NOT llm) OR -x", 25, "nothing to look for"),
        ("upvotes>=10 OR -x", 15, "nothing to look for"),
        ('say "kv cache', 4, "unbalanced quote"),
        ("(kv cache", 0, "unclosed parenthesis"),
        ("kv (cache (llm)", 3, "unclosed parenthesis"),
        ("kv cache)", 8, "unmatched ')'"),
        ("()", 0, "empty parentheses"),
        ("kv OR", 3, "OR needs a term after it"),
        ("OR kv", 0, "OR needs a term before it"),
        ("kv OR OR cache", 3, "OR needs a term after it"),
        ("kv (OR cache)", 4, "OR needs a term before it"),
        ("kv AND", 3, "AND needs a term after it"),
        ("AND kv", 0, "AND needs a term before it"),
        ("kv NOT", 3, "NOT needs a term after it"),
        ("kv OR 🚀", 6, "nothing to search for"),
        ("foo:bar", 0, "unknown field 'foo'"),
        ("kv Hawkeye:Efficient", 3, "unknown field 'Hawkeye'"),
        ("upvotes:10 kv", 0, "unknown field 'upvotes'"),
        ("title:", 6, "title: needs"),
        ("title: kv", 6, "title: needs"),
        ("title:(abstract:kv)", 7, "field scope inside title"),
        ("title:-kv", 6, "to exclude"),
        ("upvotes>=abc kv", 9, "whole number"),
        ("kv upvotes<", 11, "whole number"),
        ("kv upvotes>=-1", 12, "whole number"),
        ("a*", 0, "at least 2 letters"),
        ("kv x*", 3, "at least 2 letters"),
        ("kv *", 3, "at least 2 letters"),
        ("kv-cach*", 0, "one word"),
        ("source:arx*", 7, "without wildcards"),
        ('""', 0, "empty phrase"),
        ('kv " "', 3, "empty phrase"),
        (r".*+?[](){}|\^$", 6, "empty parentheses"),
    ],
)
def test_errors_point_at_the_problem(text: str, position: int, says: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    error = caught.value
    assert says in error.reason
    assert error.position == position
    assert caret(error) == position


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("🚀🚀 中文 (kv", 10),  # emoji and CJK take two columns each
        ("cafe\u0301 (kv", 5),  # a combining accent takes none
        ("kv\t(cache", 3),  # a tab is shown as one space
    ],
)
def test_the_caret_lines_up_on_a_terminal(text: str, column: int) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    shown, under = str(caught.value).splitlines()[-2:]
    assert "\t" not in shown
    assert under.index("^") - 2 == column


def test_a_long_query_is_shown_around_the_problem_only() -> None:
    text = "k" * 5000 + " ) " + "c" * 3000
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert caught.value.position == 5001
    shown, under = str(caught.value).splitlines()[-2:]
    assert len(shown) < 200
    assert shown.startswith("  …") and shown.endswith("…")
    assert shown[under.index("^")] == ")"


def test_unknown_field_names_the_known_ones() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("foo:bar")
    for name in ("title:", "abstract:", "author:", "org:", "source:"):
        assert name in caught.value.reason


def test_too_long_and_too_many_terms_are_refused_clearly() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("x" * (MAX_QUERY_CHARS + 1))
    assert caught.value.position == MAX_QUERY_CHARS
    assert "too long" in caught.value.reason

    with pytest.raises(QueryError) as caught:
        parse_query(" ".join(f"w{i}" for i in range(10_000)))
    assert "too long" in caught.value.reason

    words = [f"w{i}" for i in range(MAX_TERMS + 1)]
    with pytest.raises(QueryError) as caught:
        parse_query(" ".join(words))
    assert "too many terms" in caught.value.reason
    assert caught.value.position == len(" ".join(words[:-1])) + 1

    query = parse_query(" OR ".join(words[:-1]))
    assert isinstance(query.root, Or)
    assert len(query.root.terms) == MAX_TERMS


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("(" * 2000 + "x" + ")" * 2000)
    assert "nest too deeply" in caught.value.reason
    assert parse_query("(" * 10 + "x" + ")" * 10).root == w("x")


def test_long_runs_of_not_are_fine() -> None:
    assert parse_query("NOT " * 1000 + "x").root == w("x")
    assert parse_query("NOT " * 999 + "x y").root == And((Not(w("x")), w("y")))


def test_equality_ignores_how_terms_were_written() -> None:
    assert parse_query("KV-Cache") == parse_query('"kv caches"')
    assert parse_query("Policies") == parse_query("policy")
