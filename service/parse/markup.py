"""Markup to plain text: what a feed's HTML title or description says, without the tags.

``html_blocks`` returns the text of each block (paragraph, list item, heading, cell ...) with
entities unescaped and whitespace collapsed; ``html_to_text`` joins them with single spaces.
Scripts, styles, frames and comments contribute nothing; unknown tags are dropped, their text
kept. The input is never trusted and the output is text only, so nothing needs sanitising.
"""

from __future__ import annotations

from html.parser import HTMLParser

# Elements whose content is never text a reader would see.
_HIDDEN = frozenset(
    {"script", "style", "iframe", "noscript", "template", "object", "embed", "svg", "head"}
)
# Elements that start or end a line of their own when rendered.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt",
        "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
        "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
    }
)  # fmt: skip


def html_to_text(fragment: str) -> str:
    """Return the visible text of an HTML fragment on one line."""
    if "<" not in fragment and "&" not in fragment:
        return " ".join(fragment.split())
    return " ".join(html_blocks(fragment))


class MarkupError(ValueError):
    """Python's HTML parser gave up on a fragment (it raises AssertionError on some ``<![``)."""


def html_blocks(fragment: str) -> list[str]:
    """Return the visible text of each non-empty block of an HTML fragment, in order;
    ``MarkupError`` when the HTML parser fails on it."""
    reader = _TextReader()
    try:
        reader.feed(fragment)
        reader.close()
    except Exception as exc:  # the library's own failure, whatever its type: say so
        raise MarkupError(f"{type(exc).__name__}: {exc}") from exc
    reader.end_block()
    return reader.blocks


class _TextReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self._pieces: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden_depth += 1
        elif tag in _BLOCKS:
            self.end_block()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # A self-closed <iframe/> hides nothing; only a line break matters here.
        if tag in _BLOCKS:
            self.end_block()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCKS:
            self.end_block()

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self._pieces.append(data)

    def end_block(self) -> None:
        text = " ".join("".join(self._pieces).split())
        self._pieces.clear()
        if text:
            self.blocks.append(text)
