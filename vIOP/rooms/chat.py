"""Chat in a room: who may write to whom, and the host's switch for client-to-client chat.

Three kinds of line, all live only (a line reaches those present when it is sent and is kept nowhere):

- **room chat** (``private`` false): to everyone seated in the room. Clients may write it only while the
  room's ``clients_may_chat`` is on; hosts always may.
- **private chat** between one client and the room's hosts: a client's private line goes to every host; a
  host's names the client (``to``) and goes to that client and every host, so co-therapists read one thread.
- **lobby chat**: private chat with a client who is still waiting (knocked, not admitted). Same rules; the
  waiting client hears nothing else from inside.

Pure: the rules run on a :class:`~vIOP.rooms.room.Room` value; delivery and transport are the session's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from vIOP.errors import BadRequest, Conflict, Forbidden
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.events import ChatPolicyChanged
from vIOP.rooms.limits import MAX_CHAT_CHARS
from vIOP.rooms.participant import Participant, ParticipantState, Role
from vIOP.rooms.room import Room, Transition


class ChatOff(Forbidden):
    """A client wrote to the room while the hosts have client-to-client chat off."""

    code = "chat_off"


class ChatNotPresent(Conflict):
    """The sender or the addressee is not in the room (seated) or, for private chat, in its lobby."""

    code = "not_in_room"


class InvalidChat(BadRequest):
    code = "invalid_chat"


WAITING_STATES = frozenset({ParticipantState.KNOCKING, ParticipantState.WAITING})


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatLine:
    """One chat line on its way to those present. PHI (``text``, ``sender_name``): never logged or stored;
    sealed whenever it leaves the process (``vIOP.storage.redis_chat``)."""

    room_id: RoomId
    sender: ParticipantId
    sender_name: str
    sender_role: Role
    text: str
    private: bool
    # The client of a private thread (the sender when a client writes, the addressee when a host does);
    # None for room chat.
    thread: ParticipantId | None
    at: float


def set_chat_policy(room: Room, *, by: ParticipantId, clients_may_chat: bool, at: float) -> Transition:
    """A host turns client-to-client chat on or off. Setting what is already set changes nothing."""
    room.require_host(by)
    if room.clients_may_chat == clients_may_chat:
        return Transition(room, ())
    after = dataclasses.replace(room, clients_may_chat=clients_may_chat)
    return Transition(
        after, (ChatPolicyChanged(room_id=room.id, at=at, by=by, clients_may_chat=clients_may_chat),)
    )


def clean_text(text: str) -> str:
    """The line as sent, with surrounding white space trimmed; empty or over the limit is refused."""
    trimmed = text.strip()
    if not trimmed:
        raise InvalidChat("a chat message needs some text")
    if len(trimmed) > MAX_CHAT_CHARS:
        raise InvalidChat(f"a chat message holds at most {MAX_CHAT_CHARS} characters")
    return trimmed


def compose(
    room: Room,
    sender: Participant,
    *,
    seated: bool,
    text: str,
    private: bool,
    to: ParticipantId | None,
    at: float,
) -> ChatLine:
    """The line ``sender`` may send, or the refusal. ``seated``: the sender holds a seat now (the socket's
    own, freshest knowledge; ``room`` may be a moment older)."""
    room.require_not_ended()
    body = clean_text(text)
    thread: ParticipantId | None
    if not private:
        if to is not None:
            raise InvalidChat("room chat goes to everyone: leave out `to`, or send it private")
        if not seated:
            raise ChatNotPresent("you are not in the room yet")
        if sender.role is Role.CLIENT and not room.clients_may_chat:
            raise ChatOff("the hosts have turned chat to everyone off; you can still write to the hosts")
        thread = None
    elif sender.role is Role.CLIENT:
        if to is not None:
            raise InvalidChat("a private message from a client goes to the hosts: leave out `to`")
        if not seated and sender.state not in WAITING_STATES:
            raise ChatNotPresent("you are not in the room or its waiting room")
        thread = sender.id
    else:
        if to is None:
            raise InvalidChat("name the client (`to`) of a private message")
        target = room.participant(to)  # ParticipantNotFound: not in this room
        if target.role is not Role.CLIENT:
            raise InvalidChat("private messages go between a client and the hosts")
        if not (target.is_seated or target.state in WAITING_STATES):
            raise ChatNotPresent("that client is not in the room or its waiting room")
        if not seated:
            raise ChatNotPresent("you are not in the room")
        thread = target.id
    return ChatLine(
        room_id=room.id,
        sender=sender.id,
        sender_name=sender.display_name,
        sender_role=sender.role,
        text=body,
        private=private,
        thread=thread,
        at=at,
    )
