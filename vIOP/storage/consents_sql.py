"""42 CFR Part 2 consents on SQL (``part2_consents``) and the disclosure check every disclosure calls.

Recipient and purpose are ciphertext under the client's own data key (AAD = table, column, consent id): a
shredded client's consents become unreadable with the rest of their record, and a consent that cannot be
read any more permits nothing. Revocation is one UPDATE that the next check reads: it takes effect at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update

from vIOP.compliance.consent import (
    Consent,
    DataCategory,
    missing_consent,
    refuse_unless_consented,
)
from vIOP.errors import Conflict, NotFound
from vIOP.ids import new_id
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import clients
from vIOP.storage.schema import part2_consents as pc
from vIOP.storage.sealing import DecryptionError

_CHUNK = 500
_CATEGORIES = frozenset(c.value for c in DataCategory)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _ref(column: str, consent_id: str) -> FieldRef:
    return FieldRef("part2_consents", column, consent_id)


class SqlConsentStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    async def add(
        self,
        client_id: str,
        recipient: str,
        purpose: str,
        data: frozenset[DataCategory],
        expires_at: float,
        created_by: str | None,
        now: float,
    ) -> Consent:
        """Record a signed consent. 404 for an unknown client, 409 for a shredded one or a past expiry."""
        if expires_at <= now:
            raise Conflict("the consent's expiry is in the past")
        consent_id = new_id("cn")
        async with self._db.begin() as conn:
            row = (
                await conn.execute(
                    select(clients.c.data_key_id, clients.c.shredded_at).where(clients.c.id == client_id)
                )
            ).first()
            if row is None:
                raise NotFound("no such client")
            if row.shredded_at is not None:
                raise Conflict("this client's record was shredded")
            cipher = await self._ring.cipher(row.data_key_id)
            await conn.execute(
                insert(pc).values(
                    id=consent_id, client_id=client_id,
                    recipient=cipher.encrypt(_ref("recipient", consent_id), recipient),
                    purpose=cipher.encrypt(_ref("purpose", consent_id), purpose),
                    data=",".join(sorted(data)), created_by=created_by, created_at=_at(now),
                    expires_at=_at(expires_at),
                )
            )  # fmt: skip
        return Consent(consent_id, client_id, recipient, purpose, data, created_by, now, expires_at)

    async def revoke(self, consent_id: str, revoked_by: str | None, now: float) -> Consent:
        """Revoke now (idempotent: a second revocation keeps the first time); 404 for an unknown id."""
        async with self._db.begin() as conn:
            await conn.execute(
                update(pc)
                .where(pc.c.id == consent_id, pc.c.revoked_at.is_(None))
                .values(revoked_at=_at(now), revoked_by=revoked_by)
            )
        return await self.get(consent_id)

    async def get(self, consent_id: str) -> Consent:
        async with self._db.read() as conn:
            row = (await conn.execute(select(pc).where(pc.c.id == consent_id))).first()
        if row is None:
            raise NotFound("no such consent")
        consent = await self._consent(row)
        if consent is None:
            raise NotFound("this consent belonged to a shredded client")
        return consent

    async def for_client(self, client_id: str) -> list[Consent]:
        """Every readable consent of one client, newest first; 404 for an unknown client."""
        async with self._db.read() as conn:
            known = (await conn.execute(select(clients.c.id).where(clients.c.id == client_id))).first()
            if known is None:
                raise NotFound("no such client")
            rows = (
                await conn.execute(
                    select(pc).where(pc.c.client_id == client_id).order_by(pc.c.created_at.desc(), pc.c.id)
                )
            ).all()
        return [c for c in [await self._consent(row) for row in rows] if c is not None]

    async def for_clients(self, client_ids: Sequence[str]) -> dict[str, list[Consent]]:
        """Readable consents of many clients (one query per 500), by client id."""
        found: dict[str, list[Consent]] = defaultdict(list)
        wanted = sorted(set(client_ids))
        for start in range(0, len(wanted), _CHUNK):
            async with self._db.read() as conn:
                rows = (
                    await conn.execute(
                        select(pc)
                        .join(clients, clients.c.id == pc.c.client_id)
                        # a shredded client permits nothing, even where a cached key could still read it
                        .where(
                            pc.c.client_id.in_(wanted[start : start + _CHUNK]),
                            clients.c.shredded_at.is_(None),
                        )
                    )
                ).all()
            for row in rows:
                consent = await self._consent(row)
                if consent is not None:
                    found[consent.client_id].append(consent)
        return dict(found)

    async def _consent(self, row: Any) -> Consent | None:
        """The consent, or None when its client was shredded (it can permit nothing any more)."""
        try:
            recipient = await self._ring.decrypt_text(_ref("recipient", row.id), row.recipient)
            purpose = await self._ring.decrypt_text(_ref("purpose", row.id), row.purpose)
        except DecryptionError:
            return None
        return Consent(
            id=row.id,
            client_id=row.client_id,
            recipient=recipient,
            purpose=purpose,
            data=frozenset(
                DataCategory(v) for v in row.data.split(",") if v in DataCategory.__members__.values()
            ),
            created_by=row.created_by,
            created_at=row.created_at.timestamp(),
            expires_at=row.expires_at.timestamp(),
            revoked_at=None if row.revoked_at is None else row.revoked_at.timestamp(),
            revoked_by=row.revoked_by,
        )


async def require_consent(
    store: SqlConsentStore,
    client_ids: Sequence[str],
    recipient: str,
    category: DataCategory,
    now: float,
) -> None:
    """THE disclosure check: raise ``ConsentRequired`` (403 ``consent_required``) unless every client in
    ``client_ids`` has an active consent for ``recipient`` and ``category`` at ``now``. Call it before any
    of a client's data leaves the treating team (exports for a recipient, integrations that send PHI)."""
    consents = await store.for_clients(client_ids)
    refuse_unless_consented(missing_consent(client_ids, consents, recipient, category, now))
