"""Shutdown with a real redis-server: the sweeper ends between rounds, never cancelled inside one.

Redis is held still with ``CLIENT PAUSE`` (every client's next command waits), so the sweeper is caught
inside a round, waiting on Redis, when shutdown starts. A cancel landing there cut the round short (and a
cancel swallowed inside a library call once left the loop running and shutdown waiting for ever).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.support import test_settings
from vIOP.app import close_services, open_services, start_live
from vIOP.session.services import STOP_GRACE_SECONDS, Services

PAUSE_MS = 1500


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The chain of coroutines ``task`` is suspended in, outermost first (qualified names)."""
    names: list[str] = []
    step: Coroutine[Any, Any, Any] | Generator[Any, Any, Any] | None = task.get_coro()  # type: ignore[assignment]
    while step is not None:
        frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
        if frame is not None:
            names.append(frame.f_code.co_qualname)
        step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
    return names


def _task(services: Services, name: str) -> asyncio.Task[None]:
    (task,) = [t for t in services.background if t.get_name() == name]
    return task


async def test_shutdown_lets_a_sweep_round_in_progress_finish_and_ends_the_sweeper_between_rounds(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = test_settings(data_dir, redis_url, heartbeat_seconds=1, presence_expiry_seconds=2)
    services = await open_services(settings)
    closed = False
    try:
        start_live(services)
        sweeper = _task(services, "sweeper")
        await redis_client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
        paused_at = time.monotonic()
        async with asyncio.timeout(5):  # the sweeper runs every 0.5 s: its next round meets the pause
            while "RoomService.sweep" not in _awaiting(sweeper):
                await asyncio.sleep(0.01)
        assert time.monotonic() - paused_at < PAUSE_MS / 1000, "the round was not caught inside the pause"

        started = time.monotonic()
        await asyncio.wait_for(close_services(services), 3 * STOP_GRACE_SECONDS)
        closed = True
        took = time.monotonic() - started
    finally:
        if not closed:
            await close_services(services)
    assert sweeper.done() and not sweeper.cancelled(), "the sweeper was cancelled inside its round"
    assert sweeper.exception() is None
    assert services.background == set()
    print(f"\nshutdown with a sweep round waiting on a paused Redis: {took:.2f} s")
    assert took < STOP_GRACE_SECONDS  # the round ended when Redis answered, well before the fallback


async def test_a_round_stuck_past_the_grace_is_cancelled_and_shutdown_goes_on(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = test_settings(data_dir, redis_url, heartbeat_seconds=1, presence_expiry_seconds=2)
    services = await open_services(settings)
    try:
        start_live(services)
        sweeper = _task(services, "sweeper")
        await redis_client.execute_command("CLIENT", "PAUSE", 4000, "ALL")
        async with asyncio.timeout(5):
            while "RoomService.sweep" not in _awaiting(sweeper):
                await asyncio.sleep(0.01)
        started = time.monotonic()
        await services.stop_background(grace=0.3)
        took = time.monotonic() - started
        assert sweeper.cancelled()  # the fallback: Redis did not answer within the grace
        assert took < 1.5, took
    finally:
        await redis_client.execute_command("CLIENT", "UNPAUSE")
        await close_services(services)


async def test_a_task_that_swallows_its_cancel_cannot_hang_shutdown(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    services = await open_services(test_settings(data_dir, redis_url))
    release = asyncio.Event()
    cancelled = 0

    async def stubborn() -> None:  # like a library call that catches the cancel and carries on
        nonlocal cancelled
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled += 1

    try:
        start_live(services)
        task = services.spawn(stubborn(), "stubborn", stops_between_rounds=True)
        started = time.monotonic()
        await services.stop_background(grace=0.2)
        took = time.monotonic() - started
        assert cancelled == 1 and not task.done()  # asked, cancelled once, then left behind
        assert 0.4 <= took < 1.5, took
        assert all(t.done() for t in services.background - {task})  # every other loop ended
    finally:
        release.set()
        await close_services(services)
