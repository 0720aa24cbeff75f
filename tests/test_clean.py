"""What text and links may enter the store: ``service.clean``."""

from __future__ import annotations

import pytest

from service import clean
from service.model import Organisation, PaperIn


@pytest.mark.parametrize(
    ("given", "lines", "kept"),
    [
        ("Plain title", False, "Plain title"),
        ("Ré\u00a0sumé — 语言", False, "Ré\u00a0sumé — 语言"),  # printable or not, not controls
        ("ESC\x1b[2J and BEL\x07", False, "ESC[2J and BEL"),
        ("NUL\x00 DEL\x7f CSI\x9b C1\x80", False, "NUL DEL CSI C1"),
        ("tab\tnew\nline", False, "tab new line"),
        ("tab\tnew\nline", True, "tab\tnew\nline"),
        ("cr\rvt\x0bff\x0cnel\x85us\x1f", True, "cr vt ff nel us "),
        ("lone \ud800 surrogate \ufffe\uffff", False, "lone  surrogate "),
    ],
)
def test_text_loses_control_characters(given: str, lines: bool, kept: str) -> None:
    assert clean.text(given, lines=lines) == kept


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://arxiv.org/abs/2401.00001", "https://arxiv.org/abs/2401.00001"),
        ("HTTP://Example.org/a?b=c#d", "HTTP://Example.org/a?b=c#d"),
        ("  https://github.com/a/b \n", "https://github.com/a/b"),
        ("https://exa\tmple.org/pa\nth", "https://example.org/path"),
        ("https://x.org/a b", "https://x.org/a%20b"),
        ("javascript:alert(1)", None),
        (" \x01JaVaScRiPt:alert(1)", None),
        ("java\tscript:alert(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("DATA:text/html;base64,PHNjcmlwdD4=", None),
        ("vbscript:x", None),
        ("file:///etc/passwd", None),
        ("//evil.example/x", None),
        ("/relative/path", None),
        ("https://", None),
        ("https:evil", None),
        ("https://x.org/\x00a", None),
        ("https://x.org/\x00", "https://x.org/"),  # as browsers read it: C0 around is dropped
        ("https://[::1", None),
        ("", None),
    ],
)
def test_only_absolute_http_links_are_kept(given: str, kept: str | None) -> None:
    assert clean.link(given) == kept


def test_a_clean_paper_is_returned_as_it_is() -> None:
    paper = PaperIn(
        title="A title",
        abstract="Lines\nof text",
        authors=("Jane Doe",),
        links={"abs": "https://arxiv.org/abs/2401.00001"},
    )
    assert clean.paper(paper) is paper


def test_every_text_field_of_a_paper_is_cleaned() -> None:
    paper = PaperIn(
        title="Title\x1b]0;x\x07",
        abstract="Abs\x00tract\nnext",
        arxiv_id="2401.00001\x00",
        doi="10.1/x\x1b",
        authors=("Jane\x07 Doe", "\x1b"),
        organisation=Organisation("org\x1b", "Org\x9b name"),
        links={"abs": "https://x.org/1", "code": "javascript:alert(1)"},
        categories=("cs.LG\x07",),
        keywords=("kv\x00 cache",),
        summary="Sum\x1bmary\n",
        announce="new\x07",
    )
    assert clean.paper(paper) == PaperIn(
        title="Title]0;x",
        abstract="Abstract\nnext",
        arxiv_id="2401.00001",
        doi="10.1/x",
        authors=("Jane Doe",),
        organisation=Organisation("org", "Org name"),
        links={"abs": "https://x.org/1"},
        categories=("cs.LG",),
        keywords=("kv cache",),
        summary="Summary\n",
        announce="new",
    )
