"""Library files as Zotero, Mendeley and JabRef export them (written by hand in their formats),
and papers named by hand."""

from __future__ import annotations

import pytest

from service.errors import ParseError
from service.parse.library import MAX_ENTRIES, read_library, reference

ZOTERO_BIB = """
@article{vaswani_attention_2017,
\ttitle = {Attention {Is} {All} {You} {Need}},
\turl = {http://arxiv.org/abs/1706.03762},
\tdoi = {10.48550/arXiv.1706.03762},
\turldate = {2024-01-05},
\tpublisher = {arXiv},
\tauthor = {Vaswani, Ashish and Shazeer, Noam},
\tmonth = dec,
\tyear = {2017},
\tnote = {arXiv:1706.03762 [cs]},
\tkeywords = {Computer Science - Computation and Language},
}

@inproceedings{he_deep_2016,
\ttitle = {Deep {Residual} {Learning} for {Image} {Recognition}},
\tdoi = {10.1109/CVPR.2016.90},
\tbooktitle = "Proceedings of " # "CVPR",
\tpages = {770--778},
}

@misc{kingma2014adam,
      title={Adam: A Method for Stochastic Optimization},
      author={Diederik P. Kingma and Jimmy Ba},
      year={2014},
      eprint={1412.6980},
      archivePrefix={arXiv},
      primaryClass={cs.LG}
}
"""

ZOTERO_CSV = (
    '"Key","Item Type","Publication Year","Author","Title","Publication Title","ISBN","ISSN",'
    '"DOI","Url","Abstract Note"\n'
    '"ABCD1234","preprint","2017","Vaswani, Ashish","Attention Is All You Need","","","",'
    '"10.48550/arXiv.1706.03762","http://arxiv.org/abs/1706.03762","The dominant, sequence"\n'
    '"EFGH5678","journalArticle","2016","He, Kaiming","Deep Residual Learning","","","",'
    '"10.1109/CVPR.2016.90","",""\n'
)

ZOTERO_RIS = """\
TY  - JOUR
TI  - Attention Is All You Need
AU  - Vaswani, Ashish
DO  - 10.48550/arXiv.1706.03762
UR  - http://arxiv.org/abs/1706.03762
PY  - 2017
ER  - {end}

TY  - CONF
TI  - Deep Residual Learning for Image Recognition
DO  - 10.1109/CVPR.2016.90
ER  - {end}
""".format(end=" ")  # Zotero ends ER with a space


def test_bibtex_as_zotero_exports_it() -> None:
    found = read_library(ZOTERO_BIB, "mine.bib")
    assert [r.keys for r in found] == [
        ("arxiv:1706.03762", "doi:10.48550/arxiv.1706.03762", "title:attention is all you need"),
        ("doi:10.1109/cvpr.2016.90", "title:deep residual learning for image recognition"),
        ("arxiv:1412.6980", "title:adam a method for stochastic optimization"),
    ]
    assert found[0].label == "Attention Is All You Need"
    assert [r.line for r in found] == [2, 15, 22]


def test_zotero_csv_and_ris() -> None:
    csv_found = read_library(ZOTERO_CSV, "mine.csv")
    ris_found = read_library(ZOTERO_RIS, "mine.ris")
    for found in (csv_found, ris_found):
        assert [r.keys[0] for r in found] == ["arxiv:1706.03762", "doi:10.1109/cvpr.2016.90"]
    assert [r.line for r in ris_found] == [1, 9]
    assert [r.line for r in csv_found] == [2, 3]


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("@article{x,\n  title = {Open brace,\n  year = 2020\n", 2, "'}' closing the value"),
        ("@article{x,\n  title = {A},\n  = {B}\n}\n", 3, "a field"),
        ("@article{x,\n  title = {A}\n", 1, "closing the entry"),
        ("@article{x,\n  year = 2020\n}\n", 1, "a title, doi or eprint"),
        ("TY  - JOUR\nTI  - A\nnot a tag\nER  - \n", 3, "a tagged line"),
        ("Just some text\n", 1, "a BibTeX"),
    ],
)
def test_an_unreadable_file_names_the_line(text: str, line: int, expected: str) -> None:
    with pytest.raises(ParseError) as caught:
        read_library(text, "mine.bib")
    assert caught.value.line == line
    assert expected in str(caught.value)
    assert "mine.bib" in str(caught.value)


def test_an_empty_library_and_a_huge_one_are_refused() -> None:
    with pytest.raises(ParseError, match="at least one entry"):
        read_library("@comment{nothing here}\n", "empty.bib")
    huge = "".join(f"@misc{{k{i},\n title = {{Paper {i}}}\n}}\n" for i in range(10_000))
    with pytest.raises(ParseError, match=f"at most {MAX_ENTRIES} entries"):
        read_library(huge, "huge.bib")


def test_papers_named_by_hand() -> None:
    assert reference("2401.01234v2").keys == ("arxiv:2401.01234",)
    assert reference("https://arxiv.org/abs/2401.01234").keys == ("arxiv:2401.01234",)
    assert reference("hep-th/9901001").keys == ("arxiv:hep-th/9901001",)
    assert reference("10.1109/CVPR.2016.90").keys == ("doi:10.1109/cvpr.2016.90",)
    assert reference("https://doi.org/10.1109/CVPR.2016.90").keys == ("doi:10.1109/cvpr.2016.90",)
    assert reference("Deep Residual Learning").keys == ("title:deep residual learning",)
