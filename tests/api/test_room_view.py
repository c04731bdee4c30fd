"""The room view merges the SQL directory with the live state and never writes (issue 12): a room the live
store reports ended reads as ended, and the read leaves the directory as it found it. Real redis-server,
real SQLite, and PostgreSQL when VIOP_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.backend_support import BACKENDS, api_on, sql_writes
from vIOP.auth.permissions import Role
from vIOP.ids import RoomId
from vIOP.rooms.clock import ManualClock
from vIOP.rooms.room import RoomState
from vIOP.session.room_end import RECONCILE_EVERY_SECONDS, DirectorySync
from vIOP.storage.redis_rooms import RedisKeys


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reading_a_room_that_ended_writes_nothing_to_the_directory_and_says_ended(
    backend: str, live_server_factory: Callable[..., Any]
) -> None:
    async with api_on(backend, live_server_factory) as api:
        dr, staff = await api.user(Role.CLINICIAN), await api.user(Role.STAFF)
        room = await api.create_room(dr, title="Ended before its directory knew")
        invite = await api.create_invite(dr, room["id"])
        # Only the live store knows of the end: as when the database was away when the room ended, or the
        # ending process stopped between its two writes.
        ended = await api.services.rooms.end(RoomId(room["id"]), by=None)
        assert ended.room.state is RoomState.ENDED
        with sql_writes(api.services.storage.db) as writes:
            read = await api.http.get(f"/api/v1/rooms/{room['id']}", headers=dr.headers)
            as_client = await api.http.get(
                f"/api/v1/rooms/{room['id']}", headers={"Authorization": f"Bearer {invite['invite_token']}"}
            )
            mine = await api.http.get("/api/v1/rooms", headers=dr.headers)
            everyone = await api.http.get("/api/v1/rooms", headers=staff.headers)
            refused = await api.http.post(
                f"/api/v1/rooms/{room['id']}/invites", json={"display_name": "Late"}, headers=dr.headers
            )

        assert read.status_code == 200, read.text
        assert read.json()["state"] == "ended"
        assert read.json()["ended_at"] is not None
        assert as_client.json()["state"] == "ended"
        assert mine.json() == everyone.json() == {"rooms": []}
        assert refused.status_code == 409, refused.text
        # The reads wrote their audit rows, and nothing else: no room directory write.
        assert writes, "the audit rows of the reads were expected"
        assert [w for w in writes if not w.startswith("INSERT INTO audit_log ")] == []
        record = await api.services.room_directory.get(room["id"])
        assert (record.state, record.ended_at) == ("open", None)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_restarted_process_finds_ends_the_directory_missed_and_records_them(
    backend: str, live_server_factory: Callable[..., Any]
) -> None:
    async with api_on(backend, live_server_factory) as api:
        dr = await api.user(Role.CLINICIAN)
        ended, still_open = await api.create_room(dr, title="Ended"), await api.create_room(dr, title="Open")
        t = await api.services.rooms.end(RoomId(ended["id"]), by=None)  # the directory was not told
        never_live = await api.create_room(dr, title="Gone from Redis")
        await api.services.redis.delete(
            RedisKeys().room(RoomId(never_live["id"]))
        )  # as after 6 h, or a lost Redis
        # What a process builds at start (its queue of ends died with the previous one): the reconcile
        # is due at once, and reads nothing over HTTP.
        sync = DirectorySync(api.services.room_directory, api.services.rooms.rooms)
        await sync.catch_up()
        assert sync.pending == 0 and sync.retry_in == 0
        records = {
            r["id"]: await api.services.room_directory.get(r["id"]) for r in (ended, still_open, never_live)
        }
        assert records[ended["id"]].state == "ended"
        assert records[ended["id"]].ended_at is not None
        assert abs(records[ended["id"]].ended_at.timestamp() - (t.room.ended_at or 0)) < 1
        assert records[still_open["id"]].state == "open"
        assert records[never_live["id"]].state == "open"  # nothing to go by: left as it was


async def test_the_reconcile_runs_at_start_then_every_five_minutes(
    live_server_factory: Callable[..., Any],
) -> None:
    async with api_on("sqlite", live_server_factory) as api:
        dr = await api.user(Role.CLINICIAN)
        clock = ManualClock()
        sync = DirectorySync(api.services.room_directory, api.services.rooms.rooms, clock=clock)
        await sync.catch_up()  # the one at start: nothing to do yet
        room = await api.create_room(dr)
        await api.services.rooms.end(RoomId(room["id"]), by=None)  # the directory was not told
        clock.advance(RECONCILE_EVERY_SECONDS - 1)
        await sync.catch_up()
        assert (await api.services.room_directory.get(room["id"])).state == "open"  # not due yet
        clock.advance(1)
        await sync.catch_up()
        assert (await api.services.room_directory.get(room["id"])).state == "ended"
