"""Issue 11, finding 3: an invite link is exchanged once for a device credential; after that the link (as a
browser's history keeps it) is worth nothing, and says so with a typed error the join page can explain."""

from __future__ import annotations

from tests.api.support import Api, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.auth.tickets import TicketPurpose

EXCHANGE = "/api/v1/invites/exchange"
TICKETS = "/api/v1/signal-tickets"


async def test_a_link_is_exchanged_once_and_is_refused_afterwards(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    invite = await api.create_invite(dr, room["id"])
    link = invite["invite_token"]

    first = await api.http.post(EXCHANGE, json={"invite_token": link})
    assert first.status_code == 200, first.text
    device = first.json()["device_token"]
    assert device.startswith("vdev_") and device != link
    assert first.json()["room_id"] == room["id"]
    assert "no-store" in first.headers.get("cache-control", "")

    # The device credential stands in for the link: tickets, the room's waiting-room view.
    ticket = await api.http.post(TICKETS, headers=bearer(device))
    assert ticket.status_code == 200, ticket.text
    grant = await api.services.tickets.redeem(ticket.json()["ticket"], TicketPurpose.SIGNAL)
    assert grant.principal.subject == invite["client_id"]
    assert (await api.http.get(f"/api/v1/rooms/{room['id']}", headers=bearer(device))).status_code == 200

    # The link, copied out of a browser's history onto a second device: refused everywhere, typed.
    again = await api.http.post(EXCHANGE, json={"invite_token": link})
    error = assert_error(again, 401, "invite_already_used")
    assert "another device" in error["message"] and "clinician" in error["message"]
    assert_error(await api.http.post(TICKETS, headers=bearer(link)), 401, "invite_already_used")
    assert_error(
        await api.http.get(f"/api/v1/rooms/{room['id']}", headers=bearer(link)), 401, "invite_already_used"
    )
    assert len(await api.audit_rows("invite.exchanged")) == 1


async def test_exchange_refusals_change_nothing(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    invite = await api.create_invite(dr, room["id"])
    for body in ({}, {"invite_token": 5}, {"invite_token": "x" * 200}, {"invite_token": link_like(), "x": 1}):
        assert_error(await api.http.post(EXCHANGE, json=body), 400, "bad_request")
    for token in ("vinv_short", link_like()):
        assert_error(await api.http.post(EXCHANGE, json={"invite_token": token}), 401, "unauthenticated")
    # A device credential cannot be exchanged for another one.
    device = (await api.http.post(EXCHANGE, json={"invite_token": invite["invite_token"]})).json()
    assert_error(
        await api.http.post(EXCHANGE, json={"invite_token": device["device_token"]}), 401, "unauthenticated"
    )
    # Revoking the invite ends the device credential too.
    revoked = await api.http.delete(f"/api/v1/invites/{invite['id']}", headers=dr.headers)
    assert revoked.status_code == 204
    assert_error(await api.http.post(TICKETS, headers=bearer(device["device_token"])), 401, "unauthenticated")


async def test_invites_default_to_a_short_lifetime(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    invite = await api.create_invite(dr, room["id"])
    stored = await api.services.invites.authenticate(invite["invite_token"])
    assert stored.expires_at - stored.created_at == 12 * 3600


def link_like() -> str:
    return "vinv_" + "A" * 43
