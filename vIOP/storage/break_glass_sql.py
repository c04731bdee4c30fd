"""Break-glass grants on SQL (``break_glass_grants``). The reason is ciphertext under ``sys.fields`` bound to
the grant id; it is decrypted only for the review list, never logged. Times come from the caller's clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from vIOP.compliance.break_glass import Grant
from vIOP.errors import Conflict, NotFound
from vIOP.ids import new_id
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import break_glass_grants as bg

REVIEW_LIMIT = 500


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _reason_ref(grant_id: str) -> FieldRef:
    return FieldRef("break_glass_grants", "reason", grant_id)


class SqlBreakGlassStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def open(
        self, actor_id: str, actor_role: str, room_id: str, reason: str, now: float, ttl_seconds: float
    ) -> Grant:
        grant = Grant(new_id("bg"), actor_id, actor_role, room_id, reason, now, now + ttl_seconds)
        sealed = self._ring.system_fields.encrypt(_reason_ref(grant.id), reason)
        async with self._db.begin() as conn:
            await conn.execute(
                insert(bg).values(
                    id=grant.id, actor_id=actor_id, actor_role=actor_role, room_id=room_id, reason=sealed,
                    created_at=_at(now), expires_at=_at(grant.expires_at),
                )
            )  # fmt: skip
        return grant

    async def get(self, grant_id: str) -> Grant:
        async with self._db.read() as conn:
            row = (await conn.execute(select(bg).where(bg.c.id == grant_id))).first()
        if row is None:
            raise NotFound("no such break-glass grant")
        return self._grant(row)

    async def pending_review(self, limit: int = REVIEW_LIMIT) -> list[Grant]:
        """Grants no second admin has signed off yet, oldest first."""
        query = select(bg).where(bg.c.signed_off_at.is_(None)).order_by(bg.c.created_at, bg.c.id)
        async with self._db.read() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [self._grant(row) for row in rows]

    async def sign_off(self, grant_id: str, reviewer_id: str, now: float) -> Grant:
        """Record the sign-off (the caller checked it is a second admin); 409 when already signed off."""
        async with self._db.begin() as conn:
            result = await conn.execute(
                update(bg)
                .where(bg.c.id == grant_id, bg.c.signed_off_at.is_(None))
                .values(signed_off_by=reviewer_id, signed_off_at=_at(now))
            )
        if result.rowcount == 0:
            await self.get(grant_id)  # 404 for an unknown id
            raise Conflict("this break-glass access was already signed off")
        return await self.get(grant_id)

    def _grant(self, row: Any) -> Grant:
        return Grant(
            id=row.id,
            actor_id=row.actor_id,
            actor_role=row.actor_role,
            room_id=row.room_id,
            reason=self._ring.system_fields.decrypt_text(_reason_ref(row.id), row.reason),
            created_at=row.created_at.timestamp(),
            expires_at=row.expires_at.timestamp(),
            signed_off_by=row.signed_off_by,
            signed_off_at=None if row.signed_off_at is None else row.signed_off_at.timestamp(),
        )
