"""A room ended while the database takes no writes reaches the room directory once the database is back, with
no read to prompt it (issue 12): the end is kept and retried by the server, not repaired by the next GET.
Real redis-server, real SQLite (its write lock held by another process), and PostgreSQL (sessions made
read-only) when VIOP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.api.backend_support import BACKENDS, api_on, database_down, failed_writes
from tests.api.support import Api
from vIOP.auth.permissions import Role
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.signaling import messages as m
from vIOP.storage.database import SQLITE_BUSY_TIMEOUT_MS
from vIOP.storage.schema import rooms

FAILURE_WITHIN = 30.0
CAUGHT_UP_WITHIN = 30.0  # after the database is back: a retry or two (1 s backoff, sweeper every 2 s)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_room_ended_while_the_database_is_down_reaches_the_directory_without_any_read(
    backend: str, live_server_factory: Callable[..., Any], data_dir: Path
) -> None:
    async with api_on(backend, live_server_factory) as api:
        dr = await api.user(Role.CLINICIAN)
        room_id = (await api.create_room(dr, title="Ended during an outage"))["id"]
        ticket = await api.http.post("/api/v1/signal-tickets", json={"room_id": room_id}, headers=dr.headers)
        assert ticket.status_code == 200, ticket.text
        host = await SignalingClient.connect(ticket.json()["ws_url"], origin=api.live.base_url)
        assert isinstance(await host.request(m.Join()), m.Welcome)

        with failed_writes(api.services.storage.db, "rooms") as directory_update_failed:
            async with database_down(backend, data_dir):
                await host.send(m.End())
                await host.expect(m.RoomEnded)  # the room ended in Redis at once
                if backend == "sqlite":
                    # A locked SQLite fails a write only after the busy timeout, at BEGIN (no statement to
                    # watch), and ending a room writes the attendance ledger first: the lock is held until
                    # the directory write has certainly failed too (the length of this outage).
                    await asyncio.sleep(2 * SQLITE_BUSY_TIMEOUT_MS / 1000 + 3)
                else:
                    await asyncio.wait_for(directory_update_failed.wait(), FAILURE_WITHIN)
                assert (await _directory_row(api, room_id))[0] == "open"  # reads still work; no write did
        with contextlib.suppress(SignalingClosed):
            await host.close()
        live = await api.services.rooms.rooms.get(room_id)
        assert live.ended_at is not None

        # The database is back. No HTTP request from here on: only the database itself is read.
        deadline = time.monotonic() + CAUGHT_UP_WITHIN
        while (row := await _directory_row(api, room_id))[0] != "ended":
            assert time.monotonic() < deadline, "the directory never recorded the end without a read"
            await asyncio.sleep(0.1)  # a bounded poll of the database
        assert row[1] is not None and abs(row[1].timestamp() - live.ended_at) < 1


async def _directory_row(api: Api, room_id: str) -> tuple[str, datetime | None]:
    query = select(rooms.c.state, rooms.c.ended_at).where(rooms.c.id == room_id)
    async with api.services.storage.db.read() as conn:
        state, ended_at = (await conn.execute(query)).one()
    if ended_at is not None and ended_at.tzinfo is None:  # SQLite keeps no zone; the column is UTC
        ended_at = ended_at.replace(tzinfo=UTC)
    return state, ended_at
