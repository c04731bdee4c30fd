"""A client in the waiting room hears nothing of what happens inside the room.

Found by ``bench/signaling_load.py --one-room 200``: the 149 clients waiting in the lobby received every
``hand_raised`` of the room, and with it ``participant_joined`` carries the display name of each person who
comes in: to someone not admitted (maybe about to be denied), a roster of who attends treatment.
"""

from __future__ import annotations

import asyncio

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.session import RoomClient
from vIOP.client.signaling import SignalingClient
from vIOP.signaling import messages as m

INSIDE_NEWS = (m.ParticipantJoined, m.ParticipantLeft, m.HandRaised, m.MediaChanged, m.Reconnecting, m.Muted)


async def test_the_lobby_gets_no_news_from_inside_but_hears_the_room_lock(live_server_factory) -> None:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as live:
        await _scenario(live)


async def _scenario(live: LiveServer) -> None:
    svc = ss.services(live)
    clinician = await ss.clinician(live)
    scope = await ss.room(live, clinician)
    host = RoomClient(
        ss.ticket_source(live, clinician.principal, scope, clinician.session), origin=live.base_url
    )
    inside = RoomClient(
        ss.ticket_source(live, await ss.invite(live, clinician, scope, "Inside Person"), scope, None),
        origin=live.base_url,
    )
    waiting_principal = await ss.invite(live, clinician, scope, "Waiting Person")
    issued = await svc.tickets.issue(waiting_principal, TicketPurpose.SIGNAL, scope)
    lobby = await SignalingClient.connect(
        f"{live.ws_url}/ws/signal?ticket={issued.ticket}", origin=live.base_url
    )
    try:
        await host.join()
        await host.start_media()  # the room goes live (only a live room can be locked)
        await inside.join()
        await host.send(m.Admit(participant_id=inside.participant_id))
        await inside.wait_message(m.Admitted)
        assert isinstance(await lobby.request(m.Join()), m.Welcome)
        await lobby.expect(m.Waiting)
        # Inside: someone enters with media (participant_joined with a name), raises a hand, turns the
        # camera off; the host mutes them; then the host locks the room (which the lobby must hear).
        await inside.start_media()
        await host.wait_message(m.ParticipantJoined)
        await inside.send(m.RaiseHand(up=True))
        await inside.send(m.SetMedia(video=False))
        await host.send(m.Mute(participant_id=inside.participant_id))
        await host.wait_message(m.HandRaised)  # the room itself does hear it
        await host.wait_message(m.MediaChanged)
        await host.wait_message(m.Muted)
        await host.send(m.Lock())
        await lobby.expect(m.RoomLocked, within=10)
        assert isinstance(await lobby.request(m.Ping()), m.Pong)  # all sent before it is in hand now
        heard: list[m.ServerMessage] = []
        while True:
            try:
                heard.append(await lobby.recv(within=0.2))
            except TimeoutError:
                break
        leaked = [type(x).__name__ for x in heard if isinstance(x, INSIDE_NEWS)]
        assert leaked == []
        assert not any(isinstance(x, m.Roster) for x in heard)
    finally:
        await asyncio.gather(host.close(), inside.close(), lobby.close(), return_exceptions=True)
