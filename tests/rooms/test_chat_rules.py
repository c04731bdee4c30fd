"""The chat rules on a room value (issue 15): who may write to whom, and the hosts' switch."""

from __future__ import annotations

import dataclasses

import pytest

from vIOP.errors import VIOPError
from vIOP.ids import ClientId, ParticipantId, RoomId, SessionId, UserId
from vIOP.rooms.chat import ChatNotPresent, ChatOff, InvalidChat, compose, set_chat_policy
from vIOP.rooms.errors import NotAHost, ParticipantNotFound
from vIOP.rooms.events import ChatPolicyChanged
from vIOP.rooms.limits import MAX_CHAT_CHARS
from vIOP.rooms.participant import Participant, ParticipantState, Role
from vIOP.rooms.room import Room, RoomKind, RoomState

HOST, SEATED, WAITING, GONE = (ParticipantId(p) for p in ("pt_host", "pt_seated", "pt_waiting", "pt_gone"))


def _person(pid: ParticipantId, role: Role, state: ParticipantState) -> Participant:
    subject = UserId("us_host") if role is Role.HOST else ClientId(f"cl_{pid}")
    return Participant(
        id=pid, room_id=RoomId("rm_chat"), subject=subject, role=role, display_name=pid, state=state,
        knocked_at=0.0, knock_seq=1,
    )  # fmt: skip


@pytest.fixture
def room() -> Room:
    return Room(
        id=RoomId("rm_chat"), session_id=SessionId("ss_chat"), kind=RoomKind.GROUP, capacity=10,
        host_ids=frozenset({UserId("us_host")}), state=RoomState.LIVE, opened_at=0.0,
        participants=(
            _person(HOST, Role.HOST, ParticipantState.IN_ROOM),
            _person(SEATED, Role.CLIENT, ParticipantState.ADMITTED),
            _person(WAITING, Role.CLIENT, ParticipantState.WAITING),
            _person(GONE, Role.CLIENT, ParticipantState.LEFT),
        ),
    )  # fmt: skip


def test_room_private_and_lobby_lines(room: Room) -> None:
    line = compose(room, room.participant(SEATED), seated=True, text=" hi ", private=False, to=None, at=5.0)
    assert (line.text, line.private, line.thread, line.sender_role) == ("hi", False, None, Role.CLIENT)
    mine = compose(room, room.participant(WAITING), seated=False, text="late", private=True, to=None, at=5.0)
    assert mine.thread == WAITING
    reply = compose(room, room.participant(HOST), seated=True, text="ok", private=True, to=WAITING, at=5.0)
    assert (reply.thread, reply.sender_role) == (WAITING, Role.HOST)


@pytest.mark.parametrize(
    ("sender", "seated", "private", "to", "text", "refusal"),
    [
        (SEATED, True, False, None, "", InvalidChat),
        (SEATED, True, False, None, "x" * (MAX_CHAT_CHARS + 1), InvalidChat),
        (SEATED, True, False, SEATED, "hi", InvalidChat),
        (SEATED, True, True, HOST, "hi", InvalidChat),
        (WAITING, False, False, None, "hi", ChatNotPresent),
        (GONE, False, True, None, "hi", ChatNotPresent),
        (HOST, True, True, None, "hi", InvalidChat),
        (HOST, True, True, HOST, "hi", InvalidChat),
        (HOST, True, True, GONE, "hi", ChatNotPresent),
        (HOST, True, True, ParticipantId("pt_nobody"), "hi", ParticipantNotFound),
    ],
)
def test_refusals(
    room: Room,
    sender: ParticipantId,
    seated: bool,
    private: bool,
    to: ParticipantId | None,
    text: str,
    refusal: type[VIOPError],
) -> None:
    with pytest.raises(refusal):
        compose(room, room.participant(sender), seated=seated, text=text, private=private, to=to, at=1.0)


def test_the_switch_stops_clients_room_chat_only(room: Room) -> None:
    t = set_chat_policy(room, by=HOST, clients_may_chat=False, at=2.0)
    assert t.room.clients_may_chat is False
    assert t.events == (ChatPolicyChanged(room_id=room.id, at=2.0, by=HOST, clients_may_chat=False),)
    assert set_chat_policy(t.room, by=HOST, clients_may_chat=False, at=3.0).events == ()  # no change
    off = t.room
    with pytest.raises(ChatOff):
        compose(off, off.participant(SEATED), seated=True, text="hi", private=False, to=None, at=3.0)
    compose(off, off.participant(SEATED), seated=True, text="hi", private=True, to=None, at=3.0)
    compose(off, off.participant(HOST), seated=True, text="hi", private=False, to=None, at=3.0)
    with pytest.raises(NotAHost):
        set_chat_policy(room, by=SEATED, clients_may_chat=False, at=2.0)
    assert off == dataclasses.replace(room, clients_may_chat=False)  # nothing else changed
