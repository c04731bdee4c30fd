"""Webhook delivery end to end: room sessions write the outbox in the ledger's transactions, the delivery
loop sends every row signed to a real receiver on a loopback socket (which checks each signature with
``standardwebhooks``), a receiver that is down gets everything once it is up (each webhook-id once, in
order per subscription), and a slow receiver holds neither other subscriptions nor the sessions."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import insert, select

from tests.rooms.support import HOST, Backend, enter, memory_backend
from tests.storage.attendance_seed import seed_people, seed_room
from tests.storage.conftest import BACKENDS, POSTGRES_URL, _reset_postgres
from vIOP.ids import new_room_id
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.room import RoomKind
from vIOP.session.webhooks import DeliveryPolicy, HttpSender, OutboxEvents, WebhookDelivery, subscribe
from vIOP.storage.attendance_sql import SqlAttendanceStore
from vIOP.storage.crypto import FieldRef, KeyRing
from vIOP.storage.database import Database
from vIOP.storage.schema import clients, rooms, webhook_outbox
from vIOP.storage.webhooks_sql import SqlWebhookStore
from vIOP.webhooks.events import WebhookEventType
from vIOP.webhooks.policy import Backoff, new_secret

from .webhook_support import Receiver, new_receiver, open_database, serving

ALL_EVENTS = [e.value for e in WebhookEventType]


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest) -> str | None:
    """SQLite in the test's folder, or (with VIOP_TEST_POSTGRES_URL) a wiped PostgreSQL schema."""
    if request.param == "postgresql":
        assert POSTGRES_URL is not None
        await _reset_postgres(POSTGRES_URL)
        return POSTGRES_URL
    return None


@pytest.fixture
async def storage(tmp_path: Path, database_url: str | None) -> tuple[Database, KeyRing]:
    db, ring = await open_database(tmp_path / "data", database_url)
    await seed_people(db)
    yield db, ring
    await db.close()


def room_backend(db: Database, store: SqlWebhookStore) -> Backend:
    backend = memory_backend(ManualClock(time.time()))
    backend.attendance = SqlAttendanceStore(db, webhooks=store)
    backend.__post_init__()
    return backend


async def run_session(backend: Backend, db: Database, clients: list[str], hours: float) -> str:
    """A room goes live (host enters), ``clients`` attend for ``hours``, the host ends it."""
    room_id = new_room_id()
    await seed_room(db, room_id)
    s = backend.service
    await s.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
    t = await s.host_enter(room_id, user_id=HOST, display_name="Dr")
    assert t.participant is not None
    await s.join(room_id, t.participant.id)
    for client in clients:
        await enter(backend, room_id, t.participant.id, client)
    backend.clock.advance(hours * 3600)
    await s.end(room_id, by=t.participant.id)
    return room_id


async def outbox_ids(db: Database, subscription_id: str) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(webhook_outbox.c.id)
            .where(webhook_outbox.c.subscription_id == subscription_id)
            .order_by(webhook_outbox.c.seq)
        )
        return [r for (r,) in rows]


def attempts_counted(event: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("viop_webhook_attempts_total", {"event": event, "outcome": outcome})
    return value or 0.0


async def deliver_all(delivery: WebhookDelivery, store: SqlWebhookStore, clock: ManualClock) -> None:
    """Rounds until nothing waits, moving the clock past each backoff (bounded)."""
    for _ in range(200):
        if not await store.waiting():
            return
        await delivery.round()
        await delivery.settle()
        clock.advance(Backoff().cap)
    raise AssertionError("the outbox did not drain")


async def test_receiver_down_then_up_gets_every_event_once_in_order_signed(
    storage: tuple[Database, KeyRing],
) -> None:
    db, ring = storage
    store = SqlWebhookStore(db, ring)
    receiver = new_receiver()
    subs = {}
    for path in ("ehr", "billing"):
        sub, secret = await subscribe(
            store, receiver.url(path), ALL_EVENTS, allow_phi=True, allow_private=True, created_by=None
        )
        receiver.secrets[path] = secret
        subs[path] = sub
    backend = room_backend(db, store)
    clock = ManualClock(time.time())
    sender = HttpSender(timeout=5.0, allow_private=True)
    delivery = WebhookDelivery(
        store, sender, policy=DeliveryPolicy(concurrency=4), clock=clock, rng=random.Random(7)
    )
    events = OutboxEvents(store, clock=clock, wake=delivery.wake)
    before = {o: attempts_counted("session.started", o) for o in ("delivered", "failed")}
    try:
        first_room = await run_session(backend, db, ["cl_1", "cl_2"], hours=3)
        # The receiver is down (nothing listens on its port): attempts fail and back off.
        for _ in range(3):
            assert await delivery.round() == 2  # one head per subscription, in flight at once
            await delivery.settle()
            clock.advance(Backoff().cap)
        await events.emit(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_3", "room_id": first_room})
        second_room = await run_session(backend, db, ["cl_3"], hours=1)
        assert receiver.received == {}
        async with db.read() as conn:
            attempts = (
                (await conn.execute(select(webhook_outbox.c.attempts).order_by(webhook_outbox.c.seq)))
                .scalars()
                .all()
            )
        assert attempts[:2] == [3, 0] or sorted(attempts)[-2:] == [3, 3]  # only heads were tried
        assert sum(attempts) == 6
        async with serving(receiver):
            await deliver_all(delivery, store, clock)
    finally:
        await sender.aclose()

    assert receiver.refused == 0
    # the metric: session.started failed 3 times per subscription (the heads tried while down), then went
    assert attempts_counted("session.started", "failed") - before["failed"] == 6
    assert attempts_counted("session.started", "delivered") - before["delivered"] == 4
    for path, sub in subs.items():
        got = receiver.received[path]
        expected = await outbox_ids(db, sub.id)
        assert [m.msg_id for m in got] == expected  # each once, in the order written
        kinds = [m.body["type"] for m in got]
        assert kinds == [
            "session.started",
            "session.ended",
            "attendance.finalized",
            "attendance.finalized",
            "client.no_show",
            "session.started",
            "session.ended",
            "attendance.finalized",
        ]
        finalized = [m.body["data"] for m in got if m.body["type"] == "attendance.finalized"]
        assert [(d["room_id"], d["client_id"], d["minutes"]) for d in finalized] == [
            (first_room, "cl_1", 180.0),
            (first_room, "cl_2", 180.0),
            (second_room, "cl_3", 60.0),
        ]
        # allow_phi over plain http: still ids only
        assert all("client_name" not in m.body["data"] and "room_title" not in m.body["data"] for m in got)


async def test_backoff_is_exponential_with_seeded_jitter(storage: tuple[Database, KeyRing]) -> None:
    db, ring = storage
    store = SqlWebhookStore(db, ring)
    receiver = new_receiver()  # never served: every attempt fails
    _sub, receiver.secrets["x"] = await subscribe(
        store, receiver.url("x"), ["client.no_show"], allow_phi=False, allow_private=True, created_by=None
    )
    clock = ManualClock(time.time())
    sender = HttpSender(timeout=5.0, allow_private=True)
    backoff = Backoff(first=10.0, cap=80.0)
    delivery = WebhookDelivery(
        store, sender, policy=DeliveryPolicy(backoff=backoff), clock=clock, rng=random.Random(1)
    )
    await OutboxEvents(store, clock=clock).emit(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_1"})
    expected_rng = random.Random(1)
    try:
        for failures in range(1, 6):
            assert await delivery.round() == 1
            await delivery.settle()
            due = await store.next_due()
            assert due is not None
            waited = (due - datetime.fromtimestamp(clock(), UTC)).total_seconds()
            assert waited == pytest.approx(backoff.delay(failures, expected_rng), abs=1e-3)
            base = min(80.0, 10.0 * 2 ** (failures - 1))
            assert base / 2 <= waited <= base
            assert await delivery.round() == 0  # not due yet
            # to the stored instant itself: advancing by ``waited`` (a float) can land a microsecond short of
            # what the database keeps (microseconds), and then nothing is due (seen once in CI on PostgreSQL)
            clock.now = due.timestamp()
    finally:
        await sender.aclose()


async def test_slow_receiver_holds_neither_other_subscriptions_nor_sessions(
    storage: tuple[Database, KeyRing],
) -> None:
    db, ring = storage
    store = SqlWebhookStore(db, ring)
    receiver = new_receiver()
    subs = {}
    for path in ("slow", "fast"):
        subs[path], receiver.secrets[path] = await subscribe(
            store, receiver.url(path), ALL_EVENTS, allow_phi=False, allow_private=True, created_by=None
        )
    held = receiver.delay["slow"] = asyncio.Event()
    backend = room_backend(db, store)
    clock = backend.clock  # one time for the sessions and the delivery loop
    sender = HttpSender(timeout=60.0, allow_private=True)
    delivery = WebhookDelivery(store, sender, policy=DeliveryPolicy(concurrency=4), clock=clock)
    try:
        async with serving(receiver):
            await run_session(backend, db, ["cl_1"], hours=3)
            # The fast receiver gets all three events while the slow one sits on its first.
            for _ in range(20):
                await delivery.round()
                fast = [t for sub, t in delivery._in_flight.items() if sub == subs["fast"].id]
                if fast:
                    await fast[0]
                if len(receiver.received.get("fast", [])) == 3:
                    break
            assert len(receiver.received["fast"]) == 3
            assert "slow" not in receiver.received
            assert delivery.in_flight == 1
            # Sessions go on: another whole session, its ledger and outbox writes, while the slow send waits.
            await asyncio.wait_for(run_session(backend, db, ["cl_2"], hours=1), timeout=30)
            held.set()
            await deliver_all(delivery, store, clock)
    finally:
        await sender.aclose()
    assert [m.msg_id for m in receiver.received["slow"]] == await outbox_ids(db, subs["slow"].id)
    assert [m.msg_id for m in receiver.received["fast"]] == await outbox_ids(db, subs["fast"].id)
    assert len(receiver.received["slow"]) == 6


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    storage: tuple[Database, KeyRing],
) -> None:
    db, ring = storage
    store = SqlWebhookStore(db, ring)
    receiver: Receiver = new_receiver()
    _sub, receiver.secrets["slow"] = await subscribe(
        store, receiver.url("slow"), ["client.no_show"], allow_phi=False, allow_private=True, created_by=None
    )
    receiver.delay["slow"] = asyncio.Event()  # never answers in time
    clock = ManualClock(time.time())
    sender = HttpSender(timeout=0.5, allow_private=True)
    delivery = WebhookDelivery(store, sender, clock=clock, rng=random.Random(3))
    await OutboxEvents(store, clock=clock).emit(WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_1"})
    try:
        async with serving(receiver):
            assert await delivery.round() == 1
            await asyncio.wait_for(delivery.settle(), timeout=30)  # ends by the 0.5 s timeout
            async with db.read() as conn:
                row = (await conn.execute(select(webhook_outbox))).mappings().one()
            assert row["delivered_at"] is None
            assert (row["attempts"], row["last_status"], row["lease_owner"]) == (1, 0, None)
    finally:
        await sender.aclose()


async def test_two_app_processes_on_one_outbox_never_deliver_twice(
    tmp_path: Path, database_url: str | None
) -> None:
    data = tmp_path / "data"
    db, ring = await open_database(data, database_url)
    store = SqlWebhookStore(db, ring)
    receiver = new_receiver()
    receiver.together = 2  # the first sends are held until both processes have one in flight
    subs = {}
    for path in ("a", "b", "c"):
        subs[path], receiver.secrets[path] = await subscribe(
            store,
            receiver.url(path),
            ["client.no_show"],
            allow_phi=False,
            allow_private=True,
            created_by=None,
        )
    events = OutboxEvents(store)
    for n in range(30):
        await events.emit(WebhookEventType.CLIENT_NO_SHOW, {"client_id": f"cl_{n}"})
    worker = [sys.executable, "-m", "tests.session.webhook_worker", db.url, str(data.parent / "keys.json")]
    try:
        async with serving(receiver):
            procs = [
                await asyncio.create_subprocess_exec(*worker, stdout=asyncio.subprocess.PIPE, cwd=Path.cwd())
                for _ in range(2)
            ]
            outputs = [await asyncio.wait_for(p.communicate(), timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        sent = [int(out.decode().strip()) for out, _ in outputs]
        assert all(n > 0 for n in sent)  # both processes delivered
        assert sum(sent) == 90  # and no row was sent twice
        assert receiver.refused == 0
        for path, sub in subs.items():
            got = [m.msg_id for m in receiver.received[path]]
            assert got == await outbox_ids(db, sub.id)  # each once, in order, across both processes
            assert [m.body["data"]["client_id"] for m in receiver.received[path]] == [
                f"cl_{n}" for n in range(30)
            ]
        assert await store.waiting() == 0
    finally:
        await db.close()


class RecordingSender:
    """The network edge only: answers 204 for every message and keeps the bodies (no TLS receiver here)."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict[str, object]]] = {}

    async def send(self, url: str, secret: str, msg_id: str, body: bytes) -> int:
        self.bodies.setdefault(url, []).append(json.loads(body))
        return 204

    async def aclose(self) -> None:
        pass


async def test_names_only_to_a_subscription_allowed_phi_over_https(storage: tuple[Database, KeyRing]) -> None:
    db, ring = storage
    store = SqlWebhookStore(db, ring)
    room_id = new_room_id()
    async with db.begin() as conn:
        title = ring.system_fields.encrypt(FieldRef("rooms", "title", room_id), "Evening Canary Group")
        await conn.execute(
            insert(rooms).values(
                id=room_id,
                kind="group",
                title=title,
                capacity=15,
                host_user_id=HOST,
                state="open",
                created_at=datetime.now(UTC),
            )
        )
        key_id = await ring.create_data_key(conn)
        name = await ring.encrypt_field(key_id, FieldRef("clients", "display_name", "cl_named"), "Ana Canary")
        await conn.execute(
            insert(clients).values(
                id="cl_named", data_key_id=key_id, display_name=name, created_at=datetime.now(UTC)
            )
        )
    now = datetime.now(UTC)
    for url, allow_phi in [
        ("https://ehr.example/phi", True),
        ("http://ehr.example/phi", True),
        ("https://ehr.example/ids", False),
    ]:
        await store.add(
            url,
            (WebhookEventType.CLIENT_NO_SHOW,),
            allow_phi=allow_phi,
            secret=new_secret(),
            created_by=None,
            at=now,
        )
    await OutboxEvents(store).emit(
        WebhookEventType.CLIENT_NO_SHOW, {"client_id": "cl_named", "room_id": room_id}
    )
    sender = RecordingSender()
    delivery = WebhookDelivery(store, sender)
    assert await delivery.round() == 3
    await delivery.settle()
    data = {url: bodies[0]["data"] for url, bodies in sender.bodies.items()}
    assert data["https://ehr.example/phi"] == {
        "client_id": "cl_named",
        "client_name": "Ana Canary",
        "room_id": room_id,
        "room_title": "Evening Canary Group",
    }
    assert data["http://ehr.example/phi"] == {"client_id": "cl_named", "room_id": room_id}
    assert data["https://ehr.example/ids"] == {"client_id": "cl_named", "room_id": room_id}
    async with db.read() as conn:
        payloads = (await conn.execute(select(webhook_outbox.c.payload))).scalars().all()
    assert all(
        b"Ana Canary" not in p and b"cl_named" not in p for p in payloads
    )  # sealed, names never stored
