"""The SQL room directory: durable room records, titles encrypted at rest, listings, state, scopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from vIOP.auth.accounts import Account
from vIOP.auth.permissions import Role, RoomScope
from vIOP.errors import NotFound
from vIOP.ids import RoomId, UserId
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.crypto import KeyRing
from vIOP.storage.rooms_sql import LIST_LIMIT, RoomRecord, SqlRoomDirectory
from vIOP.storage.schema import rooms
from vIOP.storage.sealing import DecryptionError

HOST_A = UserId("us_host_a")
HOST_B = UserId("us_host_b")
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
async def directory(ring: KeyRing) -> SqlRoomDirectory:
    accounts = SqlAccountStore(ring.db, ring)
    for user_id in (HOST_A, HOST_B):
        username = user_id.replace("_", ".")
        account = Account(user_id, Role.CLINICIAN, username, "$argon2id$fake", None, False, "Clinician")
        await accounts.add(account, user_id.encode(), T0.timestamp())
    return SqlRoomDirectory(ring.db, ring)


def record(room_id: str, host: UserId = HOST_A, minutes: int = 0, title: str = "Tuesday group") -> RoomRecord:
    return RoomRecord(
        id=RoomId(room_id),
        kind="group",
        title=title,
        capacity=12,
        host_user_id=host,
        state="open",
        created_at=T0 + timedelta(minutes=minutes),
        ended_at=None,
    )


async def test_round_trip_with_the_title_encrypted_at_rest(
    directory: SqlRoomDirectory, ring: KeyRing
) -> None:
    canary = "Canary Alcohol Recovery Group"
    await directory.add(record("rm_one", title=canary))
    got = await directory.get("rm_one")
    assert got == record("rm_one", title=canary)
    assert got.scope == RoomScope(RoomId("rm_one"), frozenset({HOST_A}))
    assert await directory.room_scope(RoomId("rm_one")) == got.scope
    async with ring.db.read() as conn:
        sealed = (await conn.execute(select(rooms.c.title).where(rooms.c.id == "rm_one"))).scalar_one()
    assert canary.encode() not in sealed


async def test_a_title_sealed_for_one_room_does_not_open_as_another(
    directory: SqlRoomDirectory, ring: KeyRing
) -> None:
    await directory.add(record("rm_one", title="First"))
    await directory.add(record("rm_two", title="Second"))
    async with ring.db.begin() as conn:
        sealed = (await conn.execute(select(rooms.c.title).where(rooms.c.id == "rm_one"))).scalar_one()
        await conn.execute(rooms.update().where(rooms.c.id == "rm_two").values(title=sealed))
    with pytest.raises(DecryptionError) as refused:
        await directory.get("rm_two")
    assert "Second" not in str(refused.value) and "First" not in str(refused.value)


@pytest.mark.parametrize(
    "room_id", ["rm_absent", "", "rm_", "not-a-room", "rm_" + "x" * 80, "rm_a b", "rm_' OR 1=1"]
)
async def test_unknown_and_malformed_ids_are_not_found(directory: SqlRoomDirectory, room_id: str) -> None:
    await directory.add(record("rm_one"))
    with pytest.raises(NotFound, match="no such room"):
        await directory.get(room_id)


async def test_listings_by_host_and_for_everyone_newest_first(directory: SqlRoomDirectory) -> None:
    await directory.add(record("rm_a_old", HOST_A, minutes=0))
    await directory.add(record("rm_a_new", HOST_A, minutes=10))
    await directory.add(record("rm_b", HOST_B, minutes=5))
    assert [r.id for r in await directory.hosted_by(HOST_A)] == ["rm_a_new", "rm_a_old"]
    assert [r.id for r in await directory.hosted_by(HOST_B)] == ["rm_b"]
    assert [r.id for r in await directory.all_rooms()] == ["rm_a_new", "rm_b", "rm_a_old"]
    assert await directory.hosted_by(UserId("us_nobody")) == []


async def test_ended_rooms_leave_listings_unless_asked_for(directory: SqlRoomDirectory) -> None:
    await directory.add(record("rm_a", HOST_A, minutes=0))
    await directory.add(record("rm_b", HOST_B, minutes=1))
    ended_at = (T0 + timedelta(hours=3)).timestamp()
    await directory.set_state(RoomId("rm_a"), "ended", ended_at=ended_at)
    got = await directory.get("rm_a")
    assert (got.state, got.ended_at) == ("ended", T0 + timedelta(hours=3))
    assert await directory.hosted_by(HOST_A) == []
    assert [r.id for r in await directory.hosted_by(HOST_A, include_ended=True)] == ["rm_a"]
    assert [r.id for r in await directory.all_rooms()] == ["rm_b"]
    assert [r.id for r in await directory.all_rooms(include_ended=True)] == ["rm_b", "rm_a"]


async def test_unended_ids_are_every_room_not_ended_however_many(directory: SqlRoomDirectory) -> None:
    # What the directory reconcile walks (vIOP.session.room_end): not bounded like a listing.
    for n in range(LIST_LIMIT + 3):
        await directory.add(record(f"rm_{n:04d}", minutes=n))
    await directory.set_state(RoomId("rm_0001"), "ended", ended_at=T0.timestamp())
    await directory.set_state(RoomId("rm_0002"), "live")
    unended = await directory.unended_ids()
    assert len(unended) == LIST_LIMIT + 2
    assert set(unended) == {f"rm_{n:04d}" for n in range(LIST_LIMIT + 3)} - {"rm_0001"}


async def test_state_changes_keep_the_first_fields(directory: SqlRoomDirectory) -> None:
    await directory.add(record("rm_a"))
    await directory.set_state(RoomId("rm_a"), "live")
    got = await directory.get("rm_a")
    assert (got.state, got.ended_at, got.title, got.capacity) == ("live", None, "Tuesday group", 12)


async def test_a_room_needs_a_real_host(directory: SqlRoomDirectory) -> None:
    with pytest.raises(IntegrityError):
        await directory.add(record("rm_orphan", UserId("us_unknown")))
    with pytest.raises(NotFound):
        await directory.get("rm_orphan")


# --- co-hosts (issue 15) -------------------------------------------------------------------------------


async def test_cohosts_are_hosts_in_the_scope_and_the_listings(directory: SqlRoomDirectory) -> None:
    from vIOP.rooms.errors import AlreadyAHost

    await directory.add(record("rm_cohosted", host=HOST_A))
    await directory.add(record("rm_other", host=HOST_A, minutes=1))
    assert [r.id for r in await directory.hosted_by(HOST_B)] == []
    await directory.add_cohost(RoomId("rm_cohosted"), HOST_B, by=HOST_A, at=T0.timestamp())
    got = await directory.get("rm_cohosted")
    assert got.cohost_ids == {HOST_B} and got.host_ids == {HOST_A, HOST_B}
    assert got.scope == RoomScope(RoomId("rm_cohosted"), frozenset({HOST_A, HOST_B}))
    assert [r.id for r in await directory.hosted_by(HOST_B)] == ["rm_cohosted"]
    assert [r.id for r in await directory.hosted_by(HOST_A)] == ["rm_other", "rm_cohosted"]
    assert (await directory.hosted_by(HOST_B))[0].cohost_ids == {HOST_B}
    for already in (HOST_A, HOST_B):
        with pytest.raises(AlreadyAHost):
            await directory.add_cohost(RoomId("rm_cohosted"), already, by=HOST_A, at=T0.timestamp())
    assert await directory.remove_cohost(RoomId("rm_cohosted"), HOST_B)
    assert not await directory.remove_cohost(RoomId("rm_cohosted"), HOST_B)
    assert (await directory.get("rm_cohosted")).scope == RoomScope(RoomId("rm_cohosted"), frozenset({HOST_A}))
    assert await directory.hosted_by(HOST_B) == []
