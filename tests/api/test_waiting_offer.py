"""What a client that offers media before it is admitted gets (docs/PROTOCOL.md, ``offer``)."""

from __future__ import annotations

import asyncio

from tests.api import signal_support as ss
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.session import RoomClient
from vIOP.client.signaling import SignalingClient
from vIOP.signaling import messages as m

_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def test_an_offer_from_the_waiting_room_is_a_conflict_and_the_socket_stays(live_server_factory) -> None:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as live:
        svc = ss.services(live)
        clinician = await ss.clinician(live)
        scope = await ss.room(live, clinician)
        host = RoomClient(
            ss.ticket_source(live, clinician.principal, scope, clinician.session), origin=live.base_url
        )
        issued = await svc.tickets.issue(
            await ss.invite(live, clinician, scope, "Early Bird"), TicketPurpose.SIGNAL, scope
        )
        waiting = await SignalingClient.connect(
            f"{live.ws_url}/ws/signal?ticket={issued.ticket}", origin=live.base_url
        )
        try:
            await host.join()
            assert isinstance(await waiting.request(m.Join()), m.Welcome)
            await waiting.expect(m.Waiting)
            reply = await waiting.request(m.Offer(id=7, sdp=_SDP))
            assert reply == m.ErrorMessage(
                code="conflict", message="media starts once you are admitted", id=7
            )
            assert isinstance(await waiting.request(m.Ping()), m.Pong)  # still connected, still waiting
        finally:
            await asyncio.gather(host.close(), waiting.close(), return_exceptions=True)
