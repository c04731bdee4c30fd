"""Active speaker, end to end: four real aiortc participants on a live server, one speaking at a time.

Each publishes a tone-or-silence track; aiortc's own sender puts each frame's RFC 6464 level in the
audio-level header extension, the relay reads it, and every participant must get ``active_speaker`` naming
the new speaker within 1 s of each change, and nothing at all while the room is silent. Someone waiting in
the lobby hears none of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import MediaStreamTrack

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.media import ToneAudioTrack
from vIOP.client.session import RoomClient
from vIOP.signaling import messages as m

CHANGE_WITHIN = 1.0  # the bound, from the moment the new speaker starts to each arrival
SILENT_FRAMES = 100  # 2 s of 20 ms audio frames from every publisher, observed while nobody speaks
TURN_FRAMES = 50  # each speaker talks on for 1 s of audio (as heard by everyone) once named


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


class Speaker:
    """A participant whose microphone can be told to talk (a fresh tone track per peer connection)."""

    def __init__(self) -> None:
        self.tone: ToneAudioTrack | None = None
        self.client: RoomClient | None = None

    def tracks(self) -> tuple[MediaStreamTrack, ...]:
        self.tone = ToneAudioTrack()
        return (self.tone,)

    def talk(self, on: bool) -> None:
        assert self.tone is not None
        self.tone.speaking = on


async def test_four_people_taking_turns_are_each_named_within_a_second_and_silence_changes_nothing(
    live: LiveServer,
) -> None:
    dr = await ss.clinician(live)
    scope = await ss.room(live, dr)
    people = [Speaker() for _ in range(4)]
    principals = [dr.principal] + [await ss.invite(live, dr, scope, f"Client {i}") for i in range(3)]
    for person, principal in zip(people, principals, strict=True):
        session = dr.session if principal is dr.principal else None
        person.client = ss.participant(live, principal, scope, session, tracks=person.tracks)
    clients = [p.client for p in people if p.client is not None]
    host, guests = clients[0], clients[1:]
    waiting = ss.participant(
        live, await ss.invite(live, dr, scope, "Waiting"), scope, tracks=Speaker().tracks
    )
    try:
        await host.join()
        for guest in guests:
            await guest.join()
            await guest.wait_message(m.Waiting)
        await host.send(m.AdmitAll())
        for guest in guests:
            await guest.wait_message(m.Admitted)
        await asyncio.gather(*(c.start_media() for c in clients))
        await waiting.join()  # knocks after the others were admitted: stays in the lobby throughout
        await waiting.wait_message(m.Waiting)
        ids = [c.participant_id for c in clients]
        for viewer in clients:  # everyone hears everyone before anyone speaks
            for pid in ids:
                if pid != viewer.participant_id:
                    await viewer.wait_frames(pid, "audio", at_least=25, within=30)
        assert all(c.received_since(m.ActiveSpeaker, 0.0) == [] for c in clients)  # silence names nobody

        for turn in (1, 3, 0, 2, 1):
            for i, person in enumerate(people):
                person.talk(i == turn)
            changed_at = time.monotonic()
            named = ids[turn]
            earlier = {client.participant_id: {id(msg) for msg in client.messages} for client in clients}
            for client in clients:
                old = earlier[client.participant_id]
                await client.wait_message(
                    m.ActiveSpeaker,
                    within=5,
                    where=lambda msg, old=old, named=named: msg.speaker == named and id(msg) not in old,
                )
                arrivals = client.received_since(m.ActiveSpeaker, changed_at)
                # The first update since the change names the new speaker, in time, and nobody else in between.
                assert [msg.speaker for _, msg in arrivals] == [named], arrivals
                at, message = arrivals[0]
                assert at - changed_at <= CHANGE_WITHIN, (turn, at - changed_at)
                assert message.recent[0] == named and len(set(message.recent)) == len(message.recent)
            for client in clients:  # a turn lasts a while: everyone hears another second of the speaker
                if client.participant_id != named:
                    heard = client.counter.frames(named, "audio")
                    await client.wait_frames(named, "audio", at_least=heard + TURN_FRAMES, within=30)

        for person in people:
            person.talk(False)
        silent_from = time.monotonic()
        before = {(c.participant_id, pid): c.counter.frames(pid, "audio") for c in clients for pid in ids}
        for client in clients:
            for pid in ids:
                if pid != client.participant_id:
                    start = before[(client.participant_id, pid)]
                    await client.wait_frames(pid, "audio", at_least=start + SILENT_FRAMES, within=30)
        for client in clients:
            assert client.received_since(m.ActiveSpeaker, silent_from) == []  # the floor stays where it was
            last = client.latest(m.ActiveSpeaker)
            assert last is not None and last.recent == (ids[1], ids[2], ids[0], ids[3])  # newest first
        assert waiting.received_since(m.ActiveSpeaker, 0.0) == []  # the lobby hears nothing of the room
    finally:
        await asyncio.gather(*(c.close() for c in [*clients, waiting]), return_exceptions=True)
