"""Co-hosts of a room (issue 15): the ``room_cohosts`` table (ids and a time only).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "room_cohosts",
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("added_by", sa.String(length=64), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["added_by"], ["users.id"], name=op.f("fk_room_cohosts_added_by_users")),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_room_cohosts_room_id_rooms")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_room_cohosts_user_id_users")),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_cohosts")),
    )
    op.create_index(op.f("ix_room_cohosts_user_id"), "room_cohosts", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_room_cohosts_user_id"), table_name="room_cohosts")
    op.drop_table("room_cohosts")
