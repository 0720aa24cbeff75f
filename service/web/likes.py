"""The manage page's liked papers: each profile's likes and refusals as shown, and the
papers a visitor names by hand (one arXiv id, DOI or title a line) or in a library file
(BibTeX, Zotero CSV or RIS, read by ``service.parse.library``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import UploadFile
from starlette.requests import Request

from service.errors import ParseError
from service.latex import to_text
from service.model import Profile
from service.parse.library import MAX_ENTRIES, Reference, read_library, reference
from service.pipeline import Pipeline
from service.store.likes import Like
from service.web.forms import Form

LIKES = "likes"  # the text field: a paper a line
LIBRARY = "library"  # the file field
_TEXT = "library_text"  # the file's text, carried with the form's fields
_NAME = "library_name"


@dataclass(frozen=True, slots=True)
class Entry:
    """One liked or refused paper as the page lists it."""

    ref: str
    title: str
    waiting: bool  # named, but no such paper is stored yet


@dataclass(frozen=True, slots=True)
class Shelf:
    liked: list[Entry] = field(default_factory=list)
    refused: list[Entry] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.liked or self.refused)


def shelves(pipeline: Pipeline, profiles: Sequence[Profile]) -> dict[str, Shelf]:
    """Each profile's likes and refusals by profile name, titled as stored."""
    found = pipeline.likes.of([p.id for p in profiles])
    ids = sorted({like.paper_id for like in found if like.paper_id is not None})
    titles = {p.id: to_text(p.title) for p in pipeline.store.papers(ids=ids)} if ids else {}
    names = {p.id: p.spec.name for p in profiles}
    out = {p.spec.name: Shelf() for p in profiles}
    for like in found:
        shelf = out[names[like.profile_id]]
        (shelf.liked if like.vote == "up" else shelf.refused).append(_entry(like, titles))
    for shelf in out.values():
        shelf.liked.sort(key=lambda e: e.title.lower())
        shelf.refused.sort(key=lambda e: e.title.lower())
    return out


def _entry(like: Like, titles: dict[int, str]) -> Entry:
    if like.paper_id is not None and like.paper_id in titles:
        return Entry(like.ref, titles[like.paper_id], False)
    return Entry(like.ref, like.label, True)


async def read_form(request: Request) -> dict[str, str]:
    """A posted form's text fields (the last value of each), and the library file's text
    and name when one was sent (a form without files is read as the site reads forms)."""
    async with request.form() as data:
        fields = {name: value for name, value in data.multi_items() if isinstance(value, str)}
        fields.pop(_TEXT, None), fields.pop(_NAME, None)  # only ever from a file
        upload = data.get(LIBRARY)
        if isinstance(upload, UploadFile) and upload.filename:
            raw = await upload.read()
            fields[_NAME] = upload.filename
            fields[_TEXT] = raw.decode("utf-8", errors="replace")
    return fields


def references(form: Form) -> list[Reference]:
    """The papers named in the form (text field and file); problems go on the form."""
    lines = [line.strip() for line in form.get(LIKES).splitlines() if line.strip()]
    if len(lines) > MAX_ENTRIES:
        form.errors[LIKES] = f"Please name at most {MAX_ENTRIES} papers at a time."
        return []
    named = [reference(line) for line in lines]
    text = form.get(_TEXT)
    if form.get(_NAME):
        try:
            named += read_library(text, form.get(_NAME))
        except ParseError as exc:
            form.errors[LIBRARY] = str(exc)
    return named


def given(form: Form) -> bool:
    """Whether the form names any paper (in the text field or a file)."""
    return bool(form.get(LIKES).strip() or form.get(_NAME))


def report(saved: Sequence[Like]) -> str:
    """What adding likes did, as a sentence for the page."""
    waiting = [like.label for like in saved if like.paper_id is None]
    found = len(saved) - len(waiting)
    head = f"{found} liked paper{'' if found == 1 else 's'} added."
    if waiting:
        arrive = "it arrives" if len(waiting) == 1 else "they arrive"
        head += (
            f" Not stored here yet, kept for when {arrive}: "
            + "; ".join(waiting[:20])
            + (f" and {len(waiting) - 20} more." if len(waiting) > 20 else ".")
        )
    return head
