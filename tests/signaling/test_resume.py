"""Resume tokens: one contract, run against the in-memory twin and the real Redis store."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.clock import ManualClock
from vIOP.signaling.resume import (
    MemoryResumeTokenStore,
    ResumeGrant,
    ResumeRejected,
    ResumeTokens,
    handle_of,
)
from vIOP.storage.redis_resume_tokens import RedisResumeTokenStore
from vIOP.storage.sealing import AesGcmSealer

PREFIX = "viop:resume:"
GRANT = ResumeGrant(ParticipantId("pt_CanaryParticipant"), RoomId("rm_CanaryRoom"), "cl_CanarySubject")


@dataclass
class Backend:
    """A ResumeTokens over one store, plus how the test reads a token's time to live and lets it run out."""

    name: str
    tokens: ResumeTokens
    memory: MemoryResumeTokenStore | None = None
    clock: ManualClock | None = None
    redis: aioredis.Redis | None = None

    async def remaining(self, handle: str) -> float | None:
        if self.memory is not None:
            return self.memory.remaining(handle)
        assert self.redis is not None
        millis = await self.redis.pttl(PREFIX + handle)
        return millis / 1000 if millis > 0 else None

    async def run_out(self, handle: str) -> None:
        left = await self.remaining(handle)
        assert left is not None
        if self.clock is not None:
            self.clock.advance(left + 0.001)
            return
        assert self.redis is not None
        deadline = time.monotonic() + 5
        while await self.redis.exists(PREFIX + handle):  # bounded poll on Redis' own expiry
            assert time.monotonic() < deadline, "Redis did not expire the token"
            await asyncio.sleep(0.02)

    async def stored_count(self) -> int:
        if self.memory is not None:
            return len(self.memory)
        assert self.redis is not None
        return int(await self.redis.dbsize())


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        clock = ManualClock()
        store = MemoryResumeTokenStore(clock)
        yield Backend("memory", ResumeTokens(store, grace_seconds=60, heartbeat_seconds=10), store, clock)
        return
    server = request.getfixturevalue("redis_server")  # the session's real redis-server
    client = aioredis.from_url(server.url)
    await client.flushall()
    store_r = RedisResumeTokenStore(client, AesGcmSealer(os.urandom(32)), prefix=PREFIX)
    # Real Redis expiry in real time: a short grace keeps the test fast.
    yield Backend("redis", ResumeTokens(store_r, grace_seconds=0.3, heartbeat_seconds=0.2), redis=client)
    await client.flushall()
    await client.aclose()


async def test_a_token_resumes_its_participant_once(backend: Backend) -> None:
    issued = await backend.tokens.issue(GRANT)
    assert issued.token.startswith("rt_") and len(issued.token) == 46
    assert issued.handle == handle_of(issued.token) != issued.token
    grant = await backend.tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)
    assert grant == GRANT
    with pytest.raises(ResumeRejected):
        await backend.tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)


@pytest.mark.parametrize(
    ("room_id", "subject"),
    [(RoomId("rm_OtherRoom"), GRANT.subject), (GRANT.room_id, "cl_AnotherClientOfTheGroup")],
)
async def test_a_token_presented_by_someone_else_is_refused_and_spent(
    backend: Backend, room_id: RoomId, subject: str
) -> None:
    issued = await backend.tokens.issue(GRANT)
    with pytest.raises(ResumeRejected) as refused:
        await backend.tokens.redeem(issued.token, room_id=room_id, subject=subject)
    assert refused.value.code == "resume_rejected"
    assert refused.value.ws_close_code == 1008
    with pytest.raises(ResumeRejected):  # the rightful owner cannot use a token that was misused
        await backend.tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)


@pytest.mark.parametrize(
    "token", ["", "rt_", "rt_" + "A" * 42, "rt_" + "A" * 44, "xx_" + "A" * 43, "rt_" + "!" * 43]
)
async def test_malformed_tokens_are_refused_without_touching_the_store(backend: Backend, token: str) -> None:
    await backend.tokens.issue(GRANT)
    before = await backend.stored_count()
    with pytest.raises(ResumeRejected):
        await backend.tokens.redeem(token, room_id=GRANT.room_id, subject=GRANT.subject)
    assert await backend.stored_count() == before


async def test_a_revoked_token_is_refused(backend: Backend) -> None:
    issued = await backend.tokens.issue(GRANT)
    await backend.tokens.revoke(issued.handle)
    with pytest.raises(ResumeRejected):
        await backend.tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)
    assert not await backend.tokens.keep_alive(issued.handle)


async def test_heartbeats_renew_and_a_drop_starts_the_grace_window(backend: Backend) -> None:
    tokens = backend.tokens
    live_ttl = tokens.grace_seconds * 2 if backend.name == "memory" else 0.5
    issued = await tokens.issue(GRANT)
    left = await backend.remaining(issued.handle)
    assert left is not None and tokens.grace_seconds < left <= live_ttl + 0.01

    assert await tokens.keep_alive(issued.handle)
    assert await tokens.start_grace(issued.handle)
    left = await backend.remaining(issued.handle)
    assert left is not None and left <= tokens.grace_seconds + 0.001

    await backend.run_out(issued.handle)
    with pytest.raises(ResumeRejected):
        await tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)
    assert not await tokens.keep_alive(issued.handle)
    assert not await tokens.start_grace(issued.handle)


async def test_racing_resumes_of_one_token_have_exactly_one_winner(backend: Backend) -> None:
    issued = await backend.tokens.issue(GRANT)

    async def attempt() -> bool:
        try:
            await backend.tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)
        except ResumeRejected:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert results.count(True) == 1


async def test_memory_twin_keeps_a_live_connection_token_for_hours_and_drops_a_dead_one() -> None:
    clock = ManualClock()
    store = MemoryResumeTokenStore(clock)
    tokens = ResumeTokens(store, grace_seconds=60, heartbeat_seconds=10)
    live = await tokens.issue(GRANT)
    crashed = await tokens.issue(GRANT)  # its process died: no heartbeat, no start_grace
    for _ in range(3 * 360):  # three hours of heartbeats every 10 s
        clock.advance(10)
        assert await tokens.keep_alive(live.handle)
    assert await tokens.redeem(live.token, room_id=GRANT.room_id, subject=GRANT.subject) == GRANT
    with pytest.raises(ResumeRejected):
        await tokens.redeem(crashed.token, room_id=GRANT.room_id, subject=GRANT.subject)
    assert len(store) == 0


async def test_redis_holds_only_hashes_and_sealed_grants(redis_client: aioredis.Redis) -> None:
    tokens = ResumeTokens(RedisResumeTokenStore(redis_client, AesGcmSealer(os.urandom(32)), prefix=PREFIX))
    issued = await tokens.issue(GRANT)
    keys = [key async for key in redis_client.scan_iter()]
    assert keys == [(PREFIX + issued.handle).encode()]
    value = await redis_client.get(keys[0])
    assert value is not None
    for secret in (issued.token, GRANT.participant_id, GRANT.room_id, GRANT.subject, "Canary"):
        assert secret.encode() not in keys[0] + value


async def test_redis_store_refuses_a_tampered_grant(redis_client: aioredis.Redis) -> None:
    tokens = ResumeTokens(RedisResumeTokenStore(redis_client, AesGcmSealer(os.urandom(32)), prefix=PREFIX))
    issued = await tokens.issue(GRANT)
    key = PREFIX + issued.handle
    value = bytearray(await redis_client.get(key) or b"")
    value[-1] ^= 1
    await redis_client.set(key, bytes(value))
    with pytest.raises(ResumeRejected):
        await tokens.redeem(issued.token, room_id=GRANT.room_id, subject=GRANT.subject)


async def test_redis_store_needs_a_bytes_client(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisResumeTokenStore(client, AesGcmSealer(os.urandom(32)))
    finally:
        await client.aclose()
