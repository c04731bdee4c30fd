"""``POST /api/v1/signal-tickets`` over a real socket; the ticket is redeemed with the server's own service
(the WebSocket handshake that redeems it is tested with the signaling endpoint)."""

from __future__ import annotations

import pytest

from tests.api.support import Api, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.auth.tickets import TicketPurpose, TicketRejected
from vIOP.ids import RoomId

TICKETS = "/api/v1/signal-tickets"


async def test_a_clinician_gets_a_signal_ticket_for_a_room_they_host(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    response = await api.http.post(TICKETS, json={"room_id": room["id"]}, headers=dr.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    ticket = body["ticket"]
    assert ticket.startswith("vtk_")
    assert body["expires_in"] == 30
    assert body["room_id"] == room["id"]
    assert body["ws_url"] == f"ws://127.0.0.1:{api.live.settings.port}/ws/signal?ticket={ticket}"
    grant = await api.services.tickets.redeem(ticket, TicketPurpose.SIGNAL)
    assert (grant.principal.role, grant.principal.subject, grant.room_id) == (
        Role.CLINICIAN,
        dr.id,
        room["id"],
    )
    claims = api.services.tokens.decode(dr.token)
    assert grant.session == claims.jti
    with pytest.raises(TicketRejected):  # single use
        await api.services.tickets.redeem(ticket, TicketPurpose.SIGNAL)
    audited = await api.audit_rows("auth.ticket_issued")
    assert [(r["actor_id"], r["object_type"], r["object_id"]) for r in audited] == [
        (dr.id, "room", room["id"])
    ]


async def test_signal_ticket_refusals(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    staff, admin = await api.user(Role.STAFF), await api.user(Role.ADMIN)
    room = await api.create_room(dr_a)
    body = {"room_id": room["id"]}
    assert_error(await api.http.post(TICKETS, json=body), 401, "unauthenticated")
    assert_error(await api.http.post(TICKETS, json={}, headers=dr_a.headers), 400, "bad_request")
    assert_error(await api.http.post(TICKETS, json={"room_id": 7}, headers=dr_a.headers), 400, "bad_request")
    assert_error(
        await api.http.post(TICKETS, json={**body, "purpose": "media"}, headers=dr_a.headers),
        400,
        "bad_request",
    )
    assert_error(await api.http.post(TICKETS, json=body, headers=dr_b.headers), 403, "forbidden")
    assert_error(await api.http.post(TICKETS, json=body, headers=staff.headers), 403, "forbidden")
    assert_error(await api.http.post(TICKETS, json=body, headers=admin.headers), 403, "forbidden")
    assert_error(
        await api.http.post(TICKETS, json={"room_id": "rm_nope"}, headers=dr_a.headers), 404, "not_found"
    )
    await api.services.rooms.end(RoomId(room["id"]), by=None)
    assert_error(await api.http.post(TICKETS, json=body, headers=dr_a.headers), 409, "conflict")
    assert await api.audit_rows("auth.ticket_issued", "success") == []


async def test_a_client_ticket_counts_one_use_and_only_successful_requests_count(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room_x, room_y = await api.create_room(dr), await api.create_room(dr)
    invite = await api.create_invite(dr, room_x["id"], max_uses=2)
    client = bearer(invite["invite_token"])
    # Refusals first: none of them may spend a use.
    assert_error(
        await api.http.post(TICKETS, json={"room_id": room_y["id"]}, headers=client), 403, "forbidden"
    )
    assert_error(await api.http.post(TICKETS, json={"purpose": "presence"}, headers=client), 403, "forbidden")
    first = await api.http.post(TICKETS, headers=client)  # no body: the invite's room
    assert first.status_code == 200, first.text
    assert first.json()["room_id"] == room_x["id"]
    grant = await api.services.tickets.redeem(first.json()["ticket"], TicketPurpose.SIGNAL)
    assert grant.principal.subject == invite["client_id"]
    assert grant.principal.room_id == room_x["id"]
    assert grant.session == invite["id"]
    second = await api.http.post(TICKETS, json={"room_id": room_x["id"]}, headers=client)
    assert second.status_code == 200
    used_up = await api.http.post(TICKETS, json={}, headers=client)
    assert (
        assert_error(used_up, 401, "unauthenticated")["message"]
        == "the invite link is invalid, expired or revoked"
    )


async def test_a_client_cannot_get_a_ticket_for_an_ended_room(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    invite = await api.create_invite(dr, room["id"], max_uses=1)
    await api.services.rooms.end(RoomId(room["id"]), by=None)
    assert_error(await api.http.post(TICKETS, headers=bearer(invite["invite_token"])), 409, "conflict")


async def test_presence_tickets_for_staff_admins_and_clinicians(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    staff, admin = await api.user(Role.STAFF), await api.user(Role.ADMIN)
    room = await api.create_room(dr_a)
    for user in (staff, admin, dr_a):
        response = await api.http.post(TICKETS, json={"purpose": "presence"}, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["room_id"] is None
        assert "/ws/presence?ticket=" in body["ws_url"]
        grant = await api.services.tickets.redeem(body["ticket"], TicketPurpose.PRESENCE)
        assert grant.room_id is None
    one_room = {"purpose": "presence", "room_id": room["id"]}
    assert (await api.http.post(TICKETS, json=one_room, headers=staff.headers)).json()["room_id"] == room[
        "id"
    ]
    assert_error(await api.http.post(TICKETS, json=one_room, headers=dr_b.headers), 403, "forbidden")
    audited = await api.audit_rows("auth.ticket_issued", "success")
    assert [r["object_id"] for r in audited] == ["all", "all", "all", room["id"]]
