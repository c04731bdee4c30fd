"""Resume tokens on Redis: the store behind ``vIOP.signaling.resume.ResumeTokens``.

Keys are ``<prefix><sha256 of the token>``; values are sealed (AEAD bound to the key), so Redis never holds
which participant or room a token unlocks in plaintext. TTLs are Redis key expiries; ``take`` is GETDEL, so
two racing resumes cannot both win.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from vIOP.storage.sealing import DecryptionError, Sealer


class RedisResumeTokenStore:
    def __init__(self, redis: aioredis.Redis, sealer: Sealer, *, prefix: str = "viop:resume:") -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("sealed values are bytes: use a Redis client without decode_responses")
        self._redis = redis
        self._sealer = sealer
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        name = self._key(key)
        await self._redis.set(name, self._sealer.seal(value, name.encode()), px=_millis(ttl_seconds))

    async def take(self, key: str) -> bytes | None:
        name = self._key(key)
        blob = await self._redis.getdel(name)
        if blob is None:
            return None
        assert isinstance(blob, bytes)
        try:
            return self._sealer.unseal(blob, name.encode())
        except DecryptionError:
            return None  # tampered or under a retired key: as good as absent

    async def refresh(self, key: str, ttl_seconds: float) -> bool:
        return bool(await self._redis.pexpire(self._key(key), _millis(ttl_seconds)))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._key(key))


def _millis(seconds: float) -> int:
    return max(1, int(seconds * 1000))
