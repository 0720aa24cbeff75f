"""Papers each profile likes or refused, and their joining to stored papers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from service.store.tables import matches, paper_keys, papers, profile_likes

Vote = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class Like:
    """One paper a profile named: ``paper_id`` is ``None`` until the paper is stored."""

    profile_id: int
    ref: str
    keys: tuple[str, ...]
    paper_id: int | None
    vote: str
    label: str
    origin: str


class Likes:
    """Reads and writes of profile likes; each call is one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def find(self, keys: Sequence[str]) -> int | None:
        """The stored paper found under the first of ``keys`` that names one."""
        with self.engine.connect() as db:
            return _find(db, keys)

    def save(
        self,
        profile_id: int,
        entries: Iterable[tuple[tuple[str, ...], str]],
        vote: Vote,
        origin: str,
        now: datetime,
    ) -> list[Like]:
        """Name papers (their keys, best first, and a label) as liked or refused by a profile,
        joined to the stored paper when there is one. Returns them as saved."""
        saved: list[Like] = []
        with self.engine.begin() as db:
            for keys, label in entries:
                paper_id = _find(db, keys)
                ref = _ref(db, paper_id) if paper_id is not None else keys[0]
                values = {
                    "lookup": list(keys),
                    "paper_id": paper_id,
                    "vote": vote,
                    "label": label,
                    "origin": origin,
                    "updated_at": now,
                }
                where = (profile_likes.c.profile_id == profile_id) & (profile_likes.c.ref == ref)
                if db.execute(sa.select(profile_likes.c.ref).where(where)).first():
                    db.execute(profile_likes.update().where(where).values(**values))
                else:
                    db.execute(
                        profile_likes.insert().values(
                            profile_id=profile_id, ref=ref, created_at=now, **values
                        )
                    )
                if vote == "down" and paper_id is not None:
                    # Refused: out of the digest that has not gone yet, and never matched again.
                    db.execute(
                        matches.delete().where(
                            matches.c.profile_id == profile_id, matches.c.paper_id == paper_id
                        )
                    )
                saved.append(Like(profile_id, ref, keys, paper_id, vote, label, origin))
        return saved

    def clear(self, profile_id: int, paper_id: int) -> int:
        """Forget a profile's vote on a stored paper; how many were forgotten."""
        with self.engine.begin() as db:
            done = db.execute(
                profile_likes.delete().where(
                    profile_likes.c.profile_id == profile_id, profile_likes.c.paper_id == paper_id
                )
            )
        return done.rowcount or 0

    def forget(self, profile_id: int, ref: str) -> int:
        """Forget one of a profile's likes or refusals by its ``ref``, stored paper or not."""
        with self.engine.begin() as db:
            done = db.execute(
                profile_likes.delete().where(
                    profile_likes.c.profile_id == profile_id, profile_likes.c.ref == ref
                )
            )
        return done.rowcount or 0

    def join(self) -> int:
        """Join likes that named no stored paper to papers that arrived since; how many."""
        joined = 0
        with self.engine.begin() as db:
            waiting = db.execute(
                sa.select(
                    profile_likes.c.profile_id, profile_likes.c.ref, profile_likes.c.lookup
                ).where(profile_likes.c.paper_id.is_(None))
            ).all()
            for row in waiting:
                paper_id = _find(db, row.lookup)
                if paper_id is None:
                    continue
                db.execute(
                    profile_likes.update()
                    .where(
                        profile_likes.c.profile_id == row.profile_id,
                        profile_likes.c.ref == row.ref,
                    )
                    .values(paper_id=paper_id)
                )
                joined += 1
        return joined

    def of(self, profile_ids: Sequence[int] | None = None) -> list[Like]:
        query = sa.select(profile_likes).order_by(profile_likes.c.profile_id, profile_likes.c.ref)
        if profile_ids is not None:
            query = query.where(profile_likes.c.profile_id.in_(profile_ids))
        with self.engine.connect() as db:
            rows = db.execute(query).all()
        return [
            Like(r.profile_id, r.ref, tuple(r.lookup), r.paper_id, r.vote, r.label, r.origin)
            for r in rows
        ]


def _find(db: sa.Connection, keys: Sequence[str]) -> int | None:
    for key in keys:
        if key.startswith("doi:"):
            found = db.execute(
                sa.select(papers.c.id)
                .where(sa.func.lower(papers.c.doi) == key[4:])
                .order_by(papers.c.id)
            ).first()
        else:
            found = db.execute(
                sa.select(paper_keys.c.paper_id).where(paper_keys.c.key == key)
            ).first()
        if found is not None:
            return int(found[0])
    return None


def _ref(db: sa.Connection, paper_id: int) -> str:
    """A stored paper's key for likes: its arXiv key when it has one, else its title key."""
    keys = db.execute(
        sa.select(paper_keys.c.key).where(paper_keys.c.paper_id == paper_id)
    ).scalars()
    found = sorted(keys, key=lambda k: (not k.startswith("arxiv:"), k))
    return found[0] if found else f"paper:{paper_id}"
