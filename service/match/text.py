"""Words as matching sees them: one tokenisation for profile queries and for papers.

A word is a run of letters and digits (any script; each CJK ideograph or kana is a word of its
own); everything else (punctuation, hyphens, ``$^_{}``, emoji) separates words. LaTeX commands
such as ``\\mathbf`` are dropped and their arguments kept, so ``MoE$^2$`` reads as ``moe 2``.

Each word has two normal forms: ``norm``, accent-folded (NFKD, plus letters with strokes and
ligatures: ``Łódź`` -> ``lodz``) and case-folded, for display and prefix matching; and ``key``,
the norm with singular and plural folded together (``caches`` and ``cache`` both become
``cach``; ``GPUs``, ``gpus`` and ``GPU`` become ``gpu``), which is what matching compares. A key
is an index entry, not an English word.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import accumulate
from typing import NamedTuple

__all__ = [
    "Token",
    "balanced",
    "bounds",
    "bounds_of",
    "fold_plural",
    "forms_of",
    "keys",
    "keys_of",
    "normalise",
    "norms_of",
    "pieces",
    "scan",
    "spans",
    "spelling",
    "tokens",
    "word_forms",
    "words",
]

# Ideographs and kana, each a word of its own; with the characters that fold into them (the
# ideographic numerals, half-width katakana, the compatibility ideographs), so that a word and
# its folded form split the same way.
_CJK = (
    "\u3038-\u303a\u3040-\u30ff\u3192-\u3195\u3220-\u3229\u3280-\u3289\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# Identical to _WORD on ASCII text, and several times faster.
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")
# Decomposed accents (combining marks) stay inside their word.
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}](?:[^\W_{_CJK}]|[{_MARKS}])*")
_ASCII_SPLIT = re.compile(f"({_ASCII_WORD.pattern})")
_SPLIT = re.compile(f"({_WORD.pattern})")
_LATEX_COMMAND = re.compile(r"\\([A-Za-z]+)")
# Greek letters are content ("$\alpha$-divergence"); other commands are formatting.
_GREEK = frozenset(
    """alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu
    xi pi varpi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega Gamma Delta Theta
    Lambda Xi Pi Sigma Upsilon Phi Psi Omega""".split()  # noqa: SIM905
)

# Irregular plurals, and singulars the suffix rules below would clip.
_PLURAL_EXCEPTIONS = {
    "analyses": "analysis",
    "anus": "anus",
    "apus": "apus",
    "appendices": "appendix",
    "atlas": "atlas",
    "atlases": "atlas",
    "calories": "calorie",
    "canvas": "canvas",
    "canvases": "canvas",
    "christmas": "christmas",
    "crus": "crus",
    "cookies": "cookie",
    "crises": "crisis",
    "diagnoses": "diagnosis",
    "grus": "grus",
    "hypotheses": "hypothesis",
    "indices": "index",
    "kansas": "kansas",
    "lens": "lens",
    "lenses": "lens",
    "matrices": "matrix",
    "movies": "movie",
    "news": "news",
    "onus": "onus",
    "opus": "opus",
    "oxus": "oxus",
    "pandas": "pandas",
    "plus": "plus",
    "selfies": "selfie",
    "syntheses": "synthesis",
    "texas": "texas",
    "theses": "thesis",
    "thus": "thus",
    "urus": "urus",
    "vertices": "vertex",
    "zombies": "zombie",
}
# A plural that drops "es" ("caches" -> "cach") needs its singular to drop "e" ("cache").
_ES_PLURALS = ("sses", "ches", "shes", "xes", "zes", "uses", "ases", "ises", "oses")
_E_SINGULARS = ("che", "she", "xe", "ze", "use", "ase", "ise", "ose")
_KEEP_S = ("ss", "us", "is", "ias")
# What NFKD leaves alone: letters with strokes, ligatures, and the dotless i (after casefold).
_LETTERS = str.maketrans(
    {"æ": "ae", "œ": "oe", "þ": "th"} | dict(zip("đðħıłøŧ", "ddhilot", strict=True))
)


class Token(NamedTuple):
    """One word of a text: its key, its norm, and where it is (``text[start:end]``)."""

    key: str
    norm: str
    start: int
    end: int


def fold_plural(norm: str) -> str:
    """The key shared by the singular and the plural of a normalised word."""
    last = norm[-1:]
    if last not in ("s", "e") or len(norm) < 3:
        return norm
    folded = _PLURAL_EXCEPTIONS.get(norm)
    if folded is not None:
        return folded
    if last == "e":
        return norm[:-1] if norm.endswith(_E_SINGULARS) else norm
    # Four letters ending in "us" are acronyms' plurals (gpus, imus) unless a vowel comes before
    # the "u" (nous, zeus, Maus); the words that break this (thus, plus) are exceptions above.
    if len(norm) == 4 and norm[2] == "u" and norm[1] not in "aeiou":
        return norm[:-1]
    if len(norm) < 4 or norm.endswith(_KEEP_S):
        return norm
    if norm.endswith("ies") and len(norm) > 4:
        return norm[:-3] + "y"
    if norm.endswith(_ES_PLURALS):
        return norm[:-2]
    return norm[:-1]


def normalise(word: str) -> str:
    """``word`` case-folded with accents and compatibility forms folded (``Ré`` -> ``re``);
    idempotent: the folding is repeated until it changes nothing (``𝐀`` is ``A`` once NFKD
    has seen it, and only then case-folds to ``a``)."""
    if word.isascii():
        return word.lower()
    folded = word
    for _ in range(_MAX_FOLDS):
        decomposed = unicodedata.normalize("NFKD", folded.casefold()).translate(_LETTERS)
        again = "".join(c for c in decomposed if c.isalnum()) or folded.casefold()
        if again == folded:
            break
        folded = again
    return folded


_MAX_FOLDS = 4  # two foldings settle every character Unicode has; the cap guards the loop


_FORMS: dict[str, tuple[str, str]] = {}
_KEYS: dict[str, str] = {}
_NORMS: dict[str, str] = {}
_FORMS_LIMIT = 200_000


def word_forms(word: str) -> tuple[str, str]:
    """``(norm, key)`` of one word as written (a run of word characters); memoised.

    An acronym written with a plural ``s`` (``LMs``, ``APIs``) has its singular's key; written
    all in capitals (``GPS``, ``LMS``) it is a word of its own."""
    forms = _FORMS.get(word)
    if forms is None:
        if len(_FORMS) >= _FORMS_LIMIT:
            _FORMS.clear()
            _KEYS.clear()
            _NORMS.clear()
        norm = normalise(word)
        if len(word) > 2 and word[-1] == "s" and word[:-1].isupper():
            forms = (norm, fold_plural(norm[:-1]))
        else:
            forms = (norm, fold_plural(norm))
        _FORMS[word] = forms
        _NORMS[word], _KEYS[word] = forms
    return forms


def spelling(norm: str, key: str) -> str:
    """A way to write the word whose forms are ``(norm, key)`` that reads back as them: the
    norm itself, but for an acronym's plural (``LMs``: norm ``lms``, key ``lm``), which only
    its capitals tell from a word of its own."""
    if key == fold_plural(norm) or len(norm) < 3 or norm[-1] != "s":
        return norm
    return norm[:-1].upper() + "s"


def _drop_latex(text: str) -> str:
    """``text`` with LaTeX formatting commands blanked out, keeping every offset."""
    if "\\" not in text:
        return text
    return _LATEX_COMMAND.sub(
        lambda m: m[0] if m[1] in _GREEK else " " * len(m[0]),
        text,
    )


def words(text: str) -> list[str]:
    """The words of ``text`` as written, in order (LaTeX commands dropped)."""
    source = _drop_latex(text)
    return (_ASCII_WORD if source.isascii() else _WORD).findall(source)


def keys_of(written: list[str]) -> list[str]:
    """The keys of words as :func:`words` gives them: the fast path for indexing papers."""
    return _known(written, _KEYS, 1)


def norms_of(written: list[str]) -> list[str]:
    """The norms of words as :func:`words` gives them."""
    return _known(written, _NORMS, 0)


def forms_of(written: list[str]) -> list[tuple[str, str]]:
    """``(norm, key)`` of words as :func:`words` gives them, with one lookup each."""
    found = list(map(_FORMS.get, written))
    if None in found:
        return list(map(word_forms, written))
    return found  # type: ignore[return-value]


def _known(written: list[str], memo: dict[str, str], form: int) -> list[str]:
    found = list(map(memo.get, written))
    if None in found:
        return [word_forms(word)[form] for word in written]
    return found  # type: ignore[return-value]


def keys(text: str) -> list[str]:
    """The keys of the words of ``text``, in order."""
    return keys_of(words(text))


def spans(text: str) -> list[tuple[int, int]]:
    """The offsets of the words of ``text``, in order (aligned with :func:`words`)."""
    return list(zip(*bounds(text), strict=True))


def bounds(text: str) -> tuple[list[int], list[int]]:
    """Where each word of ``text`` starts, and where it ends (aligned with :func:`words`)."""
    return bounds_of(pieces(text))


def pieces(text: str) -> list[str]:
    """The words of ``text`` and the text around them, alternately: ``pieces(text)[1::2]``
    is ``words(text)``, and their lengths give the words' offsets (:func:`bounds_of`)."""
    source = _drop_latex(text)
    return (_ASCII_SPLIT if source.isascii() else _SPLIT).split(source)


def bounds_of(pieces: list[str]) -> tuple[list[int], list[int]]:
    """Where each word starts, and where it ends, from the :func:`pieces` of a text."""
    # The running lengths of the pieces are the offsets, computed without a Python step per
    # word.
    ends = list(accumulate(map(len, pieces)))
    return ends[0:-1:2], ends[1::2]


def scan(text: str) -> list[Token]:
    """Every word of ``text`` with its key, norm and offsets in ``text``."""
    source = _drop_latex(text)
    pattern = _ASCII_WORD if source.isascii() else _WORD
    found = []
    for m in pattern.finditer(source):
        norm, key = word_forms(m[0])
        found.append(Token(key, norm, m.start(), m.end()))
    return found


_PAIRS = {"(": ")", "[": "]", "{": "}", "\u201c": "\u201d", "\u2018": "\u2019"}
_CLOSERS = {close: open_ for open_, close in _PAIRS.items()}


def balanced(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` widened by the bracket or quote just outside it whose partner is inside
    it: a phrase hit on ``(KV) cache`` covers ``(KV) cache``, not ``KV) cache``."""
    opened: list[str] = []
    unopened: list[str] = []
    for char in text[start:end]:
        if char in _PAIRS:
            opened.append(char)
        elif char in _CLOSERS:
            if opened and opened[-1] == _CLOSERS[char]:
                opened.pop()
            else:
                unopened.append(char)
    for close in reversed(unopened):
        if start > 0 and text[start - 1] == _CLOSERS[close]:
            start -= 1
        else:
            break
    for open_ in reversed(opened):
        if end < len(text) and text[end] == _PAIRS[open_]:
            end += 1
        else:
            break
    return start, end


def tokens(text: str) -> list[tuple[str, int, int]]:
    """``(key, start, end)`` for every word of ``text``; offsets index the original string."""
    return [(t.key, t.start, t.end) for t in scan(text)]
