"""set_subscriptions, end to end: a real socket, the real relay and aiortc participants.

A client's grid decides what it receives: a participant with no tile on screen costs it no video (their
audio goes on), a tile brings the video back; unknown participants and absurd sizes are typed errors that
change nothing.
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


async def test_a_tile_off_screen_pauses_that_video_only_and_bad_grids_change_nothing(
    live: LiveServer,
) -> None:
    dr = await ss.clinician(live)
    scope = await ss.room(live, dr)
    host = ss.participant(live, dr.principal, scope, dr.session)
    guest = ss.participant(live, await ss.invite(live, dr, scope, "Client"), scope)
    try:
        await host.join()
        await guest.join()
        await guest.wait_message(m.Waiting)
        await host.send(m.AdmitAll())
        await guest.wait_message(m.Admitted)
        await asyncio.gather(host.start_media(), guest.start_media())
        hid = host.participant_id
        await guest.wait_frames(hid, "video", at_least=5, within=30)

        # Bad grids: typed errors, and the video keeps coming.
        assert guest.signaling is not None
        unknown = m.SetSubscriptions(
            tiles=(m.Tile(participant="pt_nobodyhere", width=320, height=180),), id=guest.signaling.next_id()
        )
        await guest.send(unknown)
        reply = await guest.wait_for(lambda msg: msg.id == unknown.id)
        assert isinstance(reply, m.ErrorMessage) and reply.code == "participant_not_found"
        twice = m.SetSubscriptions(
            tiles=(m.Tile(participant=hid, width=320, height=180),) * 2, id=guest.signaling.next_id()
        )
        await guest.send(twice)
        reply = await guest.wait_for(lambda msg: msg.id == twice.id)
        assert isinstance(reply, m.ErrorMessage) and reply.code == "bad_request"
        await guest.signaling.send_raw(
            '{"type": "set_subscriptions", "id": "huge", "tiles": '
            f'[{{"participant": "{hid}", "width": 100000, "height": 5}}]}}'
        )
        reply = await guest.wait_for(lambda msg: msg.id == "huge")
        assert isinstance(reply, m.ErrorMessage) and reply.code == "invalid_message"
        seen = guest.counter.frames(hid, "video")
        await guest.wait_frames(hid, "video", at_least=seen + 10, within=10)

        # No tile for the host: their video stops for the guest, their audio goes on.
        await guest.send(m.SetSubscriptions(tiles=()))
        audio = guest.counter.frames(hid, "audio")
        await guest.wait_frames(hid, "audio", at_least=audio + 25, within=10)  # in-flight video is in
        paused_at = guest.counter.frames(hid, "video")
        audio = guest.counter.frames(hid, "audio")
        await guest.wait_frames(hid, "audio", at_least=audio + 50, within=10)
        assert guest.counter.frames(hid, "video") == paused_at
        video = host.counter.frames(guest.participant_id, "video")  # the host's own choice is untouched
        await host.wait_frames(guest.participant_id, "video", at_least=video + 10, within=10)

        # A thumbnail tile brings it back.
        await guest.send(m.SetSubscriptions(tiles=(m.Tile(participant=hid, width=160, height=90),)))
        await guest.wait_frames(hid, "video", at_least=paused_at + 10, within=10)
    finally:
        await asyncio.gather(host.close(), guest.close(), return_exceptions=True)
