"""The roster: subscribers and their profiles, saved and removed one by one, or declared in a
profiles file (synced at start, imported, exported)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from service import subscribers
from service.clock import Clock
from service.config import Settings
from service.errors import InvalidValue, PaperboyError
from service.identity import mailbox_key
from service.match.query import parse_query
from service.model import Profile, ProfileSpec, Subscriber
from service.parse.library import reference
from service.pipeline.matching import Matching
from service.store.likes import Like
from service.store.subscriptions import Subscriptions

IMPORT_BATCH = 1000
"""Subscribers of a profiles file saved in one transaction."""


class Roster:
    """Who gets what. A change to the profiles reaches matching at once (index, back-fill)."""

    def __init__(
        self,
        settings: Settings,
        subscriptions: Subscriptions,
        clock: Clock,
        matching: Matching,
    ) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self.clock = clock
        self.matching = matching

    def save_subscriber(self, email: str, timezone: str, schedule: str) -> Subscriber:
        """Create or update a subscriber; every field is checked first."""
        email = subscribers.check_email(email)
        self._refuse_declared(self.subscriptions.subscriber(email))
        return self.subscriptions.save_subscriber(
            email,
            subscribers.check_timezone(timezone),
            str(subscribers.parse_schedule(schedule)),
            self.clock.now(),
        )

    def remove_subscriber(self, email: str) -> bool:
        email = subscribers.check_email(email)
        self._refuse_declared(self.subscriptions.subscriber(email))
        removed = self.subscriptions.remove_subscriber(email)
        self.matching.profiles_changed()
        return removed

    def save_profile(self, email: str, spec: ProfileSpec) -> Profile:
        """Create or update a profile; an invalid query is refused here, never at send time."""
        owner = self._subscriber(email)
        self._refuse_declared(owner)
        if spec.query.strip():  # a blank query: the profile ranks by its liked papers alone
            parse_query(spec.query)
        profile, fresh = self.subscriptions.save_profile(
            owner.id, subscribers.check_profile(spec), self.clock.now()
        )
        self.matching.profiles_changed([profile] if fresh else [])
        return profile

    def remove_profile(self, email: str, name: str) -> bool:
        owner = self._subscriber(email)
        self._refuse_declared(owner)
        removed = self.subscriptions.remove_profile(owner.id, name)
        self.matching.profiles_changed()
        return removed is not None

    def sync_profiles(self, text: str, origin: str, *, prune: bool = True) -> tuple[int, int]:
        """Make the subscribers a profiles file declares exist exactly as declared.

        With ``prune``, declared subscribers and profiles no longer in the file are removed;
        subscribers added by hand are never touched. Returns (subscribers, profiles) saved.
        """
        # Every query is checked, with where it is, before anything is written.
        declared = subscribers.read_profiles(text, origin, check_query=parse_query)
        return self._apply_profiles(declared, prune=prune)

    def import_profiles(self, declared: Sequence[subscribers.Declared]) -> tuple[int, int]:
        """Add or update the subscribers and profiles of a profiles file read beforehand
        (nothing is removed). A subscriber the profiles file declares may only come as it
        stands. Returns (subscribers, profiles) saved."""
        if not self.settings.profiles_file.is_file():  # then nothing is refused: no look-up
            return self._apply_profiles(declared, prune=False)
        for start in range(0, len(declared), IMPORT_BATCH):  # looked up a batch at a time
            batch = declared[start : start + IMPORT_BATCH]
            known = self.subscriptions.subscribers_of([item.email for item in batch])
            held = self.subscriptions.profiles_of([owner.id for owner in known.values()])
            for item in batch:
                owner = known.get(mailbox_key(item.email))
                if owner is None:
                    continue
                stored = subscribers.Declared(
                    owner.email,
                    owner.timezone,
                    owner.schedule,
                    tuple(p.spec for p in held.get(owner.id, [])),
                )
                if _by_name(stored) != _by_name(replace(item, email=owner.email)):
                    self._refuse_declared(owner)
        return self._apply_profiles(declared, prune=False)

    def _apply_profiles(
        self, declared: Sequence[subscribers.Declared], *, prune: bool
    ) -> tuple[int, int]:
        """Save the declared subscribers and profiles, ``IMPORT_BATCH`` subscribers to a
        transaction (a big import is a few statements a batch, not a few per subscriber)."""
        now = self.clock.now()
        saved_profiles = 0
        fresh: list[Profile] = []
        for start in range(0, len(declared), IMPORT_BATCH):
            batch = declared[start : start + IMPORT_BATCH]
            owners, changed = self.subscriptions.save_many(
                [(d.email, d.timezone, str(d.schedule), d.profiles) for d in batch],
                now,
                declared_here=prune,
            )
            fresh += changed
            saved_profiles += sum(len(d.profiles) for d in batch)
            if prune:
                held = self.subscriptions.profiles_of(owners)
                for owner, item in zip(owners, batch, strict=True):
                    names = {spec.name for spec in item.profiles}
                    for profile in held.get(owner, []):
                        if profile.spec.name not in names:
                            self.subscriptions.remove_profile(owner, profile.spec.name)
        if prune:
            mailboxes = {mailbox_key(item.email) for item in declared}
            for known in self.subscriptions.subscribers():
                if known.declared and mailbox_key(known.email) not in mailboxes:
                    self.subscriptions.remove_subscriber(known.email)
        self.matching.profiles_changed(fresh)
        self._declare_likes(declared)
        return len(declared), saved_profiles

    def _declare_likes(self, declared: Sequence[subscribers.Declared]) -> None:
        """Add the papers the declared profiles like. Only added: a paper the profile has a
        vote on already (a 👎 from a digest, say) keeps it, and likes added elsewhere stay."""
        liking = [item for item in declared if item.likes]
        if not liking:
            return
        likes, now = self.matching.likes, self.clock.now()
        known = self.subscriptions.subscribers_of([item.email for item in liking])
        held = self.subscriptions.profiles_of([owner.id for owner in known.values()])
        changed: list[Profile] = []
        for item in liking:
            owner = known.get(mailbox_key(item.email))
            if owner is None:
                continue
            mine = {p.spec.name: p for p in held.get(owner.id, [])}
            for name, texts in item.likes.items():
                profile = mine.get(name)
                if profile is None:
                    continue
                voted = {k for like in likes.of([profile.id]) for k in (like.ref, *like.keys)}
                wanted = [reference(text) for text in texts]
                fresh = [r for r in wanted if r.keys and not voted & set(r.keys)]
                if fresh:
                    likes.save(profile.id, [(r.keys, r.label) for r in fresh], "up", "file", now)
                    changed.append(profile)
        if changed:
            self.matching.likes_changed(changed)

    def export_profiles(self) -> str:
        """Every subscriber and profile, as a profiles file."""
        return subscribers.write_profiles(map(self._as_declared, self.subscriptions.subscribers()))

    def _as_declared(self, owner: Subscriber) -> subscribers.Declared:
        """A stored subscriber as a profiles file declares it, with the papers each profile
        likes (by arXiv id, else DOI, else title: what the file reads back)."""
        mine = self.subscriptions.profiles(owner.id)
        liked = [like for like in self.matching.likes.of([p.id for p in mine]) if like.vote == "up"]
        ids = sorted({like.paper_id for like in liked if like.paper_id is not None})
        titles = {p.id: p.title for p in self.matching.store.papers(ids=ids)} if ids else {}
        names = {p.id: p.spec.name for p in mine}
        likes: dict[str, list[str]] = {}
        for like in liked:
            likes.setdefault(names[like.profile_id], []).append(_written(like, titles))
        return subscribers.Declared(
            email=owner.email,
            timezone=owner.timezone,
            schedule=owner.schedule,
            profiles=tuple(p.spec for p in mine),
            likes={name: tuple(texts) for name, texts in likes.items()},
        )

    def _refuse_declared(self, owner: Subscriber | None) -> None:
        """A subscriber the profiles file declares is changed in that file: its sync at the
        next start would undo a change made any other way."""
        profiles_file = self.settings.profiles_file
        if owner is not None and owner.declared and profiles_file.is_file():
            raise PaperboyError(f"{owner.email} is declared in {profiles_file}; change it there")

    def subscriber(self, email: str) -> Subscriber:
        """The subscriber with this email; InvalidValue when there is none."""
        return self._subscriber(email)

    def _subscriber(self, email: str) -> Subscriber:
        found = self.subscriptions.subscriber(subscribers.check_email(email))
        if found is None:
            raise InvalidValue("no such subscriber", field="email", value=email)
        return found


def _by_name(declared: subscribers.Declared) -> subscribers.Declared:
    """``declared`` with its profiles in name order, to compare with another (likes aside:
    an import only adds them)."""
    profiles = tuple(sorted(declared.profiles, key=lambda p: p.name))
    return replace(declared, profiles=profiles, likes={})


def _written(like: Like, titles: Mapping[int, str]) -> str:
    """A liked paper as a profiles file names it: ``arXiv:ID``, ``doi:DOI`` or the title."""
    for key in (like.ref, *like.keys):
        if key.startswith("arxiv:"):
            return "arXiv:" + key.removeprefix("arxiv:")
        if key.startswith("doi:"):
            return key
    if like.paper_id is not None and like.paper_id in titles:
        return titles[like.paper_id]
    return like.label
