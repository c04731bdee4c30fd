"""Room store figures on a real redis-server (own instance, unix socket): per-operation latency of the room
use cases, heartbeats per second, a presence snapshot over many rooms, and cross-process event latency.

    .venv/bin/python bench/rooms.py [--rooms 50] [--clients 12]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from vIOP.ids import ClientId, UserId, new_room_id
from vIOP.rooms.events import Knocked
from vIOP.rooms.presence import Viewer
from vIOP.rooms.room import RoomKind
from vIOP.rooms.service import RoomService
from vIOP.storage.embedded_redis import EmbeddedRedis
from vIOP.storage.redis_bus import RedisEventBus
from vIOP.storage.redis_rooms import RedisPresenceStore, RedisRoomStore
from vIOP.storage.sealing import AesGcmSealer

HOST = UserId("us_bench")


def service(
    client: aioredis.Redis, sealer: AesGcmSealer
) -> tuple[RoomService, RedisRoomStore, RedisEventBus]:
    store = RedisRoomStore(client, sealer)
    return RoomService(store, RedisPresenceStore(client)), store, RedisEventBus(client, store.stream)


class Timer:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    async def __call__(self, name: str, work: Callable[[], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        result = await work()
        self.samples.setdefault(name, []).append(time.perf_counter() - start)
        return result

    def report(self) -> None:
        print(f"{'operation':<22}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'ops/s':>10}")
        for name, xs in self.samples.items():
            xs.sort()
            p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
            print(
                f"{name:<22}{len(xs):>6}{statistics.median(xs) * 1e3:>10.2f}{p99 * 1e3:>10.2f}{len(xs) / sum(xs):>10.0f}"
            )


async def main(rooms: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp), appendonly=False)
        server.start()
        try:
            await run(server, rooms, clients)
        finally:
            server.stop()


async def race(a: RoomService, b: RoomService, store_a: RedisRoomStore, label: str) -> None:
    room_id = new_room_id()
    await a.open_room(room_id, kind=RoomKind.GROUP, host_ids=frozenset({HOST}), capacity=5)
    host = await a.host_enter(room_id, user_id=HOST, display_name="Dr")
    assert host.participant is not None
    knocks = [await b.knock(room_id, subject=ClientId(f"cx_{n}"), display_name="C") for n in range(50)]
    store_a.lost_races = 0
    start = time.perf_counter()
    results = await asyncio.gather(
        *(
            (a if n % 2 else b).admit(room_id, by=host.participant.id, participant_id=k.participant.id)
            for n, k in enumerate(knocks)
            if k.participant is not None
        ),
        return_exceptions=True,
    )
    took = time.perf_counter() - start
    won = sum(1 for r in results if not isinstance(r, BaseException))
    print(
        f"50 concurrent admits for 5 seats ({label}): {won} admitted, all answered in {took * 1e3:.0f} ms, "
        f"{store_a.lost_races} lost races on one of the two clients"
    )


async def run(server: EmbeddedRedis, rooms: int, clients: int) -> None:
    sealer = AesGcmSealer(os.urandom(32))
    ca, cb = aioredis.from_url(server.url), aioredis.from_url(server.url)
    a, store_a, _ = service(ca, sealer)
    b, _, bus_b = service(cb, sealer)
    timer = Timer()
    room_ids = []
    for _ in range(rooms):  # sequential: the latency of one operation on an idle store
        room_id = new_room_id()
        room_ids.append(room_id)
        await timer(
            "open_room", lambda r=room_id: a.open_room(r, kind=RoomKind.GROUP, host_ids=frozenset({HOST}))
        )
        host = await timer("host_enter", lambda r=room_id: a.host_enter(r, user_id=HOST, display_name="Dr"))
        await timer("join", lambda r=room_id, h=host: a.join(r, h.participant.id))
        for n in range(clients):
            t = await timer(
                "knock",
                lambda r=room_id, n=n: a.knock(r, subject=ClientId(f"cl_{n}"), display_name=f"Client {n}"),
            )
            await timer(
                "admit",
                lambda r=room_id, h=host, t=t: a.admit(
                    r, by=h.participant.id, participant_id=t.participant.id
                ),
            )
            await timer("join", lambda r=room_id, t=t: a.join(r, t.participant.id))
    room = await store_a.get(room_ids[0])
    for p in room.participants:
        for _ in range(200):
            await timer("heartbeat", lambda p=p: a.heartbeat(room_ids[0], p.id))
    for _ in range(20):
        await timer(f"snapshot ({rooms} rooms)", lambda: a.snapshot(Viewer(HOST, sees_all_rooms=True)))
    timer.report()

    # contention: 50 admits racing for 5 seats, from two clients (the second round has warm connection pools)
    for round_ in ("cold pools", "warm pools"):
        await race(a, b, store_a, round_)

    # cross-process event latency: knock on A, seen by a subscriber on B
    sub = await bus_b.subscribe()
    lat = []
    target = room_ids[1]
    for n in range(200):
        start = time.perf_counter()
        await a.knock(target, subject=ClientId(f"cy_{n}"), display_name="Late")
        while not isinstance(await anext(sub), Knocked):
            pass
        lat.append(time.perf_counter() - start)
    lat.sort()
    print(
        f"knock on A -> event on B: p50 {statistics.median(lat) * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms"
    )
    await sub.close()
    await ca.aclose()
    await cb.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--clients", type=int, default=12)
    args = parser.parse_args()
    print(f"$ {' '.join([sys.executable.split('/')[-1], *sys.argv])}")
    asyncio.run(main(args.rooms, args.clients))
