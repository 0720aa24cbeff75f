"""LaTeX math in titles and abstracts, shown as text: ``H$_2$O`` reads H₂O, ``MoE$^2$`` MoE².

Only inline math (``$...$``, opened before a non-space and closed after one, as TeX writers
do: ``$5 and $10`` is no math) is converted; the text around it is left alone, since a ``%``
or ``_`` there is prose, not LaTeX. pylatexenc turns the macros into their characters
(``\\alpha`` -> α, ``\\mathbf{X}`` -> X); sub- and superscripts become the Unicode characters
that Unicode names as such, and stay ``_x`` / ``^(xy)`` when it has none. Stored text keeps
its LaTeX: matching and identity read it (see ``service.match.text``); only display converts,
after highlight spans are worked out on the stored text (``widen`` keeps math whole).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

from pylatexenc.latex2text import LatexNodes2Text
from pylatexenc.latexwalker import LatexWalkerError

__all__ = ["math_spans", "to_text", "widen"]

_MATH = re.compile(r"\$(?=[^\s$])([^$\n]*?[^\s$\\])\$(?!\d)|\$([^\s$])\$")
_SCRIPT = re.compile(r"([_^])(?:\{((?:[^{}]|\{[^{}]*\})*)\}|(\\[A-Za-z]+|[^\s\\{}]))")
_CONVERTER = LatexNodes2Text(math_mode="text")


def math_spans(text: str) -> list[tuple[int, int]]:
    """Where the inline math of ``text`` is, dollars included."""
    if "$" not in text:
        return []
    return [m.span() for m in _MATH.finditer(text)]


def to_text(text: str) -> str:
    """``text`` with its inline math as text."""
    if "$" not in text:
        return text
    return _MATH.sub(lambda m: _math(m[1] if m[1] is not None else m[2]), text)


def widen(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` of ``text`` widened to the whole of any math they reach into, so that text
    cut at them converts piece by piece as it would whole."""
    regions = math_spans(text)
    if not regions:
        return list(spans)
    out = []
    for span in spans:
        start, end = span
        for first, last in regions:
            if first < end and start < last:
                start, end = min(start, first), max(end, last)
        out.append((start, end))
    return out


# The space after a macro ends its name in LaTeX and is dropped; shown, it keeps words apart.
_MACRO_SPACE = re.compile(r"(\\[A-Za-z]+) ")


@lru_cache(maxsize=4096)
def _math(latex: str) -> str:
    return _plain(_SCRIPT.sub(_script, _MACRO_SPACE.sub(r"\1{} ", latex))).strip()


def _plain(latex: str) -> str:
    try:
        return str(_CONVERTER.latex_to_text(latex))
    except LatexWalkerError:
        # Math that pylatexenc cannot read (it tolerates most) is shown as written, never lost.
        return latex


def _script(match: re.Match[str]) -> str:
    mark = match[1]
    argument = match[2] if match[2] is not None else match[3]
    plain = _plain(argument).strip()
    shifted = [_shift(char, mark) for char in plain]
    # "{}" ends a macro just before: "\\beta{}ₑ", not the unknown macro "\\betaₑ".
    if plain and None not in shifted:
        return "{}" + "".join(shifted)  # type: ignore[arg-type]
    return "{}" + (f"{mark}{plain}" if len(plain) == 1 else f"{mark}({plain})")


@lru_cache(maxsize=512)
def _shift(char: str, mark: str) -> str | None:
    """``char`` as a superscript (``^``) or subscript (``_``) character, if Unicode has one."""
    try:
        name = unicodedata.name(char)
    except ValueError:
        return None
    base = name.removeprefix("DIGIT ")
    if char == "-":
        base = "MINUS"
    word = "SUPERSCRIPT" if mark == "^" else "SUBSCRIPT"
    candidates = [f"{word} {base}"]
    if name.startswith("LATIN "):
        rest = name.removeprefix("LATIN ")
        if mark == "^":
            candidates.append(f"MODIFIER LETTER {rest.replace(' LETTER', '')}")
        else:
            candidates.append(f"LATIN SUBSCRIPT {rest}")
    elif name.startswith("GREEK ") and mark == "^":
        candidates.append(f"MODIFIER LETTER {name.replace(' LETTER', '')}")
    for candidate in candidates:
        try:
            return unicodedata.lookup(candidate)
        except KeyError:
            continue
    return None
