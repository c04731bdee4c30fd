"""A whole session over the real socket: knock, lobby, admit, media both ways, moderation, reconnect.

Real parts only: uvicorn on a loopback port, real Redis, SQLite, the aiortc relay and aiortc clients with
keyframe-on-request publishers (so keyframe forwarding is exercised, not hidden by aiortc's encoder).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.session import RoomClient
from vIOP.signaling import messages as m


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


@contextlib.asynccontextmanager
async def closing(*clients: RoomClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def admitted_group(live: LiveServer, names: list[str]) -> tuple[RoomClient, list[RoomClient], Any]:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session)
    await clinician.join()
    clients = []
    for name in names:
        principal = await ss.invite(live, host, scope, name)
        client = ss.participant(live, principal, scope)
        welcome = await client.join()
        assert welcome.role is m.Role.CLIENT
        await client.wait_message(m.Waiting)
        clients.append(client)
    lobby = await clinician.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == len(names))
    assert sorted(e.display_name for e in lobby.waiting) == sorted(names)
    await clinician.send(m.AdmitAll())
    await asyncio.gather(*(c.wait_message(m.Admitted) for c in clients))
    await clinician.start_media()
    await asyncio.gather(*(c.start_media() for c in clients))
    return clinician, clients, scope


async def everyone_sees_everyone(people: list[RoomClient], within: float = 30.0) -> None:
    async def sees(viewer: RoomClient, other: RoomClient) -> None:
        await viewer.wait_frames(other.participant_id, "video", at_least=3, within=within)
        await viewer.wait_frames(other.participant_id, "audio", at_least=3, within=within)

    await asyncio.gather(*(sees(a, b) for a in people for b in people if a is not b))


async def test_group_of_clinician_and_three_clients_all_receive_each_other(live: LiveServer) -> None:
    clinician, clients, _ = await admitted_group(live, ["Ana", "Ben", "Cy"])
    async with closing(clinician, *clients):
        await everyone_sees_everyone([clinician, *clients])
        roster = clinician.latest(m.Roster)
        assert roster is not None


async def test_late_joiner_is_seen_by_all_and_a_leaver_does_not_disturb_the_rest(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session)
    await clinician.join()
    await clinician.start_media()
    clients = []
    for name in ["Ana", "Ben"]:
        client = ss.participant(live, await ss.invite(live, host, scope, name), scope)
        await client.join()
        await client.wait_message(m.Waiting)
        await clinician.send(m.Admit(participant_id=client.welcome.participant_id))  # type: ignore[union-attr]
        await client.wait_message(m.Admitted)
        await client.start_media()
        clients.append(client)
    late = ss.participant(live, await ss.invite(live, host, scope, "Dee"), scope)
    async with closing(clinician, *clients, late):
        await everyone_sees_everyone([clinician, *clients])
        await late.join()
        await late.wait_message(m.Waiting)
        await clinician.send(m.Admit(participant_id=late.participant_id))
        await late.wait_message(m.Admitted)
        await late.start_media()
        await everyone_sees_everyone([clinician, *clients, late])

        leaver = clients[0]
        await leaver.send(m.Leave())
        closed = await leaver.wait_closed()
        assert closed.close_code == 1000
        for other in (clinician, clients[1], late):
            left = await other.wait_message(
                m.ParticipantLeft, where=lambda msg: msg.participant_id == leaver.participant_id
            )
            assert left.reason is m.LeaveReason.LEFT
        stayers = [clinician, clients[1], late]
        before = {
            (a.participant_id, b.participant_id): a.counter.frames(b.participant_id, "video")
            for a in stayers
            for b in stayers
            if a is not b
        }
        for (viewer_id, publisher_id), count in before.items():
            viewer = next(p for p in stayers if p.participant_id == viewer_id)
            await viewer.wait_frames(publisher_id, "video", at_least=count + 10, within=30)


async def test_one_to_one_room(live: LiveServer) -> None:
    from vIOP.rooms.room import RoomKind

    host = await ss.clinician(live)
    scope = await ss.room(live, host, RoomKind.INDIVIDUAL, capacity=1)
    clinician = ss.participant(live, host.principal, scope, host.session)
    client = ss.participant(live, await ss.invite(live, host, scope, "Eve"), scope)
    async with closing(clinician, client):
        await clinician.join()
        await clinician.start_media()
        await client.join()
        waiting = await client.wait_message(m.Waiting)
        assert waiting.position == 1
        await clinician.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        await client.start_media()
        await everyone_sees_everyone([clinician, client])


async def test_host_mute_stops_that_audio_at_every_receiver(live: LiveServer) -> None:
    clinician, clients, _ = await admitted_group(live, ["Ana", "Ben"])
    async with closing(clinician, *clients):
        await everyone_sees_everyone([clinician, *clients])
        target, other = clients
        await clinician.send(m.Mute(participant_id=target.participant_id))
        for viewer in (clinician, other, target):
            await viewer.wait_message(
                m.Muted, where=lambda msg: msg.participant_id == target.participant_id and msg.muted
            )
        await asyncio.sleep(0.3)  # frames already in flight when the mute landed
        frozen = {
            v.participant_id: v.counter.frames(target.participant_id, "audio") for v in (clinician, other)
        }
        # Audio from the others keeps flowing meanwhile (50 frames/s), so a window is easy to observe.
        await other.wait_frames(
            clinician.participant_id,
            "audio",
            at_least=other.counter.frames(clinician.participant_id, "audio") + 50,
        )
        for viewer in (clinician, other):
            assert viewer.counter.frames(target.participant_id, "audio") == frozen[viewer.participant_id]
        # Video of the muted participant is untouched.
        await other.wait_frames(
            target.participant_id, "video", at_least=other.counter.frames(target.participant_id, "video") + 5
        )


async def test_removal_stops_media_within_one_second(live: LiveServer) -> None:
    clinician, clients, _ = await admitted_group(live, ["Ana", "Ben"])
    async with closing(clinician, *clients):
        await everyone_sees_everyone([clinician, *clients])
        target, other = clients
        started = asyncio.get_running_loop().time()
        await clinician.send(m.Remove(participant_id=target.participant_id))
        await target.wait_message(m.Removed)
        closed = await target.wait_closed()
        assert closed.close_code == 1000
        await other.wait_message(
            m.ParticipantLeft, where=lambda msg: msg.participant_id == target.participant_id
        )
        # Within one second of the remove, nothing more arrives from them anywhere.
        await asyncio.sleep(max(0.0, 1.0 - (asyncio.get_running_loop().time() - started)))
        frozen = {
            v.participant_id: (
                v.counter.frames(target.participant_id, "video"),
                v.counter.frames(target.participant_id, "audio"),
            )
            for v in (clinician, other)
        }
        await other.wait_frames(
            clinician.participant_id,
            "audio",
            at_least=other.counter.frames(clinician.participant_id, "audio") + 50,
        )
        for viewer in (clinician, other):
            now = (
                viewer.counter.frames(target.participant_id, "video"),
                viewer.counter.frames(target.participant_id, "audio"),
            )
            assert now == frozen[viewer.participant_id]


async def test_reconnect_with_resume_token_keeps_the_participant(live: LiveServer) -> None:
    clinician, clients, _ = await admitted_group(live, ["Ana"])
    (client,) = clients
    async with closing(clinician, client):
        await everyone_sees_everyone([clinician, client])
        pid = client.participant_id
        await client.drop()
        await clinician.wait_message(m.Reconnecting, where=lambda msg: msg.participant_id == pid)
        welcome = await client.join(resume=True)
        assert welcome.resumed
        assert welcome.participant_id == pid
        await client.wait_message(m.Admitted)
        await client.start_media()  # a new peer connection (aiortc has no ICE restart)
        seen = clinician.counter.frames(pid, "video")
        await clinician.wait_frames(pid, "video", at_least=seen + 5)
        await client.wait_frames(
            clinician.participant_id,
            "video",
            at_least=client.counter.frames(clinician.participant_id, "video") + 5,
        )


async def test_second_connection_of_the_same_client_is_refused(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    principal = await ss.invite(live, host, scope, "Ana")
    first = ss.participant(live, principal, scope, tracks=tuple)
    second = ss.participant(live, principal, scope, tracks=tuple)
    async with closing(first, second):
        await first.join()
        with pytest.raises(RuntimeError, match="already_connected"):
            await second.join()
