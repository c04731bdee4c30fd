"""Benchmark: the cost of identity and access on the request path.

    .venv/bin/python bench/auth.py [--seconds 1.0]

Measures, on one core and one event loop: argon2id hash and verify with the production parameters (RFC 9106
low-memory profile: t=3, 64 MiB, p=4), Ed25519 access-token issue and signature+claims checks, the full
per-request verification (plus one Redis round trip for the idle/denylist script), signaling ticket
issue + redeem, and the login throttle script, against a real redis-server on a unix socket.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.auth.throttle import LoginThrottle, ThrottlePolicy
from vIOP.auth.tickets import SignalTickets, TicketPurpose
from vIOP.auth.tokens import AccessTokens, TokenKeys
from vIOP.ids import RoomId, UserId
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.redis_auth import RedisSessionStore, RedisThrottleCounters, RedisTicketStore

USER = UserId("us_bench")
ROOM = RoomScope(RoomId("rm_bench"), frozenset({USER}))


def per_second(label: str, count: int, wall: float, cpu: float) -> None:
    print(
        f"{label:<52} {count / wall:>10,.0f}/s   {1e6 * wall / count:>9,.1f} µs each  (cpu {cpu / wall:.0%})"
    )


def timed_sync(label: str, seconds: float, op: Callable[[], object]) -> None:
    count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        op()
        count += 1
    per_second(label, count, time.perf_counter() - wall0, time.process_time() - cpu0)


async def timed_async(label: str, seconds: float, op: Callable[[], Awaitable[object]]) -> None:
    count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        await op()
        count += 1
    per_second(label, count, time.perf_counter() - wall0, time.process_time() - cpu0)


async def main(seconds: float) -> None:
    print(f"# {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpus, one loop"
    )
    hasher = PasswordHasher()
    hashed = hasher.hash("correct horse battery staple")
    timed_sync("argon2id hash (t=3, 64 MiB, p=4)", seconds, lambda: hasher.hash("correct horse battery"))
    timed_sync("argon2id verify", seconds, lambda: hasher.verify(hashed, "correct horse battery staple"))

    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder), appendonly=False)
        server.start()
        redis = aioredis.from_url(server.url)
        try:
            tokens = AccessTokens(
                TokenKeys("v1", os.urandom(32)), RedisSessionStore(redis), session_key=os.urandom(32)
            )
            issued = await tokens.issue(USER, Role.CLINICIAN)
            await timed_async(
                "access token issue (sign + Redis SET)", seconds, lambda: tokens.issue(USER, Role.CLINICIAN)
            )
            timed_sync(
                "access token decode (signature + claims)", seconds, lambda: tokens.decode(issued.token)
            )
            await timed_async(
                "access token verify (+ idle/denylist Lua)", seconds, lambda: tokens.verify(issued.token)
            )

            tickets = SignalTickets(RedisTicketStore(redis), os.urandom(32))
            host = Principal(Role.CLINICIAN, USER)

            async def ticket_round_trip() -> None:
                issued_ticket = await tickets.issue(host, TicketPurpose.SIGNAL, ROOM, session="jti")
                await tickets.redeem(issued_ticket.ticket, TicketPurpose.SIGNAL)

            await timed_async("signal ticket issue + GETDEL redeem", seconds, ticket_round_trip)

            unlimited = ThrottlePolicy(
                max_failures=10**9, pair_free_failures=10**9, account_free_failures=10**9,
                address_free_failures=10**9,
            )  # fmt: skip
            throttle = LoginThrottle(RedisThrottleCounters(redis), unlimited)

            async def throttle_round_trip() -> None:
                await throttle.succeeded(await throttle.begin(b"a" * 32, b"b" * 32))

            await timed_async("login throttle begin + succeeded (2 Lua calls)", seconds, throttle_round_trip)
        finally:
            await redis.aclose()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    asyncio.run(main(parser.parse_args().seconds))
