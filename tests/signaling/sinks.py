"""A socket stand-in for connection tests: records frames, can stall like a client that stops reading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RecordingSink:
    """Implements the FrameSink protocol (what Starlette's WebSocket offers) and records what it got."""

    def __init__(self, *, reading: bool = True) -> None:
        self.frames: list[str] = []
        self.closed_with: tuple[int, str | None] | None = None
        self.close_calls = 0
        self.reading = asyncio.Event()  # cleared: send_text blocks, like a full TCP window
        if reading:
            self.reading.set()
        self.broken = False  # True: sends raise, like a socket whose peer vanished

    async def send_text(self, data: str) -> None:
        await self.reading.wait()
        if self.broken:
            raise ConnectionResetError("peer gone")
        self.frames.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.close_calls += 1
        await self.reading.wait()
        self.closed_with = (code, reason)


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    """Bounded poll: wait until ``condition()`` holds, fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
