"""Webhook subscriptions and the durable outbox on SQL (``webhook_subscriptions``, ``webhook_outbox``).

Writing: :meth:`SqlWebhookStore.enqueue_in` adds one outbox row per live subscription to the event's
type inside the caller's transaction (the attendance ledger's, so the event and its rows commit together).
Delivering: :meth:`claim` takes, for each subscription with nothing in flight, the *oldest* undelivered row
(so a subscription's events go out in order, one at a time) if it is due and not leased, by a conditional
UPDATE that sets a lease; on SQLite every write transaction is ``BEGIN IMMEDIATE`` (one writer at a time),
on PostgreSQL the UPDATE re-checks its WHERE after any concurrent claim committed (READ COMMITTED): of two
processes one wins, the other sees no row changed. A process that dies holding a lease loses it when it expires.

URL, secret and payload are ciphertext under sys.fields, each bound to its row (``FieldRef``).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from vIOP.errors import NotFound
from vIOP.ids import new_id
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import clients, rooms
from vIOP.storage.schema import webhook_outbox as ob
from vIOP.storage.schema import webhook_subscriptions as subs
from vIOP.storage.sealing import DecryptionError
from vIOP.webhooks.events import NAMED_BY, Payload, PayloadValue, WebhookEventType, check_payload


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    events: tuple[WebhookEventType, ...]
    allow_phi: bool
    created_by: str | None
    created_at: datetime
    removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A claimed row, with what its delivery needs."""

    seq: int
    id: str  # the webhook-id
    subscription_id: str
    event_type: WebhookEventType
    payload: dict[str, PayloadValue]
    created_at: datetime
    attempts: int
    url: str
    secret: str
    allow_phi: bool


def _ref(table: str, column: str, row_id: str) -> FieldRef:
    return FieldRef(table, column, row_id)


def _events_text(events: tuple[WebhookEventType, ...]) -> str:
    return ",".join(e.value for e in events)


class SqlWebhookStore:
    __slots__ = ("_db", "_ring")

    def __init__(self, db: Database, ring: KeyRing) -> None:
        self._db = db
        self._ring = ring

    # --- subscriptions ----------------------------------------------------------------------------

    async def add(
        self,
        url: str,
        events: tuple[WebhookEventType, ...],
        *,
        allow_phi: bool,
        secret: str,
        created_by: str | None,
        at: datetime,
    ) -> Subscription:
        sub_id = new_id("wh")
        cipher = self._ring.system_fields
        async with self._db.begin() as conn:
            await conn.execute(
                insert(subs).values(
                    id=sub_id,
                    url=cipher.encrypt(_ref("webhook_subscriptions", "url", sub_id), url),
                    secret=cipher.encrypt(_ref("webhook_subscriptions", "secret", sub_id), secret),
                    events=_events_text(events),
                    allow_phi=allow_phi,
                    created_by=created_by,
                    created_at=at,
                )
            )
        return Subscription(sub_id, url, events, allow_phi, created_by, at)

    async def subscriptions(self, *, include_removed: bool = False) -> list[Subscription]:
        query = select(subs).order_by(subs.c.created_at, subs.c.id)
        if not include_removed:
            query = query.where(subs.c.removed_at.is_(None))
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [self._subscription(row) for row in rows]

    async def remove(self, sub_id: str, at: datetime) -> Subscription:
        """Stop delivering to it (its waiting rows stay, undelivered, with the row). NotFound if unknown
        or already removed."""
        async with self._db.begin() as conn:
            done = await conn.execute(
                update(subs).where(subs.c.id == sub_id, subs.c.removed_at.is_(None)).values(removed_at=at)
            )
            if not done.rowcount:
                raise NotFound("no such webhook subscription")
            row = (await conn.execute(select(subs).where(subs.c.id == sub_id))).mappings().one()
        return self._subscription(row)

    def _subscription(self, row: Any) -> Subscription:
        url = self._ring.system_fields.decrypt_text(
            _ref("webhook_subscriptions", "url", row["id"]), row["url"]
        )
        return Subscription(
            id=row["id"],
            url=url,
            events=tuple(WebhookEventType(e) for e in row["events"].split(",") if e),
            allow_phi=bool(row["allow_phi"]),
            created_by=row["created_by"],
            created_at=row["created_at"],
            removed_at=row["removed_at"],
        )

    # --- the outbox: writing ----------------------------------------------------------------------

    async def enqueue(self, event_type: WebhookEventType, payload: Payload, at: datetime) -> list[str]:
        async with self._db.begin() as conn:
            return await self.enqueue_in(conn, event_type, payload, at)

    async def enqueue_in(
        self, conn: AsyncConnection, event_type: WebhookEventType, payload: Payload, at: datetime
    ) -> list[str]:
        """One row per live subscription to ``event_type``, in the caller's transaction; the new
        webhook-ids. BadPayload (nothing written) unless the payload is ids, times and counts."""
        body = json.dumps(check_payload(event_type, payload), sort_keys=True, separators=(",", ":"))
        wanted = (
            await conn.execute(select(subs.c.id, subs.c.events).where(subs.c.removed_at.is_(None)))
        ).all()
        ids = []
        for sub_id, events in wanted:
            if event_type.value not in events.split(","):
                continue
            msg_id = new_id("msg")
            await conn.execute(
                insert(ob).values(
                    id=msg_id,
                    subscription_id=sub_id,
                    event_type=event_type.value,
                    payload=self._ring.system_fields.encrypt(_ref("webhook_outbox", "payload", msg_id), body),
                    created_at=at,
                    attempts=0,
                    next_attempt_at=at,
                )
            )
            ids.append(msg_id)
        return ids

    # --- the outbox: delivering -------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        now: datetime,
        lease_seconds: float,
        limit: int,
        *,
        busy: frozenset[str] = frozenset(),
    ) -> list[OutboxRow]:
        """Lease the head row (oldest undelivered) of up to ``limit`` live subscriptions not in ``busy``
        whose head is due and not leased by anyone."""
        if limit <= 0:
            return []
        older = ob.alias("older")
        earlier_waiting = (
            select(older.c.seq)
            .where(
                older.c.subscription_id == ob.c.subscription_id,
                older.c.delivered_at.is_(None),
                older.c.seq < ob.c.seq,
            )
            .exists()
        )
        free = or_(ob.c.lease_until.is_(None), ob.c.lease_until <= now)
        heads = (
            select(ob, subs.c.url, subs.c.secret, subs.c.allow_phi)
            .join(subs, subs.c.id == ob.c.subscription_id)
            .where(
                subs.c.removed_at.is_(None),
                ob.c.delivered_at.is_(None),
                ob.c.next_attempt_at <= now,
                free,
                ~earlier_waiting,
            )
            .order_by(ob.c.seq)
        )
        if busy:
            heads = heads.where(ob.c.subscription_id.not_in(sorted(busy)))
        # Looked for in a read (no write lock while nothing is due: the usual case, every poll), then each
        # taken by an UPDATE that re-checks what the read saw (due, free, the attempts it read): a row
        # another process claimed, sent or rescheduled meanwhile changes no row here.
        async with self._db.read() as conn:
            rows = (await conn.execute(heads.limit(limit))).mappings().all()
        if not rows:
            return []
        claimed: list[OutboxRow] = []
        async with self._db.begin() as conn:
            for row in rows:
                taken = await conn.execute(
                    update(ob)
                    .where(
                        ob.c.seq == row["seq"],
                        ob.c.delivered_at.is_(None),
                        ob.c.attempts == row["attempts"],
                        ob.c.next_attempt_at <= now,
                        free,
                    )
                    .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
                )
                if taken.rowcount:
                    claimed.append(self._claimed(row))
        return claimed

    def _claimed(self, row: Any) -> OutboxRow:
        cipher, sub_id = self._ring.system_fields, row["subscription_id"]
        payload = json.loads(
            cipher.decrypt_text(_ref("webhook_outbox", "payload", row["id"]), row["payload"])
        )
        return OutboxRow(
            seq=row["seq"],
            id=row["id"],
            subscription_id=sub_id,
            event_type=WebhookEventType(row["event_type"]),
            payload=payload,
            created_at=row["created_at"],
            attempts=row["attempts"],
            url=cipher.decrypt_text(_ref("webhook_subscriptions", "url", sub_id), row["url"]),
            secret=cipher.decrypt_text(_ref("webhook_subscriptions", "secret", sub_id), row["secret"]),
            allow_phi=bool(row["allow_phi"]),
        )

    async def delivered(self, row: OutboxRow, owner: str, now: datetime, status: int) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(ob)
                .where(ob.c.seq == row.seq, ob.c.lease_owner == owner)
                .values(
                    delivered_at=now,
                    last_status=status,
                    attempts=ob.c.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                )
            )

    async def failed(self, row: OutboxRow, owner: str, retry_at: datetime, status: int) -> None:
        async with self._db.begin() as conn:
            await conn.execute(
                update(ob)
                .where(ob.c.seq == row.seq, ob.c.lease_owner == owner, ob.c.delivered_at.is_(None))
                .values(
                    next_attempt_at=retry_at,
                    last_status=status,
                    attempts=ob.c.attempts + 1,
                    lease_owner=None,
                    lease_until=None,
                )
            )

    async def waiting(self) -> int:
        """Undelivered rows of live subscriptions."""
        query = (
            select(func.count())
            .select_from(ob.join(subs, subs.c.id == ob.c.subscription_id))
            .where(ob.c.delivered_at.is_(None), subs.c.removed_at.is_(None))
        )
        async with self._db.read() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def next_due(self) -> datetime | None:
        """When the earliest undelivered row of a live subscription is due (None: nothing waits)."""
        query = (
            select(func.min(ob.c.next_attempt_at))
            .select_from(ob.join(subs, subs.c.id == ob.c.subscription_id))
            .where(and_(ob.c.delivered_at.is_(None), subs.c.removed_at.is_(None)))
        )
        async with self._db.read() as conn:
            value: datetime | None = (await conn.execute(query)).scalar_one_or_none()
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    # --- names, for subscriptions allowed PHI (added at delivery, never stored in the outbox) -----------

    async def names_for(self, payload: Payload) -> dict[str, str]:
        """``client_name`` / ``room_title`` for the ids in ``payload`` that still have them (a shredded
        client has none)."""
        out: dict[str, str] = {}
        client_id, room_id = payload.get("client_id"), payload.get("room_id")
        async with self._db.read() as conn:
            if isinstance(client_id, str):
                blob = (
                    await conn.execute(select(clients.c.display_name).where(clients.c.id == client_id))
                ).scalar_one_or_none()
                if blob is not None:
                    with contextlib.suppress(DecryptionError):  # crypto-shredded: the name is gone for good
                        ref = _ref("clients", "display_name", client_id)
                        out[NAMED_BY["client_id"]] = await self._ring.decrypt_text(ref, blob)
            if isinstance(room_id, str):
                query = select(rooms.c.title).where(rooms.c.id == room_id)
                blob = (await conn.execute(query)).scalar_one_or_none()
                if blob is not None:
                    with contextlib.suppress(DecryptionError):
                        ref = _ref("rooms", "title", room_id)
                        out[NAMED_BY["room_id"]] = self._ring.system_fields.decrypt_text(ref, blob)
        return out
