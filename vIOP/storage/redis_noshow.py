"""The no-show decisions' once-only claims in Redis (``SET NX`` per occurrence and client, ids only)."""

from __future__ import annotations

from typing import Final

from vIOP.ids import ClientId
from vIOP.storage.redis_client import RedisClient

NO_SHOW_PREFIX: Final = "viop:noshow:"


class RedisNoShowClaims:
    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def claim(self, occurrence_id: str, client_id: ClientId, *, keep_seconds: int) -> bool:
        return bool(await self._redis.set(_key(occurrence_id, client_id), "1", ex=keep_seconds, nx=True))

    async def release(self, occurrence_id: str, client_id: ClientId) -> None:
        await self._redis.delete(_key(occurrence_id, client_id))


def _key(occurrence_id: str, client_id: ClientId) -> str:
    return f"{NO_SHOW_PREFIX}{occurrence_id}:{client_id}"
