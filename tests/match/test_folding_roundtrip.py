"""Case folding is idempotent and a query's rendering parses back to the same query, for any
text, tried with hypothesis over characters that fold in surprising ways."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.errors import QueryError
from service.match.query import parse_query
from service.match.text import normalise, scan

# Letters whose folding takes more than one step or changes length or script: mathematical
# alphanumerics, ß and ẞ, ligatures, title-case digraphs, dotted and dotless i, Greek with
# iota subscripts and final sigma, circled and full-width letters, half-width kana, compatibility
# ideographs, superscripts, fractions, Roman numerals, combining marks.
TRICKY = (
    "𝐀𝐚𝔄𝔞𝕬𝖆𝟏𝟘ßẞﬀﬁﬃﬅǅǈǋǲİıŉǰΐΰᾈᾼῼςΣσΩKÅⓐⒶＡａｱｶﾞﾟ丽丽豈㍻㎏²³¹½Ⅸⅸℌℍℵ"
    "\u0301\u0308\u0345\u0307ÉéÆæŒœŁłØøĐđÞþ语言モデル한국어"
)
PIECES = [*TRICKY, *'aZsS09 -"():*.', "OR", "AND", "NOT", "title:", "author:", "source:", "LMs"]
texts = st.lists(st.sampled_from(PIECES), min_size=1, max_size=12).map("".join)
words = st.text(st.sampled_from(TRICKY + "aZ0"), min_size=1, max_size=6)
# Any character at all that Unicode calls a letter, number or mark.
wordish = st.characters(categories=("L", "N", "M"))


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(texts)
@example("𝐀bc")
@example("ß OR ẞ")
@example("ｱ")
@example("aｱ")
@example("a丽")
@example("0As")  # an acronym's plural: its key is the singular's, which only capitals tell
@example("source:ßtitle:")  # case-folded, the id reads as a field unless quoted
def test_the_rendering_of_any_query_parses_back_to_the_same_query(text: str) -> None:
    try:
        query = parse_query(text)
    except QueryError:
        return
    shown = str(query)
    assert parse_query(shown) == query, shown
    assert str(parse_query(shown)) == shown


@settings(max_examples=3000, deadline=None, derandomize=True)
@example("0As")
@given(st.one_of(words, st.text(wordish, min_size=1, max_size=4)))
def test_folding_is_idempotent_and_a_folded_word_is_one_word(word: str) -> None:
    for token in scan(word):
        norm = token.norm
        assert normalise(norm) == norm
        again = scan(norm)
        assert [t.norm for t in again] == [norm], (word, norm)
        if word == word.lower():  # capitals may tell an acronym's plural ("0As"): key "0a"
            assert [t.key for t in again] == [token.key], (word, norm)
