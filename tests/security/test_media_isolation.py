"""Media never crosses rooms: one server process relays many rooms at once.

Regression: the relay used to fan every publisher out to every participant with media in the process,
whatever their room, so a clinician in one group received the video and audio of another group's clients
(found by the hostile-input suite, tests/hostile/test_signal_fuzz_live.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.signaling import messages as m


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


async def test_two_rooms_in_one_process_never_receive_each_others_media(live: LiveServer) -> None:
    dr_a, dr_b = await ss.clinician(live, "dr.a"), await ss.clinician(live, "dr.b")
    room_a, room_b = await ss.room(live, dr_a), await ss.room(live, dr_b)
    host_a = ss.participant(live, dr_a.principal, room_a, dr_a.session)
    client_a = ss.participant(live, await ss.invite(live, dr_a, room_a, "Ana"), room_a)
    host_b = ss.participant(live, dr_b.principal, room_b, dr_b.session)
    client_b = ss.participant(live, await ss.invite(live, dr_b, room_b, "Ben"), room_b)
    people = [host_a, client_a, host_b, client_b]
    try:
        for host, client in ((host_a, client_a), (host_b, client_b)):
            await host.join()
            await client.join()
            await client.wait_message(m.Waiting)
            await host.send(m.AdmitAll())
            await client.wait_message(m.Admitted)
        await asyncio.gather(*(p.start_media() for p in people))
        # Media flows inside each room...
        await host_a.wait_frames(client_a.participant_id, "video", at_least=10, within=20)
        await host_b.wait_frames(client_b.participant_id, "video", at_least=10, within=20)
        await client_a.wait_frames(host_a.participant_id, "audio", at_least=10, within=20)
        await client_b.wait_frames(host_b.participant_id, "audio", at_least=10, within=20)
        # ...and by then nothing from the other room has reached anyone, nor was it even offered.
        room_of = {p.participant_id: room for room, ps in ((1, people[:2]), (2, people[2:])) for p in ps}
        relay = ss.services(live).relay
        assert relay is not None
        for person in people:
            mine = room_of[person.participant_id]
            for kind in ("audio", "video"):
                heard = person.counter.publishers(kind)
                assert all(room_of.get(pub) == mine for pub in heard), (person.participant_id, kind, heard)
            session = relay.session(person.participant_id)  # type: ignore[arg-type]
            assert session is not None
            offered = {slot.source.publisher for slot in session.slots if slot.source is not None}
            assert offered and all(room_of[pub] == mine for pub in offered), offered
    finally:
        await asyncio.gather(*(p.close() for p in people), return_exceptions=True)
