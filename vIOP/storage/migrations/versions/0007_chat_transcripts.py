"""Saved chat transcripts (issue 15): the ``chat_transcripts`` table (ids, a time, a count, one ciphertext).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "chat_transcripts",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("saved_by", sa.String(length=64), nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("lines", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_chat_transcripts_room_id_rooms")),
        sa.ForeignKeyConstraint(["saved_by"], ["users.id"], name=op.f("fk_chat_transcripts_saved_by_users")),
        sa.PrimaryKeyConstraint("room_id", name=op.f("pk_chat_transcripts")),
    )


def downgrade() -> None:
    op.drop_table("chat_transcripts")
