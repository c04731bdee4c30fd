"""Every SQL table of vIOP, as SQLAlchemy Core, in one place.

Conventions: ids are opaque text (``vIOP/ids.py``); times are timezone-aware UTC (:class:`UtcDateTime`);
every column whose value a person typed or that names a person is ``LargeBinary`` ciphertext made by
:class:`vIOP.storage.crypto.FieldCipher` with AAD = (table, column, row id); columns that must be looked up
hold a blind index (HMAC-SHA256) instead of the plaintext. Enumerated columns hold the ``.value`` of the
owning enum as short text (no CHECK constraint, so a new state needs no table rebuild).

The Alembic revisions (``migrations/versions/``, from ``0001_initial.py`` on) must together create exactly
these tables: ``tests/storage/test_database.py`` compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    TypeDecorator,
    UniqueConstraint,
)

# Deterministic constraint names: Alembic can then alter them on SQLite and PostgreSQL alike.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64  # opaque ids are ~20 characters; room to spare for system key names
ENUM = 32


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which has no time zones) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: vIOP stores only timezone-aware UTC times")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset; keep it naive-UTC there so ordering stays lexical.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, String(ID), *args, **kwargs)


# --- keys (issue 3) ---------------------------------------------------------------------------------

# Data keys: random AES-256 keys that encrypt fields, each wrapped (encrypted) by a KEK from the key source.
# scope: "system" (fixed ids such as "sys.fields") or "client" (one per client, destroyed by crypto-shred).
# Rotation rewrites only wrapped/kek_id/kek_version; field ciphertexts name their data key by id.
data_keys = Table(
    "data_keys",
    metadata,
    _id("id", primary_key=True),
    Column("scope", String(ENUM), nullable=False),
    Column("kek_id", String(ID), nullable=True),  # NULL once destroyed
    Column("kek_version", Integer, nullable=True),
    Column("wrapped", LargeBinary, nullable=True),  # NULL once destroyed (crypto-shredded)
    Column("created_at", UtcDateTime, nullable=False),
    Column("rewrapped_at", UtcDateTime, nullable=True),
    Column("destroyed_at", UtcDateTime, nullable=True),
    Index(None, "kek_id", "kek_version"),
)

# One row per `keys rotate` run; the cursor makes an interrupted rotation resumable.
key_rotations = Table(
    "key_rotations",
    metadata,
    _id("id", primary_key=True),
    Column("target_kek_id", String(ID), nullable=False),
    Column("target_kek_version", Integer, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("rewrapped", Integer, nullable=False, default=0),
    Column("cursor", String(ID), nullable=True),  # last data key id re-wrapped
)

# --- audit (issue 3) --------------------------------------------------------------------------------

# Append-only, chained: mac = HMAC(chain key, prev_mac || canonical(row)). seq is dense (1, 2, 3...), so a
# deleted row leaves a gap. No PHI: ids only; the IP is ciphertext, the user agent a keyed hash.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor_id", String(ID), nullable=True),
    Column("actor_role", String(ENUM), nullable=False),
    Column("action", String(ENUM * 2), nullable=False),
    Column("object_type", String(ENUM), nullable=True),
    Column("object_id", String(ID), nullable=True),
    Column("outcome", String(ENUM), nullable=False),
    Column("ip", LargeBinary, nullable=True),
    Column("user_agent_hash", String(ID), nullable=True),
    Column("prev_mac", LargeBinary, nullable=False),
    Column("mac", LargeBinary, nullable=False),
    Index(None, "actor_id", "at"),
    Index(None, "object_type", "object_id"),
)

# --- identity (issue 4) -----------------------------------------------------------------------------

# Workforce accounts (admin, clinician, staff). Fields are encrypted under the "sys.fields" data key.
users = Table(
    "users",
    metadata,
    _id("id", primary_key=True),
    Column("role", String(ENUM), nullable=False),
    Column("username_index", LargeBinary, nullable=False, unique=True),
    Column("username", LargeBinary, nullable=False),
    Column("display_name", LargeBinary, nullable=True),  # NULL: made before 0002, shown as the role's title
    Column("email_index", LargeBinary, nullable=True, unique=True),
    Column("email", LargeBinary, nullable=True),
    Column("password_hash", String(255), nullable=False),  # argon2id PHC string
    Column("totp_secret", LargeBinary, nullable=True),
    Column("mfa_enabled", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("last_failed_at", UtcDateTime, nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("last_login_at", UtcDateTime, nullable=True),
    Column("password_changed_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Clients have no account: an invite names them. Their fields are under their own data key (shreddable).
clients = Table(
    "clients",
    metadata,
    _id("id", primary_key=True),
    _id("data_key_id", ForeignKey("data_keys.id"), nullable=False, unique=True),
    Column("display_name", LargeBinary, nullable=False),
    _id("created_by", ForeignKey("users.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("shredded_at", UtcDateTime, nullable=True),
)

# --- rooms and attendance (issue 5) -----------------------------------------------------------------

rooms = Table(
    "rooms",
    metadata,
    _id("id", primary_key=True),
    Column("kind", String(ENUM), nullable=False),  # group | individual
    Column("title", LargeBinary, nullable=False),  # a group's name can disclose treatment: encrypted
    Column("capacity", Integer, nullable=False),
    _id("host_user_id", ForeignKey("users.id"), nullable=False),
    Column("state", String(ENUM), nullable=False),  # open | live | locked | ended
    Column("created_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "host_user_id", "state"),
)

# Co-hosts of a room (issue 15): the room's hosts are its ``host_user_id`` plus these. Ids only.
room_cohosts = Table(
    "room_cohosts",
    metadata,
    _id("room_id", ForeignKey("rooms.id"), primary_key=True),
    _id("user_id", ForeignKey("users.id"), primary_key=True),
    _id("added_by", ForeignKey("users.id"), nullable=True),
    Column("added_at", UtcDateTime, nullable=False),
    Index(None, "user_id"),
)

# A room's chat transcript, saved on purpose by one of its hosts (issue 15): ids, a count and the lines as
# one ciphertext (system field key, bound to the room id). Purged with the room's record (retention).
chat_transcripts = Table(
    "chat_transcripts",
    metadata,
    _id("room_id", ForeignKey("rooms.id"), primary_key=True),
    _id("saved_by", ForeignKey("users.id"), nullable=False),
    Column("saved_at", UtcDateTime, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("lines", LargeBinary, nullable=False),
)

# The token itself is never stored: only SHA-256(token) (tokens carry >= 128 random bits).
invites = Table(
    "invites",
    metadata,
    _id("id", primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    _id("room_id", ForeignKey("rooms.id"), nullable=False),
    _id("client_id", ForeignKey("clients.id"), nullable=False),
    _id("created_by", ForeignKey("users.id"), nullable=False),
    Column("label", LargeBinary, nullable=True),  # under the client's data key
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("max_uses", Integer, nullable=True),  # NULL: unlimited until expiry
    Column("uses", Integer, nullable=False, default=0),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "room_id"),
    Index(None, "client_id"),
)

# The one device an invite link was exchanged on (issue 11): the link itself is spent by the exchange, and
# the device credential (only its SHA-256 stored) stands in for it. One row per invite, ever.
invite_devices = Table(
    "invite_devices",
    metadata,
    _id("invite_id", ForeignKey("invites.id"), primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("exchanged_at", UtcDateTime, nullable=False),
)

# One row each time a room goes live until it ends (a room can hold several sessions over its life).
room_sessions = Table(
    "room_sessions",
    metadata,
    _id("id", primary_key=True),
    _id("room_id", ForeignKey("rooms.id"), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "room_id", "started_at"),
)

# The attendance ledger: one interval per stay in the room. Exactly one of client_id / user_id is set.
attendance_intervals = Table(
    "attendance_intervals",
    metadata,
    _id("id", primary_key=True),
    _id("session_id", ForeignKey("room_sessions.id"), nullable=False),
    _id("room_id", ForeignKey("rooms.id"), nullable=False),
    _id("participant_id", nullable=False),
    _id("client_id", ForeignKey("clients.id"), nullable=True),
    _id("user_id", ForeignKey("users.id"), nullable=True),
    Column("joined_at", UtcDateTime, nullable=False),
    Column("left_at", UtcDateTime, nullable=True),
    Column("close_reason", String(ENUM), nullable=True),  # left | removed | ended | timeout
    Index(None, "session_id"),
    Index(None, "client_id", "joined_at"),
    Index(None, "room_id", "joined_at"),
    UniqueConstraint("session_id", "participant_id", "joined_at"),
)

# Audio-only spans within stays (issue 13): when a person received no video (their link, or "save data").
# Ids, times and the reason only; programs report audio-only telehealth separately. Like the intervals,
# exactly one of client_id / user_id is set.
audio_only_spans = Table(
    "audio_only_spans",
    metadata,
    _id("id", primary_key=True),
    _id("session_id", ForeignKey("room_sessions.id"), nullable=False),
    _id("room_id", ForeignKey("rooms.id"), nullable=False),
    _id("participant_id", nullable=False),
    _id("client_id", ForeignKey("clients.id"), nullable=True),
    _id("user_id", ForeignKey("users.id"), nullable=True),
    Column("reason", String(ENUM), nullable=False),  # bandwidth | save_data
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "session_id"),
    Index(None, "client_id", "started_at"),
)

# Private breakout spans within a client's stay (issue 15): out of the group, in a 1:1 conversation with a
# clinician, in the same program session. Ids and times only.
breakout_spans = Table(
    "breakout_spans",
    metadata,
    _id("id", primary_key=True),
    _id("session_id", ForeignKey("room_sessions.id"), nullable=False),
    _id("room_id", ForeignKey("rooms.id"), nullable=False),
    _id("participant_id", nullable=False),
    _id("client_id", ForeignKey("clients.id"), nullable=False),
    _id("clinician_id", ForeignKey("users.id"), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "session_id"),
    Index(None, "client_id", "started_at"),
)

# --- compliance (issue 11) --------------------------------------------------------------------------

# Break-glass grants: one room, one reason (ciphertext under sys.fields, AAD bound to the grant id), a
# short life; listed for review until a second admin signs off. Ids only otherwise (no FK to rooms: the
# grant outlives a room purged by retention, as its audit rows do).
break_glass_grants = Table(
    "break_glass_grants",
    metadata,
    _id("id", primary_key=True),
    _id("actor_id", ForeignKey("users.id"), nullable=False),
    Column("actor_role", String(ENUM), nullable=False),
    _id("room_id", nullable=False),
    Column("reason", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    _id("signed_off_by", ForeignKey("users.id"), nullable=True),
    Column("signed_off_at", UtcDateTime, nullable=True),
    Index(None, "signed_off_at", "created_at"),
)

# 42 CFR Part 2 consents. Recipient and purpose are ciphertext under the *client's* data key: shredding the
# client shreds their consents. ``data`` is a comma list of DataCategory values (no PHI).
part2_consents = Table(
    "part2_consents",
    metadata,
    _id("id", primary_key=True),
    _id("client_id", ForeignKey("clients.id"), nullable=False),
    Column("recipient", LargeBinary, nullable=False),
    Column("purpose", LargeBinary, nullable=False),
    Column("data", String(255), nullable=False),
    _id("created_by", ForeignKey("users.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    _id("revoked_by", ForeignKey("users.id"), nullable=True),
    Index(None, "client_id"),
)

# Where ``audit verify`` starts once retention purged the oldest audit rows: the seq and mac of the last row
# purged, HMAC-signed under the audit checkpoint key (a forged or edited anchor fails verification). The
# newest row is the anchor in force; older ones are history.
audit_anchors = Table(
    "audit_anchors",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("mac", LargeBinary, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("sig", String(ID), nullable=False),
)

# --- webhooks (issue 16) ----------------------------------------------------------------------------

# Receivers of signed events (docs/PROGRAM.md "Webhooks"). The URL and the signing secret are ciphertext
# under sys.fields (AAD bound to the subscription id); ``events`` is a comma list of WebhookEventType
# values. A removed subscription keeps its row (its outbox rows name it) with ``removed_at`` set.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    _id("id", primary_key=True),
    Column("url", LargeBinary, nullable=False),
    Column("secret", LargeBinary, nullable=False),
    Column("events", String(255), nullable=False),
    Column("allow_phi", Boolean, nullable=False, default=False),
    _id("created_by", ForeignKey("users.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("removed_at", UtcDateTime, nullable=True),
)

# The durable outbox: one row per event per subscription, written in the transaction that records the
# event. ``id`` is the Standard Webhooks ``webhook-id`` (the receiver's idempotency key); ``seq`` orders a
# subscription's rows (delivered oldest first, one at a time). The payload (ids, times, counts) is
# ciphertext under sys.fields bound to the row id. A delivery loop claims a row by setting its lease.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    _id("id", nullable=False, unique=True),
    _id("subscription_id", ForeignKey("webhook_subscriptions.id"), nullable=False),
    Column("event_type", String(ENUM), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    _id("lease_owner", nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),  # the receiver's HTTP status; 0: no answer
    Index(None, "subscription_id", "delivered_at", "seq"),
    Index(None, "delivered_at", "next_attempt_at"),
)

# --- the program around the sessions (issue 16) -----------------------------------------------------

# Recurring tracks. The title is sealed like a room's (a group's name can disclose treatment); the schedule
# (IANA zone, first start as local wall time "YYYY-MM-DDTHH:MM", an RRULE, minutes) names no one.
tracks = Table(
    "tracks",
    metadata,
    _id("id", primary_key=True),
    Column("kind", String(ENUM), nullable=False),  # group | individual
    Column("title", LargeBinary, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("first_start", String(32), nullable=False),
    Column("rrule", String(500), nullable=False),
    Column("duration_minutes", Integer, nullable=False),
    Column("lobby_minutes", Integer, nullable=False),
    _id("host_user_id", ForeignKey("users.id"), nullable=False),
    _id("created_by", ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
    Index(None, "host_user_id"),
)

# A track's co-hosts: with its host, the hosts of every occurrence's room. Ids only.
track_cohosts = Table(
    "track_cohosts",
    metadata,
    _id("track_id", ForeignKey("tracks.id"), primary_key=True),
    _id("user_id", ForeignKey("users.id"), primary_key=True),
    Index(None, "user_id"),
)

# EXDATE and RECURRENCE-ID overrides: an occurrence's original local start, and where it moved (NULL: skipped).
track_exceptions = Table(
    "track_exceptions",
    metadata,
    _id("track_id", ForeignKey("tracks.id"), primary_key=True),
    Column("original_start", String(32), primary_key=True),
    Column("moved_to", String(32), nullable=True),
)

# The room made for an occurrence when its lobby opened. The primary key (track, occurrence key = its
# original start in UTC) makes that happen once across every process.
track_occurrences = Table(
    "track_occurrences",
    metadata,
    _id("track_id", ForeignKey("tracks.id"), primary_key=True),
    Column("occurrence_key", UtcDateTime, primary_key=True),
    _id("room_id", ForeignKey("rooms.id"), nullable=False, unique=True),
    Column("starts_at", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# A client in a track, with their one link: only SHA-256(token) is stored.
enrollments = Table(
    "enrollments",
    metadata,
    _id("id", primary_key=True),
    _id("track_id", ForeignKey("tracks.id"), nullable=False),
    _id("client_id", ForeignKey("clients.id"), nullable=False),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    _id("created_by", ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "track_id"),
    Index(None, "client_id"),
)

# Secret .ics URLs (per clinician or per enrollment): only SHA-256(token) is stored; revocable.
calendar_feeds = Table(
    "calendar_feeds",
    metadata,
    _id("id", primary_key=True),
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("owner", String(ENUM), nullable=False),  # clinician | enrollment
    _id("owner_id", nullable=False),
    _id("created_by", ForeignKey("users.id"), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "owner", "owner_id"),
)
