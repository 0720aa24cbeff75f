"""LaTeX math in titles and abstracts, shown as text, with highlights kept where they were."""

from __future__ import annotations

import pytest

from service.digest import Hit
from service.latex import to_text, widen
from service.match.index import Document, match_query
from service.match.query import parse_query
from service.model import Paper
from service.render.papers import Segment, view


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ("H$_2$O: Heavy-Hitter Oracle", "H₂O: Heavy-Hitter Oracle"),
        ("MoE$^2$: scaling", "MoE²: scaling"),
        ("$\\alpha$-divergence", "α-divergence"),
        ("$O(n^2)$ time and $x_{ij}^{T}$", "O(n²) time and xᵢⱼᵀ"),
        ("$\\mathcal{O}(\\log n)$", "𝒪(log n)"),
        ("$\\beta_{\\text{eff}}$", "β_(eff)"),  # no subscript f in Unicode: shown plainly
        ("Costs $5 and $10, 50% off_peak", "Costs $5 and $10, 50% off_peak"),  # not math
        ("No math at all", "No math at all"),
    ],
)
def test_inline_math_reads_as_text(written: str, shown: str) -> None:
    assert to_text(written) == shown


def test_a_hit_inside_math_marks_the_whole_of_it() -> None:
    assert widen("MoE$^2$ x", [(0, 3), (5, 6), (8, 9)]) == [(0, 3), (3, 7), (8, 9)]


def test_highlights_are_placed_on_the_stored_text_then_shown_converted() -> None:
    paper = Paper(id=1, key="k", title="H$_2$O: (KV) cache for MoE$^2$")
    document = Document(id=1, title=paper.title)
    (match,) = match_query(parse_query('"kv cache" moe'), [document])
    shown = view(paper, [Hit("KV", match.score, match.reasons)])
    assert shown.title == "H₂O: (KV) cache for MoE²"
    assert shown.title_segments == (
        Segment("H₂O: "),
        Segment("(KV) cache", True),
        Segment(" for "),
        Segment("MoE", True),
        Segment("²"),
    )
