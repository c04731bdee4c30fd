"""Chat over the real signaling socket (issue 15): room chat, private chat with the hosts, lobby chat, the
hosts' switch for client-to-client chat, and every bad input refused with a typed ``error`` that changes
nothing. No media: sockets only (a client holds a seat once admitted)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api import signal_support as ss
from tests.support import LiveServer
from vIOP.client.signaling import SignalingClient, SignalingClosed
from vIOP.ids import RoomId
from vIOP.rooms import limits
from vIOP.signaling import messages as m


@dataclass
class Seat:
    socket: SignalingClient
    pid: str
    heard: list[m.ServerMessage]

    async def settle(self) -> list[m.ServerMessage]:
        """Everything the server sent until a fresh ping's pong (sent in order on this socket), kept."""
        probe = f"probe-{secrets.token_hex(4)}"
        await self.socket.send(m.Ping(id=probe))
        while True:
            reply = await self.socket.recv(within=10)
            if isinstance(reply, m.Pong) and reply.id == probe:
                return self.heard
            self.heard.append(reply)

    async def request(self, message: m.ClientMessage) -> m.ServerMessage:
        """``message`` with a fresh id, and the direct reply to it (a chat echo or an error)."""
        request_id = f"req-{secrets.token_hex(4)}"
        await self.socket.send(type(message)(**{**_fields(message), "id": request_id}))
        async with asyncio.timeout(10):
            while True:
                reply = await self.socket.recv(within=None)
                if getattr(reply, "id", None) == request_id:
                    return reply
                self.heard.append(reply)

    def chats(self) -> list[m.ChatMessage]:
        return [x for x in self.heard if isinstance(x, m.ChatMessage)]

    def texts(self) -> list[str]:
        return [x.text for x in self.chats()]


def _fields(message: m.ClientMessage) -> dict[str, Any]:
    return {f: getattr(message, f) for f in message.__struct_fields__}


async def _seat(live: LiveServer, source: Any) -> Seat:
    socket = await SignalingClient.connect(await source(), origin=live.base_url)
    welcome = await socket.request(m.Join())
    assert isinstance(welcome, m.Welcome), welcome
    return Seat(socket, welcome.participant_id, [])


@dataclass
class Group:
    live: LiveServer
    room_id: RoomId
    host: Seat
    ana: Seat  # admitted
    ben: Seat  # admitted
    wes: Seat  # waiting in the lobby


@pytest.fixture
async def group(live_server_factory: Any) -> AsyncIterator[Group]:
    async with live_server_factory() as live:
        clinician = await ss.clinician(live)
        scope = await ss.room(live, clinician)
        host = await _seat(live, ss.ticket_source(live, clinician.principal, scope, clinician.session))
        people = []
        for name in ("Ana Chatwell", "Ben Chatwell", "Wes Chatwell"):
            principal = await ss.invite(live, clinician, scope, name)
            people.append(await _seat(live, ss.ticket_source(live, principal, scope, None)))
        ana, ben, wes = people
        for seated in (ana, ben):
            await host.socket.send(m.Admit(participant_id=seated.pid))
            await seated.socket.expect(m.Admitted)
        await wes.socket.expect(m.Waiting)
        world = Group(live, scope.room_id, host, ana, ben, wes)
        try:
            yield world
        finally:
            for seat in (host, ana, ben, wes):
                with contextlib.suppress(Exception):
                    await seat.socket.close()


async def _settle_all(g: Group) -> None:
    for seat in (g.host, g.ana, g.ben, g.wes):
        await seat.settle()


async def _wait_for_text(seat: Seat, text: str) -> m.ChatMessage:
    """The chat line ``text`` at ``seat`` (other processes' lines arrive through the bus: bounded wait)."""
    async with asyncio.timeout(10):
        while True:
            for line in seat.chats():
                if line.text == text:
                    return line
            seat.heard.append(await seat.socket.recv(within=None))


async def test_room_chat_reaches_everyone_seated_and_not_the_lobby(group: Group) -> None:
    g = group
    echo = await g.ana.request(m.Chat(text="  Hello everyone, <b>Ana</b> here  "))
    assert isinstance(echo, m.ChatMessage), echo
    assert echo.text == "Hello everyone, <b>Ana</b> here"  # trimmed, otherwise as sent (markup is text)
    assert (echo.sender, echo.sender_role, echo.private, echo.thread) == (
        g.ana.pid,
        m.Role.CLIENT,
        False,
        None,
    )
    assert echo.sender_name == "Ana Chatwell"
    for reader in (g.host, g.ben):
        line = await _wait_for_text(reader, echo.text)
        assert line.sender == g.ana.pid and line.sender_name == "Ana Chatwell"
        assert line.id is None  # only the sender's copy answers its request
    host_line = await g.host.request(m.Chat(text="Welcome, all"))
    assert isinstance(host_line, m.ChatMessage) and host_line.sender_role is m.Role.HOST
    await _wait_for_text(g.ana, "Welcome, all")
    await _wait_for_text(g.ben, "Welcome, all")
    await _settle_all(g)
    assert g.wes.chats() == []  # the waiting room hears nothing from inside
    assert g.ana.texts().count(echo.text) == 0  # the sender has its echo only, no second copy


async def test_private_chat_goes_between_one_client_and_the_hosts(group: Group) -> None:
    g = group
    echo = await g.ben.request(m.Chat(text="Can we talk after group?", private=True))
    assert isinstance(echo, m.ChatMessage) and (echo.private, echo.thread) == (True, g.ben.pid)
    line = await _wait_for_text(g.host, "Can we talk after group?")
    assert (line.private, line.thread, line.sender) == (True, g.ben.pid, g.ben.pid)
    reply = await g.host.request(m.Chat(text="Yes, stay on after", private=True, to=g.ben.pid))
    assert isinstance(reply, m.ChatMessage) and (reply.thread, reply.sender_role) == (g.ben.pid, m.Role.HOST)
    await _wait_for_text(g.ben, "Yes, stay on after")
    await _settle_all(g)
    for outsider in (g.ana, g.wes):
        assert outsider.chats() == [], outsider.texts()


async def test_lobby_chat_goes_both_ways_before_admission(group: Group) -> None:
    g = group
    echo = await g.wes.request(m.Chat(text="Running 5 minutes late, camera broken", private=True))
    assert isinstance(echo, m.ChatMessage) and echo.thread == g.wes.pid
    line = await _wait_for_text(g.host, "Running 5 minutes late, camera broken")
    assert line.sender == g.wes.pid and line.sender_name == "Wes Chatwell"
    reply = await g.host.request(m.Chat(text="No problem, audio is fine", private=True, to=g.wes.pid))
    assert isinstance(reply, m.ChatMessage), reply
    await _wait_for_text(g.wes, "No problem, audio is fine")
    # Room chat is for those inside: the waiting client is refused.
    refused = await g.wes.request(m.Chat(text="hello room?"))
    assert isinstance(refused, m.ErrorMessage) and refused.code == "not_in_room"
    await _settle_all(g)
    for outsider in (g.ana, g.ben):
        assert outsider.chats() == [], outsider.texts()
    # Admitted later, the same client chats to the room.
    await g.host.socket.send(m.Admit(participant_id=g.wes.pid))
    await g.wes.socket.expect(m.Admitted)
    assert isinstance(await g.wes.request(m.Chat(text="In now")), m.ChatMessage)
    await _wait_for_text(g.ana, "In now")


async def test_hosts_turn_client_to_client_chat_off(group: Group) -> None:
    g = group
    rooms = ss.services(g.live).rooms
    for seat in (g.host, g.ana, g.ben):  # told on admission (with the roster that follows `admitted`)
        async with asyncio.timeout(10):
            while not any(isinstance(x, m.ChatPolicy) for x in seat.heard):
                seat.heard.append(await seat.socket.recv(within=None))
    await _settle_all(g)
    for seat in (g.host, g.ana, g.ben):
        assert [x.clients_may_chat for x in seat.heard if isinstance(x, m.ChatPolicy)] == [True]
    assert not any(isinstance(x, m.ChatPolicy) for x in g.wes.heard)
    # A client may not flip the switch: forbidden, nothing changed.
    room_id = g.room_id
    before = await rooms.room(room_id)
    refused = await g.ana.request(m.SetChatPolicy(clients_may_chat=False))
    assert isinstance(refused, m.ErrorMessage) and refused.code == "forbidden"
    assert await rooms.room(room_id) == before
    await g.host.socket.send(m.SetChatPolicy(clients_may_chat=False))
    for seat in (g.host, g.ana, g.ben):
        policy = await seat.socket.expect(m.ChatPolicy)
        assert policy.clients_may_chat is False
    assert (await rooms.room(room_id)).clients_may_chat is False
    off = await g.ana.request(m.Chat(text="anyone?"))
    assert isinstance(off, m.ErrorMessage) and off.code == "chat_off"
    # Private chat with the hosts stays, and the hosts still write to the room.
    assert isinstance(await g.ana.request(m.Chat(text="to the hosts", private=True)), m.ChatMessage)
    assert isinstance(await g.host.request(m.Chat(text="Chat is off for now")), m.ChatMessage)
    await _wait_for_text(g.ben, "Chat is off for now")
    await _wait_for_text(g.host, "to the hosts")
    await _settle_all(g)
    assert "anyone?" not in g.ben.texts() + g.host.texts()
    assert "to the hosts" not in g.ben.texts()
    await g.host.socket.send(m.SetChatPolicy(clients_may_chat=True))
    assert (await g.ana.socket.expect(m.ChatPolicy)).clients_may_chat is True
    assert isinstance(await g.ana.request(m.Chat(text="back on")), m.ChatMessage)


async def test_bad_chat_input_is_refused_with_a_typed_error(group: Group) -> None:
    g = group
    rooms = ss.services(g.live).rooms
    room_id = g.room_id
    before = await rooms.room(room_id)
    too_long = "x" * (limits.MAX_CHAT_CHARS + 1)
    cases: list[tuple[Seat, m.ClientMessage | str, str]] = [
        (
            g.ana,
            f'{{"type":"chat","text":"{too_long}"}}',
            "invalid_message",
        ),  # over the limit: the codec refuses
        (g.ana, m.Chat(text="   "), "invalid_chat"),
        (g.ana, m.Chat(text="hi", to=g.ben.pid), "invalid_chat"),  # room chat names nobody
        (g.ana, m.Chat(text="hi", private=True, to=g.ben.pid), "invalid_chat"),  # no client-to-client private
        (g.host, m.Chat(text="hi", private=True), "invalid_chat"),  # a host names the client
        (g.host, m.Chat(text="hi", private=True, to="pt_nobodyhere"), "participant_not_found"),
        (g.host, m.Chat(text="hi", private=True, to=g.host.pid), "invalid_chat"),  # not a client
    ]
    for seat, message, code in cases:
        if isinstance(message, str):
            request_id = "raw-1"
            await seat.socket.send_raw(message[:-1] + f',"id":"{request_id}"}}')
            async with asyncio.timeout(10):
                while True:
                    reply = await seat.socket.recv(within=None)
                    if getattr(reply, "id", None) == request_id:
                        break
                    seat.heard.append(reply)
        else:
            reply = await seat.request(message)
        assert isinstance(reply, m.ErrorMessage) and reply.code == code, (code, reply)
    # Exactly the limit is fine.
    assert isinstance(await g.ana.request(m.Chat(text="y" * limits.MAX_CHAT_CHARS)), m.ChatMessage)
    # To a client who has left: refused.
    await g.ben.socket.send(m.Leave())
    with contextlib.suppress(SignalingClosed):
        await g.ben.socket.recv(within=5)
    left = await g.host.socket.expect(m.ParticipantLeft)  # the host's process has the room's news
    assert left.participant_id == g.ben.pid
    await g.host.socket.expect(m.Lobby)  # and the room read that follows the news (hosts get the lobby)
    gone = await g.host.request(m.Chat(text="are you there?", private=True, to=g.ben.pid))
    assert isinstance(gone, m.ErrorMessage) and gone.code == "not_in_room", gone
    after = await rooms.room(room_id)
    assert after.clients_may_chat == before.clients_may_chat
    await _settle_all_present(g)
    assert "are you there?" not in g.ana.texts()


async def _settle_all_present(g: Group) -> None:
    for seat in (g.host, g.ana, g.wes):
        await seat.settle()


async def test_chat_too_fast_is_rate_limited_per_sender(group: Group) -> None:
    g = group
    # Sent back to back (no waiting for replies), so the bucket's refill (one a second) has no time to
    # matter: the burst passes, the next line is refused.
    count = limits.CHAT_BURST + 1
    for i in range(count):
        await g.ana.socket.send(m.Chat(text=f"line {i}", id=f"burst-{i}"))
    replies: dict[str, m.ServerMessage] = {}
    async with asyncio.timeout(10):
        while len(replies) < count:
            reply = await g.ana.socket.recv(within=None)
            request_id = getattr(reply, "id", None)
            if isinstance(request_id, str) and request_id.startswith("burst-"):
                replies[request_id] = reply
            else:
                g.ana.heard.append(reply)
    codes = [
        r.code if isinstance(r, m.ErrorMessage) else "ok"
        for r in (replies[f"burst-{i}"] for i in range(count))
    ]
    assert codes == ["ok"] * limits.CHAT_BURST + ["rate_limited"], codes
    # Another sender has a bucket of its own.
    assert isinstance(await g.ben.request(m.Chat(text="my turn")), m.ChatMessage)
    await _wait_for_text(g.host, "my turn")
    await g.host.settle()
    assert f"line {limits.CHAT_BURST}" not in g.host.texts()
