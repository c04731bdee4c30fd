"""Initial schema: keys, audit, identity, rooms, attendance (pre-1.0: edit this revision in place).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(length=64), nullable=True),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=True),
        sa.Column("object_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("ip", sa.LargeBinary(), nullable=True),
        sa.Column("user_agent_hash", sa.String(length=64), nullable=True),
        sa.Column("prev_mac", sa.LargeBinary(), nullable=False),
        sa.Column("mac", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_actor_id_at"), "audit_log", ["actor_id", "at"], unique=False)
    op.create_index(
        op.f("ix_audit_log_object_type_object_id"), "audit_log", ["object_type", "object_id"], unique=False
    )

    op.create_table(
        "data_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=True),
        sa.Column("kek_version", sa.Integer(), nullable=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rewrapped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_keys")),
    )
    op.create_index(
        op.f("ix_data_keys_kek_id_kek_version"), "data_keys", ["kek_id", "kek_version"], unique=False
    )

    op.create_table(
        "key_rotations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("target_kek_id", sa.String(length=64), nullable=False),
        sa.Column("target_kek_version", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rewrapped", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_rotations")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("username_index", sa.LargeBinary(), nullable=False),
        sa.Column("username", sa.LargeBinary(), nullable=False),
        sa.Column("email_index", sa.LargeBinary(), nullable=True),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=True),
        sa.Column("mfa_enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email_index", name=op.f("uq_users_email_index")),
        sa.UniqueConstraint("username_index", name=op.f("uq_users_username_index")),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("data_key_id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_clients_created_by_users")),
        sa.ForeignKeyConstraint(
            ["data_key_id"], ["data_keys.id"], name=op.f("fk_clients_data_key_id_data_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("data_key_id", name=op.f("uq_clients_data_key_id")),
    )
    op.create_table(
        "rooms",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("title", sa.LargeBinary(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("host_user_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["host_user_id"], ["users.id"], name=op.f("fk_rooms_host_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
    )
    op.create_index(op.f("ix_rooms_host_user_id_state"), "rooms", ["host_user_id", "state"], unique=False)

    op.create_table(
        "invites",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("label", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_invites_client_id_clients")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_invites_created_by_users")),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_invites_room_id_rooms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invites")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invites_token_hash")),
    )
    op.create_index(op.f("ix_invites_client_id"), "invites", ["client_id"], unique=False)
    op.create_index(op.f("ix_invites_room_id"), "invites", ["room_id"], unique=False)

    op.create_table(
        "room_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_room_sessions_room_id_rooms")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_sessions")),
    )
    op.create_index(
        op.f("ix_room_sessions_room_id_started_at"), "room_sessions", ["room_id", "started_at"], unique=False
    )

    op.create_table(
        "attendance_intervals",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("left_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_attendance_intervals_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_attendance_intervals_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["room_sessions.id"],
            name=op.f("fk_attendance_intervals_session_id_room_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_attendance_intervals_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attendance_intervals")),
        sa.UniqueConstraint(
            "session_id",
            "participant_id",
            "joined_at",
            name=op.f("uq_attendance_intervals_session_id_participant_id_joined_at"),
        ),
    )
    op.create_index(
        op.f("ix_attendance_intervals_client_id_joined_at"),
        "attendance_intervals",
        ["client_id", "joined_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_attendance_intervals_room_id_joined_at"),
        "attendance_intervals",
        ["room_id", "joined_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_attendance_intervals_session_id"), "attendance_intervals", ["session_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_attendance_intervals_session_id"), table_name="attendance_intervals")
    op.drop_index(op.f("ix_attendance_intervals_room_id_joined_at"), table_name="attendance_intervals")
    op.drop_index(op.f("ix_attendance_intervals_client_id_joined_at"), table_name="attendance_intervals")

    op.drop_table("attendance_intervals")
    op.drop_index(op.f("ix_room_sessions_room_id_started_at"), table_name="room_sessions")

    op.drop_table("room_sessions")
    op.drop_index(op.f("ix_invites_room_id"), table_name="invites")
    op.drop_index(op.f("ix_invites_client_id"), table_name="invites")

    op.drop_table("invites")
    op.drop_index(op.f("ix_rooms_host_user_id_state"), table_name="rooms")

    op.drop_table("rooms")
    op.drop_table("clients")
    op.drop_table("users")
    op.drop_table("key_rotations")
    op.drop_index(op.f("ix_data_keys_kek_id_kek_version"), table_name="data_keys")

    op.drop_table("data_keys")
    op.drop_index(op.f("ix_audit_log_object_type_object_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_actor_id_at"), table_name="audit_log")

    op.drop_table("audit_log")
