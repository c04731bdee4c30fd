"""Issue 11, smaller defects: a waiting client never shows up in the room's view, and a host's video mute
outlives a return to the lobby (real socket, real relay, aiortc clients)."""

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


def about(client: RoomClient, pid: str) -> list[m.ServerMessage]:
    return [
        msg
        for msg in client.messages
        if isinstance(msg, m.HandRaised | m.MediaChanged | m.ParticipantJoined)
        and (msg.participant.participant_id if isinstance(msg, m.ParticipantJoined) else msg.participant_id)
        == pid
    ]


def waiting_id(client: RoomClient) -> int:
    assert client.signaling is not None
    return client.signaling.next_id()


async def request(client: RoomClient, message: m.ClientMessage) -> m.ServerMessage:
    await client.send(message)
    return await client.wait_for(lambda reply: reply.id == message.id)


async def test_a_waiting_clients_hand_and_media_never_reach_the_room(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session, tracks=tuple)
    seated = ss.participant(live, await ss.invite(live, host, scope, "Ana"), scope, tracks=tuple)
    waiting = ss.participant(live, await ss.invite(live, host, scope, "Ben"), scope, tracks=tuple)
    async with closing(clinician, seated, waiting):
        await clinician.join()
        await seated.join()
        await clinician.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 1)
        await clinician.send(m.Admit(participant_id=seated.participant_id))
        await seated.wait_message(m.Admitted)
        await waiting.join()
        await waiting.wait_message(m.Waiting)

        refused = await request(waiting, m.RaiseHand(up=True, id=waiting_id(waiting)))
        assert isinstance(refused, m.ErrorMessage) and refused.code == "not_in_room"
        await waiting.send(m.SetMedia(audio=False, video=False))  # kept private until admission
        assert isinstance(await request(waiting, m.Ping(id=waiting_id(waiting))), m.Pong)  # both handled

        # What the waiting client sent would have been queued to the others before this: in order.
        await seated.send(m.RaiseHand(up=True))
        for viewer in (clinician, seated):
            await viewer.wait_message(
                m.HandRaised, where=lambda h: h.participant_id == seated.participant_id and h.up
            )
            assert about(viewer, waiting.participant_id) == []

        # Once admitted, the camera and microphone they turned off show as off.
        await clinician.send(m.Admit(participant_id=waiting.participant_id))
        await waiting.wait_message(m.Admitted)
        roster = await waiting.wait_message(m.Roster)
        assert roster is not None


async def test_a_host_video_mute_survives_return_to_lobby_and_readmission(live: LiveServer) -> None:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    clinician = ss.participant(live, host.principal, scope, host.session)
    client = ss.participant(live, await ss.invite(live, host, scope, "Ana"), scope)
    async with closing(clinician, client):
        await clinician.join()
        await client.join()
        await clinician.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 1)
        pid = client.participant_id
        await clinician.send(m.Admit(participant_id=pid))
        await client.wait_message(m.Admitted)
        await clinician.start_media()
        await client.start_media()
        await clinician.wait_frames(pid, "video", at_least=3, within=30)

        await clinician.send(m.Mute(participant_id=pid, kind=m.MediaKind.VIDEO, muted=True))
        await clinician.wait_message(m.Muted, where=lambda x: x.participant_id == pid and x.muted)
        await clinician.send(m.ReturnToLobby(participant_id=pid))
        await client.wait_message(m.ReturnedToLobby)
        await clinician.wait_message(
            m.Lobby, where=lambda lb: [e.participant_id for e in lb.waiting] == [pid]
        )
        await clinician.send(m.Admit(participant_id=pid))
        await client.wait_for(lambda msg: sum(isinstance(x, m.Admitted) for x in client.messages) >= 2)
        await client.start_media()  # a new peer connection, as a re-admitted browser makes

        def joins() -> list[m.RosterEntry]:
            return [
                msg.participant
                for msg in clinician.messages
                if isinstance(msg, m.ParticipantJoined) and msg.participant.participant_id == pid
            ]

        await clinician.wait_for(lambda _: len(joins()) >= 2, within=30)
        assert joins()[-1].video is False  # announced as muted on the way back in, not corrected later
        video_before = clinician.counter.frames(pid, "video")
        audio_before = clinician.counter.frames(pid, "audio")
        # Their audio flows again (50 frames/s): the clock for a window in which video must not.
        await clinician.wait_frames(pid, "audio", at_least=audio_before + 100, within=30)
        assert clinician.counter.frames(pid, "video") == video_before
        roster = clinician.latest(m.Roster)
        assert roster is not None
        (entry,) = [e for e in roster.participants if e.participant_id == pid]
        assert entry.video is False
