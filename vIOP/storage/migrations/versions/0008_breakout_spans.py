"""Private breakout spans in the attendance ledger (issue 15): the ``breakout_spans`` table (ids and times
only).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "breakout_spans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("participant_id", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("clinician_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_breakout_spans_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["clinician_id"], ["users.id"], name=op.f("fk_breakout_spans_clinician_id_users")
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_breakout_spans_room_id_rooms")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["room_sessions.id"], name=op.f("fk_breakout_spans_session_id_room_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakout_spans")),
    )
    op.create_index(
        op.f("ix_breakout_spans_client_id_started_at"),
        "breakout_spans",
        ["client_id", "started_at"],
        unique=False,
    )
    op.create_index(op.f("ix_breakout_spans_session_id"), "breakout_spans", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_breakout_spans_session_id"), table_name="breakout_spans")
    op.drop_index(op.f("ix_breakout_spans_client_id_started_at"), table_name="breakout_spans")
    op.drop_table("breakout_spans")
