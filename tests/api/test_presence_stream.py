"""The staff presence stream over a real socket: snapshot, then changes within 200 ms, scoped by role."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.auth.permissions import Principal, Role
from vIOP.auth.tickets import TicketPurpose
from vIOP.signaling import messages as m


async def _open(live: LiveServer, principal: Principal, session: str | None, scope: Any = None) -> Any:
    issued = await ss.services(live).tickets.issue(principal, TicketPurpose.PRESENCE, scope, session=session)
    return await connect(
        f"{live.ws_url}/ws/presence?ticket={issued.ticket}",
        origin=live.base_url,
        compression=None,
        proxy=None,
    )


async def _next(ws: Any, kind: str, within: float = 5.0, where: Any = None) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and (where is None or where(message)):
                return message


async def _staff(live: LiveServer) -> tuple[Principal, str]:
    issued = await ss.services(live).tokens.issue("us_staffmember0001", Role.STAFF)  # type: ignore[arg-type]
    return Principal(Role.STAFF, "us_staffmember0001"), issued.claims.jti


async def test_staff_sees_a_knock_with_name_and_wait(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    staff, session = await _staff(live_server)
    ws = await _open(live_server, staff, session)
    try:
        snapshot = await _next(ws, "presence_snapshot")
        assert [r["room_id"] for r in snapshot["rooms"]] == [scope.room_id]
        client = ss.participant(
            live_server, await ss.invite(live_server, host, scope, "Ana Canary"), scope, tracks=tuple
        )
        await client.join()
        event = await _next(ws, "presence_event", where=lambda e: e["event"] == "knocked")
        assert event["room_id"] == scope.room_id  # the latency figure is bench/presence.py's, not a test's
        room = await _next(ws, "presence_room")
        assert room["room"]["waiting_count"] == 1
        assert room["room"]["waiting"][0]["display_name"] == "Ana Canary"
        await client.close()
        gone = await _next(ws, "presence_event", where=lambda e: e["event"] in ("reconnecting", "left"))
        assert gone["participant_id"] == client.participant_id
        await ws.send(json.dumps({"type": "ping"}))
        await _next(ws, "pong")
    finally:
        await ws.close()


async def test_clinician_sees_only_own_rooms(live_server: LiveServer) -> None:
    mine = await ss.clinician(live_server, "dr.mine")
    theirs = await ss.clinician(live_server, "dr.theirs")
    my_room = await ss.room(live_server, mine)
    their_room = await ss.room(live_server, theirs)
    ws = await _open(live_server, mine.principal, mine.session)
    try:
        snapshot = await _next(ws, "presence_snapshot")
        assert [r["room_id"] for r in snapshot["rooms"]] == [my_room.room_id]
        other_client = ss.participant(
            live_server, await ss.invite(live_server, theirs, their_room, "Bo"), their_room, tracks=tuple
        )
        my_client = ss.participant(
            live_server, await ss.invite(live_server, mine, my_room, "Cy"), my_room, tracks=tuple
        )
        await other_client.join()
        await my_client.join()
        event = await _next(ws, "presence_event", where=lambda e: e["event"] == "knocked")
        assert event["room_id"] == my_room.room_id
        await other_client.close()
        await my_client.close()
    finally:
        await ws.close()


async def test_clients_never_get_presence(live_server: LiveServer) -> None:
    from vIOP.errors import Forbidden

    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    client = await ss.invite(live_server, host, scope, "Ana")
    with pytest.raises(Forbidden):
        await ss.services(live_server).tickets.issue(client, TicketPurpose.PRESENCE, scope)


async def test_logout_closes_the_users_sockets(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    presence = await _open(live_server, host.principal, host.session)
    signal = ss.participant(live_server, host.principal, scope, host.session, tracks=tuple)
    await signal.join()
    await _next(presence, "presence_snapshot")
    close_user_sockets = ss.services(live_server).live.close_user_sockets
    await close_user_sockets(host.principal.subject)
    closed = await signal.wait_closed()
    assert closed.close_code == 1000
    async with asyncio.timeout(5):
        await presence.wait_closed()
    assert presence.close_code == 1000
    await signal.close()
    assert m.PROTOCOL_VERSION == 1
