"""Library files a subscriber likes papers from: BibTeX (what Zotero, Mendeley and JabRef
export), Zotero's CSV and RIS; and the paper references typed by hand (arXiv id, DOI, title).

Each entry becomes a ``Reference``: the identity keys it may be found under (``arxiv:``,
``doi:``, ``title:``), best first, and a label for messages. Pure: text in, values out.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from service.errors import ParseError
from service.identity import arxiv_key, split_arxiv_id, title_key

__all__ = ["MAX_ENTRIES", "Reference", "read_library", "reference"]

# A library larger than this is refused: likes are a handful to a few hundred papers.
MAX_ENTRIES = 5000

_DOI = re.compile(r"\b(10\.\d{4,9}/\S+)", re.IGNORECASE)
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(.+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Reference:
    """A paper as a library or a person names it: ``keys`` to look it up under, best first."""

    keys: tuple[str, ...]
    label: str
    line: int | None = None


def doi_key(doi: str) -> str:
    return f"doi:{doi.strip().rstrip('.').lower()}"


def _keys(*, title: str = "", doi: str = "", arxiv: str = "", url: str = "") -> tuple[str, ...]:
    keys: list[str] = []
    found = None
    for text in (arxiv, url):
        found = split_arxiv_id(text) if text else None
        if found:
            break
    doi_match = _DOI.search(doi) if doi else None
    if doi_match:
        arxiv_doi = _ARXIV_DOI.match(doi_match.group(1))
        if arxiv_doi and not found:
            found = split_arxiv_id(arxiv_doi.group(1))
    if found:
        keys.append(arxiv_key(found[0]))
    if doi_match:
        keys.append(doi_key(doi_match.group(1)))
    by_title = title_key(title) if title else None
    if by_title:
        keys.append(by_title)
    return tuple(keys)


def reference(text: str) -> Reference:
    """A paper named by hand: an arXiv id or URL, a DOI, or else an exact title."""
    given = text.strip()
    doi = _DOI.match(given) or _DOI.match(re.sub(r"^(doi:|https?://(dx\.)?doi\.org/)", "", given))
    if doi:
        return Reference(_keys(doi=doi.group(1)), given)
    if (
        re.fullmatch(
            r"(arxiv:)?\d{4}\.\d{4,5}(v\d+)?|(arxiv:)?[a-z-]+(\.[A-Z]{2})?/\d{7}(v\d+)?",
            given,
            flags=re.IGNORECASE,
        )
        or "arxiv.org/" in given
    ):
        return Reference(_keys(arxiv=given), given)
    return Reference(_keys(title=given), given)


def read_library(text: str, origin: str) -> list[Reference]:
    """The entries of a BibTeX, RIS or Zotero CSV file (told apart by their content)."""
    body = text.lstrip("\ufeff")
    start = body.lstrip()
    if start.startswith("@") or re.search(r"^\s*@\w+\s*[{(]", body, flags=re.MULTILINE):
        found = _bibtex(body, origin)
    elif re.match(r"TY {2}- ", start):
        found = _ris(body, origin)
    elif start.startswith(('"Key"', "Key,")) or "Item Type" in start.split("\n", 1)[0]:
        found = _csv(body, origin)
    else:
        raise ParseError(
            source=origin,
            line=1,
            expected="a BibTeX (@article{...}), RIS (TY  - ...) or Zotero CSV (Key,Title,...)",
            found=start[:60],
        )
    if not found:
        raise ParseError(source=origin, expected="at least one entry", found="none")
    if len(found) > MAX_ENTRIES:
        raise ParseError(
            source=origin,
            expected=f"at most {MAX_ENTRIES} entries",
            found=f"{len(found)} entries",
        )
    return found


def _line_of(text: str, at: int) -> int:
    return text.count("\n", 0, at) + 1


def _bibtex(text: str, origin: str) -> list[Reference]:
    """BibTeX entries: ``@type{key, field = {value} | "value" | number, ...}``."""
    found: list[Reference] = []
    at = 0
    entry = re.compile(r"@\s*(\w+)\s*([{(])", re.IGNORECASE)
    while True:
        head = entry.search(text, at)
        if head is None:
            return found
        kind = head.group(1).lower()
        start_line = _line_of(text, head.start())
        close = "}" if head.group(2) == "{" else ")"
        at = head.end()
        if kind in ("comment", "preamble", "string"):
            at = _skip_group(text, at, close, origin, start_line)
            continue
        key_end = text.find(",", at)
        if key_end < 0:
            raise ParseError(source=origin, line=start_line, expected="a citation key and a comma")
        fields: dict[str, str] = {}
        at = key_end + 1
        while True:
            at = _skip_space(text, at)
            if at >= len(text):
                raise ParseError(
                    source=origin, line=start_line, expected=f"'{close}' closing the entry"
                )
            if text[at] == close:
                at += 1
                break
            name = re.compile(r"([A-Za-z][\w-]*)\s*=\s*").match(text, at)
            if name is None:
                raise ParseError(
                    source=origin,
                    line=_line_of(text, at),
                    expected="a field (name = {value})",
                    found=text[at : at + 40],
                )
            at = name.end()
            value, at = _value(text, at, origin)
            fields[name.group(1).lower()] = _clean(value)
            at = _skip_space(text, at)
            if at < len(text) and text[at] == ",":
                at += 1
        keys = _keys(
            title=fields.get("title", ""),
            doi=fields.get("doi", ""),
            arxiv=fields.get("eprint", "")
            if "arxiv" in fields.get("archiveprefix", "arxiv").lower()
            else "",
            url=fields.get("url", "") + " " + fields.get("journal", ""),
        )
        if not keys:
            raise ParseError(
                source=origin, line=start_line, expected="a title, doi or eprint field", found=kind
            )
        found.append(Reference(keys, fields.get("title") or keys[0], start_line))


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _skip_group(text: str, at: int, close: str, origin: str, line: int) -> int:
    depth = 1
    opening = "{" if close == "}" else "("
    while at < len(text):
        if text[at] == opening:
            depth += 1
        elif text[at] == close:
            depth -= 1
            if depth == 0:
                return at + 1
        at += 1
    raise ParseError(source=origin, line=line, expected=f"'{close}' closing the entry")


def _value(text: str, at: int, origin: str) -> tuple[str, int]:
    """One field value, with ``#`` concatenations: braces nest, quotes end at a quote."""
    parts: list[str] = []
    while True:
        at = _skip_space(text, at)
        if at >= len(text):
            raise ParseError(source=origin, line=_line_of(text, at), expected="a field value")
        if text[at] == "{":
            depth, start = 1, at + 1
            at += 1
            while at < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[at], 0)
                at += 1
            if depth:
                raise ParseError(
                    source=origin,
                    line=_line_of(text, start - 1),
                    expected="'}' closing the value opened here",
                )
            parts.append(text[start : at - 1])
        elif text[at] == '"':
            end = text.find('"', at + 1)
            if end < 0:
                raise ParseError(
                    source=origin, line=_line_of(text, at), expected="'\"' closing the value"
                )
            parts.append(text[at + 1 : end])
            at = end + 1
        else:
            word = re.compile(r"[\w.:/-]+").match(text, at)
            if word is None:
                raise ParseError(
                    source=origin,
                    line=_line_of(text, at),
                    expected="a value in braces, quotes, or a number",
                    found=text[at : at + 40],
                )
            parts.append(word.group(0))
            at = word.end()
        after = _skip_space(text, at)
        if after < len(text) and text[after] == "#":
            at = after + 1
            continue
        return "".join(parts), at


def _clean(value: str) -> str:
    """A BibTeX value as text: braces that protect capitals dropped, spaces folded."""
    return " ".join(value.replace("{", "").replace("}", "").split())


def _ris(text: str, origin: str) -> list[Reference]:
    found: list[Reference] = []
    fields: dict[str, str] = {}
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line:
            continue
        tag = re.match(r"([A-Z][A-Z0-9]) {2}-( (.*))?$", line)
        if tag is None:
            raise ParseError(
                source=origin, line=number, expected="a tagged line (XX  - value)", found=line
            )
        name, value = tag.group(1), (tag.group(3) or "").strip()
        if name == "TY":
            fields, start = {}, number
        elif name == "ER":
            keys = _keys(
                title=fields.get("TI") or fields.get("T1", ""),
                doi=fields.get("DO", ""),
                url=fields.get("UR", ""),
            )
            if not keys:
                raise ParseError(source=origin, line=start, expected="a TI, DO or UR line")
            found.append(Reference(keys, fields.get("TI") or fields.get("T1") or keys[0], start))
        else:
            fields.setdefault(name, value)
    return found


def _csv(text: str, origin: str) -> list[Reference]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "Title" not in reader.fieldnames:
        raise ParseError(source=origin, line=1, expected="a header with a Title column")
    found: list[Reference] = []
    for row in reader:
        number = reader.line_num
        keys = _keys(
            title=row.get("Title") or "", doi=row.get("DOI") or "", url=row.get("Url") or ""
        )
        if not keys:
            raise ParseError(source=origin, line=number, expected="a Title, DOI or Url")
        found.append(Reference(keys, row.get("Title") or keys[0], number))
    return found
