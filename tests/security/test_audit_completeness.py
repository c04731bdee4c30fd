"""Audit completeness: every action of the permission table leaves its audit row.

For every ``Action`` in ``vIOP.auth.permissions.PERMISSIONS`` the table below says how to do it (allowed)
and how to be refused where a refusal is possible, over real HTTP, real WebSockets or the real CLI, and
which rows that must leave: action name, outcome (``success`` or ``denied``), actor id and object. An action
added to the permission table without a row here fails ``test_every_permission_action_has_an_expectation``
(and its own parametrized case). Refusals run first, so a refusal is seen to change nothing the allowed
attempt then needs.

A participant's own signaling (offer, answer, candidate, set_media, raise_hand, save_data, ping) is deliberately not
audited when allowed (one row per ICE candidate or heartbeat would bury the log; the join, admission and
attendance ledger already say who was in the room when): the expectation is that NO row is written, which
is checked too. Signaling refusals for those need a socket, and no role without a place in the room gets
one: that refusal is the ticket's (``issue_signal_ticket``), audited there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import select

from tests.api import signal_support as ss
from tests.api.support import Api, User, bearer
from tests.hostile.frames import real_offer_sdp
from tests.security.test_authorization_sweep import open_seat, send_and_settle
from tests.support import LiveServer
from vIOP.auth.permissions import PERMISSIONS, Action, Principal, Role, RoomScope
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.chat import ChatLine
from vIOP.rooms.participant import Role as ParticipantRole
from vIOP.signaling import messages as m
from vIOP.storage.schema import audit_log

OPERATOR: Final = "carol.ops"  # SUDO_USER of the CLI runs: the row must name her
USER_AGENT: Final = "audit-completeness/1.0 (test)"


@dataclass(frozen=True, slots=True)
class Row:
    """An audit row that must exist (``present``) or must not (a deliberately unaudited action)."""

    action: str
    outcome: str
    actor_id: str | None
    object_type: str | None
    object_id: str | None
    present: bool = True


@dataclass
class World:
    """Room A (hosted by clinician A) and room B (clinician B), a staff member, an admin, a client invited to
    each room; HTTP through httpx on the live socket, signaling through real WebSockets."""

    live: LiveServer
    api: Api
    users: dict[str, User]
    room_a: RoomScope
    room_b: RoomScope
    invites: dict[str, dict[str, Any]]  # "client_a", "client_as" (room A), "client_b", "client_bs" (room B)
    sessions: dict[str, str] = field(default_factory=dict)  # account key -> its token's jti
    sockets: list[SignalingClient] = field(default_factory=list)

    def id(self, who: str) -> str:
        if who in self.users:
            return self.users[who].id
        return str(self.invites[who]["client_id"])

    def headers(self, who: str) -> dict[str, str]:
        own = self.users[who].headers if who in self.users else bearer(self.invites[who]["invite_token"])
        return own | {"User-Agent": USER_AGENT}

    @property
    def http(self) -> httpx.AsyncClient:
        return self.api.http

    async def close(self) -> None:
        for socket in self.sockets:
            with contextlib.suppress(Exception):
                await socket.close()


Scenario = Callable[[World], Awaitable[list[Row]]]


@dataclass(frozen=True, slots=True)
class Expect:
    allowed: Scenario
    refused: Scenario | str  # a string says why no refusal is possible


# --- HTTP ---------------------------------------------------------------------------------------------------


def _ok(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, response.text
    return response


async def logout_allowed(w: World) -> list[Row]:
    me = w.users["clinician_a"]
    token = (await w.api.services.tokens.issue(me.account.id, me.account.role)).token
    _ok(await w.http.post("/api/v1/auth/logout", headers=bearer(token)), 204)
    return [Row("auth.logout", "success", me.id, "user", me.id)]


async def logout_refused(w: World) -> list[Row]:
    _ok(await w.http.post("/api/v1/auth/logout", headers=w.headers("client_a")), 403)
    return [Row("auth.logout", "denied", w.id("client_a"), None, None)]


async def create_room_allowed(w: World) -> list[Row]:
    body = {"kind": "group", "title": "Audit"}
    room = _ok(await w.http.post("/api/v1/rooms", json=body, headers=w.headers("clinician_a")), 201).json()
    return [Row("room.created", "success", w.id("clinician_a"), "room", room["id"])]


async def create_room_refused(w: World) -> list[Row]:
    body = {"kind": "group", "title": "Audit"}
    _ok(await w.http.post("/api/v1/rooms", json=body, headers=w.headers("staff")), 403)
    return [Row("room.created", "denied", w.id("staff"), None, None)]


async def view_room_allowed(w: World) -> list[Row]:
    a = w.room_a.room_id
    _ok(await w.http.get(f"/api/v1/rooms/{a}", headers=w.headers("clinician_a")), 200)
    _ok(await w.http.get(f"/api/v1/rooms/{a}", headers=w.headers("client_a")), 200)
    _ok(await w.http.get("/api/v1/rooms", headers=w.headers("staff")), 200)
    return [
        Row("room.viewed", "success", w.id("clinician_a"), "room", a),
        Row("room.viewed", "success", w.id("client_a"), "room", a),
        Row("room.viewed", "success", w.id("staff"), "room", "all"),
    ]


async def view_room_refused(w: World) -> list[Row]:
    a = w.room_a.room_id
    _ok(await w.http.get(f"/api/v1/rooms/{a}", headers=w.headers("clinician_b")), 403)
    _ok(await w.http.get(f"/api/v1/rooms/{a}", headers=w.headers("client_b")), 403)
    _ok(await w.http.get("/api/v1/rooms", headers=w.headers("client_a")), 403)
    return [
        Row("room.viewed", "denied", w.id("clinician_b"), "room", a),
        Row("room.viewed", "denied", w.id("client_b"), "room", a),
        Row("room.viewed", "denied", w.id("client_a"), None, None),
    ]


async def create_invite_allowed(w: World) -> list[Row]:
    created = await w.api.create_invite(w.users["clinician_a"], w.room_a.room_id)
    return [Row("invite.created", "success", w.id("clinician_a"), "invite", created["id"])]


async def create_invite_refused(w: World) -> list[Row]:
    a = w.room_a.room_id
    body = {"display_name": "Jordan"}
    _ok(await w.http.post(f"/api/v1/rooms/{a}/invites", json=body, headers=w.headers("clinician_b")), 403)
    return [Row("invite.created", "denied", w.id("clinician_b"), "room", a)]


async def revoke_invite_allowed(w: World) -> list[Row]:
    spare = (await w.api.create_invite(w.users["clinician_a"], w.room_a.room_id))["id"]
    _ok(await w.http.delete(f"/api/v1/invites/{spare}", headers=w.headers("clinician_a")), 204)
    return [Row("invite.revoked", "success", w.id("clinician_a"), "invite", spare)]


async def revoke_invite_refused(w: World) -> list[Row]:
    spare = (await w.api.create_invite(w.users["clinician_a"], w.room_a.room_id))["id"]
    _ok(await w.http.delete(f"/api/v1/invites/{spare}", headers=w.headers("clinician_b")), 403)
    _ok(await w.http.delete(f"/api/v1/invites/{spare}", headers=w.headers("client_a")), 403)
    return [
        Row("invite.revoked", "denied", w.id("clinician_b"), "invite", spare),
        Row("invite.revoked", "denied", w.id("client_a"), "invite", spare),
    ]


def _ticket(w: World, who: str, purpose: str) -> Awaitable[httpx.Response]:
    body = {"room_id": w.room_a.room_id, "purpose": purpose}
    return w.http.post("/api/v1/signal-tickets", json=body, headers=w.headers(who))


async def signal_ticket_allowed(w: World) -> list[Row]:
    _ok(await _ticket(w, "client_a", "signal"), 200)
    _ok(await _ticket(w, "clinician_a", "signal"), 200)
    a = w.room_a.room_id
    return [
        Row("auth.ticket_issued", "success", w.id("client_a"), "room", a),
        Row("auth.ticket_issued", "success", w.id("clinician_a"), "room", a),
    ]


async def signal_ticket_refused(w: World) -> list[Row]:
    _ok(await _ticket(w, "client_b", "signal"), 403)
    _ok(await _ticket(w, "clinician_b", "signal"), 403)
    _ok(await _ticket(w, "staff", "signal"), 403)
    a = w.room_a.room_id
    return [
        Row("auth.ticket_issued", "denied", w.id("client_b"), "room", a),
        Row("auth.ticket_issued", "denied", w.id("clinician_b"), "room", a),
        Row("auth.ticket_issued", "denied", w.id("staff"), None, None),
    ]


async def presence_ticket_allowed(w: World) -> list[Row]:
    _ok(await _ticket(w, "staff", "presence"), 200)
    return [Row("auth.ticket_issued", "success", w.id("staff"), "room", w.room_a.room_id)]


async def presence_ticket_refused(w: World) -> list[Row]:
    _ok(await _ticket(w, "clinician_b", "presence"), 403)
    _ok(await _ticket(w, "client_a", "presence"), 403)
    return [
        Row("auth.ticket_issued", "denied", w.id("clinician_b"), "room", w.room_a.room_id),
        Row("auth.ticket_issued", "denied", w.id("client_a"), None, None),
    ]


def _get(w: World, path: str, who: str) -> Awaitable[httpx.Response]:
    return w.http.get(path, params={"room_id": w.room_a.room_id}, headers=w.headers(who))


async def turn_allowed(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/turn-credentials", "clinician_a"), 200)
    _ok(await _get(w, "/api/v1/turn-credentials", "client_a"), 200)
    a = w.room_a.room_id
    return [
        Row("turn.credentials_issued", "success", w.id("clinician_a"), "room", a),
        Row("turn.credentials_issued", "success", w.id("client_a"), "room", a),
    ]


async def turn_refused(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/turn-credentials", "clinician_b"), 403)
    _ok(await _get(w, "/api/v1/turn-credentials", "admin"), 403)
    a = w.room_a.room_id
    return [
        Row("turn.credentials_issued", "denied", w.id("clinician_b"), "room", a),
        Row("turn.credentials_issued", "denied", w.id("admin"), "room", a),
    ]


async def presence_allowed(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/presence", "staff"), 200)
    return [Row("presence.viewed", "success", w.id("staff"), "room", w.room_a.room_id)]


async def presence_refused(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/presence", "clinician_b"), 403)
    return [Row("presence.viewed", "denied", w.id("clinician_b"), "room", w.room_a.room_id)]


async def attendance_allowed(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/attendance", "clinician_a"), 200)
    _ok(await _get(w, "/api/v1/attendance", "admin"), 200)
    a = w.room_a.room_id
    return [
        Row("attendance.exported", "success", w.id("clinician_a"), "room", a),
        Row("attendance.exported", "success", w.id("admin"), "room", a),
    ]


async def attendance_refused(w: World) -> list[Row]:
    _ok(await _get(w, "/api/v1/attendance", "staff"), 403)
    _ok(await _get(w, "/api/v1/attendance", "clinician_b"), 403)
    a = w.room_a.room_id
    return [
        Row("attendance.exported", "denied", w.id("staff"), "room", a),
        Row("attendance.exported", "denied", w.id("clinician_b"), "room", a),
    ]


# --- signaling ----------------------------------------------------------------------------------------------


@dataclass
class Seats:
    host: tuple[SignalingClient, str]
    waiting: tuple[SignalingClient, str]
    seated: tuple[SignalingClient, str]


def tickets(w: World, who: str) -> Callable[[], Awaitable[str]]:
    """Signal tickets for room A (room B for ``clinician_b`` and ``client_b``), issued by the server's own
    ticket service as the sweep does (the HTTP ticket route has its own cases above)."""
    scope = w.room_b if who.endswith(("_b", "_bs")) else w.room_a
    if who in w.users:
        user = w.users[who]
        return ss.ticket_source(w.live, Principal(user.account.role, user.id), scope, w.sessions[who])
    return ss.ticket_source(w.live, Principal(Role.CLIENT, w.id(who), scope.room_id), scope, None)


async def seat(w: World, who: str, *, join: bool = True) -> tuple[SignalingClient, str]:
    opened = await open_seat(w.live, tickets(w, who), join=join)
    w.sockets.append(opened.socket)
    return opened.socket, opened.participant_id


async def seats(w: World, room: str = "a", *, live_room: bool = False) -> Seats:
    """In room A (or B): its host joined, a waiting client (``client_<room>``) and a seated one
    (``client_<room>s``). Refusals play in room B, allowed actions in room A: nobody is reused."""
    host = await seat(w, f"clinician_{room}")
    waiting = await seat(w, f"client_{room}")
    seated = await seat(w, f"client_{room}s")
    await _accepted(host[0], m.Admit(participant_id=seated[1]))
    await seated[0].expect(m.Admitted)
    if live_room:  # only a live room locks: the host's media has started
        reply = await host[0].request(m.Offer(sdp=await real_offer_sdp()), within=30)
        assert isinstance(reply, m.ServerAnswer), reply
        rooms = ss.services(w.live).rooms
        scope = w.room_a if room == "a" else w.room_b
        for _ in range(200):
            if (await rooms.room(scope.room_id)).state.value == "live":
                break
            await asyncio.sleep(0.02)
    return Seats(host, waiting, seated)


async def _accepted(socket: SignalingClient, message: m.ClientMessage) -> None:
    error = await send_and_settle(socket, message)
    assert error is None, error


async def _forbidden(socket: SignalingClient, message: m.ClientMessage) -> None:
    error = await send_and_settle(socket, message)
    assert error is not None and error.code == "forbidden", error


def host_action(
    kind: str, audit: str, message: Callable[[Seats], m.ClientMessage], target: str | None
) -> Expect:
    """A host action: the host does it (row on the target participant, or on the room); the seated client
    tries it and is refused (row on the room)."""

    async def allowed(w: World) -> list[Row]:
        s = await seats(w, live_room=kind in ("lock", "unlock"))
        if kind == "unlock":
            await _accepted(s.host[0], m.Lock())
        await _accepted(s.host[0], message(s))
        object_id = {"waiting": s.waiting[1], "seated": s.seated[1], None: w.room_a.room_id}[target]
        return [Row(audit, "success", w.id("clinician_a"), "participant" if target else "room", object_id)]

    async def refused(w: World) -> list[Row]:
        s = await seats(w, "b", live_room=kind in ("lock", "unlock"))
        await _forbidden(s.seated[0], message(s))
        return [Row(audit, "denied", w.id("client_bs"), "room", w.room_b.room_id)]

    return Expect(allowed, refused)


async def join_allowed(w: World) -> list[Row]:
    host = await seat(w, "clinician_a")
    client = await seat(w, "client_a")
    a = w.room_a.room_id
    return [
        Row("room.host_entered", "success", w.id("clinician_a"), "participant", host[1]),
        Row("room.knock", "success", w.id("client_a"), "participant", client[1]),
        # TURN is configured: `welcome` hands out TURN credentials, which is an issuance like the HTTP one
        Row("turn.credentials_issued", "success", w.id("client_a"), "room", a),
        Row("turn.credentials_issued", "success", w.id("clinician_a"), "room", a),
    ]


async def join_refused(w: World) -> list[Row]:
    """In room B (room A stays fresh for the allowed joins): a second socket of a seated host, and a
    client with a forged resume token."""
    await seat(w, "clinician_b")
    second, _ = await seat(w, "clinician_b", join=False)
    reply = await second.request(m.Join())
    assert isinstance(reply, m.ErrorMessage) and reply.code == "already_connected", reply
    forged, _ = await seat(w, "client_b", join=False)
    reply = await forged.request(m.Join(resume_token="rt_" + secrets.token_urlsafe(32)))
    assert isinstance(reply, m.ErrorMessage) and reply.code == "resume_rejected", reply
    b = w.room_b.room_id
    return [
        Row("room.already_connected", "denied", w.id("clinician_b"), "room", b),
        Row("room.resume_rejected", "denied", w.id("client_b"), "room", b),
    ]


def unaudited(kind: str, build: Callable[[Seats, str], m.ClientMessage], *, state: bool = False) -> Scenario:
    """A participant's own signaling: done by the host and the seated client; no row, neither way."""

    async def allowed(w: World) -> list[Row]:
        s = await seats(w)
        offer = await real_offer_sdp()
        for socket, _ in (s.host, s.seated):
            if kind == "candidate":  # a candidate belongs to a negotiation
                reply = await socket.request(m.Offer(sdp=offer), within=30)
                assert isinstance(reply, m.ServerAnswer), reply
            error = await send_and_settle(socket, build(s, offer))
            # `answer` with no server offer waiting is refused by the room's state, not by permission.
            assert (
                (error is not None and error.code not in ("forbidden", "not_a_host")) if state else not error
            )
        return [
            Row("room.signal", outcome, who, "room", w.room_a.room_id, present=False)
            for outcome in ("success", "denied")
            for who in (w.id("clinician_a"), w.id("client_as"))
        ]

    return allowed


async def leave_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await s.seated[0].send(m.Leave())
    with contextlib.suppress(SignalingClosed):  # the server closes the socket once the leave is done
        async with asyncio.timeout(30):
            while True:
                await s.seated[0].recv(within=None)
    return [Row("room.left", "success", w.id("client_as"), "participant", s.seated[1])]


def _candidate(offer: str) -> str:
    return next(line[2:] for line in offer.split("\r\n") if line.startswith("a=candidate:"))


# --- chat (issue 15) ------------------------------------------------------------------------------------------


async def chat_allowed(w: World) -> list[Row]:
    """Chat lines are not audited (they are kept nowhere; a row per line would only say who talked when)."""
    s = await seats(w)
    for socket, _ in (s.host, s.seated):
        await _accepted(socket, m.Chat(text="Hello everyone"))
    await _accepted(s.waiting[0], m.Chat(text="Running late", private=True))
    return [
        Row("room.chat", outcome, who, "room", w.room_a.room_id, present=False)
        for outcome in ("success", "denied")
        for who in (w.id("clinician_a"), w.id("client_as"), w.id("client_a"))
    ]


async def chat_refused(w: World) -> list[Row]:
    """The permission table lets every participant chat; the refusal is the hosts' switch: a client's room
    line while chat to everyone is off (a `denied` row on the room, ids only)."""
    s = await seats(w, "b")
    await _accepted(s.host[0], m.SetChatPolicy(clients_may_chat=False))
    # The switch reaches each process with its room event: once the client is told, its process knows.
    while (await s.seated[0].expect(m.ChatPolicy)).clients_may_chat:
        pass
    error = await send_and_settle(s.seated[0], m.Chat(text="anyone?"))
    assert error is not None and error.code == "chat_off", error
    return [Row("room.chat", "denied", w.id("client_bs"), "room", w.room_b.room_id)]


NO_SOCKET: Final = (
    "only participants of the room get a socket (a refused signal ticket is audited under "
    "issue_signal_ticket) and every participant may send this in their own room"
)
CLI_ONLY: Final = (
    "no HTTP route or message: only the CLI does this, with the operator's OS rights over the key file and "
    "database (the operator is named in the row)"
)


# --- CLI ------------------------------------------------------------------------------------------------------


async def run_cli(w: World, *argv: str, stdin: str = "") -> str:
    """``python -m vIOP ...`` as an operator runs it (sudo), on the live server's data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env |= {"VIOP_DATA_DIR": str(w.live.settings.data_dir), "SUDO_USER": OPERATOR, "PYTHONPATH": os.getcwd()}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vIOP",
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def users_allowed(w: World) -> list[Row]:
    name = f"desk.{secrets.token_hex(3)}"
    out = await run_cli(
        w, "users", "create", "--role", "staff", "--username", name, "--password-stdin", stdin="x" * 16
    )
    user_id = re.search(r"account (\S+)", out)
    assert user_id, out
    out = await run_cli(w, "users", "disable", "--username", name)
    return [
        Row("user.created", "success", f"os:{OPERATOR}", "user", user_id[1]),
        Row("user.disabled", "success", f"os:{OPERATOR}", "user", user_id[1]),
    ]


async def rotate_allowed(w: World) -> list[Row]:
    out = await run_cli(w, "keys", "rotate")
    target = re.search(r"rotation to (\S+)", out)
    assert target, out
    return [Row("keys.rotated", "success", f"os:{OPERATOR}", "kek", target[1])]


async def read_audit_allowed(w: World) -> list[Row]:
    out = await run_cli(w, "audit", "verify")
    last = re.search(r"last row (\d+)", out)
    assert last, out
    return [Row("audit.verified", "success", f"os:{OPERATOR}", "audit_log", last[1])]


# --- THE TABLE ----------------------------------------------------------------------------------------------

EXPECTATIONS: Final[dict[Action, Expect]] = {
    Action.LOGOUT: Expect(logout_allowed, logout_refused),
    Action.CREATE_ROOM: Expect(create_room_allowed, create_room_refused),
    Action.VIEW_ROOM: Expect(view_room_allowed, view_room_refused),
    Action.CREATE_INVITE: Expect(create_invite_allowed, create_invite_refused),
    Action.REVOKE_INVITE: Expect(revoke_invite_allowed, revoke_invite_refused),
    Action.ISSUE_SIGNAL_TICKET: Expect(signal_ticket_allowed, signal_ticket_refused),
    Action.ISSUE_PRESENCE_TICKET: Expect(presence_ticket_allowed, presence_ticket_refused),
    Action.GET_TURN_CREDENTIALS: Expect(turn_allowed, turn_refused),
    Action.JOIN: Expect(join_allowed, join_refused),
    Action.OFFER: Expect(unaudited("offer", lambda s, offer: m.Offer(sdp=offer)), NO_SOCKET),
    Action.ANSWER: Expect(unaudited("answer", lambda s, offer: m.Answer(sdp=offer), state=True), NO_SOCKET),
    Action.CANDIDATE: Expect(
        unaudited(
            "candidate",
            lambda s, offer: m.Candidate(candidate=_candidate(offer), sdp_mid="0", sdp_mline_index=0),
        ),
        NO_SOCKET,
    ),
    Action.LEAVE: Expect(leave_allowed, NO_SOCKET),
    Action.SET_MEDIA: Expect(unaudited("set_media", lambda s, offer: m.SetMedia(audio=False)), NO_SOCKET),
    Action.RAISE_HAND: Expect(unaudited("raise_hand", lambda s, offer: m.RaiseHand(up=True)), NO_SOCKET),
    Action.SET_SUBSCRIPTIONS: Expect(
        unaudited("set_subscriptions", lambda s, offer: m.SetSubscriptions(tiles=()), state=True), NO_SOCKET
    ),
    Action.SAVE_DATA: Expect(unaudited("save_data", lambda s, offer: m.SaveData(on=True)), NO_SOCKET),
    Action.PING: Expect(unaudited("ping", lambda s, offer: m.Ping()), NO_SOCKET),
    Action.ADMIT: host_action(
        "admit", "room.admit", lambda s: m.Admit(participant_id=s.waiting[1]), "waiting"
    ),
    Action.ADMIT_ALL: host_action("admit_all", "room.admit", lambda s: m.AdmitAll(), None),
    Action.DENY: host_action(
        "deny", "room.deny", lambda s: m.Deny(participant_id=s.waiting[1], message="Not today"), "waiting"
    ),
    Action.LOBBY_MESSAGE: host_action(
        "lobby_message",
        "room.lobby_message",
        lambda s: m.LobbyMessage(participant_id=s.waiting[1], message="Five more minutes"),
        "waiting",
    ),
    Action.RETURN_TO_LOBBY: host_action(
        "return_to_lobby",
        "room.return_to_lobby",
        lambda s: m.ReturnToLobby(participant_id=s.seated[1]),
        "seated",
    ),
    Action.MUTE: host_action("mute", "room.mute", lambda s: m.Mute(participant_id=s.seated[1]), "seated"),
    Action.REMOVE: host_action(
        "remove", "room.remove", lambda s: m.Remove(participant_id=s.seated[1]), "seated"
    ),
    Action.LOCK: host_action("lock", "room.locked", lambda s: m.Lock(), None),
    Action.UNLOCK: host_action("unlock", "room.unlocked", lambda s: m.Unlock(), None),
    Action.END: host_action("end", "room.ended", lambda s: m.End(), None),
    # chat (issue 15)
    Action.CHAT: Expect(chat_allowed, chat_refused),
    Action.SET_CHAT_POLICY: host_action(
        "set_chat_policy", "room.chat_policy", lambda s: m.SetChatPolicy(clients_may_chat=False), None
    ),
    Action.VIEW_PRESENCE: Expect(presence_allowed, presence_refused),
    Action.VIEW_ATTENDANCE: Expect(attendance_allowed, attendance_refused),
    Action.MANAGE_USERS: Expect(users_allowed, CLI_ONLY),
    Action.ROTATE_KEYS: Expect(rotate_allowed, CLI_ONLY),
    Action.READ_AUDIT: Expect(read_audit_allowed, CLI_ONLY),
}


# --- actions of the compliance work (break-glass, Part 2 consents) --------------------------------------------
# Keyed by value: they join the permission table when that work is merged, and then they are checked here.

REASON: Final = "The host is out sick and a client called in crisis this morning."


async def break_glass_allowed(w: World) -> list[Row]:
    body = {"room_id": w.room_a.room_id, "reason": REASON}
    grant = _ok(await w.http.post("/api/v1/break-glass", json=body, headers=w.headers("admin")), 201).json()
    return [Row("access.break_glass", "success", w.id("admin"), "break_glass", grant["id"])]


async def break_glass_refused(w: World) -> list[Row]:
    body = {"room_id": w.room_a.room_id, "reason": REASON}
    _ok(await w.http.post("/api/v1/break-glass", json=body, headers=w.headers("staff")), 403)
    return [Row("access.break_glass", "denied", w.id("staff"), None, None)]


async def review_allowed(w: World) -> list[Row]:
    _ok(await w.http.get("/api/v1/break-glass", headers=w.headers("admin")), 200)
    return [Row("access.break_glass_reviewed", "success", w.id("admin"), "break_glass", None)]


async def review_refused(w: World) -> list[Row]:
    _ok(await w.http.get("/api/v1/break-glass", headers=w.headers("clinician_a")), 403)
    return [Row("access.review_break_glass", "denied", w.id("clinician_a"), None, None)]


def _consent(w: World) -> dict[str, Any]:
    return {
        "recipient": "County Court",
        "purpose": "check-ins",
        "data": ["attendance"],
        "expires_at": "2099-01-01T00:00:00Z",
    }


async def consent_allowed(w: World) -> list[Row]:
    client = w.id("client_a")
    path = f"/api/v1/clients/{client}/consents"
    added = _ok(await w.http.post(path, json=_consent(w), headers=w.headers("admin")), 201).json()
    return [Row("consent.added", "success", w.id("admin"), "consent", added["id"])]


async def consent_refused(w: World) -> list[Row]:
    client = w.id("client_a")
    path = f"/api/v1/clients/{client}/consents"
    _ok(await w.http.post(path, json=_consent(w), headers=w.headers("clinician_a")), 403)
    return [Row("access.manage_consent", "denied", w.id("clinician_a"), "client", client)]


LATER: Final[dict[str, Expect]] = {
    "break_glass": Expect(break_glass_allowed, break_glass_refused),
    "review_break_glass": Expect(review_allowed, review_refused),
    "manage_consent": Expect(consent_allowed, consent_refused),
}
EXPECTATIONS.update({action: LATER[action.value] for action in Action if action.value in LATER})


# --- issue 15: co-hosts (HTTP) --------------------------------------------------------------------------------


async def _new_cohost(w: World) -> str:
    colleague = await w.api.account(Role.CLINICIAN)
    body = {"username": colleague.username}
    path = f"/api/v1/rooms/{w.room_a.room_id}/cohosts"
    _ok(await w.http.post(path, json=body, headers=w.headers("clinician_a")), 201)
    return colleague.id


async def add_cohost_allowed(w: World) -> list[Row]:
    return [Row("room.cohost_added", "success", w.id("clinician_a"), "user", await _new_cohost(w))]


async def add_cohost_refused(w: World) -> list[Row]:
    a = w.room_a.room_id
    body = {"username": (await w.api.account(Role.CLINICIAN)).username}
    _ok(await w.http.post(f"/api/v1/rooms/{a}/cohosts", json=body, headers=w.headers("clinician_b")), 403)
    return [Row("room.cohost_added", "denied", w.id("clinician_b"), "room", a)]


async def remove_cohost_allowed(w: World) -> list[Row]:
    spare = await _new_cohost(w)
    path = f"/api/v1/rooms/{w.room_a.room_id}/cohosts/{spare}"
    _ok(await w.http.delete(path, headers=w.headers("clinician_a")), 204)
    return [Row("room.cohost_removed", "success", w.id("clinician_a"), "user", spare)]


async def remove_cohost_refused(w: World) -> list[Row]:
    spare = await _new_cohost(w)
    a = w.room_a.room_id
    _ok(await w.http.delete(f"/api/v1/rooms/{a}/cohosts/{spare}", headers=w.headers("client_a")), 403)
    return [Row("room.cohost_removed", "denied", w.id("client_a"), "room", a)]


async def need_to_talk_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _accepted(s.seated[0], m.NeedToTalk())
    return [Row("room.need_to_talk", "success", w.id("client_as"), "participant", s.seated[1])]


async def need_to_talk_refused(w: World) -> list[Row]:
    s = await seats(w, "b")
    await _forbidden(s.host[0], m.NeedToTalk())  # a clinician does not ask
    return [Row("room.need_to_talk", "denied", w.id("clinician_b"), "room", w.room_b.room_id)]


async def acknowledge_need_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _accepted(s.seated[0], m.NeedToTalk())
    await _accepted(s.host[0], m.AcknowledgeNeed(participant_id=s.seated[1]))
    return [Row("room.need_acknowledged", "success", w.id("clinician_a"), "participant", s.seated[1])]


async def acknowledge_need_refused(w: World) -> list[Row]:
    s = await seats(w, "b")
    await _accepted(s.seated[0], m.NeedToTalk())
    await _forbidden(s.seated[0], m.AcknowledgeNeed(participant_id=s.seated[1]))
    return [Row("room.need_acknowledged", "denied", w.id("client_bs"), "room", w.room_b.room_id)]


async def start_breakout_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _accepted(s.host[0], m.StartBreakout(participant_id=s.seated[1]))
    return [Row("room.breakout_started", "success", w.id("clinician_a"), "participant", s.seated[1])]


async def start_breakout_refused(w: World) -> list[Row]:
    s = await seats(w, "b")
    await _forbidden(s.seated[0], m.StartBreakout(participant_id=s.seated[1]))  # a client cannot
    return [Row("room.breakout_started", "denied", w.id("client_bs"), "room", w.room_b.room_id)]


async def end_breakout_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _accepted(s.host[0], m.StartBreakout(participant_id=s.seated[1]))
    await _accepted(s.host[0], m.EndBreakout(participant_id=s.seated[1]))
    return [
        Row("room.breakout_started", "success", w.id("clinician_a"), "participant", s.seated[1]),
        Row("room.breakout_ended", "success", w.id("clinician_a"), "participant", s.seated[1]),
    ]


async def end_breakout_refused(w: World) -> list[Row]:
    s = await seats(w, "b")
    await _accepted(s.host[0], m.StartBreakout(participant_id=s.seated[1]))
    await _forbidden(s.seated[0], m.EndBreakout(participant_id=s.seated[1]))
    return [Row("room.breakout_ended", "denied", w.id("client_bs"), "room", w.room_b.room_id)]


async def display_name_allowed(w: World) -> list[Row]:
    body = {"display_name": "Dr. Renamed"}
    _ok(await w.http.put("/api/v1/account/display-name", json=body, headers=w.headers("clinician_b")), 200)
    return [Row("user.display_name_changed", "success", w.id("clinician_b"), "user", w.id("clinician_b"))]


async def display_name_refused(w: World) -> list[Row]:
    body = {"display_name": "Not an account"}
    _ok(await w.http.put("/api/v1/account/display-name", json=body, headers=w.headers("client_a")), 403)
    return [Row("user.display_name_changed", "denied", w.id("client_a"), None, None)]


async def _a_chat_line_in_room_a(w: World) -> None:
    """One line in room A's chat record, published the way the server publishes a seated host's line."""
    room_id = w.room_a.room_id
    line = ChatLine(
        room_id=room_id, sender=ParticipantId("pt_auditchat"), sender_name="Dr. A", sender_role=ParticipantRole.HOST,
        text="audit chat line", private=False, thread=None, at=ss.now(),
    )  # fmt: skip
    await w.api.services.chat.publish(line)


def _transcript_url(w: World) -> str:
    return f"/api/v1/rooms/{w.room_a.room_id}/chat-transcript"


async def save_transcript_allowed(w: World) -> list[Row]:
    await _a_chat_line_in_room_a(w)
    _ok(await w.http.post(_transcript_url(w), headers=w.headers("clinician_a")), 201)
    return [Row("room.chat_transcript_saved", "success", w.id("clinician_a"), "room", w.room_a.room_id)]


async def save_transcript_refused(w: World) -> list[Row]:
    await _a_chat_line_in_room_a(w)
    _ok(await w.http.post(_transcript_url(w), headers=w.headers("client_a")), 403)
    return [Row("room.chat_transcript_saved", "denied", w.id("client_a"), "room", w.room_a.room_id)]


async def view_transcript_allowed(w: World) -> list[Row]:
    await _a_chat_line_in_room_a(w)
    _ok(await w.http.post(_transcript_url(w), headers=w.headers("clinician_a")), 201)
    _ok(await w.http.get(_transcript_url(w), headers=w.headers("clinician_a")), 200)
    return [Row("room.chat_transcript_viewed", "success", w.id("clinician_a"), "room", w.room_a.room_id)]


async def view_transcript_refused(w: World) -> list[Row]:
    _ok(await w.http.get(_transcript_url(w), headers=w.headers("admin")), 403)
    return [Row("room.chat_transcript_viewed", "denied", w.id("admin"), "room", w.room_a.room_id)]


async def _host_with_screen(s: Seats) -> None:
    reply = await s.host[0].request(m.Offer(sdp=await real_offer_sdp(screen=True)), within=30)
    assert isinstance(reply, m.ServerAnswer), reply


async def start_share_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _host_with_screen(s)
    await _accepted(s.host[0], m.StartShare())
    return [Row("room.share_started", "success", w.id("clinician_a"), "participant", s.host[1])]


async def start_share_refused(w: World) -> list[Row]:
    s = await seats(w, "b")
    error = await send_and_settle(s.seated[0], m.StartShare())  # no host allowed this client to share
    assert error is not None and error.code == "share_not_allowed", error
    return [Row("room.share_started", "denied", w.id("client_bs"), "room", w.room_b.room_id)]


async def stop_share_allowed(w: World) -> list[Row]:
    s = await seats(w)
    await _host_with_screen(s)
    await _accepted(s.host[0], m.StartShare())
    await _accepted(s.host[0], m.StopShare())
    return [
        Row("room.share_started", "success", w.id("clinician_a"), "participant", s.host[1]),
        Row("room.share_stopped", "success", w.id("clinician_a"), "participant", s.host[1]),
    ]


async def stop_share_not_sharing(w: World) -> list[Row]:
    """Stopping a share one does not run is a state refusal: no row (nothing happened, nothing refused)."""
    s = await seats(w, "b")
    error = await send_and_settle(s.seated[0], m.StopShare())
    assert error is not None and error.code == "not_sharing", error
    return [Row("room.share_stopped", "denied", w.id("client_bs"), "room", w.room_b.room_id, present=False)]


ISSUE_15: Final[dict[str, Expect]] = {
    "start_share": Expect(start_share_allowed, start_share_refused),
    "stop_share": Expect(stop_share_allowed, stop_share_not_sharing),
    "allow_share": host_action(
        "allow_share", "room.share_allowed", lambda s: m.AllowShare(participant_id=s.seated[1]), "seated"
    ),
    "revoke_share": host_action(
        "revoke_share", "room.share_revoked", lambda s: m.RevokeShare(participant_id=s.seated[1]), "seated"
    ),
    "add_cohost": Expect(add_cohost_allowed, add_cohost_refused),
    "remove_cohost": Expect(remove_cohost_allowed, remove_cohost_refused),
    "need_to_talk": Expect(need_to_talk_allowed, need_to_talk_refused),
    "acknowledge_need": Expect(acknowledge_need_allowed, acknowledge_need_refused),
    "start_breakout": Expect(start_breakout_allowed, start_breakout_refused),
    "end_breakout": Expect(end_breakout_allowed, end_breakout_refused),
    "set_display_name": Expect(display_name_allowed, display_name_refused),
    "save_chat_transcript": Expect(save_transcript_allowed, save_transcript_refused),
    "view_chat_transcript": Expect(view_transcript_allowed, view_transcript_refused),
}
EXPECTATIONS.update({action: ISSUE_15[action.value] for action in Action if action.value in ISSUE_15})


# --- issue 16: webhook subscriptions (HTTP; the CLI's rows are in tests/cli/test_webhooks.py) ---------------


async def webhooks_allowed(w: World) -> list[Row]:
    body = {"url": "http://127.0.0.1:9/ehr", "events": ["session.ended"]}
    added = _ok(await w.http.post("/api/v1/webhooks", json=body, headers=w.headers("admin")), 201).json()
    _ok(await w.http.get("/api/v1/webhooks", headers=w.headers("admin")), 200)
    _ok(await w.http.delete(f"/api/v1/webhooks/{added['id']}", headers=w.headers("admin")), 204)
    admin = w.id("admin")
    return [
        Row("webhook.added", "success", admin, "webhook", added["id"]),
        Row("webhook.viewed", "success", admin, "webhook", None),
        Row("webhook.removed", "success", admin, "webhook", added["id"]),
    ]


async def webhooks_refused(w: World) -> list[Row]:
    body = {"url": "http://127.0.0.1:9/ehr", "events": ["session.ended"]}
    _ok(await w.http.post("/api/v1/webhooks", json=body, headers=w.headers("clinician_a")), 403)
    return [Row("access.manage_webhooks", "denied", w.id("clinician_a"), None, None)]


# --- issue 16: tracks, enrollments, calendar feeds ----------------------------------------------------------

_TRACK: Final = {
    "title": "Audit IOP", "time_zone": "UTC", "first_start": "2030-01-07T18:00", "rrule": "FREQ=DAILY",
    "duration_minutes": 60,
}  # fmt: skip


async def _track(w: World) -> str:
    made = await w.http.post("/api/v1/tracks", json=_TRACK, headers=w.headers("clinician_a"))
    _ok(made, 201)
    return str(made.json()["id"])


async def _enrollment(w: World, track_id: str) -> str:
    made = await w.http.post(
        f"/api/v1/tracks/{track_id}/enrollments",
        json={"display_name": "Quinn"},
        headers=w.headers("clinician_a"),
    )
    _ok(made, 201)
    return str(made.json()["id"])


async def _feed(w: World) -> str:
    made = await w.http.post("/api/v1/calendar-feeds", headers=w.headers("clinician_a"))
    _ok(made, 201)
    return str(made.json()["id"])


async def create_track_allowed(w: World) -> list[Row]:
    return [Row("track.created", "success", w.id("clinician_a"), "track", await _track(w))]


async def create_track_refused(w: World) -> list[Row]:
    _ok(await w.http.post("/api/v1/tracks", json=_TRACK, headers=w.headers("staff")), 403)
    return [Row("track.created", "denied", w.id("staff"), None, None)]


async def view_track_allowed(w: World) -> list[Row]:
    track_id = await _track(w)
    _ok(await w.http.get(f"/api/v1/tracks/{track_id}", headers=w.headers("clinician_a")), 200)
    return [Row("track.viewed", "success", w.id("clinician_a"), "track", track_id)]


async def view_track_refused(w: World) -> list[Row]:
    track_id = await _track(w)
    _ok(await w.http.get(f"/api/v1/tracks/{track_id}", headers=w.headers("clinician_b")), 403)
    return [Row("track.viewed", "denied", w.id("clinician_b"), "track", track_id)]


async def manage_track_allowed(w: World) -> list[Row]:
    track_id = await _track(w)
    url = f"/api/v1/tracks/{track_id}/exceptions"
    _ok(await w.http.put(url, json={}, headers=w.headers("clinician_a")), 200)
    _ok(await w.http.delete(f"/api/v1/tracks/{track_id}", headers=w.headers("clinician_a")), 204)
    return [
        Row("track.changed", "success", w.id("clinician_a"), "track", track_id),
        Row("track.ended", "success", w.id("clinician_a"), "track", track_id),
    ]


async def manage_track_refused(w: World) -> list[Row]:
    track_id = await _track(w)
    _ok(await w.http.delete(f"/api/v1/tracks/{track_id}", headers=w.headers("clinician_b")), 403)
    return [Row("track.changed", "denied", w.id("clinician_b"), "track", track_id)]


async def enroll_allowed(w: World) -> list[Row]:
    enrollment_id = await _enrollment(w, await _track(w))
    return [Row("enrollment.created", "success", w.id("clinician_a"), "enrollment", enrollment_id)]


async def enroll_refused(w: World) -> list[Row]:
    track_id = await _track(w)
    url = f"/api/v1/tracks/{track_id}/enrollments"
    _ok(await w.http.post(url, json={"display_name": "Quinn"}, headers=w.headers("admin")), 403)
    return [Row("enrollment.created", "denied", w.id("admin"), "track", track_id)]


async def revoke_enrollment_allowed(w: World) -> list[Row]:
    enrollment_id = await _enrollment(w, await _track(w))
    _ok(await w.http.delete(f"/api/v1/enrollments/{enrollment_id}", headers=w.headers("clinician_a")), 204)
    return [Row("enrollment.revoked", "success", w.id("clinician_a"), "enrollment", enrollment_id)]


async def revoke_enrollment_refused(w: World) -> list[Row]:
    enrollment_id = await _enrollment(w, await _track(w))
    _ok(await w.http.delete(f"/api/v1/enrollments/{enrollment_id}", headers=w.headers("clinician_b")), 403)
    return [Row("enrollment.revoked", "denied", w.id("clinician_b"), "enrollment", enrollment_id)]


async def create_feed_allowed(w: World) -> list[Row]:
    return [Row("calendar_feed.created", "success", w.id("clinician_a"), "calendar_feed", await _feed(w))]


async def create_feed_refused(w: World) -> list[Row]:
    _ok(await w.http.post("/api/v1/calendar-feeds", headers=w.headers("staff")), 403)
    return [Row("calendar_feed.created", "denied", w.id("staff"), None, None)]


async def revoke_feed_allowed(w: World) -> list[Row]:
    feed_id = await _feed(w)
    _ok(await w.http.delete(f"/api/v1/calendar-feeds/{feed_id}", headers=w.headers("clinician_a")), 204)
    return [Row("calendar_feed.revoked", "success", w.id("clinician_a"), "calendar_feed", feed_id)]


async def revoke_feed_refused(w: World) -> list[Row]:
    feed_id = await _feed(w)
    _ok(await w.http.delete(f"/api/v1/calendar-feeds/{feed_id}", headers=w.headers("clinician_b")), 403)
    return [Row("calendar_feed.revoked", "denied", w.id("clinician_b"), "calendar_feed", feed_id)]


ISSUE_16: Final[dict[str, Expect]] = {
    "create_track": Expect(create_track_allowed, create_track_refused),
    "view_track": Expect(view_track_allowed, view_track_refused),
    "manage_track": Expect(manage_track_allowed, manage_track_refused),
    "enroll_client": Expect(enroll_allowed, enroll_refused),
    "revoke_enrollment": Expect(revoke_enrollment_allowed, revoke_enrollment_refused),
    "create_calendar_feed": Expect(create_feed_allowed, create_feed_refused),
    "revoke_calendar_feed": Expect(revoke_feed_allowed, revoke_feed_refused),
    "manage_webhooks": Expect(webhooks_allowed, webhooks_refused),
}
EXPECTATIONS.update({action: ISSUE_16[action.value] for action in Action if action.value in ISSUE_16})


def test_every_permission_action_has_an_expectation() -> None:
    missing = set(PERMISSIONS) - set(EXPECTATIONS)
    assert not missing, f"permission-table actions without an audit expectation: {sorted(missing)}"
    assert set(Action) == set(PERMISSIONS)


# --- the run --------------------------------------------------------------------------------------------------


@pytest.fixture
async def world(live_server_factory: Any) -> AsyncIterator[World]:
    async with (
        live_server_factory(
            turn_secret="audit-secret-0123456789",
            ice_servers="turn:127.0.0.1:3478",
            ice_host_addresses="127.0.0.1",
        ) as live,
        httpx.AsyncClient(base_url=live.base_url, timeout=30, trust_env=False) as http,
    ):
        api = Api(live, http)
        users = {
            role_key: await api.user(role)
            for role_key, role in (
                ("clinician_a", Role.CLINICIAN),
                ("clinician_b", Role.CLINICIAN),
                ("staff", Role.STAFF),
                ("admin", Role.ADMIN),
            )
        }
        room_a = (await api.create_room(users["clinician_a"]))["id"]
        room_b = (await api.create_room(users["clinician_b"]))["id"]
        invites = {
            "client_a": await api.create_invite(users["clinician_a"], room_a, display_name="Wanda"),
            "client_as": await api.create_invite(users["clinician_a"], room_a, display_name="Sam"),
            "client_b": await api.create_invite(users["clinician_b"], room_b, display_name="Bea"),
            "client_bs": await api.create_invite(users["clinician_b"], room_b, display_name="Ben"),
        }
        w = World(
            live,
            api,
            users,
            RoomScope(RoomId(room_a), frozenset({users["clinician_a"].id})),
            RoomScope(RoomId(room_b), frozenset({users["clinician_b"].id})),
            invites,
        )
        w.sessions = {key: (await api.services.tokens.verify(user.token)).jti for key, user in users.items()}
        try:
            yield w
        finally:
            await w.close()


async def audit_rows_after(w: World, seq: int, wanted: list[Row]) -> list[Any]:
    """Rows after ``seq``. Socket rows are queued (flushed here); a host's ``end`` closes the sockets before
    its handler has recorded the row, so rows still missing are polled for, boundedly."""
    keys = {(r.action, r.outcome, r.actor_id, r.object_type, r.object_id) for r in wanted if r.present}
    for _ in range(250):
        await w.api.services.audit_outbox.flush()
        async with w.api.services.storage.db.read() as conn:
            rows = list((await conn.execute(select(audit_log).where(audit_log.c.seq > seq))).all())
        if keys <= {(r.action, r.outcome, r.actor_id, r.object_type, r.object_id) for r in rows}:
            break
        await asyncio.sleep(0.02)
    return rows


async def last_seq(w: World) -> int:
    await w.api.services.audit_outbox.flush()
    async with w.api.services.storage.db.read() as conn:
        rows = (await conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1))).all()
    return int(rows[0].seq) if rows else 0


def problems_with(rows: list[Any], wanted: list[Row], *, web: bool) -> list[str]:
    problems = []
    for want in wanted:
        hits = [
            r
            for r in rows
            if (r.action, r.outcome, r.actor_id, r.object_type, r.object_id)
            == (want.action, want.outcome, want.actor_id, want.object_type, want.object_id)
        ]
        if want.present and not hits:
            seen = sorted({(r.action, r.outcome, r.actor_id, r.object_type, r.object_id) for r in rows})
            problems.append(f"missing {want}; rows written: {seen}")
        if not want.present and hits:
            problems.append(f"unexpected {want}")
        # HTTP and socket rows carry the keyed user-agent hash (the CLI has none)
        if want.present and web and hits and not all(r.user_agent_hash for r in hits):
            problems.append(f"{want.action} by {want.actor_id}: no user-agent hash")
    return problems


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
async def test_every_permission_action_leaves_its_audit_rows(world: World, action: Action) -> None:
    expect = EXPECTATIONS.get(action)
    assert expect is not None, f"{action} has no audit expectation: add it to EXPECTATIONS"
    problems: list[str] = []
    web = expect.refused != CLI_ONLY
    if not isinstance(expect.refused, str):
        before = await last_seq(world)
        wanted = await expect.refused(world)
        assert all(row.outcome == "denied" for row in wanted)
        problems += problems_with(await audit_rows_after(world, before, wanted), wanted, web=web)
        await world.close()
        world.sockets.clear()
    before = await last_seq(world)
    wanted = await expect.allowed(world)
    problems += problems_with(await audit_rows_after(world, before, wanted), wanted, web=web)
    assert problems == [], "\n".join(problems)
