"""A host's removal message reaches the removed client (PROTOCOL.md: ``remove {participant_id, message?}``
-> ``removed {message?}``). Regression: the message was dropped on the way (service, event and delivery
had no field for it); found by the PHI leak scan's session (test_phi_leak_scan.py).
"""

from __future__ import annotations

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.signaling import SignalingClient
from vIOP.signaling import messages as m


async def joined(live: LiveServer, principal, scope, session=None) -> tuple[SignalingClient, m.Welcome]:
    client = await SignalingClient.connect(
        await ss.ticket_source(live, principal, scope, session)(), origin=live.base_url
    )
    welcome = await client.request(m.Join())
    assert isinstance(welcome, m.Welcome)
    return client, welcome


@pytest.mark.parametrize("message", ["Please call the front desk.", None])
async def test_the_removed_client_gets_the_hosts_message(
    live_server: LiveServer, message: str | None
) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    host_socket, _ = await joined(live_server, host.principal, scope, host.session)
    client, welcome = await joined(live_server, await ss.invite(live_server, host, scope, "Ana"), scope)
    await host_socket.send(m.Admit(participant_id=welcome.participant_id))
    await client.expect(m.Admitted)
    await host_socket.send(m.Remove(participant_id=welcome.participant_id, message=message))
    removed = await client.expect(m.Removed)
    assert removed.message == message
    await host_socket.close()


async def test_a_blank_removal_message_is_refused_and_nobody_is_removed(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    host_socket, _ = await joined(live_server, host.principal, scope, host.session)
    client, welcome = await joined(live_server, await ss.invite(live_server, host, scope, "Ana"), scope)
    await host_socket.send(m.Admit(participant_id=welcome.participant_id))
    await client.expect(m.Admitted)
    reply = await host_socket.request(m.Remove(participant_id=welcome.participant_id, message="   "))
    assert isinstance(reply, m.ErrorMessage) and reply.code == "invalid_input"
    assert isinstance(await client.request(m.Ping()), m.Pong)  # still in
    room = await ss.services(live_server).rooms.room(scope.room_id)
    assert room.participant(welcome.participant_id).is_seated  # type: ignore[arg-type]
    await host_socket.close()
    await client.close()
