"""How a matched paper is shown: links, byline, an abstract snippet with the hits marked, and
why it matched. Emails and feeds share this view; templates only lay it out."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import quote_plus

from service import clean
from service.digest import Hit
from service.latex import to_text, widen
from service.match.results import Reason
from service.model import Paper

SNIPPET = 320  # characters of abstract around the first hit

_FIELD_NAMES = {"title": "title", "abstract": "abstract", "author": "author", "org": "group"}


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of text, marked when a query term hit it."""

    text: str
    hit: bool = False


@dataclass(frozen=True, slots=True)
class PaperView:
    title: str
    title_segments: tuple[Segment, ...]
    url: str
    pdf: str | None
    code: str | None
    page: str | None  # the Hugging Face paper page, when it is not already ``url``
    byline: str
    date: str | None
    upvotes: int
    snippet: tuple[Segment, ...]
    why: tuple[str, ...]  # "KV cache: kv cache (title, abstract)" per profile

    @property
    def snippet_text(self) -> str:
        """The snippet for plain text: hits between asterisks."""
        return "".join(f"*{s.text}*" if s.hit else s.text for s in self.snippet)

    @property
    def meta(self) -> str:
        """Byline, date and upvotes on one line."""
        votes = f"{self.upvotes} upvote{'' if self.upvotes == 1 else 's'}"
        return " · ".join(part for part in (self.byline, self.date, votes) if part)

    @property
    def why_text(self) -> str:
        return "; ".join(self.why)


def paper_url(paper: Paper) -> str:
    """arXiv's abstract page when the id is known, else the Hugging Face page, else a search."""
    if paper.arxiv_id:
        return f"https://arxiv.org/abs/{paper.arxiv_id}"
    for role in ("hf", "abs"):
        if paper.links.get(role):
            return paper.links[role]
    return f"https://huggingface.co/papers?q={quote_plus(paper.title)}"


def view(paper: Paper, hits: Sequence[Hit]) -> PaperView:
    if paper.links:  # only http(s) links are shown, whatever the store holds
        paper = replace(paper, links=clean.links(paper.links))
    title_hits = [p for h in hits for r in h.reasons if r.field == "title" for p in r.positions]
    abstract_hits = [
        p for h in hits for r in h.reasons if r.field == "abstract" for p in r.positions
    ]
    url = paper_url(paper)
    pdf = paper.links.get("pdf") or (
        f"https://arxiv.org/pdf/{paper.arxiv_id}" if paper.arxiv_id else None
    )
    page = paper.links.get("hf") or (
        f"https://huggingface.co/papers/{paper.arxiv_id}" if paper.arxiv_id else None
    )
    return PaperView(
        title=to_text(paper.title),
        title_segments=marked(paper.title, title_hits),
        url=url,
        pdf=pdf,
        code=paper.links.get("code"),
        page=page if page != url else None,
        byline=byline(paper),
        date=f"{paper.published.day} {paper.published:%b %Y}" if paper.published else None,
        upvotes=paper.upvotes,
        snippet=snippet(paper.abstract, abstract_hits),
        why=tuple(why(hit) for hit in hits),
    )


def byline(paper: Paper) -> str:
    parts = []
    if paper.authors:
        names = list(paper.authors[:3])
        if len(paper.authors) > 3:
            names.append(f"+{len(paper.authors) - 3} more")
        parts.append(", ".join(names))
    elif paper.author_count:
        parts.append(f"{paper.author_count} author{'s' if paper.author_count != 1 else ''}")
    if paper.organisation:
        parts.append(paper.organisation.name or paper.organisation.handle)
    return " · ".join(parts)


def why(hit: Hit) -> str:
    fields: dict[str, list[str]] = {}
    for reason in hit.reasons:
        if reason.field == "upvotes":
            continue
        if reason.field == "like":  # "like: <title>" says it all
            fields.setdefault(reason.term, [])
            continue
        fields.setdefault(reason.term, [])
        name = _FIELD_NAMES.get(reason.field, reason.field)
        if name not in fields[reason.term]:
            fields[reason.term].append(name)
    terms = ", ".join(
        f"{term} ({', '.join(where)})" if where else term for term, where in fields.items()
    )
    return f"{hit.profile}: {terms}" if terms else hit.profile


def segments(text: str, spans: Iterable[tuple[int, int]]) -> tuple[Segment, ...]:
    """``text`` cut into runs, the ``spans`` (start, end) marked; overlaps are merged."""
    merged: list[list[int]] = []
    for first, last in sorted(spans):
        start, end = max(0, first), min(len(text), last)
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[Segment] = []
    at = 0
    for start, end in merged:
        if start > at:
            out.append(Segment(text[at:start]))
        out.append(Segment(text[start:end], True))
        at = end
    if at < len(text):
        out.append(Segment(text[at:]))
    return tuple(out)


def marked(text: str, spans: Iterable[tuple[int, int]]) -> tuple[Segment, ...]:
    """``text`` cut into runs with the ``spans`` marked (as ``segments``), each run shown as
    a reader reads it: LaTeX math as text. The spans index the stored text; a hit on math
    marks the whole of it, so each run converts as the whole text would."""
    return tuple(
        Segment(to_text(part.text), part.hit) for part in segments(text, widen(text, spans))
    )


def snippet(abstract: str, spans: Sequence[tuple[int, int]]) -> tuple[Segment, ...]:
    """About ``SNIPPET`` characters of the abstract, from just before its first hit, cut at
    word boundaries, with "…" where text is left out; LaTeX math is shown as text."""
    if len(abstract) <= SNIPPET:
        return marked(abstract, spans)
    first = min((s for s, _ in spans), default=0)
    start = max(0, first - SNIPPET // 4)
    if start:
        space = abstract.rfind(" ", 0, start)
        start = space + 1 if space > 0 else start
    end = min(len(abstract), start + SNIPPET)
    if end < len(abstract):
        space = abstract.rfind(" ", start, end)
        end = space if space > start else end
    inside = [(s - start, e - start) for s, e in spans if s >= start and e <= end]
    parts = list(marked(abstract[start:end], inside))
    if start:
        parts.insert(0, Segment("…"))
    if end < len(abstract):
        parts.append(Segment("…"))
    return tuple(parts)


@functools.lru_cache(maxsize=1 << 16)
def reasons_from_text(text: str) -> tuple[Reason, ...]:
    """Reasons from their stored JSON text, each distinct text decoded once (the same phrase
    found in the same paper is the same text for every profile that asks for it)."""
    return reasons_from_json(json.loads(text))


def reasons_from_json(data: Iterable[dict[str, object]]) -> tuple[Reason, ...]:
    """Reasons as the store keeps them (see ``pipeline.reasons_json``)."""
    out = []
    for item in data:
        positions = item.get("positions") or []
        assert isinstance(positions, list)
        out.append(
            Reason(
                term=str(item["term"]),
                field=str(item["field"]),
                positions=tuple((int(a), int(b)) for a, b in positions),
            )
        )
    return tuple(out)
