"""One app process's track scheduler, run alone: ``python -m tests.session.track_worker DATA_DIR REDIS_URL
LOBBY...``. At each lobby time (Unix seconds, the program clock set there) it runs three scheduler rounds,
then prints the rooms it made, one per line. Two of these at once are two app processes on one database
and one Redis."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.support import test_settings
from vIOP.app import close_services, open_services
from vIOP.rooms.clock import ManualClock
from vIOP.session.tracks import TrackScheduler


async def main(data_dir: str, redis_url: str, lobbies: list[float]) -> None:
    clock = ManualClock(lobbies[0])
    services = await open_services(test_settings(Path(data_dir), redis_url), clock=clock)
    try:
        scheduler = TrackScheduler(services)
        for lobby in lobbies:
            clock.now = lobby
            for _ in range(3):  # the other process races every round; later rounds find the room made
                for room in await scheduler.tick():
                    print(room, flush=True)
    finally:
        await close_services(services)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], [float(t) for t in sys.argv[3:]]))
