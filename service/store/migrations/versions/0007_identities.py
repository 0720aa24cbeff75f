"""identities: a feed entry id minted once per paper; subscribers found by mailbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

``papers.entry_id`` is a ``urn:uuid:`` IRI, minted here for every stored paper and at insert for
new ones; feeds use it as the entry's id, so it never changes when a paper gains its arXiv id.
``subscribers.email_key`` is the address as mail providers compare it (the local part and the
domain case-insensitively); subscribers that shared one are merged into the oldest: profiles
move over (renamed when the name is taken), as do the papers they were sent and the deliveries
that do not clash.

Papers stored before text was cleaned on the way in are cleaned here as ``service.clean`` does
it now: control characters out of their text, links other than http(s) dropped.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def mailbox_key(email: str) -> str:
    """As ``service.identity.mailbox_key`` is at this revision (a migration keeps its own)."""
    local, _, domain = email.strip().rpartition("@")
    return f"{local.lower()}@{domain.lower()}"


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entry_id", sa.String(length=64), nullable=True))
    papers = sa.table("papers", sa.column("id", sa.Integer), sa.column("entry_id", sa.String))
    ids = bind.execute(sa.select(papers.c.id)).scalars().all()
    _update(bind, papers, "entry_id", ((i, uuid.uuid4().urn) for i in ids))
    _clean_papers(bind)
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.alter_column("entry_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_papers_entry_id"), ["entry_id"])

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_key", sa.String(length=320), nullable=True))
    _merge_mailboxes(bind)
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.alter_column("email_key", existing_type=sa.String(length=320), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_subscribers_email_key"), ["email_key"])


# As service.clean is at this revision.
_SPACE = str.maketrans(dict.fromkeys("\r\x0b\x0c\x1c\x1d\x1e\x1f\x85", " "))
_LINE = str.maketrans(dict.fromkeys("\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85", " "))
_DROP = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_TEXT = ("title", "abstract", "summary", "doi", "org_handle", "org_name")
_LISTS = ("authors", "categories", "keywords")


def _text(value: str, lines: bool) -> str:
    return _DROP.sub("", value.translate(_SPACE if lines else _LINE))


def _link(value: str) -> str | None:
    url = value.strip("".join(map(chr, range(0x21)))).translate(dict.fromkeys(map(ord, "\t\n\r")))
    if not url.isprintable() or url.partition(":")[0].lower() not in ("http", "https"):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return url.replace(" ", "%20") if host else None


def _clean_papers(bind: sa.Connection) -> None:
    papers = sa.table(
        "papers",
        sa.column("id", sa.Integer),
        *(sa.column(name, sa.Text) for name in _TEXT),
        *(sa.column(name, sa.JSON) for name in (*_LISTS, "links")),
    )
    for row in bind.execute(sa.select(papers)).mappings().all():
        values: dict[str, Any] = {}
        for name in _TEXT:
            text = row[name]
            cleaned = _text(text, lines=name in ("abstract", "summary")) if text else text
            if cleaned != text:
                values[name] = cleaned
        for name in _LISTS:
            items = _json(row[name])
            cleaned_items = [c for item in items if (c := _text(item, lines=False))]
            if cleaned_items != items:
                values[name] = cleaned_items
        links = _json(row["links"])
        kept = {role: url for role, raw in links.items() if (url := _link(raw)) is not None}
        if kept != links:
            values["links"] = kept
        if values:
            bind.execute(papers.update().where(papers.c.id == row["id"]).values(**values))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _update(
    bind: sa.Connection, table: Any, column: str, values: Iterable[tuple[int, str]]
) -> None:
    rows = [{"row_id": row_id, "value": value} for row_id, value in values]
    if rows:
        bind.execute(
            table.update()
            .where(table.c.id == sa.bindparam("row_id"))
            .values({column: sa.bindparam("value")}),
            rows,
        )


def _merge_mailboxes(bind: sa.Connection) -> None:
    subscribers = sa.table(
        "subscribers",
        sa.column("id", sa.Integer),
        sa.column("email", sa.String),
        sa.column("declared", sa.Boolean),
        sa.column("email_key", sa.String),
    )
    rows = bind.execute(
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.declared).order_by(
            subscribers.c.id
        )
    ).all()
    kept: dict[str, Any] = {}
    for row in rows:
        key = mailbox_key(row.email)
        first = kept.setdefault(key, row)
        if first is not row:
            _merge(bind, into=first.id, gone=row.id, declared=row.declared)
    _update(bind, subscribers, "email_key", ((r.id, k) for k, r in kept.items()))


def _merge(bind: sa.Connection, *, into: int, gone: int, declared: bool) -> None:
    """Move what subscriber ``gone`` has to ``into``, then remove ``gone``."""
    profiles = sa.table(
        "profiles",
        sa.column("id", sa.Integer),
        sa.column("subscriber_id", sa.Integer),
        sa.column("name", sa.String),
    )
    taken = set(
        bind.execute(sa.select(profiles.c.name).where(profiles.c.subscriber_id == into)).scalars()
    )
    moving = bind.execute(
        sa.select(profiles.c.id, profiles.c.name).where(profiles.c.subscriber_id == gone)
    ).all()
    for profile_id, name in moving:
        new_name, number = name, 1
        while new_name in taken:
            number += 1
            new_name = f"{name[:90]} ({number})"
        taken.add(new_name)
        bind.execute(
            profiles.update()
            .where(profiles.c.id == profile_id)
            .values(subscriber_id=into, name=new_name)
        )
    # Deliveries and the sent ledger are unique per subscriber: move what does not clash.
    bind.execute(
        sa.text(
            "UPDATE deliveries SET subscriber_id = :into WHERE subscriber_id = :gone AND NOT "
            "EXISTS (SELECT 1 FROM deliveries AS d WHERE d.subscriber_id = :into "
            'AND d.kind = deliveries.kind AND d."window" = deliveries."window")'
        ),
        {"into": into, "gone": gone},
    )
    bind.execute(
        sa.text(
            "UPDATE sent SET subscriber_id = :into WHERE subscriber_id = :gone AND NOT EXISTS "
            "(SELECT 1 FROM sent AS s WHERE s.subscriber_id = :into AND s.paper_id = sent.paper_id)"
        ),
        {"into": into, "gone": gone},
    )
    # Moved ledger rows of a delivery that stays behind (it clashed) go to its twin.
    bind.execute(
        sa.text(
            "UPDATE sent SET delivery_id = (SELECT twin.id FROM deliveries AS mine JOIN "
            "deliveries AS twin ON twin.subscriber_id = :into AND twin.kind = mine.kind AND "
            'twin."window" = mine."window" WHERE mine.id = sent.delivery_id) '
            "WHERE subscriber_id = :into AND delivery_id IN "
            "(SELECT id FROM deliveries WHERE subscriber_id = :gone)"
        ),
        {"into": into, "gone": gone},
    )
    bind.execute(sa.text("DELETE FROM sent WHERE subscriber_id = :gone"), {"gone": gone})
    bind.execute(sa.text("DELETE FROM deliveries WHERE subscriber_id = :gone"), {"gone": gone})
    if declared:
        bind.execute(
            sa.text("UPDATE subscribers SET declared = :yes WHERE id = :into"),
            {"yes": True, "into": into},
        )
    bind.execute(sa.text("DELETE FROM subscribers WHERE id = :gone"), {"gone": gone})


def downgrade() -> None:
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_subscribers_email_key"), type_="unique")
        batch_op.drop_column("email_key")
    with op.batch_alter_table("papers", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_papers_entry_id"), type_="unique")
        batch_op.drop_column("entry_id")
