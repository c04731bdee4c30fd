"""``GET /api/v1/presence`` over a real socket, with rooms driven through the server's own RoomService."""

from __future__ import annotations

from typing import Any

from tests.api.support import Api, User, assert_error, bearer
from vIOP.auth.permissions import Role
from vIOP.ids import ClientId, RoomId, UserId

PRESENCE = "/api/v1/presence"


async def _busy_room(api: Api, dr: User) -> dict[str, Any]:
    """One client waiting, one admitted and in the room, the host in the room."""
    room = await api.create_room(dr, title="Evening group")
    rid = RoomId(room["id"])
    service = api.services.rooms
    host = await service.host_enter(rid, user_id=UserId(dr.id), display_name="Dr Lee")
    assert host.participant is not None
    await service.join(rid, host.participant.id)
    avery = (await api.create_invite(dr, room["id"], display_name="Avery"))["client_id"]
    blake = (await api.create_invite(dr, room["id"], display_name="Blake"))["client_id"]
    first = await service.knock(rid, subject=ClientId(avery), display_name="Avery")
    await service.knock(rid, subject=ClientId(blake), display_name="Blake")
    assert first.participant is not None
    await service.admit(rid, by=host.participant.id, participant_id=first.participant.id)
    await service.join(rid, first.participant.id)
    return room


async def _snapshot(api: Api, user: User, query: str = "") -> dict[str, Any]:
    response = await api.http.get(PRESENCE + query, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_staff_see_every_open_room_with_its_lobby_and_seats(api: Api) -> None:
    dr_a, dr_b, staff = (
        await api.user(Role.CLINICIAN),
        await api.user(Role.CLINICIAN),
        await api.user(Role.STAFF),
    )
    busy = await _busy_room(api, dr_a)
    quiet = await api.create_room(dr_b, title="Quiet room")
    snapshot = await _snapshot(api, staff)
    assert snapshot["at"].endswith("Z")
    rooms = {r["room_id"]: r for r in snapshot["rooms"]}
    assert set(rooms) == {busy["id"], quiet["id"]}
    room = rooms[busy["id"]]
    assert (room["title"], room["kind"], room["state"], room["hosts"]) == (
        "Evening group",
        "group",
        "live",
        [dr_a.id],
    )
    assert (room["waiting_count"], room["in_room_count"], room["reconnecting_count"]) == (1, 2, 0)
    [waiting] = room["waiting"]
    assert (waiting["display_name"], waiting["position"], waiting["reconnecting"]) == ("Blake", 1, False)
    assert waiting["waited_seconds"] >= 0
    assert waiting["waiting_since"].endswith("Z")
    seated = {s["display_name"]: s for s in room["seated"]}
    assert set(seated) == {"Dr Lee", "Avery"}
    assert (seated["Avery"]["role"], seated["Avery"]["state"]) == ("client", "in_room")
    assert seated["Dr Lee"]["role"] == "host"
    assert rooms[quiet["id"]]["waiting"] == [] and rooms[quiet["id"]]["seated"] == []
    audited = await api.audit_rows("presence.viewed")
    assert [(r["actor_id"], r["object_id"]) for r in audited] == [(staff.id, "all")]


async def test_clinicians_see_only_the_rooms_they_host(api: Api) -> None:
    dr_a, dr_b = await api.user(Role.CLINICIAN), await api.user(Role.CLINICIAN)
    busy = await _busy_room(api, dr_a)
    assert [r["room_id"] for r in (await _snapshot(api, dr_a))["rooms"]] == [busy["id"]]
    assert (await _snapshot(api, dr_b))["rooms"] == []
    denied = await api.http.get(f"{PRESENCE}?room_id={busy['id']}", headers=dr_b.headers)
    assert_error(denied, 403, "forbidden")
    one = await _snapshot(api, dr_a, f"?room_id={busy['id']}")
    assert [r["room_id"] for r in one["rooms"]] == [busy["id"]]


async def test_admins_see_all_and_ended_rooms_drop_out(api: Api) -> None:
    dr, admin = await api.user(Role.CLINICIAN), await api.user(Role.ADMIN)
    busy = await _busy_room(api, dr)
    assert [r["room_id"] for r in (await _snapshot(api, admin))["rooms"]] == [busy["id"]]
    await api.services.rooms.end(RoomId(busy["id"]), by=None)
    assert (await _snapshot(api, admin))["rooms"] == []


async def test_presence_refusals(api: Api) -> None:
    dr = await api.user(Role.CLINICIAN)
    room = await api.create_room(dr)
    invite = await api.create_invite(dr, room["id"])
    assert_error(await api.http.get(PRESENCE), 401, "unauthenticated")
    assert_error(await api.http.get(PRESENCE, headers=bearer(invite["invite_token"])), 403, "forbidden")
    assert_error(await api.http.get(f"{PRESENCE}?room_id=rm_nope", headers=dr.headers), 404, "not_found")
    assert await api.audit_rows("presence.viewed", "success") == []
