"""Tastes: the papers a profile likes or refused, named by hand, read from a library file or
clicked (👍/👎); each change reaches the profile's similarity model at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from service import subscribers
from service.clock import Clock
from service.errors import InvalidValue
from service.model import Profile
from service.parse.library import Reference, reference
from service.pipeline.matching import Matching
from service.store.likes import Like, Likes
from service.store.subscriptions import Subscriptions

Feedback = Literal["up", "down", "clear"]
FEEDBACK: tuple[Feedback, ...] = ("up", "down", "clear")


class Tastes:
    def __init__(
        self, subscriptions: Subscriptions, likes: Likes, clock: Clock, matching: Matching
    ) -> None:
        self.subscriptions = subscriptions
        self.likes = likes
        self.clock = clock
        self.matching = matching

    def like(
        self, email: str, name: str, references: Sequence[Reference], origin: str
    ) -> list[Like]:
        """Add liked papers to a profile: found ones join at once, the others when their
        paper arrives. Returns them as saved (``paper_id`` None: waiting)."""
        profile = self.profile(email, name)
        saved = self.likes.save(
            profile.id, [(r.keys, r.label) for r in references], "up", origin, self.clock.now()
        )
        self.matching.likes_changed([profile])
        return saved

    def feedback(
        self, email: str, paper: str, vote: Feedback, name: str | None = None
    ) -> tuple[Profile, int]:
        """A 👍, 👎 or neither on a stored paper for one of a subscriber's profiles (``name``,
        or the only one). Returns the profile and the paper's id."""
        if vote not in FEEDBACK:
            raise InvalidValue(f"expected one of {', '.join(FEEDBACK)}", field="vote", value=vote)
        named = reference(paper)
        paper_id = self.likes.find(named.keys)
        if paper_id is None:
            raise InvalidValue(
                "no stored paper has this id, DOI or title", field="paper", value=paper
            )
        profile = self.profile(email, name)
        if vote == "clear":
            self.likes.clear(profile.id, paper_id)
        else:
            self.likes.save(
                profile.id, [(named.keys, named.label)], vote, "feedback", self.clock.now()
            )
        self.matching.likes_changed([profile])
        return profile, paper_id

    def forget(self, email: str, name: str, ref: str) -> bool:
        """Take back one liked or refused paper of a profile (as ``Like.ref`` names it, found
        or still waiting); whether there was one."""
        profile = self.profile(email, name)
        forgotten = self.likes.forget(profile.id, ref)
        self.matching.likes_changed([profile])
        return forgotten > 0

    def profile(self, email: str, name: str | None) -> Profile:
        owner = self.subscriptions.subscriber(subscribers.check_email(email))
        if owner is None:
            raise InvalidValue("no such subscriber", field="email", value=email)
        found = self.subscriptions.profiles(owner.id)
        if name is not None:
            found = [p for p in found if p.spec.name == name]
            if not found:
                raise InvalidValue(
                    f"{owner.email} has no such profile", field="profile", value=name
                )
        if len(found) != 1:
            names = ", ".join(p.spec.name for p in found) or "none"
            raise InvalidValue(
                f"name the profile with --profile (profiles: {names})", field="profile", value=None
            )
        return found[0]
