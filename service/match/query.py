"""The profile query language: ``parse_query(text)`` turns a query string into a ``Query``.

Syntax, loosest binding first::

    a OR b          either            (OR binds loosest)
    a b, a AND b    both              (implicit AND)
    NOT a, -a       not a             (binds tightest; also -"a phrase", -(a OR b), -title:a)
    "kv cache"      consecutive words, in order; kv-cache means the same
    (a OR b) c      grouping
    title:a         a scope: title:, abstract:, author:, org:, source: before a word,
                    a "phrase" or a (group); unscoped words search the title and abstract
    quantiz*        words starting with quantiz (at least 2 letters before the *)
    upvotes>=10     also >, <, <=, =

Operators are upper case; ``or`` and ``not`` are plain words. Words match whole words after
:mod:`service.match.text` folding (case, accents, singular/plural). ``source:`` takes a
source id as written (case-insensitive), not words. Every query needs a word to look for in
every alternative: NOT terms and upvotes conditions only narrow a search.

``str(query)`` renders the normalised query, which parses back to an equal query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from service.errors import QueryError
from service.match.text import scan, spelling

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_QUERY_CHARS",
    "MAX_TERMS",
    "And",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "Query",
    "Scope",
    "Source",
    "Upvotes",
    "Word",
    "parse_query",
]

Scope = Literal["title", "abstract", "author", "org"]
Comparison = Literal[">=", "<=", ">", "<", "="]

FIELDS = ("title", "abstract", "author", "org", "source")
MAX_QUERY_CHARS = 10_000
MAX_TERMS = 1_000
MAX_DEPTH = 20
_MAX_UPVOTES = 10**9


@dataclass(frozen=True, slots=True)
class Word:
    """A whole word. ``key`` is what matching compares (and equality), ``text`` its
    normalised spelling and ``label`` how the query wrote it, for display."""

    key: str
    text: str = field(compare=False)
    scope: Scope | None = None
    label: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Phrase:
    """Consecutive words in order, within one field (and one author name)."""

    keys: tuple[str, ...]
    texts: tuple[str, ...] = field(compare=False)
    scope: Scope | None = None
    label: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Prefix:
    """Any word whose norm or key starts with ``stem`` (a norm of at least 2 characters)."""

    stem: str
    scope: Scope | None = None
    label: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Source:
    """The paper was seen in the source with this id (case-folded, exact)."""

    id: str
    label: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class Upvotes:
    """The paper's upvote count compares to ``value`` by ``op``."""

    op: Comparison
    value: int


@dataclass(frozen=True, slots=True)
class Not:
    term: Node


@dataclass(frozen=True, slots=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    terms: tuple[Node, ...]


Node = Word | Phrase | Prefix | Source | Upvotes | Not | And | Or


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: ``root`` is what matching evaluates, ``text`` what the user wrote."""

    root: Node
    text: str = field(default="", compare=False)

    def __str__(self) -> str:
        return _render(self.root, _TOP)


_TOP, _OR, _AND, _NOT = range(4)
_PLAIN_ID = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _render(node: Node, context: int) -> str:
    match node:
        case Word(key=key, text=text, scope=scope):
            word = spelling(text, key)
            return f"{scope}:{word}" if scope else word
        case Phrase(keys=keys, texts=texts, scope=scope):
            quoted = '"' + " ".join(map(spelling, texts, keys)) + '"'
            return f"{scope}:{quoted}" if scope else quoted
        case Prefix(stem=stem, scope=scope):
            return f"{scope}:{stem}*" if scope else f"{stem}*"
        case Source(id=id_):
            # Quoted unless plainly an id: a bare "sstitle:" (from "ßtitle:") reads as a field.
            plain = _PLAIN_ID.fullmatch(id_)
            return f"source:{id_}" if plain else f'source:"{id_}"'
        case Upvotes(op=op, value=value):
            return f"upvotes{op}{value}"
        case Not(term=term):
            return "-" + _render(term, _NOT)
        case And(terms=terms):
            text = " ".join(_render(t, _AND) for t in terms)
            return f"({text})" if context > _AND else text
        case Or(terms=terms):
            text = " OR ".join(_render(t, _OR) for t in terms)
            return f"({text})" if context > _OR else text
    raise TypeError(node)  # pragma: no cover


class _Lexeme(NamedTuple):
    kind: Literal["(", ")", "OR", "AND", "NOT", "field", "word", "phrase", "prefix", "upvotes"]
    pos: int
    text: str = ""
    value: int = 0


_RUN = re.compile(r'[^\s()"]+')
_FIELD = re.compile(r"([A-Za-z]+):(.*)", re.DOTALL)
_UPVOTES = re.compile(r"(upvotes)(>=|<=|>|<|=)(.*)", re.DOTALL | re.IGNORECASE)
_OPERATORS = {"OR", "AND", "NOT"}
_KNOWN = "title:, abstract:, author:, org:, source: (and upvotes>=N)"


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out: list[_Lexeme] = []
        self.terms = 0

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, query=self.text, position=pos)

    def lex(self) -> list[_Lexeme]:
        text, n, i = self.text, len(self.text), 0
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
            elif c in "()":
                self.out.append(_Lexeme(c, i))  # type: ignore[arg-type]
                i += 1
            elif c == '"':
                end = text.find('"', i + 1)
                if end < 0:
                    raise self.error('unbalanced quote: this " is never closed', i)
                self.term(_Lexeme("phrase", i, text[i + 1 : end]))
                i = end + 1
            elif c == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] not in ")-":
                self.out.append(_Lexeme("NOT", i, "-"))
                i += 1
            else:
                m = _RUN.match(text, i)
                assert m is not None
                self.run(m[0], i)
                i = m.end()
        return self.out

    def term(self, lexeme: _Lexeme) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.error(f"too many terms: a query may hold at most {MAX_TERMS:,}", lexeme.pos)
        self.out.append(lexeme)

    def run(self, run: str, pos: int) -> None:
        if run in _OPERATORS:
            self.out.append(_Lexeme(run, pos, run))  # type: ignore[arg-type]
            return
        scoped = _FIELD.fullmatch(run)
        if scoped:
            name, rest = scoped[1].lower(), scoped[2]
            if name not in FIELDS:
                raise self.error(f"unknown field {scoped[1]!r}: the fields are {_KNOWN}", pos)
            self.out.append(_Lexeme("field", pos, name))
            rest_pos = pos + len(scoped[1]) + 1
            after = self.text[pos + len(run) : pos + len(run) + 1]
            if not rest and after not in ("(", '"'):
                raise self.error(
                    f"{name}: needs a word, a phrase or a group right after it", rest_pos
                )
            if rest.startswith("-"):
                raise self.error(f"to exclude, write -{name}:word", rest_pos)
            if _FIELD.fullmatch(rest) or _UPVOTES.fullmatch(rest):
                raise self.error(f"{name}: scopes a word, not another field", rest_pos)
            if rest:
                self.word(rest, rest_pos)
            return
        numeric = _UPVOTES.fullmatch(run)
        if numeric:
            value_pos = pos + len(numeric[1]) + len(numeric[2])
            if not numeric[3].isascii() or not numeric[3].isdigit():
                raise self.error("upvotes needs a whole number, such as upvotes>=10", value_pos)
            value = int(numeric[3])
            if value >= _MAX_UPVOTES:
                raise self.error("that upvote count is too large", value_pos)
            self.term(_Lexeme("upvotes", pos, numeric[2], value))
            return
        self.word(run, pos)

    def word(self, run: str, pos: int) -> None:
        if run.endswith("*"):
            self.term(_Lexeme("prefix", pos, run))
        else:
            self.term(_Lexeme("word", pos, run))


class _Parser:
    """Recursive descent over the lexemes; leaves take the scope of the enclosing field."""

    def __init__(self, text: str, lexemes: list[_Lexeme]) -> None:
        self.text = text
        self.lexemes = lexemes
        self.i = 0
        self.depth = 0
        self.scope: str | None = None
        self.dropped: list[int] = []  # positions of words with nothing searchable (emoji, "+")
        self.where: dict[int, int] = {}  # id(node) -> position, for messages

    def error(self, message: str, pos: int) -> QueryError:
        return QueryError(message, query=self.text, position=pos)

    def peek(self) -> _Lexeme | None:
        return self.lexemes[self.i] if self.i < len(self.lexemes) else None

    def at(self, node: Node, pos: int) -> Node:
        self.where.setdefault(id(node), pos)
        return node

    def parse(self) -> Node:
        node = self.or_()
        rest = self.peek()
        if rest is not None:
            raise self.error("unmatched ')'", rest.pos)
        if node is None:
            raise self.error(
                "empty query: nothing to search for", self.dropped[0] if self.dropped else 0
            )
        self.check_searchable(node)
        return node

    def nothing(self, since: int, message: str, pos: int) -> QueryError:
        """The error for a missing term: the symbol-only word if there was one, else ``message``."""
        if len(self.dropped) > since:
            word_pos = self.dropped[since]
            return self.error("nothing to search for here (no letters or digits)", word_pos)
        return self.error(message, pos)

    def or_(self) -> Node | None:
        start = self.peek()
        mark = len(self.dropped)
        branches = []
        node = self.and_()
        while (lexeme := self.peek()) is not None and lexeme.kind == "OR":
            if node is None:
                raise self.nothing(mark, "OR needs a term before it", lexeme.pos)
            branches.append(node)
            self.i += 1
            mark = len(self.dropped)
            node = self.and_()
            if node is None:
                raise self.nothing(mark, "OR needs a term after it", lexeme.pos)
        if not branches:
            return node
        assert node is not None and start is not None
        branches.append(node)
        flat = [t for b in branches for t in (b.terms if isinstance(b, Or) else (b,))]
        return self.at(Or(tuple(flat)), start.pos)

    def and_(self) -> Node | None:
        terms: list[Node] = []
        start = self.peek()
        mark = len(self.dropped)
        while (lexeme := self.peek()) is not None and lexeme.kind not in (")", "OR"):
            if lexeme.kind == "AND":
                if not terms and len(self.dropped) == mark:
                    raise self.error("AND needs a term before it", lexeme.pos)
                self.i += 1
                following = self.peek()
                if following is None or following.kind in (")", "OR", "AND"):
                    raise self.error("AND needs a term after it", lexeme.pos)
                continue
            node = self.unary()
            if node is not None:
                terms.append(node)
        if len(terms) <= 1:
            return terms[0] if terms else None
        assert start is not None
        flat = [t for n in terms for t in (n.terms if isinstance(n, And) else (n,))]
        return self.at(And(tuple(flat)), start.pos)

    def unary(self) -> Node | None:
        first = self.peek()
        assert first is not None
        negated = False
        while (lexeme := self.peek()) is not None and lexeme.kind == "NOT":
            negated = not negated
            self.i += 1
            following = self.peek()
            if following is None or following.kind in (")", "OR", "AND"):
                raise self.error("NOT needs a term after it", lexeme.pos)
        mark = len(self.dropped)
        node = self.primary()
        if first.kind != "NOT":
            return node
        if node is None:
            raise self.nothing(mark, "NOT needs a term after it", first.pos)
        return self.at(Not(node), first.pos) if negated else node

    def primary(self) -> Node | None:
        lexeme = self.lexemes[self.i]
        self.i += 1
        if lexeme.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"groups nest too deeply (at most {MAX_DEPTH} levels)", lexeme.pos)
            mark = len(self.dropped)
            node = self.or_()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise self.error("unclosed parenthesis: this ( is never closed", lexeme.pos)
            self.i += 1
            self.depth -= 1
            if node is None:
                raise self.nothing(mark, "empty parentheses", lexeme.pos)
            return node
        if lexeme.kind == "field":
            if self.scope is not None:
                raise self.error(f"a field scope inside {self.scope}:(...)", lexeme.pos)
            following = self.peek()
            if following is None or following.kind not in ("(", "word", "phrase", "prefix"):
                raise self.error(f"{lexeme.text}: needs a word, a phrase or a group", lexeme.pos)
            self.scope = lexeme.text
            try:
                return self.primary()
            finally:
                self.scope = None
        return self.leaf(lexeme)

    def leaf(self, lexeme: _Lexeme) -> Node | None:
        scope = self.scope
        if lexeme.kind == "upvotes":
            return self.at(Upvotes(lexeme.text, lexeme.value), lexeme.pos)  # type: ignore[arg-type]
        if lexeme.kind == "phrase" and not lexeme.text.strip():
            raise self.error("empty phrase", lexeme.pos)
        if scope == "source":
            if lexeme.kind == "prefix":
                raise self.error("source: takes a source id, without wildcards", lexeme.pos)
            return self.at(Source(lexeme.text.strip().casefold(), lexeme.text), lexeme.pos)
        field_scope: Scope | None = scope  # type: ignore[assignment]
        if lexeme.kind == "prefix":
            return self.at(self.prefix(lexeme, field_scope), lexeme.pos)
        words = scan(lexeme.text)
        if not words:
            self.dropped.append(lexeme.pos)
            return None
        if len(words) == 1:
            only = words[0]
            return self.at(Word(only.key, only.norm, field_scope, lexeme.text), lexeme.pos)
        keys = tuple(w.key for w in words)
        texts = tuple(w.norm for w in words)
        return self.at(Phrase(keys, texts, field_scope, lexeme.text), lexeme.pos)

    def prefix(self, lexeme: _Lexeme, scope: Scope | None) -> Prefix:
        words = scan(lexeme.text.rstrip("*"))
        if len(words) > 1:
            raise self.error("a wildcard applies to one word (no spaces or hyphens)", lexeme.pos)
        if not words or len(words[0].norm) < 2:
            raise self.error("a wildcard needs at least 2 letters before the *", lexeme.pos)
        return Prefix(words[0].norm, scope, lexeme.text)

    def check_searchable(self, root: Node) -> None:
        if _searchable(root):
            return
        culprit = _unsearchable_part(root)
        raise self.error(
            "nothing to look for here: NOT terms only narrow a search; add a word or an"
            " upvotes condition",
            self.where.get(id(culprit), 0),
        )


def _searchable(node: Node) -> bool:
    """Whether every match of ``node`` must hold a positive term or meet an upvotes condition
    (something the index can file it under)."""
    if isinstance(node, And):
        return any(_searchable(t) for t in node.terms)
    if isinstance(node, Or):
        return all(_searchable(t) for t in node.terms)
    return not isinstance(node, Not)


def _unsearchable_part(node: Node) -> Node:
    if isinstance(node, Or):
        return _unsearchable_part(next(t for t in node.terms if not _searchable(t)))
    if isinstance(node, And):
        for term in node.terms:
            if isinstance(term, Or):
                return _unsearchable_part(term)
    return node


def parse_query(text: str) -> Query:
    """Parse a profile query; raise ``QueryError`` (with the position) when it is invalid."""
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(
            f"query too long: {len(text):,} characters, at most {MAX_QUERY_CHARS:,}",
            query=text,
            position=MAX_QUERY_CHARS,
        )
    lexemes = _Lexer(text).lex()
    return Query(_Parser(text, lexemes).parse(), text)
