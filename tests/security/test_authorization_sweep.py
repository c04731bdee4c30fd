"""Authorization sweep: every HTTP route of the app and every signaling message type, tried by every role.

THE TABLE below is the expectation, written from the product rules of issues 4-6 (and docs/API.md,
docs/PROTOCOL.md), not derived from ``vIOP/auth/permissions.py``:

- admin: manages users and keys, reads the audit log, sees presence and attendance everywhere (client names
  only through break-glass), reviews and signs off break-glass accesses, manages 42 CFR part 2 consents;
  never joins a session, never hosts or moderates;
- clinician: creates rooms, hosts and moderates the rooms they host, invites clients to them, sees presence
  and attendance of those rooms only (another room's attendance only through break-glass, which any
  clinician may open with a reason);
- staff: watches presence across all rooms to run the program; nothing clinical (no attendance), never
  joins, never moderates;
- client: no account; with an invite link, joins that one room (knock, wait, take part) and reads its
  waiting-room view; nothing else;
- nobody without credentials gets past sign-in.

Roles are tried against room A: a clinician hosting A, a clinician hosting only another room B, a client
invited to A, a client invited to B, an admin, a staff member, and no credentials. Every refusal must
change nothing: rooms A and B are compared before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import pytest

from tests.api import signal_support as ss
from tests.api.support import Api, User, bearer
from tests.hostile.frames import real_offer_sdp
from tests.support import LiveServer
from vIOP.auth.invites import token_hash
from vIOP.auth.permissions import Role, RoomScope
from vIOP.client.signaling import ConnectRefused, SignalingClient, SignalingClosed
from vIOP.ids import ParticipantId, RoomId, UserId
from vIOP.rooms.chat import ChatLine
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.signaling import messages as m

ROLES: Final = (
    "anonymous",
    "admin",
    "clinician_of_room",
    "clinician_of_other_room",
    "staff",
    "client_of_room",
    "client_of_other_room",
)

# Signaling outcomes (HTTP rows hold status codes):
OK = "ok"  # accepted: no error reply
STATE = "state"  # permitted, but the room's state refuses it (e.g. an answer with no server offer waiting)
FORBIDDEN = "forbidden"  # error forbidden; rooms A and B unchanged
NOT_FOUND = (
    "not_found"  # error participant_not_found (room A's people are not in the sender's room); A unchanged
)
OWN_ROOM = "own_room"  # the sender's socket is in its own room B: whatever happens there, room A is unchanged
NO_SOCKET = "no_socket"  # no signal ticket for room A (401/403), and no socket opens without one

# fmt: off
#                                                   anonymous  admin      clin A     clin B     staff      client A   client B
EXPECTED: Final[dict[str, tuple[Any, ...]]] = {
    # --- HTTP: status codes ------------------------------------------------------------------------------------------------
    "POST /api/v1/auth/login":                      (200,       200,       200,       200,       200,       200,       200),
    "POST /api/v1/auth/logout":                     (401,       204,       204,       204,       204,       403,       403),
    "GET /api/v1/rooms":                            (401,       200,       200,       200,       200,       403,       403),
    "POST /api/v1/rooms":                           (401,       403,       201,       201,       403,       403,       403),
    "GET /api/v1/rooms/{room_id}":                  (401,       200,       200,       403,       200,       200,       403),
    "POST /api/v1/rooms/{room_id}/invites":         (401,       403,       201,       403,       403,       403,       403),
    "DELETE /api/v1/invites/{invite_id}":           (401,       204,       204,       403,       403,       403,       403),
    # Issue 11: the credential is the link's token in the body (a fresh link each call), whoever sends it.
    "POST /api/v1/invites/exchange":                (200,       200,       200,       200,       200,       200,       200),
    "POST /api/v1/signal-tickets":                  (401,       403,       200,       403,       403,       200,       403),
    "POST /api/v1/signal-tickets (presence)":       (401,       200,       200,       403,       200,       403,       403),
    "GET /api/v1/presence":                         (401,       200,       200,       403,       200,       403,       403),
    "GET /api/v1/attendance":                       (401,       200,       200,       403,       403,       403,       403),
    "GET /api/v1/turn-credentials":                 (401,       403,       200,       403,       403,       200,       403),
    "POST /api/v1/break-glass":                     (401,       201,       201,       201,       403,       403,       403),
    "GET /api/v1/break-glass":                      (401,       200,       403,       403,       403,       403,       403),
    "POST /api/v1/break-glass/{grant_id}/sign-off": (401,       200,       403,       403,       403,       403,       403),
    "GET /api/v1/clients/{client_id}/consents":     (401,       200,       403,       403,       403,       403,       403),
    "POST /api/v1/clients/{client_id}/consents":    (401,       201,       403,       403,       403,       403,       403),
    "DELETE /api/v1/consents/{consent_id}":         (401,       200,       403,       403,       403,       403,       403),
    "GET /healthz":                                 (200,       200,       200,       200,       200,       200,       200),
    "GET /readyz":                                  (200,       200,       200,       200,       200,       200,       200),
    "GET /metrics":                                 (200,       200,       200,       200,       200,       200,       200),
    "GET /openapi.json":                            (200,       200,       200,       200,       200,       200,       200),
    "GET /":                                        (200,       200,       200,       200,       200,       200,       200),
    "GET /join":                                    (200,       200,       200,       200,       200,       200,       200),
    "GET /console":                                 (200,       200,       200,       200,       200,       200,       200),
    "GET /staff":                                   (200,       200,       200,       200,       200,       200,       200),
    "GET /attendance":                              (200,       200,       200,       200,       200,       200,       200),
    "GET /static":                                  (200,       200,       200,       200,       200,       200,       200),
    # --- signaling: every client -> server message type, sent on /ws/signal -------------------------------------------------
    "ws join":                                      (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws offer":                                     (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws answer":                                    (NO_SOCKET, NO_SOCKET, STATE,     OWN_ROOM,  NO_SOCKET, STATE,     OWN_ROOM),
    "ws candidate":                                 (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws leave":                                     (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws set_media":                                 (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws raise_hand":                                (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws set_subscriptions":                         (NO_SOCKET, NO_SOCKET, STATE,     OWN_ROOM,  NO_SOCKET, STATE,     OWN_ROOM),
    "ws save_data":                                 (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws ping":                                      (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws admit":                                     (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws admit_all":                                 (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws deny":                                      (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws lobby_message":                             (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws return_to_lobby":                           (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws mute":                                      (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws remove":                                    (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws lock":                                      (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws unlock":                                    (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws end":                                       (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, FORBIDDEN, FORBIDDEN),
    # --- issue 15, chat: room chat by everyone seated (clients while the hosts allow it); the switch by hosts only ----------
    "ws chat":                                      (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, OK,        OWN_ROOM),
    "ws set_chat_policy":                           (NO_SOCKET, NO_SOCKET, OK,        OWN_ROOM,  NO_SOCKET, FORBIDDEN, FORBIDDEN),
}
# fmt: on

# --- issue 15: co-hosts (HTTP), "I need to talk" (signaling) ------------------------------------------------------
# fmt: off
EXPECTED.update({
    "POST /api/v1/rooms/{room_id}/cohosts":             (401,       403,       201,       403,       403,       403,       403),
    "DELETE /api/v1/rooms/{room_id}/cohosts/{user_id}": (401,       403,       204,       403,       403,       403,       403),
    "PUT /api/v1/account/display-name":                 (401,       200,       200,       200,       200,       403,       403),
    # "I need to talk": only a client asks; only a host acknowledges (the request of room A's seated client)
    "ws need_to_talk":                                  (NO_SOCKET, NO_SOCKET, FORBIDDEN, FORBIDDEN, NO_SOCKET, OK,        OWN_ROOM),
    "ws acknowledge_need":                              (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    # private breakout: hosts only (room A's seated client with the sender; ending the one room A's host started)
    "ws start_breakout":                                (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws end_breakout":                                  (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    # the chat transcript: only the room's hosts save it and read it back (clinical content)
    "POST /api/v1/rooms/{room_id}/chat-transcript":     (401,       403,       201,       403,       403,       403,       403),
    "GET /api/v1/rooms/{room_id}/chat-transcript":      (401,       403,       200,       403,       403,       403,       403),
    # screen share: every seated participant may try (a host with no screen section yet, a client without a host's
    # permission, someone not sharing: each a typed state refusal); only a host allows and revokes
    "ws start_share":                                   (NO_SOCKET, NO_SOCKET, STATE,     OWN_ROOM,  NO_SOCKET, STATE,     OWN_ROOM),
    "ws stop_share":                                    (NO_SOCKET, NO_SOCKET, STATE,     OWN_ROOM,  NO_SOCKET, STATE,     OWN_ROOM),
    "ws allow_share":                                   (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    "ws revoke_share":                                  (NO_SOCKET, NO_SOCKET, OK,        NOT_FOUND, NO_SOCKET, FORBIDDEN, FORBIDDEN),
    # issue 16: webhook subscriptions are the admins' alone
    "POST /api/v1/webhooks":                            (401,       201,       403,       403,       403,       403,       403),
    "GET /api/v1/webhooks":                             (401,       200,       403,       403,       403,       403,       403),
    "DELETE /api/v1/webhooks/{webhook_id}":             (401,       204,       403,       403,       403,       403,       403),
})
# fmt: on

# --- issue 16: tracks (track A: hosted by room A's clinician, co-hosted by its co-host, a session in progress),
# enrollments and calendar feeds. Clients (with an invite) manage nothing of the program; an enrollment link or
# a feed URL is the credential of its own route, whoever sends it. An admin names a track's host.
# fmt: off
EXPECTED.update({
    "GET /api/v1/tracks":                                   (401,   200,       200,       200,       200,       403,       403),
    "POST /api/v1/tracks":                                  (401,   201,       201,       201,       403,       403,       403),
    "GET /api/v1/tracks/{track_id}":                        (401,   200,       200,       403,       200,       403,       403),
    "DELETE /api/v1/tracks/{track_id}":                     (401,   204,       204,       403,       403,       403,       403),
    "PUT /api/v1/tracks/{track_id}/exceptions":             (401,   200,       200,       403,       403,       403,       403),
    "GET /api/v1/tracks/{track_id}/occurrences":            (401,   200,       200,       403,       200,       403,       403),
    "POST /api/v1/tracks/{track_id}/enrollments":           (401,   403,       201,       403,       403,       403,       403),
    "GET /api/v1/tracks/{track_id}/enrollments":            (401,   403,       200,       403,       403,       403,       403),
    "DELETE /api/v1/enrollments/{enrollment_id}":           (401,   204,       204,       403,       403,       403,       403),
    "POST /api/v1/enrollments/next":                        (200,   200,       200,       200,       200,       200,       200),
    "POST /api/v1/enrollments/knock":                       (200,   200,       200,       200,       200,       200,       200),
    "POST /api/v1/calendar-feeds":                          (401,   403,       201,       403,       403,       403,       403),
    "DELETE /api/v1/calendar-feeds/{feed_id}":              (401,   204,       204,       403,       403,       403,       403),
    "GET /calendar/{feed_token}.ics":                       (200,   200,       200,       200,       200,       200,       200),
})
# fmt: on

# Issue 15: two more roles, tried against room A in their own tests below. The product rule: a co-host has every
# host control of the room (what its creator may do, they may); a clinician who hosts nothing may do in room A
# what a clinician hosting only room B may, and has no socket there (no room of their own to be in either).
EXTRA_ROLES: Final = ("cohost_of_room", "clinician_without_room")
_LIKE: Final = {"cohost_of_room": "clinician_of_room", "clinician_without_room": "clinician_of_other_room"}


def expected(action: str, role: str) -> Any:
    if role in _LIKE:
        if role == "clinician_without_room" and action.startswith("ws "):
            return NO_SOCKET
        return expected(action, _LIKE[role])
    return EXPECTED[action][ROLES.index(role)]


def test_the_table_covers_every_role_and_every_signaling_message_type() -> None:
    assert all(len(row) == len(ROLES) for row in EXPECTED.values())
    assert {a.removeprefix("ws ") for a in EXPECTED if a.startswith("ws ")} == set(m.CLIENT_TYPE_NAMES)


def route_actions(app: Any) -> set[str]:
    """Every (method, path) the app serves over HTTP, as table keys (HEAD is GET without a body)."""
    actions = set()
    for route in app.routes:
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None or path.startswith("/ws/"):
            continue
        for method in methods or {"GET"}:  # a Mount (static files) serves GET
            actions.add(f"{'GET' if method == 'HEAD' else method} {path}")
    return actions


# --- HTTP -----------------------------------------------------------------------------------------------------


@dataclass
class HttpWorld:
    api: Api
    room_a: str
    room_b: str
    tokens: dict[str, str | None]  # role -> bearer credential
    users: dict[str, User]
    spare_invites: list[str] = field(default_factory=list)  # ids to revoke (never an invite in use)
    login: dict[str, str] = field(default_factory=dict)
    track_a: str = ""  # issue 16


@pytest.fixture
async def http_world(live_server_factory: Any) -> AsyncIterator[HttpWorld]:
    async with (
        live_server_factory(turn_secret="sweep-secret-0123456789", ice_servers="turn:127.0.0.1:3478") as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http,
    ):
        api = Api(live, http)
        users = {
            "admin": await api.user(Role.ADMIN),
            "clinician_of_room": await api.user(Role.CLINICIAN),
            "clinician_of_other_room": await api.user(Role.CLINICIAN),
            "staff": await api.user(Role.STAFF),
            "cohost_of_room": await api.user(Role.CLINICIAN),
            "clinician_without_room": await api.user(Role.CLINICIAN),
        }
        room_a = (await api.create_room(users["clinician_of_room"]))["id"]
        room_b = (await api.create_room(users["clinician_of_other_room"]))["id"]
        await add_cohost(api, users["clinician_of_room"], room_a, users["cohost_of_room"])
        invite_a = await api.create_invite(users["clinician_of_room"], room_a)
        invite_b = await api.create_invite(users["clinician_of_other_room"], room_b)
        tokens: dict[str, str | None] = {role: user.token for role, user in users.items()}
        tokens |= {
            "anonymous": None,
            "client_of_room": invite_a["invite_token"],
            "client_of_other_room": invite_b["invite_token"],
        }
        world = HttpWorld(api, room_a, room_b, tokens, users)
        world.track_a = await make_track(world, in_progress=True)
        name = f"sweep.{secrets.token_hex(3)}"
        await api.account(Role.STAFF, name)
        world.login = {"username": name, "password": "correct horse battery staple"}
        yield world


async def add_cohost(api: Api, host: User, room_id: str, cohost: User) -> None:
    body = {"username": cohost.account.username}
    added = await api.http.post(f"/api/v1/rooms/{room_id}/cohosts", json=body, headers=host.headers)
    assert added.status_code == 201, added.text


async def fresh_token(world: HttpWorld, role: str) -> str | None:
    """Logout revokes the token it presents: each logout gets a new one for the same account."""
    user = world.users.get(role)
    if user is None:
        return world.tokens[role]
    return (await world.api.services.tokens.issue(user.account.id, user.account.role)).token


async def spare_invite(world: HttpWorld) -> str:
    created = await world.api.create_invite(
        world.users["clinician_of_room"], world.room_a, display_name="Spare"
    )
    return str(created["id"])


async def spare_grant(world: HttpWorld) -> str:
    """A break-glass grant opened by another admin (nobody signs off their own)."""
    opener = await world.api.user(Role.ADMIN)
    body = {"room_id": world.room_a, "reason": "Sweep: covering for the host today"}
    opened = await world.api.http.post("/api/v1/break-glass", json=body, headers=opener.headers)
    assert opened.status_code == 201, opened.text
    return str(opened.json()["id"])


async def client_of_room_a(world: HttpWorld) -> str:
    invite = await world.api.services.invite_store.by_token_hash(
        token_hash(str(world.tokens["client_of_room"]))
    )
    assert invite is not None
    return str(invite.client_id)


async def spare_consent(world: HttpWorld) -> str:
    created = await world.api.http.post(
        f"/api/v1/clients/{await client_of_room_a(world)}/consents",
        json=CONSENT,
        headers=world.users["admin"].headers,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


WEBHOOK: Final = {"url": "http://127.0.0.1:9/sweep", "events": ["session.ended"]}
CONSENT: Final = {
    "recipient": "Sweep County Court",
    "purpose": "Sweep monitoring",
    "data": ["attendance"],
    "expires_at": "2099-01-01T00:00:00Z",
}


def track_body(in_progress: bool) -> dict[str, Any]:
    """A daily UTC track: in progress now (its lobby open), or starting years ahead (no room made)."""
    start = datetime.now(UTC) - timedelta(minutes=1) if in_progress else datetime(2030, 1, 7, 18, 0)
    return {
        "title": "Sweep IOP", "time_zone": "UTC", "first_start": start.strftime("%Y-%m-%dT%H:%M"),
        "rrule": "FREQ=DAILY", "duration_minutes": 120,
    }  # fmt: skip


async def make_track(world: HttpWorld, in_progress: bool = False) -> str:
    body = {**track_body(in_progress), "cohost_usernames": [world.users["cohost_of_room"].account.username]}
    made = await world.api.http.post(
        "/api/v1/tracks", json=body, headers=world.users["clinician_of_room"].headers
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def spare_enrollment(world: HttpWorld) -> dict[str, Any]:
    made = await world.api.http.post(
        f"/api/v1/tracks/{world.track_a}/enrollments", json={"display_name": "Spare"},
        headers=world.users["clinician_of_room"].headers,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def spare_feed(world: HttpWorld) -> dict[str, Any]:
    enrollment = await spare_enrollment(world)
    made = await world.api.http.post(
        "/api/v1/calendar-feeds", json={"enrollment_id": enrollment["id"]},
        headers=world.users["clinician_of_room"].headers,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def call_program(world: HttpWorld, action: str, headers: dict[str, str], role: str) -> httpx.Response:
    """Issue 16's routes."""
    http, track = world.api.http, world.track_a
    if action == "POST /api/v1/tracks":
        body = track_body(False)
        if role == "admin":
            body["host_username"] = world.users["clinician_of_room"].account.username
        return await http.post("/api/v1/tracks", json=body, headers=headers)
    if action == "DELETE /api/v1/tracks/{track_id}":
        return await http.delete(f"/api/v1/tracks/{await make_track(world)}", headers=headers)
    if action == "PUT /api/v1/tracks/{track_id}/exceptions":
        return await http.put(f"/api/v1/tracks/{track}/exceptions", json={}, headers=headers)
    if action == "POST /api/v1/tracks/{track_id}/enrollments":
        return await http.post(
            f"/api/v1/tracks/{track}/enrollments", json={"display_name": "New"}, headers=headers
        )
    if action == "DELETE /api/v1/enrollments/{enrollment_id}":
        return await http.delete(
            f"/api/v1/enrollments/{(await spare_enrollment(world))['id']}", headers=headers
        )
    if action in ("POST /api/v1/enrollments/next", "POST /api/v1/enrollments/knock"):
        link = {"enrollment_token": (await spare_enrollment(world))["enrollment_token"]}
        return await http.post(action.split(" ", 1)[1], json=link, headers=headers)
    if action == "POST /api/v1/calendar-feeds":
        enrollment = await spare_enrollment(world)
        return await http.post(
            "/api/v1/calendar-feeds", json={"enrollment_id": enrollment["id"]}, headers=headers
        )
    if action == "DELETE /api/v1/calendar-feeds/{feed_id}":
        return await http.delete(f"/api/v1/calendar-feeds/{(await spare_feed(world))['id']}", headers=headers)
    if action == "GET /calendar/{feed_token}.ics":
        return await http.get(httpx.URL((await spare_feed(world))["url"]).path, headers=headers)
    method, path = action.split(" ", 1)
    return await http.request(method, path.replace("{track_id}", track), headers=headers)


async def call(world: HttpWorld, action: str, role: str) -> httpx.Response:
    http, a = world.api.http, world.room_a
    credential = (
        await fresh_token(world, role) if action == "POST /api/v1/auth/logout" else world.tokens[role]
    )
    headers = bearer(credential) if credential else {}
    requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "POST /api/v1/auth/login": lambda: http.post("/api/v1/auth/login", json=world.login, headers=headers),
        "POST /api/v1/auth/logout": lambda: http.post("/api/v1/auth/logout", headers=headers),
        "GET /api/v1/rooms": lambda: http.get("/api/v1/rooms", headers=headers),
        "POST /api/v1/rooms": lambda: http.post(
            "/api/v1/rooms", json={"kind": "group", "title": "Sweep"}, headers=headers
        ),
        "GET /api/v1/rooms/{room_id}": lambda: http.get(f"/api/v1/rooms/{a}", headers=headers),
        "POST /api/v1/rooms/{room_id}/invites": lambda: http.post(
            f"/api/v1/rooms/{a}/invites", json={"display_name": "Newcomer"}, headers=headers
        ),
        "POST /api/v1/signal-tickets": lambda: http.post(
            "/api/v1/signal-tickets", json={"room_id": a}, headers=headers
        ),
        "POST /api/v1/signal-tickets (presence)": lambda: http.post(
            "/api/v1/signal-tickets", json={"room_id": a, "purpose": "presence"}, headers=headers
        ),
        "GET /api/v1/presence": lambda: http.get("/api/v1/presence", params={"room_id": a}, headers=headers),
        "GET /api/v1/attendance": lambda: http.get(
            "/api/v1/attendance", params={"room_id": a}, headers=headers
        ),
        "GET /api/v1/turn-credentials": lambda: http.get(
            "/api/v1/turn-credentials", params={"room_id": a}, headers=headers
        ),
        "GET /static": lambda: http.get("/static/css/app.css", headers=headers),
        "PUT /api/v1/account/display-name": lambda: http.put(
            "/api/v1/account/display-name", json={"display_name": "Sweep Name"}, headers=headers
        ),
        "POST /api/v1/break-glass": lambda: http.post(
            "/api/v1/break-glass",
            json={"room_id": a, "reason": "Sweep: covering for the host"},
            headers=headers,
        ),
    }
    if action == "POST /api/v1/break-glass/{grant_id}/sign-off":
        return await http.post(f"/api/v1/break-glass/{await spare_grant(world)}/sign-off", headers=headers)
    if action.endswith("/api/v1/clients/{client_id}/consents"):
        url = f"/api/v1/clients/{await client_of_room_a(world)}/consents"
        if action.startswith("GET"):
            return await http.get(url, headers=headers)
        return await http.post(url, json=CONSENT, headers=headers)
    if action == "POST /api/v1/webhooks":
        return await http.post("/api/v1/webhooks", json=WEBHOOK, headers=headers)
    if action == "GET /api/v1/webhooks":
        return await http.get("/api/v1/webhooks", headers=headers)
    if action == "DELETE /api/v1/webhooks/{webhook_id}":
        admin = world.users["admin"].headers
        spare = await http.post("/api/v1/webhooks", json=WEBHOOK, headers=admin)
        assert spare.status_code == 201, spare.text
        return await http.delete(f"/api/v1/webhooks/{spare.json()['id']}", headers=headers)
    if action == "DELETE /api/v1/consents/{consent_id}":
        return await http.delete(f"/api/v1/consents/{await spare_consent(world)}", headers=headers)
    if action == "POST /api/v1/invites/exchange":
        link = await world.api.create_invite(
            world.users["clinician_of_room"], world.room_a, display_name="Spare"
        )
        body = {"invite_token": link["invite_token"]}
        return await http.post("/api/v1/invites/exchange", json=body, headers=headers)
    # Co-hosts: a new clinician each time, taken out again by the room's creator (a room has at most 8 hosts).
    host_headers = world.users["clinician_of_room"].headers
    if action == "POST /api/v1/rooms/{room_id}/cohosts":
        new = await world.api.account(Role.CLINICIAN)
        response = await http.post(
            f"/api/v1/rooms/{a}/cohosts", json={"username": new.username}, headers=headers
        )
        if response.status_code == 201:
            assert (
                await http.delete(f"/api/v1/rooms/{a}/cohosts/{new.id}", headers=host_headers)
            ).status_code == 204
        return response
    if action == "DELETE /api/v1/rooms/{room_id}/cohosts/{user_id}":
        spare = await world.api.user(Role.CLINICIAN)
        await add_cohost(world.api, world.users["clinician_of_room"], a, spare)
        response = await http.delete(f"/api/v1/rooms/{a}/cohosts/{spare.id}", headers=headers)
        if response.status_code != 204:
            assert (
                await http.delete(f"/api/v1/rooms/{a}/cohosts/{spare.id}", headers=host_headers)
            ).status_code == 204
        return response
    if action.endswith("/api/v1/rooms/{room_id}/chat-transcript"):
        # A line in room A's chat record (as the server records a seated host's line), and for a read a
        # transcript saved by the room's creator first.
        line = ChatLine(
            room_id=RoomId(a), sender=ParticipantId("pt_sweepchat"), sender_name="Dr. A", sender_role=ParticipantRole.HOST,
            text="sweep chat line", private=False, thread=None, at=ss.now(),
        )  # fmt: skip
        await world.api.services.chat.publish(line)
        url = f"/api/v1/rooms/{a}/chat-transcript"
        if action.startswith("GET"):
            assert (await http.post(url, headers=host_headers)).status_code == 201
            return await http.get(url, headers=headers)
        return await http.post(url, headers=headers)
    if action == "DELETE /api/v1/invites/{invite_id}":
        return await http.delete(f"/api/v1/invites/{await spare_invite(world)}", headers=headers)
    if "/tracks" in action or "/enrollments" in action or "calendar" in action:
        return await call_program(world, action, headers, role)
    if action in requests:
        return await requests[action]()
    method, path = action.split(" ", 1)
    return await http.request(method, path, headers=headers)


async def test_every_http_route_with_every_role(http_world: HttpWorld) -> None:
    served = route_actions(http_world.api.live.app)
    table = {a.split(" (")[0] for a in EXPECTED if not a.startswith("ws ")}
    assert served == table, f"routes without a row: {served - table}; rows without a route: {table - served}"
    await sweep_http(http_world, ROLES)


async def test_every_http_route_as_a_cohost_and_as_a_clinician_hosting_nothing(http_world: HttpWorld) -> None:
    await sweep_http(http_world, EXTRA_ROLES)


async def sweep_http(http_world: HttpWorld, roles: tuple[str, ...]) -> None:
    wrong = []
    tried = 0
    for action in (a for a in EXPECTED if not a.startswith("ws ")):
        for role in roles:
            response = await call(http_world, action, role)
            tried += 1
            want = expected(action, role)
            if response.status_code != want:
                wrong.append(
                    f"{action} as {role}: {response.status_code} (expected {want}) {response.text[:200]}"
                )
            elif want >= 400:
                assert response.json()["error"]["code"] in ("unauthenticated", "forbidden"), response.text
    print(f"authorization sweep, HTTP: {tried} route x role pairs")
    assert wrong == [], "\n".join(wrong)
    # Refused writes changed nothing: the only invites of room A are the ones the allowed roles made.
    invites_made = expected("POST /api/v1/rooms/{room_id}/invites", "clinician_of_room") == 201
    assert invites_made


# --- signaling --------------------------------------------------------------------------------------------------


@dataclass
class Seat:
    socket: SignalingClient
    participant_id: str


@dataclass
class SignalWorld:
    """Room A (host, a waiting client, a seated client) and room B (host, a waiting client), all joined."""

    live: LiveServer
    room_a: RoomScope
    room_b: RoomScope
    seats: dict[str, Seat]
    tickets: dict[str, Callable[[], Awaitable[str]]]

    async def close(self) -> None:
        for seat in self.seats.values():
            with contextlib.suppress(Exception):
                await seat.socket.close()


@dataclass
class Cast:
    host_a: ss.Clinician
    host_b: ss.Clinician
    cohost_a: ss.Clinician | None = None  # issue 15: added as co-host of each room A when it is the actor


async def open_seat(live: LiveServer, tickets: Callable[[], Awaitable[str]], join: bool = True) -> Seat:
    socket = await SignalingClient.connect(await tickets(), origin=live.base_url)
    if not join:
        return Seat(socket, "")
    welcome = await socket.request(m.Join())
    assert isinstance(welcome, m.Welcome), welcome
    return Seat(socket, welcome.participant_id)


async def build_world(live: LiveServer, cast: Cast, actor: str, message: str) -> SignalWorld:
    room_a, room_b = await ss.room(live, cast.host_a), await ss.room(live, cast.host_b)
    tickets = {
        "clinician_of_room": ss.ticket_source(live, cast.host_a.principal, room_a, cast.host_a.session),
        "waiting_a": ss.ticket_source(
            live, await ss.invite(live, cast.host_a, room_a, "Wanda"), room_a, None
        ),
        "client_of_room": ss.ticket_source(
            live, await ss.invite(live, cast.host_a, room_a, "Sam"), room_a, None
        ),
        "clinician_of_other_room": ss.ticket_source(live, cast.host_b.principal, room_b, cast.host_b.session),
        "client_of_other_room": ss.ticket_source(
            live, await ss.invite(live, cast.host_b, room_b, "Bea"), room_b, None
        ),
    }
    if actor == "cohost_of_room":
        assert cast.cohost_a is not None
        cohost = UserId(cast.cohost_a.principal.subject)
        svc = ss.services(live)
        await svc.room_directory.add_cohost(room_a.room_id, cohost, by=None, at=svc.rooms.clock())
        await svc.rooms.add_host(room_a.room_id, user_id=cohost, by=None)
        room_a = await svc.room_directory.room_scope(room_a.room_id)
        tickets["cohost_of_room"] = ss.ticket_source(
            live, cast.cohost_a.principal, room_a, cast.cohost_a.session
        )
    seats = {}
    for name, source in tickets.items():
        # The actor of a `join` opens its socket without joining: the join is the message under test.
        seats[name] = await open_seat(live, source, join=not (name == actor and message == "join"))
    if message != "join":  # the seated client of room A (a join test needs nobody seated)
        await seats["clinician_of_room"].socket.send(
            m.Admit(participant_id=seats["client_of_room"].participant_id)
        )
        await seats["client_of_room"].socket.expect(m.Admitted)
    if message in ("lock", "unlock"):  # only a live room locks: its host entered (an offer), in both rooms
        for host in ("clinician_of_room", "clinician_of_other_room"):
            reply = await seats[host].socket.request(m.Offer(sdp=await real_offer_sdp()), within=30)
            assert isinstance(reply, m.ServerAnswer), reply
        # The answer goes out before the server records the entry: wait until both rooms are live.
        rooms = ss.services(live).rooms
        for _ in range(200):
            states = {(await rooms.room(r.room_id)).state.value for r in (room_a, room_b)}
            if states == {"live"}:
                break
            await asyncio.sleep(0.02)
        assert states == {"live"}, states
        if message == "unlock":  # something to unlock
            for host in ("clinician_of_room", "clinician_of_other_room"):
                assert await send_and_settle(seats[host].socket, m.Lock()) is None
    if message == "acknowledge_need":  # something to acknowledge: room A's seated client asked to talk
        assert await send_and_settle(seats["client_of_room"].socket, m.NeedToTalk()) is None
    if message == "end_breakout":  # something to end: room A's host took its seated client aside
        start = m.StartBreakout(participant_id=seats["client_of_room"].participant_id)
        assert await send_and_settle(seats["clinician_of_room"].socket, start) is None
    if message == "candidate" and actor in ("clinician_of_room", "client_of_room", "cohost_of_room"):
        reply = await seats[actor].socket.request(m.Offer(sdp=await real_offer_sdp()), within=30)
        assert isinstance(reply, m.ServerAnswer), reply
    return SignalWorld(live, room_a, room_b, seats, tickets)


def message_for(kind: str, world: SignalWorld, offer: str, candidate: str) -> m.ClientMessage:
    """``kind`` aimed at room A's people: the waiting client for lobby actions, the seated one otherwise."""
    waiting = world.seats["waiting_a"].participant_id
    seated = world.seats["client_of_room"].participant_id
    return {
        "join": m.Join(),
        "offer": m.Offer(sdp=offer),
        "answer": m.Answer(sdp=offer),
        "candidate": m.Candidate(candidate=candidate, sdp_mid="0", sdp_mline_index=0),
        "leave": m.Leave(),
        "set_media": m.SetMedia(audio=False),
        "raise_hand": m.RaiseHand(up=True),
        "set_subscriptions": m.SetSubscriptions(tiles=()),
        "save_data": m.SaveData(on=True),
        "ping": m.Ping(),
        "admit": m.Admit(participant_id=waiting),
        "admit_all": m.AdmitAll(),
        "deny": m.Deny(participant_id=waiting, message="Not today"),
        "lobby_message": m.LobbyMessage(participant_id=waiting, message="Five more minutes"),
        "return_to_lobby": m.ReturnToLobby(participant_id=seated),
        "mute": m.Mute(participant_id=seated),
        "remove": m.Remove(participant_id=seated),
        "lock": m.Lock(),
        "unlock": m.Unlock(),
        "end": m.End(),
        # issue 15, chat
        "chat": m.Chat(text="Hello everyone"),
        "set_chat_policy": m.SetChatPolicy(clients_may_chat=False),
        "need_to_talk": m.NeedToTalk(),
        "acknowledge_need": m.AcknowledgeNeed(participant_id=seated),
        "start_breakout": m.StartBreakout(participant_id=seated),
        "end_breakout": m.EndBreakout(participant_id=seated),
        # issue 15, screen share
        "start_share": m.StartShare(),
        "stop_share": m.StopShare(),
        "allow_share": m.AllowShare(participant_id=seated),
        "revoke_share": m.RevokeShare(participant_id=seated),
    }[kind]


async def send_and_settle(socket: SignalingClient, message: m.ClientMessage) -> m.ErrorMessage | None:
    """Send ``message`` with an id, then a ping: the error it caused (if any) arrives before the pong."""
    request_id = f"sweep-{secrets.token_hex(4)}"
    await socket.send(message.__class__(**{**_fields(message), "id": request_id}))
    probe = f"probe-{secrets.token_hex(4)}"
    with contextlib.suppress(SignalingClosed):
        await socket.send(m.Ping(id=probe))
    error: m.ErrorMessage | None = None
    with contextlib.suppress(SignalingClosed):
        async with asyncio.timeout(30):
            while True:
                reply = await socket.recv(within=None)
                if isinstance(reply, m.ErrorMessage) and reply.id == request_id:
                    error = reply
                if isinstance(reply, m.Pong) and reply.id == probe:
                    break
    return error


def _fields(message: m.ClientMessage) -> dict[str, Any]:
    return {f: getattr(message, f) for f in message.__struct_fields__}


async def no_socket_for(
    live: LiveServer, http: httpx.AsyncClient, role: str, credential: str | None, room: RoomScope
) -> list[str]:
    """A role without a place in room A: no signal ticket for it, and no socket without one."""
    problems = []
    headers = bearer(credential) if credential else {}
    ticket = await http.post("/api/v1/signal-tickets", json={"room_id": room.room_id}, headers=headers)
    if ticket.status_code not in (401, 403):
        problems.append(f"{role}: signal ticket for room A answered {ticket.status_code}")
    urls = [f"{live.ws_url}/ws/signal", f"{live.ws_url}/ws/signal?ticket=vtk_{'A' * 43}"]
    presence = await http.post("/api/v1/signal-tickets", json={"purpose": "presence"}, headers=headers)
    if (
        presence.status_code == 200
    ):  # staff and admins may watch presence: that ticket must not open signaling
        urls.append(presence.json()["ws_url"].replace("/ws/presence", "/ws/signal"))
    for url in urls:
        try:
            socket = await SignalingClient.connect(url, origin=live.base_url)
        except ConnectRefused as refused:
            if refused.status != 403:
                problems.append(f"{role}: socket refused with {refused.status}, not 403")
            continue
        await socket.close()
        problems.append(f"{role}: a signaling socket opened with {url.split('?')[-1][:20]}")
    return problems


@pytest.fixture
async def live(live_server_factory: Any) -> AsyncIterator[LiveServer]:
    async with live_server_factory(ice_host_addresses="127.0.0.1") as server:
        yield server


async def test_every_signaling_message_type_with_every_role(live: LiveServer) -> None:
    cast = Cast(host_a=await ss.clinician(live, "dr.sweep.a"), host_b=await ss.clinician(live, "dr.sweep.b"))
    await sweep_signaling(live, cast, ROLES)


async def test_every_signaling_message_type_as_a_cohost_and_a_clinician_hosting_nothing(
    live: LiveServer,
) -> None:
    cast = Cast(
        host_a=await ss.clinician(live, "dr.sweep.a"),
        host_b=await ss.clinician(live, "dr.sweep.b"),
        cohost_a=await ss.clinician(live, "dr.sweep.co"),
    )
    await sweep_signaling(live, cast, EXTRA_ROLES)


async def sweep_signaling(live: LiveServer, cast: Cast, roles: tuple[str, ...]) -> None:
    offer = await real_offer_sdp()
    candidate = next(ln[2:] for ln in offer.split("\r\n") if ln.startswith("a=candidate:"))
    wrong: list[str] = []
    tried = 0
    async with httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http:
        api = Api(live, http)
        outsiders_room = await ss.room(live, cast.host_a)
        for action in (a for a in EXPECTED if a.startswith("ws ")):
            kind = action.removeprefix("ws ")
            # New accounts for each message type: ticket requests are rate limited per account.
            no_seat = {
                "anonymous": None,
                "admin": (await api.user(Role.ADMIN)).token,
                "staff": (await api.user(Role.STAFF)).token,
                "clinician_without_room": (await api.user(Role.CLINICIAN)).token,
            }
            for role in roles:
                want = expected(action, role)
                tried += 1
                if want == NO_SOCKET:
                    problems = await no_socket_for(live, http, role, no_seat[role], outsiders_room)
                    wrong += [f"{kind}: {p}" for p in problems]
                    continue
                world = await build_world(live, cast, role, kind)
                try:
                    wrong += await try_message(
                        world, role, kind, want, message_for(kind, world, offer, candidate)
                    )
                finally:
                    await world.close()
    print(f"authorization sweep, signaling: {tried} message type x role pairs")
    assert wrong == [], "\n".join(wrong)


async def try_message(
    world: SignalWorld, role: str, kind: str, want: str, message: m.ClientMessage
) -> list[str]:
    rooms = ss.services(world.live).rooms
    before_a, before_b = await rooms.room(world.room_a.room_id), await rooms.room(world.room_b.room_id)
    error = await send_and_settle(world.seats[role].socket, message)
    after_a, after_b = await rooms.room(world.room_a.room_id), await rooms.room(world.room_b.room_id)
    got = f"error {error.code}" if error else "no error"
    a_changed, b_changed = after_a != before_a, after_b != before_b
    if want == OK and error is not None:
        return [f"{kind} as {role}: {got}, expected it to be accepted"]
    if want == STATE and (error is None or error.code in ("forbidden", "not_a_host")):
        return [f"{kind} as {role}: {got}, expected a state refusal"]
    if want == FORBIDDEN and (error is None or error.code != "forbidden" or a_changed or b_changed):
        return [f"{kind} as {role}: {got}; room A changed {a_changed}, room B changed {b_changed}"]
    if want == NOT_FOUND and (error is None or error.code != "participant_not_found" or a_changed):
        return [f"{kind} as {role}: {got}; room A changed {a_changed}"]
    if want == OWN_ROOM and a_changed:
        return [f"{kind} as {role}: room A changed"]
    return []
