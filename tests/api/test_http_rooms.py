"""Rooms and invites over a real socket: creation, reads merged with the live session, scope checks."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from sqlalchemy import select

from tests.api.support import Api, User, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.ids import RoomId
from vIOP.rooms.room import RoomState
from vIOP.session.room_end import end_room
from vIOP.storage.schema import clients, invites, rooms


async def _revoked_at(api: Api, invite_id: str) -> datetime | None:
    async with api.services.storage.db.read() as conn:
        query = select(invites.c.revoked_at).where(invites.c.id == invite_id)
        revoked: datetime | None = (await conn.execute(query)).scalar_one()
    return revoked


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_clinician_creates_a_room_with_a_live_session(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    response = await api.http.post(
        "/api/v1/rooms", json={"kind": "group", "title": "  Tuesday evening IOP group ", "capacity": 12},
        headers=dr.headers,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    room = response.json()
    assert response.headers["location"] == f"/api/v1/rooms/{room['id']}"
    assert room["id"].startswith("rm_")
    assert {k: room[k] for k in ("kind", "title", "capacity", "state", "hosts", "ended_at")} == {
        "kind": "group", "title": "Tuesday evening IOP group", "capacity": 12, "state": "open",
        "hosts": [dr.id], "ended_at": None,
    }  # fmt: skip
    assert room["created_at"].endswith("Z")
    assert abs(_epoch(room["created_at"]) - time.time()) < 60
    live = await api.services.rooms.room(RoomId(room["id"]))
    assert live.state is RoomState.OPEN
    assert live.host_ids == frozenset({dr.id})
    assert live.capacity == 12
    assert (await api.http.get(f"/api/v1/rooms/{room['id']}", headers=dr.headers)).json() == room
    audited = await api.audit_rows("room.created")
    assert [(r["actor_id"], r["object_id"]) for r in audited] == [(dr.id, room["id"])]


@pytest.mark.parametrize(("kind", "capacity"), [("group", 15), ("individual", 4)])
async def test_default_capacity_by_kind(api: Api, kind: str, capacity: int) -> None:
    dr = await api.user(Role.CLINICIAN)
    assert (await api.create_room(dr, kind=kind))["capacity"] == capacity


async def test_titles_are_encrypted_at_rest(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    canary = "Canary Opioid Group 4471"
    room = await api.create_room(dr, title=canary)
    async with api.services.storage.db.read() as conn:
        sealed = (await conn.execute(select(rooms.c.title).where(rooms.c.id == room["id"]))).scalar_one()
    assert canary.encode() not in sealed
    for key in await api.services.redis.keys("*"):
        assert canary.encode() not in key
        if await api.services.redis.type(key) == b"string":
            assert canary.encode() not in (await api.services.redis.get(key) or b"")


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "group", "title": ""},
        {"kind": "group", "title": "   "},
        {"kind": "group", "title": "x" * 121},
        {"kind": "group", "title": "bell\x07"},
        {"kind": "group", "title": "zero\u200bwidth"},
        {"kind": "party", "title": "t"},
        {"kind": "group", "title": "t", "capacity": 0},
        {"kind": "group", "title": "t", "capacity": 51},
        {"kind": "group", "title": "t", "capacity": True},
        {"kind": "group", "title": "t", "capacity": "12"},
        {"kind": "group", "title": "t", "hosts": ["us_x"]},
        {"title": "t"},
    ],
)
async def test_bad_room_bodies_are_400_and_create_nothing(api: Api, body: dict[str, object]) -> None:
    dr = await api.user(Role.CLINICIAN)
    assert_error(await api.http.post("/api/v1/rooms", json=body, headers=dr.headers), 400, "bad_request")
    assert (await api.http.get("/api/v1/rooms", headers=dr.headers)).json() == {"rooms": []}


@pytest.mark.parametrize("role", [Role.STAFF, Role.ADMIN])
async def test_only_clinicians_create_rooms(api: Api, role: Role) -> None:
    user = await api.user(role)
    response = await api.http.post(
        "/api/v1/rooms", json={"kind": "group", "title": "t"}, headers=user.headers
    )
    message = assert_error(response, 403, "forbidden")["message"]
    assert message == f"the {role.value} role does not allow: create room"


async def test_a_client_cannot_create_rooms(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    invite = await api.create_invite(dr, (await api.create_room(dr))["id"])
    response = await api.http.post(
        "/api/v1/rooms", json={"kind": "group", "title": "t"}, headers=bearer(invite["invite_token"])
    )
    assert_error(response, 403, "forbidden")


async def test_wrong_content_type_is_415(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    response = await api.http.post(
        "/api/v1/rooms", content=b"kind=group&title=t", headers={**dr.headers, "Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")


async def test_listing_clinicians_see_their_own_rooms_staff_and_admins_every_open_room(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    staff, admin = await api.user(Role.STAFF), await api.user(Role.ADMIN)
    a1, a2 = await api.create_room(dr_a, title="A one"), await api.create_room(dr_a, title="A two")
    b1 = await api.create_room(dr_b, title="B one")

    async def ids(user: User) -> set[str]:
        response = await api.http.get("/api/v1/rooms", headers=user.headers)
        assert response.status_code == 200
        return {r["id"] for r in response.json()["rooms"]}

    assert await ids(dr_a) == {a1["id"], a2["id"]}
    assert await ids(dr_b) == {b1["id"]}
    assert await ids(staff) == await ids(admin) == {a1["id"], a2["id"], b1["id"]}
    # A session ended on a socket (the end use case a host's ``end`` runs): the listing drops it and the
    # durable record says ended (written by the end, not by the listing: reads never write).
    await end_room(api.services, RoomId(a2["id"]), by=None)
    assert await ids(staff) == {a1["id"], b1["id"]}
    assert await ids(dr_a) == {a1["id"]}
    record = await api.services.room_directory.get(a2["id"])
    assert record.state == "ended"
    assert record.ended_at is not None
    invite = await api.create_invite(dr_a, a1["id"])
    assert_error(
        await api.http.get("/api/v1/rooms", headers=bearer(invite["invite_token"])), 403, "forbidden"
    )


async def test_reading_a_room_checks_credential_then_existence_then_scope(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    room = await api.create_room(dr_a)
    assert_error(await api.http.get("/api/v1/rooms/rm_doesnotexist"), 401, "unauthenticated")
    assert_error(await api.http.get("/api/v1/rooms/rm_doesnotexist", headers=dr_b.headers), 404, "not_found")
    assert_error(await api.http.get("/api/v1/rooms/..%2f..%2fetc", headers=dr_b.headers), 404, "not_found")
    assert_error(await api.http.get("/api/v1/rooms/" + "x" * 300, headers=dr_b.headers), 404, "not_found")
    denied = await api.http.get(f"/api/v1/rooms/{room['id']}", headers=dr_b.headers)
    assert assert_error(denied, 403, "forbidden")["message"] == "view room: allowed only in your own rooms"
    for role in (Role.STAFF, Role.ADMIN):
        seen = await api.http.get(f"/api/v1/rooms/{room['id']}", headers=(await api.user(role)).headers)
        assert seen.json() == room


async def test_a_client_reads_only_the_waiting_room_view_of_their_own_room(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room_x, room_y = await api.create_room(dr, title="Room X"), await api.create_room(dr, title="Room Y")
    invite = await api.create_invite(dr, room_x["id"])
    client = bearer(invite["invite_token"])
    own = await api.http.get(f"/api/v1/rooms/{room_x['id']}", headers=client)
    assert own.json() == {"id": room_x["id"], "kind": "group", "title": "Room X", "state": "open"}
    assert_error(await api.http.get(f"/api/v1/rooms/{room_y['id']}", headers=client), 403, "forbidden")
    await api.services.rooms.end(RoomId(room_x["id"]), by=None)
    assert (await api.http.get(f"/api/v1/rooms/{room_x['id']}", headers=client)).json()["state"] == "ended"


async def test_invites_bind_a_new_client_to_the_room(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    response = await api.http.post(
        f"/api/v1/rooms/{room['id']}/invites",
        json={"display_name": " Jordan ", "expires_in": 3600, "max_uses": 30},
        headers=dr.headers,
    )
    assert response.status_code == 201, response.text
    invite = response.json()
    assert response.headers["location"] == f"/api/v1/invites/{invite['id']}"
    token = invite["invite_token"]
    assert token.startswith("vinv_") and len(token) == 48
    origin = api.live.settings.origin
    assert invite["join_url"] == f"{origin}/join#invite={token}&room={room['id']}"
    assert invite["room_id"] == room["id"]
    assert invite["client_id"].startswith("cl_")
    assert invite["max_uses"] == 30
    assert abs(_epoch(invite["expires_at"]) - (time.time() + 3600)) < 60
    second = await api.create_invite(dr, room["id"])
    assert second["client_id"] != invite["client_id"]
    name = await api.services.invites.client_display_name(invite["client_id"])
    assert name == "Jordan"
    async with api.services.storage.db.read() as conn:
        sealed = (
            await conn.execute(select(clients.c.display_name).where(clients.c.id == invite["client_id"]))
        ).scalar_one()
    assert b"Jordan" not in sealed
    audited = await api.audit_rows("invite.created")
    assert [(r["actor_id"], r["object_id"]) for r in audited] == [
        (dr.id, invite["id"]),
        (dr.id, second["id"]),
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": ""},
        {"display_name": "x" * 65},
        {"display_name": "tab\there"},
        {"display_name": "Jo", "expires_in": 59},
        {"display_name": "Jo", "expires_in": 30 * 24 * 3600 + 1},
        {"display_name": "Jo", "max_uses": 0},
        {"display_name": "Jo", "max_uses": 1001},
        {"display_name": "Jo", "room_id": "rm_other"},
        {},
    ],
)
async def test_bad_invite_bodies_are_400(api: Api, body: dict[str, object]) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    response = await api.http.post(f"/api/v1/rooms/{room['id']}/invites", json=body, headers=dr.headers)
    assert_error(response, 400, "bad_request")
    assert await api.audit_rows("invite.created") == []


async def test_invite_creation_scope_existence_and_ended_rooms(api: Api) -> None:
    dr_a, dr_b, staff = (
        await api.user(Role.CLINICIAN),
        await api.user(Role.CLINICIAN),
        await api.user(Role.STAFF),
    )
    room = await api.create_room(dr_a)
    path = f"/api/v1/rooms/{room['id']}/invites"
    body = {"display_name": "Jo"}
    assert_error(await api.http.post(path, json=body, headers=dr_b.headers), 403, "forbidden")
    assert_error(await api.http.post(path, json=body, headers=staff.headers), 403, "forbidden")
    missing = await api.http.post("/api/v1/rooms/rm_nope/invites", json=body, headers=dr_a.headers)
    assert_error(missing, 404, "not_found")
    await api.services.rooms.end(RoomId(room["id"]), by=None)
    ended = await api.http.post(path, json=body, headers=dr_a.headers)
    assert assert_error(ended, 409, "conflict")["message"] == "the room has ended"


async def test_revoking_an_invite_is_idempotent_and_locks_the_client_out(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    staff, admin = await api.user(Role.STAFF), await api.user(Role.ADMIN)
    room = await api.create_room(dr_a)
    invite = await api.create_invite(dr_a, room["id"])
    path = f"/api/v1/invites/{invite['id']}"
    client = bearer(invite["invite_token"])
    assert (await api.http.get(f"/api/v1/rooms/{room['id']}", headers=client)).status_code == 200
    assert_error(await api.http.delete(path, headers=dr_b.headers), 403, "forbidden")
    assert_error(await api.http.delete(path, headers=staff.headers), 403, "forbidden")
    assert_error(await api.http.delete(path, headers=client), 403, "forbidden")
    assert (await api.http.delete(path, headers=dr_a.headers)).status_code == 204
    first = await _revoked_at(api, invite["id"])
    assert (await api.http.delete(path, headers=dr_a.headers)).status_code == 204
    again = await _revoked_at(api, invite["id"])
    assert first is not None and again == first
    refused = await api.http.get(f"/api/v1/rooms/{room['id']}", headers=client)
    assert (
        assert_error(refused, 401, "unauthenticated")["message"]
        == "the invite link is invalid, expired or revoked"
    )
    other = await api.create_invite(dr_a, room["id"])
    assert (await api.http.delete(f"/api/v1/invites/{other['id']}", headers=admin.headers)).status_code == 204
    assert_error(await api.http.delete("/api/v1/invites/iv_nope", headers=admin.headers), 404, "not_found")
    assert_error(await api.http.delete("/api/v1/invites/%00%ff", headers=admin.headers), 404, "not_found")
    revoked = [r["outcome"] for r in await api.audit_rows("invite.revoked")]
    assert revoked.count("success") == 3
    assert revoked.count("denied") == 3  # issue 11: the three 403s above are audited too
