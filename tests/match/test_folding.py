"""Singular/plural and letter folding end to end: hand-written papers and what each query finds."""

from __future__ import annotations

import pytest

from service.match.index import Document, match_query
from service.match.query import parse_query

PAPERS = [
    Document(1, "FlashDecoding: faster inference on GPUs"),
    Document(2, "A GPU kernel for attention"),
    Document(3, "Training on commodity gpus"),
    Document(4, "GPS traces and RMS error of map matching"),
    Document(5, "Offloading experts to CPUs"),
    Document(6, "A cpu scheduler"),
    Document(7, "Small LMs are enough"),
    Document(8, "Scaling LLMs", authors=("Grzegorz Chrupała", "Ana Ruiz")),
    Document(9, "An LLM as a judge"),
    Document(10, "LMS: a learning management system"),
    Document(11, "A corpus and its status", abstract="The focus is thus on a bonus, plus an opus."),
    Document(12, "Wind power from Ørsted, Łódź and Ærø", authors=("Þóra Đorđević",)),
]

EXPECTED = {
    "gpu": {1, 2, 3},
    "gpus": {1, 2, 3},
    "GPUs": {1, 2, 3},
    "GPUS": {1, 2, 3},
    "gps": {4},
    "rms": {4},
    "cpu": {5, 6},
    "CPUs": {5, 6},
    "cpus": {5, 6},
    "lm": {7},
    "LMs": {7},
    # Written all in capitals, LMS is a word of its own, not the plural of LM.
    "LMS": {10},
    "lms": {10},
    "llm": {8, 9},
    "LLMs": {8, 9},
    "corpus": {11},
    "status": {11},
    "focus": {11},
    "bonus": {11},
    "thus": {11},
    "plus": {11},
    "opus": {11},
    "corpu": set(),
    "statu": set(),
    "thu": set(),
    "plu": set(),
    "opu": set(),
    'author:"Grzegorz Chrupala"': {8},
    "author:chrupała": {8},
    "author:thora": {12},
    "author:dordevic": {12},
    "lodz": {12},
    "LODZ": {12},
    "Łódź": {12},
    "orsted": {12},
    "oersted": set(),
    "aero": {12},
    '"orsted lodz and aero"': {12},
}


@pytest.mark.parametrize("query", EXPECTED)
def test_query_finds_the_papers_written_with_its_word(query: str) -> None:
    found = {m.document_id for m in match_query(parse_query(query), PAPERS)}
    assert found == EXPECTED[query]
