"""One contract for each auth store, run against the in-memory twin and the SQL store on a real database.

SQL-only tests then check what reaches the disk: no username, TOTP secret, display name (of an account or a
client) or invite token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from tests.auth.twins import MemoryAccountStore, MemoryInviteStore
from vIOP.auth.accounts import Account, AccountStore
from vIOP.auth.invites import Invite, InviteStore, token_hash
from vIOP.auth.permissions import Role
from vIOP.errors import Conflict, NotFound
from vIOP.ids import ClientId, InviteId, RoomId, UserId
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.crypto import KeyRing
from vIOP.storage.invites_sql import SqlInviteStore
from vIOP.storage.schema import metadata, rooms, users

NOW = 1_750_000_000.0
CANARY_NAME = "Zebulon Canary-Quixote"
CANARY_USER = "canary.zebulon"
CANARY_SECRET = b"\x9e\x11TOTPCANARYSECRET\x07"
CANARY_SHOWN = "Dr. Ottoline Canary-Wexford"
HOST = UserId("us_host")
ROOM = RoomId("rm_1")


def account(
    user_id: str = "us_1", username: str = CANARY_USER, secret: bytes | None = CANARY_SECRET
) -> Account:
    return Account(
        UserId(user_id), Role.CLINICIAN, username, "$argon2id$v=19$fake", secret, False, CANARY_SHOWN
    )


# Both variants take the (parametrized) ring fixture: pytest cannot add a parametrized fixture lazily.
@pytest.fixture(params=["memory", "sql"])
async def account_store(request: pytest.FixtureRequest, ring: KeyRing) -> AccountStore:
    if request.param == "memory":
        return MemoryAccountStore()
    return SqlAccountStore(ring.db, ring)


@pytest.fixture(params=["memory", "sql"])
async def invite_store(request: pytest.FixtureRequest, ring: KeyRing) -> InviteStore:
    if request.param == "memory":
        return MemoryInviteStore()
    # Invites reference a host account and a room (foreign keys).
    await SqlAccountStore(ring.db, ring).add(account(HOST, "dr.host"), b"host-index", NOW)
    async with ring.db.begin() as conn:
        await conn.execute(
            insert(rooms).values(
                id=ROOM, kind="group", title=b"opaque", capacity=15, host_user_id=HOST, state="open",
                created_at=datetime.fromtimestamp(NOW, UTC),
            )
        )  # fmt: skip
    return SqlInviteStore(ring.db, ring)


# --- AccountStore ----------------------------------------------------------------------------------


async def test_account_round_trip(account_store: AccountStore) -> None:
    await account_store.add(account(), b"index-1", NOW)
    assert await account_store.get(UserId("us_1")) == account()
    assert await account_store.by_username_index(b"index-1") == account()
    assert await account_store.by_username_index(b"index-2") is None
    assert await account_store.get(UserId("us_2")) is None
    await account_store.add(account("us_2", "no.mfa", None), b"index-2", NOW)
    assert (await account_store.get(UserId("us_2"))) == account("us_2", "no.mfa", None)


async def test_account_username_index_is_unique(account_store: AccountStore) -> None:
    await account_store.add(account(), b"index-1", NOW)
    with pytest.raises(Conflict):
        await account_store.add(account("us_2", "other"), b"index-1", NOW)
    assert await account_store.get(UserId("us_2")) is None


async def test_account_updates(account_store: AccountStore) -> None:
    await account_store.add(account(), b"index-1", NOW)
    user = UserId("us_1")
    await account_store.set_password_hash(user, "$argon2id$new", NOW + 1)
    await account_store.set_disabled(user, True, NOW + 2)
    await account_store.set_totp_secret(user, b"new secret", NOW + 3)
    await account_store.record_login(user, NOW + 4)
    updated = await account_store.get(user)
    assert updated is not None
    assert (updated.password_hash, updated.disabled, updated.totp_secret) == (
        "$argon2id$new",
        True,
        b"new secret",
    )
    await account_store.set_totp_secret(user, None, NOW + 5)
    cleared = await account_store.get(user)
    assert cleared is not None and not cleared.mfa_enabled
    await account_store.set_display_name(user, "Dr. Lee", NOW + 6)
    renamed = await account_store.get(user)
    assert renamed is not None and (renamed.display_name, renamed.username) == ("Dr. Lee", CANARY_USER)


async def test_account_updates_of_unknown_users(account_store: AccountStore) -> None:
    ghost = UserId("us_ghost")
    with pytest.raises(NotFound):
        await account_store.set_password_hash(ghost, "x", NOW)
    with pytest.raises(NotFound):
        await account_store.set_disabled(ghost, True, NOW)
    with pytest.raises(NotFound):
        await account_store.set_totp_secret(ghost, None, NOW)
    with pytest.raises(NotFound):
        await account_store.record_login(ghost, NOW)
    with pytest.raises(NotFound):
        await account_store.set_display_name(ghost, "Dr. Nobody", NOW)


# --- InviteStore -----------------------------------------------------------------------------------


def invite(n: int = 1, max_uses: int | None = 3, expires_at: float = NOW + 3600) -> Invite:
    return Invite(
        InviteId(f"iv_{n}"), ROOM, ClientId(f"cl_{n}"), HOST, NOW, expires_at, max_uses, 0, revoked_at=None
    )


TOKEN = "vinv_" + "T" * 43


async def test_invite_round_trip(invite_store: InviteStore) -> None:
    await invite_store.add(invite(), token_hash(TOKEN), CANARY_NAME)
    assert await invite_store.get(InviteId("iv_1")) == invite()
    assert await invite_store.by_token_hash(token_hash(TOKEN)) == invite()
    assert await invite_store.by_token_hash(token_hash(TOKEN + "x")) is None
    assert await invite_store.get(InviteId("iv_2")) is None
    assert await invite_store.client_display_name(ClientId("cl_1")) == CANARY_NAME
    with pytest.raises(NotFound):
        await invite_store.client_display_name(ClientId("cl_2"))


async def test_invite_uses_are_capped_under_concurrency(invite_store: InviteStore) -> None:
    await invite_store.add(invite(max_uses=5), token_hash(TOKEN), CANARY_NAME)
    results = await asyncio.gather(*(invite_store.consume(InviteId("iv_1"), NOW) for _ in range(20)))
    assert results.count(True) == 5
    stored = await invite_store.get(InviteId("iv_1"))
    assert stored is not None and stored.uses == 5


async def test_unlimited_invite_until_expiry(invite_store: InviteStore) -> None:
    await invite_store.add(invite(max_uses=None, expires_at=NOW + 10), token_hash(TOKEN), CANARY_NAME)
    for _ in range(30):
        assert await invite_store.consume(InviteId("iv_1"), NOW)
    assert not await invite_store.consume(InviteId("iv_1"), NOW + 10)
    assert not await invite_store.consume(InviteId("iv_9"), NOW)


async def test_revoked_invite_cannot_be_consumed(invite_store: InviteStore) -> None:
    await invite_store.add(invite(), token_hash(TOKEN), CANARY_NAME)
    await invite_store.revoke(InviteId("iv_1"), NOW + 1)
    await invite_store.revoke(InviteId("iv_1"), NOW + 2)  # idempotent: the first time stands
    stored = await invite_store.get(InviteId("iv_1"))
    assert stored is not None and stored.revoked_at == NOW + 1
    assert not await invite_store.consume(InviteId("iv_1"), NOW + 3)
    with pytest.raises(NotFound):
        await invite_store.revoke(InviteId("iv_9"), NOW)


# --- SQL only: nothing readable at rest ------------------------------------------------------------


async def bytes_at_rest(ring: KeyRing, database_url: str) -> bytes:
    """SQLite: the database file and its WAL, as on disk. PostgreSQL: every stored value of every table."""
    if database_url.startswith("sqlite"):
        path = Path(ring.db.engine.url.database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    chunks = []
    async with ring.db.read() as conn:
        for table in metadata.sorted_tables:
            for row in await conn.execute(select(table)):
                chunks.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return b"\x00".join(chunks)


@pytest.mark.parametrize("account_store", ["sql"], indirect=True)
@pytest.mark.parametrize("invite_store", ["sql"], indirect=True)
async def test_no_plaintext_at_rest(
    account_store: AccountStore, invite_store: InviteStore, ring: KeyRing, database_url: str
) -> None:
    await account_store.add(account(), b"index-1", NOW)
    await invite_store.add(invite(), token_hash(TOKEN), CANARY_NAME)
    assert b"$argon2id$v=19$fake" in await bytes_at_rest(ring, database_url)  # the scan sees stored values
    await account_store.set_display_name(UserId("us_1"), CANARY_SHOWN + " Jr.", NOW + 1)
    raw = await bytes_at_rest(ring, database_url)
    for canary in (CANARY_NAME, CANARY_USER, CANARY_SHOWN, TOKEN):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert canary.encode(encoding) not in raw, (canary, encoding)
    assert CANARY_SECRET not in raw


@pytest.mark.parametrize("account_store", ["sql"], indirect=True)
async def test_accounts_from_before_display_names_show_their_role(
    account_store: AccountStore, ring: KeyRing
) -> None:
    """Rows written before migration 0002 have no display name: they read as the role's title, never the
    username (which clients must not see)."""
    await account_store.add(account(), b"index-1", NOW)
    async with ring.db.begin() as conn:
        await conn.execute(update(users).values(display_name=None))
    stored = await account_store.get(UserId("us_1"))
    assert stored is not None and stored.display_name == "Clinician"
