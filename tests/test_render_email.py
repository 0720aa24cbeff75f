"""A digest's paper blocks are made once and reused: the message reads as if each digest had
been rendered and inlined whole, and a block is reused only for the same paper shown for the
same reasons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import css_inline
from mail import BASE, parse, parts
from markupsafe import Markup

from service.digest import Candidate, Digest, compose
from service.match.results import Reason
from service.model import DeliveryKind, Paper, Profile, ProfileSpec, Schedule, Subscriber
from service.render import email as rendering
from service.render.email import EmailRenderer, Letterhead
from service.render.papers import view
from service.render.templates import environment
from service.windows import Window

NOW = datetime(2026, 6, 2, 5, 30, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=1), NOW)
KV_PAPER = Paper(
    id=1,
    key="arxiv:2606.00001",
    title='Paging the KV cache <fast> & "safe" in Ünïcode ✓',
    abstract="We page the kv cache.   " * 30,
    arxiv_id="2606.00001",
    authors=("Ann Example", "Bob Example"),
    upvotes=4,
)
PRIVATE_PAPER = Paper(id=2, key="title:b", title="Private inference", abstract="Privacy for all.")
KV = (Reason("kv cache", "title", ((11, 19),)), Reason("kv cache", "abstract", ((12, 20),)))
PAGING = (Reason("paging", "title", ((0, 6),)),)
PRIVATE = (Reason("private", "title", ((0, 7),)),)


def digest_of(n: int, found: list[tuple[str, Paper, tuple[Reason, ...]]]) -> Digest:
    owner = Subscriber(
        n, f"reader{n}@example.org", "Europe/Berlin", Schedule.parse("daily 07:30"), token=f"s{n}"
    )
    names = sorted({name for name, _, _ in found})
    profiles = {
        name: Profile(10 * n + i, n, ProfileSpec(name, name)) for i, name in enumerate(names)
    }
    candidates = [Candidate(profiles[name], p, 2.0, r) for name, p, r in found]
    digest = compose(owner, DeliveryKind.DIGEST, WINDOW, candidates)
    assert digest is not None
    return digest


def renderer() -> EmailRenderer:
    return EmailRenderer(environment(), Letterhead("paperboy <p@example.org>", BASE))


def read(mail: EmailRenderer, digest: Digest) -> tuple[str, str]:
    text, html = parts(parse(mail.render(digest, NOW).message))
    return text.rstrip("\r\n"), html.rstrip("\r\n")  # the last line end goes to the boundary


def whole(mail: EmailRenderer, digest: Digest) -> tuple[str, str]:
    """The digest as it reads rendered in one piece: each paper's template in its place, and
    the CSS inlined over the whole page."""
    env = environment()
    shown = [{"paper": view(item.paper, item.hits)} for item in digest.items]

    def context(blocks: list[Any]) -> dict[str, Any]:
        numbered = iter(blocks)
        return {
            "digest": digest,
            "alert": False,
            "notes": digest.notes,
            "healthy": digest.healthy,
            "links": mail.links(digest),
            "subject": digest.subject,
            "zone": digest.subscriber.timezone,
            "sections": [
                {
                    "name": s.profile,
                    "more": s.more,
                    "papers": [next(numbered) for _ in s.items],
                    "votes": mail.votes(digest, s),
                }
                for s in digest.sections
            ],
        }

    # A block takes the line of its ``{{ paper }}``.
    text_blocks = [env.get_template("email/paper.txt").render(s)[:-1] for s in shown]
    html_blocks = [Markup(env.get_template("email/paper.html").render(s)[:-1]) for s in shown]
    text = env.get_template("email/digest.txt").render(context(text_blocks))
    page = env.get_template("email/digest.html").render(context(html_blocks))
    inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
    html = inliner.inline(page)
    return text.replace("\n", "\r\n").rstrip("\r\n"), html.replace("\n", "\r\n").rstrip("\r\n")


def test_a_digest_reads_as_if_rendered_and_inlined_whole() -> None:
    mail = renderer()
    digests = [
        digest_of(1, [("KV cache", KV_PAPER, KV), ("Privacy", PRIVATE_PAPER, PRIVATE)]),
        digest_of(2, [("KV cache", KV_PAPER, KV)]),  # the KV block again, reused
        digest_of(3, [("Privacy", PRIVATE_PAPER, PRIVATE), ("Paging", KV_PAPER, PAGING)]),
    ]
    for digest in digests:
        assert read(mail, digest) == whole(mail, digest)
    text, html = read(mail, digests[1])
    assert "in Ünïcode ✓" in text and "We page the *kv cache*." in text
    assert '<mark style="' in html and "&lt;fast&gt; &amp;" in html


def test_a_block_is_reused_only_for_the_same_paper_and_reasons() -> None:
    mail = renderer()
    _, by_kv = read(mail, digest_of(1, [("KV cache", KV_PAPER, KV)]))
    _, by_paging = read(mail, digest_of(2, [("Paging", KV_PAPER, PAGING)]))
    assert "Matched KV cache: kv cache (title, abstract)" in by_kv
    assert "Matched Paging: paging (title)" in by_paging and "kv cache (" not in by_paging
    # The paper changed (an update): its block is made afresh, whatever its id.
    updated = replace(KV_PAPER, title="Paging the KV cache, second version", upvotes=40)
    text, _ = read(mail, digest_of(3, [("KV cache", updated, KV)]))
    assert "* Paging the KV cache, second version" in text and "40 upvotes" in text


def test_the_oldest_blocks_go_first_when_too_many_are_kept(monkeypatch: Any) -> None:
    monkeypatch.setattr(rendering, "BLOCKS", 2)
    mail = renderer()
    shown = [(KV_PAPER, KV), (KV_PAPER, PAGING), (PRIVATE_PAPER, PRIVATE)]
    for n, (paper, reasons) in enumerate(shown):
        read(mail, digest_of(n + 1, [("P", paper, reasons)]))
    assert len(mail._blocks) == 2
    again = digest_of(9, [("P", KV_PAPER, KV)])  # the first, dropped, is made again
    assert read(mail, again) == whole(mail, again)


def test_a_digest_with_more_papers_than_blocks_kept_is_whole(monkeypatch: Any) -> None:
    monkeypatch.setattr(rendering, "BLOCKS", 1)
    mail = renderer()
    both = digest_of(1, [("KV cache", KV_PAPER, KV), ("Privacy", PRIVATE_PAPER, PRIVATE)])
    assert read(mail, both) == whole(mail, both)
    assert read(mail, both) == whole(mail, both)  # one kept, one made again
