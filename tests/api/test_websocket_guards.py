"""Every refusal at the WebSocket door, against a real server socket: Origin, tickets, purposes."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.auth.permissions import Principal, Role
from vIOP.auth.tickets import MAC_KEY_PURPOSE, SignalTickets, TicketPurpose
from vIOP.client.signaling import ConnectRefused, SignalingClient, SignalingClosed
from vIOP.errors import Forbidden
from vIOP.signaling import messages as m
from vIOP.storage.redis_auth import RedisTicketStore


async def _ticket(
    live: LiveServer, principal: Principal, scope, purpose=TicketPurpose.SIGNAL, session=None
) -> str:
    issued = await ss.services(live).tickets.issue(principal, purpose, scope, session=session)
    return issued.ticket


async def _refused(url: str, origin: str) -> int | None:
    with pytest.raises(ConnectRefused) as info:
        await SignalingClient.connect(url, origin=origin)
    return info.value.status


async def test_valid_ticket_and_origin_open_the_socket(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = await _ticket(live_server, host.principal, scope, session=host.session)
    client = await SignalingClient.connect(
        f"{live_server.ws_url}/ws/signal?ticket={ticket}", origin=live_server.base_url
    )
    try:
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        assert welcome.role is m.Role.HOST
    finally:
        await client.close()


async def test_ticket_replay_is_refused(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    url = f"{live_server.ws_url}/ws/signal?ticket={await _ticket(live_server, host.principal, scope, session=host.session)}"
    first = await SignalingClient.connect(url, origin=live_server.base_url)
    await first.close()
    assert await _refused(url, live_server.base_url) == 403


@pytest.mark.parametrize("origin", ["http://evil.example.org", "null", "http://127.0.0.1:1"])
async def test_foreign_origin_is_refused_and_the_ticket_is_not_spent_by_it(
    live_server: LiveServer, origin: str
) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = await _ticket(live_server, host.principal, scope, session=host.session)
    assert await _refused(f"{live_server.ws_url}/ws/signal?ticket={ticket}", origin) == 403


@pytest.mark.parametrize("ticket", ["", "nope", "vtk_" + "A" * 43, "vtk_" + "é" * 43])
async def test_malformed_and_unknown_tickets_are_refused(live_server: LiveServer, ticket: str) -> None:
    assert await _refused(f"{live_server.ws_url}/ws/signal?ticket={ticket}", live_server.base_url) == 403


async def test_expired_ticket_is_refused(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    svc = ss.services(live_server)
    # A ticket store whose clock is 31 s in the past issues a ticket that is already expired for the server.
    past = SignalTickets(
        RedisTicketStore(svc.redis),
        svc.storage.keys.derive_key(MAC_KEY_PURPOSE),
        clock=lambda: time.time() - 31,
    )
    issued = await past.issue(host.principal, TicketPurpose.SIGNAL, scope, session=host.session)
    assert (
        await _refused(f"{live_server.ws_url}/ws/signal?ticket={issued.ticket}", live_server.base_url) == 403
    )


async def test_a_presence_ticket_does_not_open_signaling_and_vice_versa(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    presence = await _ticket(live_server, host.principal, scope, TicketPurpose.PRESENCE, host.session)
    assert await _refused(f"{live_server.ws_url}/ws/signal?ticket={presence}", live_server.base_url) == 403
    signal = await _ticket(live_server, host.principal, scope, session=host.session)
    assert await _refused(f"{live_server.ws_url}/ws/presence?ticket={signal}", live_server.base_url) == 403


async def test_client_cannot_act_as_host_and_stays_connected(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    principal = await ss.invite(live_server, host, scope, "Ana")
    ticket = await _ticket(live_server, principal, scope)
    client = await SignalingClient.connect(
        f"{live_server.ws_url}/ws/signal?ticket={ticket}", origin=live_server.base_url
    )
    try:
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        for message in (m.AdmitAll(), m.Admit(participant_id=welcome.participant_id), m.End(), m.Lock()):
            reply = await client.request(message)
            assert isinstance(reply, m.ErrorMessage)
            assert reply.code == "forbidden"
        assert isinstance(await client.request(m.Ping()), m.Pong)
    finally:
        await client.close()


async def test_clinician_cannot_act_in_another_clinicians_room(live_server: LiveServer) -> None:
    owner = await ss.clinician(live_server, "dr.owner")
    other = await ss.clinician(live_server, "dr.other")
    scope = await ss.room(live_server, owner)
    with pytest.raises(Forbidden):
        await _ticket(live_server, other.principal, scope, session=other.session)


async def test_staff_cannot_get_a_signaling_ticket(live_server: LiveServer) -> None:
    owner = await ss.clinician(live_server)
    scope = await ss.room(live_server, owner)
    staff = Principal(Role.STAFF, "us_staffmember0001")
    with pytest.raises(Forbidden):
        await _ticket(live_server, staff, scope)


async def test_malformed_json_closes_1003_after_an_error(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = await _ticket(live_server, host.principal, scope, session=host.session)
    client = await SignalingClient.connect(
        f"{live_server.ws_url}/ws/signal?ticket={ticket}", origin=live_server.base_url
    )
    await client.send_raw("{not json")
    error = await client.recv()
    assert isinstance(error, m.ErrorMessage)
    with pytest.raises(SignalingClosed):
        await client.recv(within=5)
    assert client.close_code == 1003


async def test_oversized_frame_closes_1009_after_an_error(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = await _ticket(live_server, host.principal, scope, session=host.session)
    client = await SignalingClient.connect(
        f"{live_server.ws_url}/ws/signal?ticket={ticket}", origin=live_server.base_url
    )
    await client.send_raw('{"type": "ping", "pad": "' + "x" * (70 * 1024) + '"}')
    error = await client.recv()
    assert isinstance(error, m.ErrorMessage)
    with pytest.raises(SignalingClosed):
        await client.recv(within=5)
    assert client.close_code == 1009


async def test_a_session_ends_when_the_server_closes_even_if_the_client_stops_reading(
    live_server: LiveServer,
) -> None:
    """Removed, with a client that no longer reads (so it never answers the close frame): the server's
    session still ends at once and lets go of the socket's bookkeeping."""
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    clinician = ss.participant(live_server, host.principal, scope, host.session, tracks=tuple)
    principal = await ss.invite(live_server, host, scope, "Ana")
    client = await SignalingClient.connect(
        f"{live_server.ws_url}/ws/signal?ticket={await _ticket(live_server, principal, scope)}",
        origin=live_server.base_url,
    )
    try:
        await clinician.join()
        welcome = await client.request(m.Join())
        assert isinstance(welcome, m.Welcome)
        await clinician.send(m.Admit(participant_id=welcome.participant_id))
        await client.expect(m.Admitted)
        client._ws.transport.pause_reading()  # a client that stops reading: no close reply will come
        await clinician.send(m.Remove(participant_id=welcome.participant_id))
        await clinician.wait_message(
            m.ParticipantLeft, where=lambda msg: msg.participant_id == welcome.participant_id
        )
        user_sockets = ss.services(live_server).live.user_sockets
        for _ in range(100):  # bounded: 5 s
            if principal.subject not in user_sockets:
                break
            await asyncio.sleep(0.05)
        assert principal.subject not in user_sockets
    finally:
        client._ws.transport.abort()
        await clinician.close()


async def test_a_draining_server_answers_a_new_upgrade_with_503_and_spends_no_ticket(
    live_server: LiveServer,
) -> None:
    """While the process drains (its sockets closing, its rooms moving away), a new WebSocket is refused with
    HTTP 503 and the API's error body: a proxy in front of several nodes retries the same upgrade, with the
    same unspent ticket, on another node (nginx: `proxy_next_upstream http_503`). Before, 1013 before accept
    reached the client as a 403, which a proxy passes on."""
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = await _ticket(live_server, host.principal, scope, session=host.session)
    services = ss.services(live_server)
    await services.drain()
    url = f"{live_server.ws_url}/ws/signal?ticket={ticket}"
    assert await _refused(url, live_server.base_url) == 503
    grant = await services.tickets.redeem(ticket, TicketPurpose.SIGNAL)  # unspent: another node could take it
    assert grant.principal == host.principal
