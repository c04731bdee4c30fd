"""Issue 15, "I need to talk", over a real uvicorn socket with Redis and SQLite: a client's private request for a
clinician is seen by the room's hosts and by staff on the presence dashboard, never by other clients (asserted
on their sockets: every frame they received); it stays until a host acknowledges it (a host who reconnects
sees it again: it is kept in the room in Redis); it is audited with ids only; bad senders get typed errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from tests.api import signal_support as ss
from tests.api.support import Api
from tests.support import LiveServer
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.session import RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.schema import audit_log

ASKER_NAME = "Quorra Canary"


@dataclass
class Group:
    live: LiveServer
    host: RoomClient
    asker: RoomClient
    other: RoomClient
    waiting: RoomClient
    staff: Any  # the staff presence stream
    room_id: RoomId
    host_principal: Principal
    host_session: str

    async def close(self) -> None:
        await asyncio.gather(
            *(c.close() for c in (self.host, self.asker, self.other, self.waiting)), return_exceptions=True
        )
        await self.staff.close()


async def next_presence(ws: Any, kind: str, where: Any = None, within: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and (where is None or where(message)):
                return message


def seat_of(room_message: dict[str, Any], pid: str) -> dict[str, Any]:
    return next(s for s in room_message["room"]["seated"] if s["participant_id"] == pid)


@pytest.fixture
async def group(live_server: LiveServer) -> AsyncIterator[Group]:
    live = live_server
    clinician = await ss.clinician(live, "dr.talk.host", "Dr. Host")
    scope = await ss.room(live, clinician)
    staff_id = "us_staffmember0015"
    staff_session = (await ss.services(live).tokens.issue(staff_id, Role.STAFF)).claims.jti  # type: ignore[arg-type]
    ticket = await ss.services(live).tickets.issue(
        Principal(Role.STAFF, staff_id), TicketPurpose.PRESENCE, None, session=staff_session
    )
    staff = await connect(
        f"{live.ws_url}/ws/presence?ticket={ticket.ticket}",
        origin=live.base_url,
        compression=None,
        proxy=None,
    )
    await next_presence(staff, "presence_snapshot")
    host = ss.participant(live, clinician.principal, scope, clinician.session, tracks=tuple)
    asker = ss.participant(live, await ss.invite(live, clinician, scope, ASKER_NAME), scope, tracks=tuple)
    other = ss.participant(live, await ss.invite(live, clinician, scope, "Other"), scope, tracks=tuple)
    waiting = ss.participant(live, await ss.invite(live, clinician, scope, "Waiter"), scope, tracks=tuple)
    g = Group(live, host, asker, other, waiting, staff, scope.room_id, clinician.principal, clinician.session)
    try:
        await host.join()
        for client in (asker, other):
            await client.join()
            await client.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=client.participant_id))
            await client.wait_message(m.Admitted)
        await waiting.join()
        await waiting.wait_message(m.Waiting)
        yield g
    finally:
        await g.close()


def talk_frames(client: RoomClient, pid: str) -> list[m.ServerMessage]:
    """What ``client`` received that tells of ``pid``'s request: a talk_request, or a flagged roster line."""
    found: list[m.ServerMessage] = []
    for message in client.messages:
        if isinstance(message, m.TalkRequest) and message.participant_id == pid:
            found.append(message)
        if isinstance(message, m.Roster | m.Lobby):
            entries = message.participants if isinstance(message, m.Roster) else message.waiting
            found += [message for e in entries if e.participant_id == pid and e.talk_requested]
    return found


async def audit_rows(live: LiveServer, action: str) -> list[Any]:
    services = ss.services(live)
    for _ in range(250):
        await services.audit_outbox.flush()
        async with services.storage.db.read() as conn:
            rows = list((await conn.execute(select(audit_log).where(audit_log.c.action == action))).all())
        if rows:
            return rows
        await asyncio.sleep(0.02)
    return []


async def test_hosts_and_staff_see_it_other_clients_never_and_a_host_clears_it(group: Group) -> None:
    asker_id = group.asker.participant_id
    await group.asker.send(m.NeedToTalk())
    seen = await group.host.wait_message(m.TalkRequest)
    assert seen == m.TalkRequest(participant_id=asker_id, pending=True)
    mine = await group.asker.wait_message(m.TalkRequest)  # the asker's own confirmation
    assert mine.pending
    event = await next_presence(group.staff, "presence_event", where=lambda e: e["event"] == "talk_requested")
    assert event["participant_id"] == asker_id and event["room_id"] == group.room_id
    room = await next_presence(
        group.staff, "presence_room", where=lambda r: seat_of(r, asker_id)["talk_requested_since"] is not None
    )
    assert seat_of(room, asker_id)["talk_requested_since"] is not None
    async with httpx.AsyncClient(base_url=group.live.base_url, trust_env=False) as http:
        desk = await Api(group.live, http).user(Role.STAFF)
        listed = await http.get("/api/v1/presence", headers=desk.headers)
    seats = {s["participant_id"]: s for r in listed.json()["rooms"] for s in r["seated"]}
    assert seats[asker_id]["talk_requested_since"] is not None  # the HTTP view says so too
    assert seats[group.other.participant_id]["talk_requested_since"] is None

    # It stays: a host who reconnects (a new socket, their seat taken back) is told again.
    await group.host.close()
    group.host = ss.participant(
        group.live, group.host_principal, scope_of(group), group.host_session, tracks=tuple
    )
    await group.host.join()
    again = await group.host.wait_message(m.TalkRequest)
    assert again == m.TalkRequest(participant_id=asker_id, pending=True)

    # Bad senders: a client cannot acknowledge; a clinician does not ask; acknowledging nobody's request.
    await group.other.send(m.AcknowledgeNeed(participant_id=asker_id, id="ack-by-client"))
    refused = await group.other.wait_message(m.ErrorMessage, where=lambda e: e.id == "ack-by-client")
    assert refused.code == "forbidden"
    await group.host.send(m.NeedToTalk(id="host-asks"))
    refused = await group.host.wait_message(m.ErrorMessage, where=lambda e: e.id == "host-asks")
    assert refused.code == "forbidden"
    other_id = group.other.participant_id
    await group.host.send(m.AcknowledgeNeed(participant_id=other_id, id="ack-nobody"))
    refused = await group.host.wait_message(m.ErrorMessage, where=lambda e: e.id == "ack-nobody")
    assert refused.code == "no_talk_request"
    stored = (await ss.services(group.live).rooms.room(group.room_id)).participant(asker_id)  # type: ignore[arg-type]
    assert stored.talk_requested_at is not None  # none of that cleared it

    await group.host.send(m.AcknowledgeNeed(participant_id=asker_id))
    cleared = await group.asker.wait_message(m.TalkRequest, where=lambda t: not t.pending)
    assert cleared.participant_id == asker_id
    await group.host.wait_message(m.TalkRequest, where=lambda t: not t.pending)
    await next_presence(group.staff, "presence_event", where=lambda e: e["event"] == "talk_acknowledged")
    await next_presence(
        group.staff, "presence_room", where=lambda r: seat_of(r, asker_id)["talk_requested_since"] is None
    )
    stored = (await ss.services(group.live).rooms.room(group.room_id)).participant(asker_id)  # type: ignore[arg-type]
    assert stored.talk_requested_at is None

    # Never other clients: not the seated one, not the one waiting in the lobby (every frame they got).
    await group.other.send(m.Ping(id="settle"))
    await group.other.wait_message(m.Pong, where=lambda p: p.id == "settle")
    for bystander in (group.other, group.waiting):
        assert talk_frames(bystander, asker_id) == []
        frames = b"".join(msgspec.json.encode(message) for message in bystander.messages)
        assert b'"type":"talk_request"' not in frames and b'"talk_requested":true' not in frames

    # Audited with ids only: the client's id and their participant id, the acknowledging host's.
    asked = await audit_rows(group.live, "room.need_to_talk")
    done = [(r.actor_role, r.object_type, r.object_id) for r in asked if r.outcome == "success"]
    assert done == [("client", "participant", asker_id)]
    refusals = [(r.actor_id, r.object_id) for r in asked if r.outcome == "denied"]
    assert refusals == [(group.host_principal.subject, group.room_id)]  # the clinician who tried to ask
    acked = await audit_rows(group.live, "room.need_acknowledged")
    success = [r for r in acked if r.outcome == "success"]
    assert [(r.actor_id, r.object_id) for r in success] == [(group.host_principal.subject, asker_id)]
    for row in [*asked, *acked]:
        assert ASKER_NAME not in json.dumps([str(v) for v in row._mapping.values()])


async def test_a_waiting_client_may_ask_and_the_host_sees_it_in_the_lobby(group: Group) -> None:
    waiting_id = group.waiting.participant_id
    await group.waiting.send(m.NeedToTalk())
    await group.host.wait_message(m.TalkRequest, where=lambda t: t.participant_id == waiting_id)
    lobby = await group.host.wait_message(m.Lobby, where=lambda lb: any(e.talk_requested for e in lb.waiting))
    assert [e.participant_id for e in lobby.waiting if e.talk_requested] == [waiting_id]
    await group.waiting.send(m.NeedToTalk())  # again while pending: nothing new
    await group.waiting.send(m.Ping(id="settle"))
    await group.waiting.wait_message(m.Pong, where=lambda p: p.id == "settle")
    assert [r.outcome for r in await audit_rows(group.live, "room.need_to_talk")] == ["success"]
    for bystander in (group.asker, group.other):
        assert talk_frames(bystander, waiting_id) == []


def scope_of(group: Group) -> RoomScope:
    return RoomScope(group.room_id, frozenset({group.host_principal.subject}))
