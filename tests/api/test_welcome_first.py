"""`welcome` is the first frame of every signaling socket, and no event is lost, even when a host admits at
once.

Found by ``bench/join_latency.py``: with a host that admits the moment its lobby lists a knock, events for
the new participant (``admitted``, ``roster``, ``waiting``) were queued while the join was still awaiting
Redis, so they reached the client before ``welcome`` (whose participant id the client needs to read them).
Attaching the socket later instead lost the ``admitted`` of an admission that landed while the join read
its snapshot (the client then saw ``welcome, waiting, roster`` and never ``admitted``).
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.signaling import SignalingClient
from vIOP.signaling import messages as m


async def admit_every_knock(host: SignalingClient) -> None:
    """A host that admits whoever its lobby lists, as fast as it can read."""
    admitted: set[str] = set()
    async for message in host:
        if isinstance(message, m.Lobby):
            for entry in message.waiting:
                if entry.participant_id not in admitted:
                    admitted.add(entry.participant_id)
                    await host.send(m.Admit(participant_id=entry.participant_id))


async def test_welcome_comes_first_and_admitted_is_never_lost(live_server: LiveServer) -> None:
    svc = ss.services(live_server)
    clinician = await ss.clinician(live_server)
    scope = await ss.room(live_server, clinician)
    host_url = await ss.ticket_source(live_server, clinician.principal, scope, clinician.session)()
    host = await SignalingClient.connect(host_url, origin=live_server.base_url)
    assert isinstance(await host.request(m.Join()), m.Welcome)
    admitter = asyncio.create_task(admit_every_knock(host))
    try:
        for i in range(12):
            principal = await ss.invite(live_server, clinician, scope, f"Quick {i}")
            issued = await svc.tickets.issue(principal, TicketPurpose.SIGNAL, scope)
            url = f"{live_server.ws_url}/ws/signal?ticket={issued.ticket}"
            async with await SignalingClient.connect(url, origin=live_server.base_url) as client:
                await client.send(m.Join(id="j"))
                seen: list[m.ServerMessage] = []
                while not any(isinstance(x, m.Roster) for x in seen):
                    seen.append(await client.recv(within=10))
                kinds = [type(x).__name__ for x in seen]
                assert isinstance(seen[0], m.Welcome), kinds
                assert any(isinstance(x, m.Admitted) for x in seen), kinds  # before the first roster
                await client.send(m.Leave())
    finally:
        admitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await admitter
        await host.close()
