"""Co-therapists (issue 15) over a real uvicorn socket, Redis and SQLite: a host adds another clinician as
co-host of a live room; the co-host gets a ticket, enters without knocking, admits, mutes and ends the room;
bad input is refused with a typed error and changes nothing; a removed co-host is out; the last host leaving
without ending keeps the room open for its clients for the grace, then it ends (injectable time)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from tests.api.support import Api, User, assert_error, bearer
from tests.hostile.frames import real_offer_sdp
from tests.support import LiveServer
from vIOP.auth.permissions import Role
from vIOP.client.session import HttpApi, RoomClient
from vIOP.client.signaling import SignalingClient
from vIOP.ids import RoomId
from vIOP.session.room_end import end_hostless_rooms
from vIOP.signaling import messages as m

GRACE = 120
COHOST_USERNAME = "dr.bea.cohost"


@dataclass
class Clinic:
    live: LiveServer
    api: Api
    tickets: HttpApi
    host: User
    cohost: User
    outsider: User
    staff_username: str
    room_id: str
    client_token: str

    def client(self, bearer_token: str) -> RoomClient:
        return RoomClient(self.tickets.ticket_source(bearer_token, self.room_id), origin=self.live.base_url)

    async def hosts(self) -> set[str]:
        record = await self.api.services.room_directory.get(self.room_id)
        live = await self.api.services.rooms.room(RoomId(self.room_id))
        assert set(live.host_ids) == set(record.host_ids)  # the two stores agree
        return set(record.host_ids)


@pytest.fixture
async def clinic(live_server_factory: Any) -> AsyncIterator[Clinic]:
    async with (
        live_server_factory(ice_host_addresses="127.0.0.1", host_absent_grace_seconds=GRACE) as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http,
    ):
        api = Api(live, http)
        host = await api.user(Role.CLINICIAN)
        cohost_account = await api.account(Role.CLINICIAN, COHOST_USERNAME, display_name="Dr. Bea")
        cohost = User(
            cohost_account, (await api.services.tokens.issue(cohost_account.id, Role.CLINICIAN)).token
        )
        outsider = await api.user(Role.CLINICIAN)
        staff_username = "staff.cohost.try"
        await api.account(Role.STAFF, staff_username)
        room_id = (await api.create_room(host))["id"]
        invite = await api.create_invite(host, room_id, display_name="Ana")
        tickets = HttpApi(live.base_url)
        try:
            yield Clinic(
                live, api, tickets, host, cohost, outsider, staff_username, room_id, invite["invite_token"]
            )
        finally:
            await tickets.close()


async def add(clinic: Clinic, who: User, username: str) -> httpx.Response:
    return await clinic.api.http.post(
        f"/api/v1/rooms/{clinic.room_id}/cohosts", json={"username": username}, headers=who.headers
    )


async def directory_state(clinic: Clinic, want: str = "ended") -> str:
    """The record's state; the end reaches SQL just after the live room (whose event the client saw): a
    bounded poll."""
    for _ in range(250):
        state = (await clinic.api.services.room_directory.get(clinic.room_id)).state
        if state == want:
            break
        await asyncio.sleep(0.02)
    return state


async def ticket_status(clinic: Clinic, who: User) -> int:
    response = await clinic.api.http.post(
        "/api/v1/signal-tickets", json={"room_id": clinic.room_id}, headers=who.headers
    )
    return response.status_code


async def test_a_cohost_admits_mutes_and_ends_the_room(clinic: Clinic) -> None:
    assert await ticket_status(clinic, clinic.cohost) == 403  # not a host yet: no way in
    added = await add(clinic, clinic.host, COHOST_USERNAME)
    assert added.status_code == 201, added.text
    assert added.json() == {"room_id": clinic.room_id, "user_id": clinic.cohost.id, "display_name": "Dr. Bea"}
    assert await clinic.hosts() == {clinic.host.id, clinic.cohost.id}
    listed = await clinic.api.http.get("/api/v1/rooms", headers=clinic.cohost.headers)
    assert [r["id"] for r in listed.json()["rooms"]] == [clinic.room_id]
    assert sorted(listed.json()["rooms"][0]["hosts"]) == sorted([clinic.host.id, clinic.cohost.id])
    rows = await clinic.api.audit_rows("room.cohost_added", "success")
    assert [(r["actor_id"], r["object_type"], r["object_id"]) for r in rows] == [
        (clinic.host.id, "user", clinic.cohost.id)
    ]

    cohost, client = clinic.client(clinic.cohost.token), clinic.client(clinic.client_token)
    try:
        welcome = await cohost.join()
        assert welcome.role is m.Role.HOST  # entered without knocking
        await client.join()
        await client.wait_message(m.Waiting)
        await cohost.wait_message(m.Lobby, where=lambda lobby: len(lobby.waiting) == 1)
        await cohost.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        await cohost.send(m.Mute(participant_id=client.participant_id))
        muted = await client.wait_message(m.Muted)
        assert muted.participant_id == client.participant_id and muted.muted
        await cohost.send(m.End())
        await client.wait_message(m.RoomEnded)
        await client.wait_closed()
        assert not [msg for msg in cohost.messages if isinstance(msg, m.ErrorMessage)]
        # A co-host is named by username only to the server: never to a client.
        assert all(COHOST_USERNAME.encode() not in msgspec.json.encode(msg) for msg in client.messages)
    finally:
        await asyncio.gather(cohost.close(), client.close(), return_exceptions=True)
    assert await directory_state(clinic) == "ended"


async def test_bad_cohost_requests_are_typed_errors_and_change_nothing(clinic: Clinic) -> None:
    assert (await add(clinic, clinic.host, COHOST_USERNAME)).status_code == 201
    hosts = await clinic.hosts()
    assert_error(await add(clinic, clinic.host, clinic.staff_username), 400, "not_a_clinician")
    assert_error(await add(clinic, clinic.host, "nobody.by.this.name"), 400, "not_a_clinician")
    assert_error(await add(clinic, clinic.host, "x"), 400, "not_a_clinician")  # not even a username
    assert_error(await add(clinic, clinic.host, COHOST_USERNAME), 409, "already_a_host")
    assert_error(await add(clinic, clinic.outsider, COHOST_USERNAME), 403, "forbidden")  # not their room
    client = await clinic.api.http.post(
        f"/api/v1/rooms/{clinic.room_id}/cohosts",
        json={"username": COHOST_USERNAME},
        headers=bearer(clinic.client_token),
    )
    assert_error(client, 403, "forbidden")
    odd = await clinic.api.http.post(
        f"/api/v1/rooms/{clinic.room_id}/cohosts", json={"user": "x"}, headers=clinic.host.headers
    )
    assert_error(odd, 400, "bad_request")
    remove = f"/api/v1/rooms/{clinic.room_id}/cohosts/{clinic.host.id}"  # the room's creator
    assert_error(await clinic.api.http.delete(remove, headers=clinic.cohost.headers), 409, "not_a_cohost")
    remove = f"/api/v1/rooms/{clinic.room_id}/cohosts/{clinic.outsider.id}"
    assert_error(await clinic.api.http.delete(remove, headers=clinic.host.headers), 409, "not_a_cohost")
    assert await clinic.hosts() == hosts
    denied = await clinic.api.audit_rows("room.cohost_added", "denied")
    assert {r["actor_id"] for r in denied} >= {clinic.outsider.id}


async def test_a_removed_cohost_leaves_and_cannot_come_back(clinic: Clinic) -> None:
    assert (await add(clinic, clinic.host, COHOST_USERNAME)).status_code == 201
    cohost = clinic.client(clinic.cohost.token)
    try:
        await cohost.join()
        url = f"/api/v1/rooms/{clinic.room_id}/cohosts/{clinic.cohost.id}"
        removed = await clinic.api.http.delete(url, headers=clinic.host.headers)
        assert removed.status_code == 204, removed.text
        closed = await cohost.wait_closed()
        assert closed.close_code == 1000
    finally:
        await cohost.close()
    assert await clinic.hosts() == {clinic.host.id}
    assert await ticket_status(clinic, clinic.cohost) == 403
    again = await clinic.api.http.delete(url, headers=clinic.host.headers)
    assert_error(again, 409, "not_a_cohost")
    rows = await clinic.api.audit_rows("room.cohost_removed", "success")
    assert [(r["actor_id"], r["object_id"]) for r in rows] == [(clinic.host.id, clinic.cohost.id)]


async def test_the_last_host_leaving_keeps_the_room_for_the_grace_then_it_ends(clinic: Clinic) -> None:
    services = clinic.api.services
    ticket = await clinic.tickets.signal_ticket(clinic.host.token, clinic.room_id)
    host = await SignalingClient.connect(ticket, origin=clinic.live.base_url)
    client = clinic.client(clinic.client_token)
    try:
        assert isinstance(await host.request(m.Join()), m.Welcome)
        reply = await host.request(m.Offer(sdp=await real_offer_sdp()), within=30)
        assert isinstance(reply, m.ServerAnswer), reply
        await client.join()
        lobby = await host.expect(m.Lobby)
        while not lobby.waiting:
            lobby = await host.expect(m.Lobby)
        await host.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        for _ in range(200):  # the answer goes out before the host's entry is recorded
            if (await services.rooms.room(RoomId(clinic.room_id))).state.value == "live":
                break
            await asyncio.sleep(0.02)
        await host.send(m.Leave())
        with contextlib.suppress(Exception):
            await host.expect(m.Pong, within=5)  # the server closes the socket once the leave is done
        for _ in range(200):
            room = await services.rooms.room(RoomId(clinic.room_id))
            if room.hostless_since is not None:
                break
            await asyncio.sleep(0.02)
        assert room.hostless_since is not None
        left_at = room.hostless_since
        # Within the grace the client stays in an open room; past it the room ends for them.
        assert await end_hostless_rooms(services, now=left_at + GRACE - 1) == []
        assert (await services.rooms.room(RoomId(clinic.room_id))).state.value == "live"
        assert await end_hostless_rooms(services, now=left_at + GRACE) == [RoomId(clinic.room_id)]
        await client.wait_message(m.RoomEnded)
        await client.wait_closed()
    finally:
        await asyncio.gather(host.close(), client.close(), return_exceptions=True)
    assert await directory_state(clinic) == "ended"
    assert await ticket_status(clinic, clinic.host) == 409  # ended


async def test_a_cohosts_presence_stream_gains_the_room_when_added_and_loses_it_when_removed(
    clinic: Clinic,
) -> None:
    import json

    from websockets.asyncio.client import connect

    from vIOP.auth.permissions import Principal
    from vIOP.auth.tickets import TicketPurpose

    services = clinic.api.services
    jti = (await services.tokens.verify(clinic.cohost.token)).jti
    principal = Principal(Role.CLINICIAN, clinic.cohost.id)
    issued = await services.tickets.issue(principal, TicketPurpose.PRESENCE, None, session=jti)
    url = f"{clinic.live.ws_url}/ws/presence?ticket={issued.ticket}"
    async with connect(url, origin=clinic.live.base_url, compression=None, proxy=None) as stream:

        async def next_of(kind: str) -> dict[str, Any]:
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await stream.recv())
                    if message["type"] == kind:
                        return dict(message)

        assert (await next_of("presence_snapshot"))["rooms"] == []  # not a host of anything yet
        assert (await add(clinic, clinic.host, COHOST_USERNAME)).status_code == 201
        assert (await next_of("presence_room"))["room"]["room_id"] == clinic.room_id
        url = f"/api/v1/rooms/{clinic.room_id}/cohosts/{clinic.cohost.id}"
        assert (await clinic.api.http.delete(url, headers=clinic.host.headers)).status_code == 204
        assert (await next_of("presence_room_gone"))["room_id"] == clinic.room_id
