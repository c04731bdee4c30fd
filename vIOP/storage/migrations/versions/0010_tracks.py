"""Tracks, occurrences, enrollments and calendar feeds (issue 16): ids, schedules, sealed titles, token hashes.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def _id(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=64), nullable=nullable)


def _at(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "tracks",
        _id("id"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.LargeBinary(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("first_start", sa.String(length=32), nullable=False),
        sa.Column("rrule", sa.String(length=500), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("lobby_minutes", sa.Integer(), nullable=False),
        _id("host_user_id"),
        _id("created_by"),
        _at("created_at"),
        _at("ended_at", nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_tracks_created_by_users")),
        sa.ForeignKeyConstraint(["host_user_id"], ["users.id"], name=op.f("fk_tracks_host_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracks")),
    )
    op.create_index(op.f("ix_tracks_host_user_id"), "tracks", ["host_user_id"], unique=False)
    op.create_table(
        "track_cohosts",
        _id("track_id"),
        _id("user_id"),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], name=op.f("fk_track_cohosts_track_id_tracks")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_track_cohosts_user_id_users")),
        sa.PrimaryKeyConstraint("track_id", "user_id", name=op.f("pk_track_cohosts")),
    )
    op.create_index(op.f("ix_track_cohosts_user_id"), "track_cohosts", ["user_id"], unique=False)
    op.create_table(
        "track_exceptions",
        _id("track_id"),
        sa.Column("original_start", sa.String(length=32), nullable=False),
        sa.Column("moved_to", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_track_exceptions_track_id_tracks")
        ),
        sa.PrimaryKeyConstraint("track_id", "original_start", name=op.f("pk_track_exceptions")),
    )
    op.create_table(
        "track_occurrences",
        _id("track_id"),
        _at("occurrence_key"),
        _id("room_id"),
        _at("starts_at"),
        _at("ends_at"),
        _at("created_at"),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_track_occurrences_room_id_rooms")),
        sa.ForeignKeyConstraint(
            ["track_id"], ["tracks.id"], name=op.f("fk_track_occurrences_track_id_tracks")
        ),
        sa.PrimaryKeyConstraint("track_id", "occurrence_key", name=op.f("pk_track_occurrences")),
        sa.UniqueConstraint("room_id", name=op.f("uq_track_occurrences_room_id")),
    )
    op.create_table(
        "enrollments",
        _id("id"),
        _id("track_id"),
        _id("client_id"),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        _id("created_by"),
        _at("created_at"),
        _at("expires_at"),
        _at("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_enrollments_client_id_clients")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_enrollments_created_by_users")),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], name=op.f("fk_enrollments_track_id_tracks")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollments_token_hash")),
    )
    op.create_index(op.f("ix_enrollments_client_id"), "enrollments", ["client_id"], unique=False)
    op.create_index(op.f("ix_enrollments_track_id"), "enrollments", ["track_id"], unique=False)
    op.create_table(
        "calendar_feeds",
        _id("id"),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        _id("owner_id"),
        _id("created_by"),
        _at("created_at"),
        _at("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_calendar_feeds_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
    )
    op.create_index(
        op.f("ix_calendar_feeds_owner_owner_id"), "calendar_feeds", ["owner", "owner_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_calendar_feeds_owner_owner_id"), table_name="calendar_feeds")
    op.drop_table("calendar_feeds")
    op.drop_index(op.f("ix_enrollments_track_id"), table_name="enrollments")
    op.drop_index(op.f("ix_enrollments_client_id"), table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_table("track_occurrences")
    op.drop_table("track_exceptions")
    op.drop_index(op.f("ix_track_cohosts_user_id"), table_name="track_cohosts")
    op.drop_table("track_cohosts")
    op.drop_index(op.f("ix_tracks_host_user_id"), table_name="tracks")
    op.drop_table("tracks")
