"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; keep the two in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16)),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("body_hash", sa.String(64)),
    sa.Column("last_captured_at", UTCDateTime),
    sa.Column("last_attempt_at", UTCDateTime),
    sa.Column("last_success_at", UTCDateTime),
    sa.Column("next_check_at", UTCDateTime),
    sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("disabled", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source_id", sa.String(64), sa.ForeignKey("sources.id"), nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("stamp", sa.Text),  # for files: size and mtime, to find new files cheaply
    sa.Column("fetched_at", UTCDateTime, nullable=False),
    sa.Column("captured_at", UTCDateTime),
    sa.Column("body_hash", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("papers", sa.Integer, nullable=False, server_default="0"),
    sa.Column("new", sa.Integer, nullable=False, server_default="0"),
    sa.Column("listed", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
    sa.Column("dropped", sa.Integer, nullable=False, server_default="0"),
    sa.Index(None, "source_id", "body_hash"),
    sa.Index(None, "source_id", "origin"),
)

papers = sa.Table(
    "papers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("arxiv_id", sa.String(32), unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False, server_default=""),
    sa.Column("version", sa.Integer),
    sa.Column("doi", sa.Text),
    sa.Column("authors", sa.JSON, nullable=False),
    sa.Column("author_count", sa.Integer),
    sa.Column("org_handle", sa.Text),
    sa.Column("org_name", sa.Text),
    sa.Column("published", sa.Date),
    sa.Column("upvotes", sa.Integer),
    sa.Column("links", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("keywords", sa.JSON, nullable=False),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # A feed entry's id ("urn:uuid:..."): minted at insert, never changed.
    sa.Column("entry_id", sa.String(64), nullable=False, unique=True),
    sa.Index(None, "first_seen_at"),
)

paper_keys = sa.Table(
    "paper_keys",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False, index=True),
)

paper_sources = sa.Table(
    "paper_sources",
    metadata,
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True),
    sa.Column("source_id", sa.String(64), sa.ForeignKey("sources.id"), primary_key=True),
    sa.Column("first_seen_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("present", sa.Boolean, nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Index(None, "source_id", "present"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), nullable=False, index=True),
    sa.Column("source_id", sa.String(64), sa.ForeignKey("sources.id"), nullable=False),
    # Indexed: a snapshot's events are read after each ingest and by back-fill.
    sa.Column("snapshot_id", sa.Integer, sa.ForeignKey("snapshots.id"), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("changes", sa.JSON),
)

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # as first given
    sa.Column("email_key", sa.String(320), nullable=False, unique=True),  # identity.mailbox_key
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("schedule", sa.String(32), nullable=False),  # "daily 07:30", "weekly mon 07:30"
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("declared", sa.Boolean, nullable=False),  # managed by the profiles file
    sa.Column("token", sa.String(64), unique=True),  # secret: unsubscribe and feed URLs
    sa.Column("window_end", UTCDateTime),  # end of the last digest window closed
    sa.Column("next_window_at", UTCDateTime),  # when the next one closes (None: plan it)
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # Membership on the web: when the address was confirmed and the status last changed, the
    # manage links' generation (a new link revokes the old) and when the last confirmation or
    # manage-link mail was queued (one per web.resend_after).
    sa.Column("confirmed_at", UTCDateTime),
    sa.Column("status_changed_at", UTCDateTime),
    sa.Column("manage_generation", sa.Integer, nullable=False, server_default="0"),
    sa.Column("notice_at", UTCDateTime),
)

profiles = sa.Table(
    "profiles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("min_upvotes", sa.Integer, nullable=False),
    sa.Column("max_items", sa.Integer, nullable=False),
    sa.Column("alert_threshold", sa.Float),
    sa.Column("send_when_empty", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("subscriber_id", "name"),
)

# Papers a profile likes (vote "up") or refused (vote "down"): named by hand, from a library
# file or by a feedback click. ``ref`` is the identity key it was named by ("arxiv:...",
# "doi:...", "title:..."); ``paper_id`` joins it to a stored paper, now or when it arrives.
profile_likes = sa.Table(
    "profile_likes",
    metadata,
    sa.Column(
        "profile_id", sa.Integer, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("lookup", sa.JSON, nullable=False),  # every key it may be found under, best first
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), index=True),
    sa.Column("vote", sa.String(8), nullable=False),  # up, down
    sa.Column("label", sa.Text, nullable=False),  # as named: a title, an id
    sa.Column("origin", sa.String(16), nullable=False),  # cli, file, feedback, web
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# The similarity features fitted last (vocabulary, idf and the average stored paper, as
# ``similar.Features.to_bytes`` wrote them) and the stored papers sampled to calibrate cuts:
# a restart or another worker loads them instead of refitting. One row, the current one.
similarity_features = sa.Table(
    "similarity_features",
    metadata,
    sa.Column("version", sa.String(32), primary_key=True),
    sa.Column("fitted_on", sa.Integer, nullable=False),  # stored papers when fitted
    sa.Column("background", sa.JSON, nullable=False),  # paper ids of the calibration sample
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Each similarity profile's trained model (``similar.model_to_bytes``), for the features of
# ``version``, trained on the liked and refused paper ids in ``trained_on``.
similarity_models = sa.Table(
    "similarity_models",
    metadata,
    sa.Column(
        "profile_id", sa.Integer, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("trained_on", sa.JSON, nullable=False),  # [[liked ids], [refused ids]]
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

matches = sa.Table(
    "matches",
    metadata,
    sa.Column(
        "profile_id", sa.Integer, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("matched_at", UTCDateTime, nullable=False, index=True),
    # A feed's newest matches; a batch of subscribers' candidates in their windows, whatever
    # the planner's statistics say.
    sa.Index(None, "profile_id", "matched_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(16), nullable=False),  # digest, alert
    sa.Column("window", sa.String(64), nullable=False),  # "start/end" (ISO, UTC) or alert time
    # A digest's window, exactly: what a delivery still to compose (status "compose") covers.
    sa.Column("window_start", UTCDateTime),
    sa.Column("window_end", UTCDateTime),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("papers", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # compose pending sending sent failed …
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("claimed_until", UTCDateTime),
    sa.Column("claimed_by", sa.String(320)),  # host/pid/start of the claiming process
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sent_at", UTCDateTime),
    sa.UniqueConstraint("subscriber_id", "kind", "window"),
    # Claims take the earliest due rows of a status in (next_attempt_at, id) order: this index
    # gives them in that order, so a claim reads its 100 rows, not every due row sorted.
    sa.Index(None, "status", "next_attempt_at", "id"),
)

# A delivery's rendered bytes, apart from its row: a delivery's status changes three or four
# times (claimed, sent), and SQLite rewrites a whole row, 25-30 KB of message with it, for each
# change. No row: a digest still to compose, or a sent message whose bytes are forgotten
# (``mail.keep_sent``).
messages = sa.Table(
    "messages",
    metadata,
    sa.Column(
        "delivery_id",
        sa.Integer,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

sent = sa.Table(
    "sent",
    metadata,
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("paper_id", sa.Integer, sa.ForeignKey("papers.id"), primary_key=True),
    sa.Column(
        "delivery_id",
        sa.Integer,
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
)

# Addresses that get nothing until an operator lifts it (hard bounces, soft bounces in a row,
# complaints), by a salted hash of the mailbox key (service/store/mailboxes.py), so that
# removing and re-adding a subscriber does not lift it, and erasing one leaves no address.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("mailbox", sa.String(320), primary_key=True),  # mailboxes.hashed(mailbox_key)
    sa.Column("reason", sa.String(16), nullable=False),  # hard, soft, complaint
    sa.Column("detail", sa.Text, nullable=False),  # the status and diagnostic, addresses hidden
    sa.Column("suppressed_at", UTCDateTime, nullable=False),
)

# The store's own random values, by name: "suppression", the salt of suppressions' hashes.
store_keys = sa.Table(
    "store_keys",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
)

# What came back for each delivery: a bounce (hard or soft) or a complaint, once per kind.
bounces = sa.Table(
    "bounces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("mailbox", sa.String(320), nullable=False, index=True),
    sa.Column("delivery_id", sa.Integer, index=True),  # None: no delivery could be found
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16)),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
)
