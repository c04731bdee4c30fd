"""Presence latency: from a client's knock to the staff stream's `presence_event`, over real sockets.

    .venv/bin/python bench/presence.py [--knocks 100]

Starts its own redis-server and an in-process server on a free loopback port, opens one staff presence
stream, then knocks N clients one after another (each knock is a new signaling socket), timing the
`knocked` event on the stream. Prints p50/p99/max and the command. Bounded: N knocks, then it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scenarios import signaling as ss
from bench.scenarios.live_server import run_live_server, test_settings
from vIOP.auth.permissions import Principal, Role
from vIOP.auth.tickets import TicketPurpose
from vIOP.storage.embedded_redis import EmbeddedRedis


async def main(knocks: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="viop-bench-presence-"))
    redis = EmbeddedRedis(tmp / "redis", appendonly=False)
    redis.start()
    try:
        data = tmp / "var"
        data.mkdir()
        async with run_live_server(test_settings(data, redis.url)) as live:
            host = await ss.clinician(live)
            scope = await ss.room(live, host, capacity=50)
            svc = ss.services(live)
            issued = await svc.tokens.issue("us_benchstaff00001", Role.STAFF)  # type: ignore[arg-type]
            ticket = await svc.tickets.issue(
                Principal(Role.STAFF, "us_benchstaff00001"),
                TicketPurpose.PRESENCE,
                None,
                session=issued.claims.jti,
            )
            ws = await connect(
                f"{live.ws_url}/ws/presence?ticket={ticket.ticket}",
                origin=live.base_url,
                compression=None,
                proxy=None,
            )
            await ws.recv()  # snapshot
            samples: list[float] = []
            clients = []
            for i in range(knocks):
                client = ss.participant(
                    live, await ss.invite(live, host, scope, f"Bench {i}"), scope, tracks=tuple
                )
                clients.append(client)
                started = time.perf_counter()
                await client.join()
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "presence_event" and message["event"] == "knocked":
                        samples.append((time.perf_counter() - started) * 1000)
                        break
                if len(clients) >= 40:  # keep the lobby bounded: older knockers leave
                    await clients.pop(0).close()
            await ws.close()
            for client in clients:
                await client.close()
    finally:
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    samples.sort()
    p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    print(f"knock -> presence_event over {len(samples)} knocks (join round trip included):")
    print(f"  p50 {statistics.median(samples):.1f} ms   p99 {p(0.99):.1f} ms   max {samples[-1]:.1f} ms")
    print(f"  command: .venv/bin/python bench/presence.py --knocks {knocks}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--knocks", type=int, default=100)
    asyncio.run(main(parser.parse_args().knocks))
