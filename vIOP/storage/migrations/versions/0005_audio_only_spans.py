"""Audio-only minutes in the attendance ledger (issue 13): the ``audio_only_spans`` table (ids, times and
the reason only).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audio_only_spans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_audio_only_spans_client_id_clients")
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_audio_only_spans_room_id_rooms")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["room_sessions.id"], name=op.f("fk_audio_only_spans_session_id_room_sessions")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_audio_only_spans_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audio_only_spans")),
    )
    op.create_index(
        op.f("ix_audio_only_spans_client_id_started_at"),
        "audio_only_spans",
        ["client_id", "started_at"],
        unique=False,
    )
    op.create_index(op.f("ix_audio_only_spans_session_id"), "audio_only_spans", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_audio_only_spans_session_id"), table_name="audio_only_spans")
    op.drop_index(op.f("ix_audio_only_spans_client_id_started_at"), table_name="audio_only_spans")
    op.drop_table("audio_only_spans")
