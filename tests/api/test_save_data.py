"""Issue 13, "save data": a person chooses audio only; the relay honours it and the room is told (real
socket, real relay, aiortc clients)."""

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


def audio_only_news(client: RoomClient) -> list[m.AudioOnly]:
    return [msg for msg in client.messages if isinstance(msg, m.AudioOnly)]


async def test_save_data_stops_video_tells_the_room_and_bad_input_changes_nothing(live: LiveServer) -> None:
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
        them = clinician.participant_id
        await client.wait_frames(them, "video", at_least=3, within=30)

        # Wrong types: a typed error, and nothing changes.
        assert client.signaling is not None
        await client.signaling.send_raw('{"type": "save_data", "on": "yes", "id": 901}')
        error = await client.wait_message(m.ErrorMessage, where=lambda e: e.id == 901)
        assert error.code == "invalid_message"
        await client.signaling.send_raw('{"type": "save_data", "id": 902}')
        missing = await client.wait_message(m.ErrorMessage, where=lambda e: e.id == 902)
        assert missing.code == "invalid_message"
        before = client.counter.frames(them, "video")
        await client.wait_frames(them, "video", at_least=before + 5, within=15)  # video still flows
        assert audio_only_news(client) == [] and audio_only_news(clinician) == []

        # Save data on: the person and the clinician are told why; video to the person stops.
        await client.send(m.SaveData(on=True))
        on = m.AudioOnly(participant_id=pid, on=True, reason=m.AudioOnlyReason.SAVE_DATA)
        await client.wait_message(m.AudioOnly, where=lambda x: x == on)
        await clinician.wait_message(m.AudioOnly, where=lambda x: x == on)
        stopped = client.counter.frames(them, "video")
        audio = client.counter.frames(them, "audio")
        await client.wait_frames(them, "audio", at_least=audio + 50, within=15)  # one second of audio
        assert client.counter.frames(them, "video") <= stopped + 1  # at most one frame in flight
        # Video the person sends is not affected: the clinician still sees them.
        seen = clinician.counter.frames(pid, "video")
        await clinician.wait_frames(pid, "video", at_least=seen + 5, within=15)

        # Off again: video resumes (decodable, so it restarted at a keyframe).
        await client.send(m.SaveData(on=False))
        off = m.AudioOnly(participant_id=pid, on=False, reason=m.AudioOnlyReason.SAVE_DATA)
        await clinician.wait_message(m.AudioOnly, where=lambda x: x == off)
        await client.wait_frames(them, "video", at_least=stopped + 5, within=15)
