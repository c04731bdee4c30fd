"""The Redis side of the auth policies (:mod:`vIOP.auth`): key names, commands and Lua scripts.

Each class implements one port the policy declares beside itself: :class:`RedisTicketStore`
(``auth.tickets.TicketStore``), :class:`RedisSessionStore` (``auth.tokens.SessionStore``),
:class:`RedisThrottleCounters` (``auth.throttle.ThrottleCounters``), :class:`RedisTotpSteps`
(``auth.totp_replay.TotpSteps``), :class:`RedisRevocationLog` (``auth.revocation.RevocationLog``) and
:class:`RedisTicketRateCounter` (``auth.ticket_rate.TicketRateCounter``). What a record means (MACs, time
rules, limits) stays with the policy; keys hold opaque ids, digests and times only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import redis.asyncio as aioredis

from vIOP.auth.throttle import ThrottlePolicy

# --- signal tickets ------------------------------------------------------------------------------------

TICKET_PREFIX: Final = "viop:ticket:"


class RedisTicketStore:
    """``viop:ticket:{sha256(ticket)}`` = the MAC'd record, with the ticket's TTL; redeemed by GETDEL."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def put(self, ticket_id: str, record: bytes, ttl_seconds: int) -> None:
        await self._redis.set(TICKET_PREFIX + ticket_id, record, ex=ttl_seconds, nx=True)

    async def take(self, ticket_id: str) -> bytes | None:
        raw = await self._redis.getdel(TICKET_PREFIX + ticket_id)
        if raw is None:
            return None
        return raw if isinstance(raw, bytes) else str(raw).encode()


# --- token sessions ------------------------------------------------------------------------------------

ACTIVE_PREFIX: Final = "viop:auth:active:"
SIGNED_OUT_PREFIX: Final = "viop:auth:revoked:"
ACCOUNT_REVOKED_PREFIX: Final = "viop:revoked:account:"
SOCKETS_REVOKED_PREFIX: Final = "viop:revoked:sockets:"

# Atomically: refuse signed-out sessions and tokens issued at or before an account revocation (ARGV[3] is
# the token's iat, '' when unknown), unknown and idle sessions; else record this use (unless ARGV[4] is '0':
# a heartbeat of an unattended page) and hand back the record's MAC for the caller to check.
_TOUCH = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {'revoked'} end
if ARGV[3] ~= '' then
  local revoked_at = redis.call('GET', KEYS[3])
  if revoked_at and tonumber(ARGV[3]) <= tonumber(revoked_at) then return {'revoked'} end
end
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {'unknown'} end
local record = redis.call('HMGET', KEYS[1], 't', 'm')
if not record[1] or not record[2] then return {'unknown'} end
local now = tonumber(ARGV[1])
if now - tonumber(record[1]) > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return {'idle'}
end
if ARGV[4] == '1' and now > tonumber(record[1]) then redis.call('HSET', KEYS[1], 't', ARGV[1]) end
return {'ok', record[2]}
"""


class RedisSessionStore:
    """Activity records ``viop:auth:active:{jti}`` = ``{t: last use, m: MAC}`` and the logout denylist
    ``viop:auth:revoked:{jti}``; an account revocation is read from ``viop:revoked:account:{subject}``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._touch = redis.register_script(_TOUCH)

    async def write(self, jti: str, last_use: int, mac: bytes, ttl_seconds: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(ACTIVE_PREFIX + jti, mapping={"t": last_use, "m": mac})
            pipe.expire(ACTIVE_PREFIX + jti, ttl_seconds)
            await pipe.execute()

    async def exists(self, jti: str) -> bool:
        return bool(await self._redis.exists(ACTIVE_PREFIX + jti))

    async def sign_out(self, jti: str, ttl_seconds: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(SIGNED_OUT_PREFIX + jti, 1, ex=ttl_seconds)
            pipe.delete(ACTIVE_PREFIX + jti)
            await pipe.execute()

    async def touch(
        self, jti: str, subject: str | None, issued_at: int | None, now: int, idle_seconds: int, record: bool
    ) -> tuple[str, bytes | None]:
        signed_out = SIGNED_OUT_PREFIX + jti
        result = await self._touch(
            keys=[
                ACTIVE_PREFIX + jti,
                signed_out,
                ACCOUNT_REVOKED_PREFIX + subject if subject is not None else signed_out,
            ],
            args=[now, idle_seconds, "" if issued_at is None else issued_at, "1" if record else "0"],
        )
        status = result[0] if result else b"unknown"
        mac = result[1] if len(result) > 1 else None
        text = status.decode() if isinstance(status, bytes) else str(status)
        return text, mac if isinstance(mac, bytes) else None


# --- login throttle ------------------------------------------------------------------------------------

_PAIR = "viop:throttle:pair:"
_ACCOUNT = "viop:throttle:account:"
_ADDRESS = "viop:throttle:address:"
_KNOWN = "viop:throttle:known:"

# KEYS: pair, account, address, known. For each counter: refuse while locked (pair only) or slowed down;
# forget failures of an old window. A known address skips the account and address checks. Only if every
# check allows the attempt, count it on all three. Returns {status, a}: status 1 = allowed (a = pair
# failures), -1 = locked, -2 = slowed down (a = seconds to wait, rounded up).
_BEGIN = """
local now, base, lockout, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function state(key, free, cap, lock_after)
  local h = redis.call('HMGET', key, 'f', 's', 't')
  local f, s, t = tonumber(h[1] or '0'), tonumber(h[2] or '0'), tonumber(h[3] or '0')
  if lock_after > 0 and f >= lock_after then
    if now < t + lockout then return f, s, -1, t + lockout - now end
    f = 0
  end
  if f > 0 and now - s >= window then f = 0 end
  if f == 0 then s = now end
  local delay = 0
  if f > free then delay = math.min(base * 2 ^ (f - free - 1), cap) end
  if now < t + delay then return f, s, -2, t + delay - now end
  return f, s, 1, 0
end
local known = redis.call('EXISTS', KEYS[4]) == 1
local fp, sp, stp, wp = state(KEYS[1], tonumber(ARGV[5]), tonumber(ARGV[8]), tonumber(ARGV[10]))
local fa, sa, sta, wa = state(KEYS[2], tonumber(ARGV[6]), tonumber(ARGV[9]), 0)
local fb, sb, stb, wb = state(KEYS[3], tonumber(ARGV[7]), tonumber(ARGV[8]), 0)
if stp == -1 then return {-1, math.ceil(wp)} end
if known then sta, wa, stb, wb = 1, 0, 1, 0 end
if stp < 0 or sta < 0 or stb < 0 then return {-2, math.ceil(math.max(wp, wa, wb))} end
redis.call('HSET', KEYS[1], 'f', fp + 1, 's', sp, 't', ARGV[1])
redis.call('HSET', KEYS[2], 'f', fa + 1, 's', sa, 't', ARGV[1])
redis.call('HSET', KEYS[3], 'f', fb + 1, 's', sb, 't', ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[11]) end
return {1, fp + 1}
"""

# Clear the pair, give the account and the address their attempt back, remember the address as known.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  local f = tonumber(redis.call('HGET', KEYS[i], 'f') or '0')
  if f > 1 then redis.call('HSET', KEYS[i], 'f', f - 1) else redis.call('DEL', KEYS[i]) end
end
if tonumber(ARGV[1]) > 0 then redis.call('SET', KEYS[4], '1', 'EX', ARGV[1]) end
return 1
"""


class RedisThrottleCounters:
    """``viop:throttle:{pair|account|address}:{hex}`` hashes of ``f`` (failures in the window), ``s``
    (window start) and ``t`` (last attempt), and ``viop:throttle:known:{pair}`` markers; one Lua script
    per step so parallel guesses cannot slip between a check and its count."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._begin = redis.register_script(_BEGIN)
        self._succeeded = redis.register_script(_SUCCEEDED)

    async def begin(
        self,
        pair: str,
        account: str,
        address: str,
        now: float,
        policy: ThrottlePolicy,
        ttl_seconds: int,
    ) -> tuple[int, int]:
        """Check and count one attempt. Returns (status, value): 1 = allowed (pair failures), -1 = locked,
        -2 = slowed down (seconds to wait)."""
        p = policy
        status, value = await self._begin(
            keys=[_PAIR + pair, _ACCOUNT + account, _ADDRESS + address, _KNOWN + pair],
            args=[
                repr(now), p.base_delay_seconds, p.lockout_seconds, p.window_seconds,
                p.pair_free_failures, p.account_free_failures, p.address_free_failures,
                p.max_delay_seconds, p.account_max_delay_seconds, p.max_failures, ttl_seconds,
            ],
        )  # fmt: skip
        return int(status), int(value)

    async def succeeded(self, pair: str, account: str, address: str, known_seconds: int) -> None:
        keys = [_PAIR + pair, _ACCOUNT + account, _ADDRESS + address, _KNOWN + pair]
        await self._succeeded(keys=keys, args=[known_seconds])


# --- TOTP replay ---------------------------------------------------------------------------------------

_TOTP_STEP = "viop:auth:totp-step:"

_CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


class RedisTotpSteps:
    """``viop:auth:totp-step:{user id}`` = the last accepted step; compare-and-set in one script."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, user_id: str, step: int, keep_seconds: int) -> bool:
        return bool(await self._claim(keys=[_TOTP_STEP + user_id], args=[step, keep_seconds]))


# --- revocations ---------------------------------------------------------------------------------------

REVOCATION_STREAM: Final = "viop:revocations"
REVOCATION_STREAM_MAXLEN: Final = 10_000


class RedisRevocationLog:
    """A key per subject with its newest revocation time (``viop:revoked:account:{id}``,
    ``viop:revoked:sockets:{id}``) and the Stream ``viop:revocations`` every process follows."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def append(self, kind: str, subject: str, at: float, *, account: bool, keep_seconds: int) -> None:
        key = (ACCOUNT_REVOKED_PREFIX if account else SOCKETS_REVOKED_PREFIX) + subject
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, repr(at), ex=keep_seconds)
            pipe.xadd(
                REVOCATION_STREAM,
                {"k": kind, "s": subject, "t": repr(at)},
                maxlen=REVOCATION_STREAM_MAXLEN,
                approximate=True,
            )
            await pipe.execute()

    async def latest(self, subject: str) -> tuple[Any, Any]:
        """(account revocation time, sockets revocation time) as stored, either None; one MGET."""
        account_at, sockets_at = await self._redis.mget(
            ACCOUNT_REVOKED_PREFIX + subject, SOCKETS_REVOKED_PREFIX + subject
        )
        return account_at, sockets_at

    async def follow(self, block_ms: int) -> AsyncIterator[tuple[bytes, dict[Any, Any]]]:
        """Every entry appended from now on, as (id, fields). Raises on a lost connection."""
        last = b"$"
        newest = await self._redis.xrevrange(REVOCATION_STREAM, count=1)
        if newest:
            newest_id = newest[0][0]
            last = newest_id if isinstance(newest_id, bytes) else str(newest_id).encode()
        while True:
            reply = await self._redis.xread({REVOCATION_STREAM: last}, count=256, block=block_ms)
            for entry_id, fields in _entries(reply):
                last = entry_id
                yield entry_id, fields


def _entries(reply: Any) -> list[tuple[bytes, dict[Any, Any]]]:
    """XREAD's reply as (id, fields) pairs, for both RESP2 (list) and RESP3 (map) shapes."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[bytes, dict[Any, Any]]] = []
    for _name, entries in streams:
        for entry in entries or []:
            out.append((bytes(entry[0]), entry[1] if isinstance(entry[1], dict) else dict(entry[1])))
    return out


# --- ticket rate limit ---------------------------------------------------------------------------------

_TICKET_RATE = "viop:ticket-rate:"


class RedisTicketRateCounter:
    """A fixed window per subject: ``viop:ticket-rate:{subject}:{window}``, one atomic INCR."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def count(self, subject: str, window: int, ttl_seconds: int) -> int:
        key = f"{_TICKET_RATE}{subject}:{window}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl_seconds)
            count, _ = await pipe.execute()
        return int(count)
