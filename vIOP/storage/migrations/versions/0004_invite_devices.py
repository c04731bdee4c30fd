"""Invite links are exchanged once for a device credential (issue 11): the ``invite_devices`` table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "invite_devices",
        sa.Column("invite_id", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("exchanged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invite_id"], ["invites.id"], name=op.f("fk_invite_devices_invite_id_invites")
        ),
        sa.PrimaryKeyConstraint("invite_id", name=op.f("pk_invite_devices")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_invite_devices_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("invite_devices")
