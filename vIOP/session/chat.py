"""Chat on the signaling socket (issue 15): a sender's line checked and published, and every published line
delivered to this process's sockets that may read it.

A line is checked against this process's newest read of the room (kept by :class:`RoomDelivery` from the
room's events: no Redis read per line) and by the sender's socket (seated or waiting), then published
sealed on the chat bus (``vIOP.storage.redis_chat``), which every process, this one included, delivers
from. The sender gets the line back at once, with its request ``id``; the others through the bus.

Rate: a token bucket per socket in this process's memory (``limits.CHAT_BURST`` at once, then
``limits.CHAT_PER_SECOND``); a reconnect starts a new bucket, which a flood cannot use to go faster than
the socket's own connect and join limits allow.

Lines are never logged, stored or audited (only refusals by the permission table or the chat switch leave a
``denied`` audit row, with ids only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from vIOP.errors import RateLimited
from vIOP.ids import ParticipantId
from vIOP.rooms import limits
from vIOP.rooms.chat import ChatLine, compose
from vIOP.rooms.participant import Role as DomainRole
from vIOP.session.delivery import RoomDelivery, wire_role
from vIOP.signaling import messages as m
from vIOP.signaling.codec import encode_text
from vIOP.signaling.ratelimit import Clock, TokenBucket

if TYPE_CHECKING:
    from vIOP.session.services import Services
    from vIOP.session.signal import SignalSession

log = logging.getLogger("vIOP.chat")


class ChatSender:
    """One socket's chat: its rate and what it sends."""

    __slots__ = ("_bucket",)

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._bucket = TokenBucket(limits.CHAT_PER_SECOND, limits.CHAT_BURST, clock)

    async def send(self, session: SignalSession, msg: m.Chat) -> None:
        pid = session._seat()
        if not self._bucket.try_take():
            raise RateLimited("too many chat messages; wait a moment")
        delivery = session.delivery
        room = delivery.snapshot(session.room_id) or await session.services.rooms.room(session.room_id)
        line = compose(
            room,
            room.participant(pid),
            seated=delivery.is_seated_here(session.conn),
            text=msg.text,
            private=msg.private,
            to=ParticipantId(msg.to) if msg.to is not None else None,
            at=session.services.rooms.clock(),
        )
        await session.services.chat.publish(line)
        session.conn.send(wire_line(line, msg.id))


def wire_line(line: ChatLine, request_id: m.RequestId | None = None) -> m.ChatMessage:
    return m.ChatMessage(
        id=request_id,
        sender=line.sender,
        sender_name=line.sender_name,
        sender_role=wire_role(line.sender_role),
        text=line.text,
        private=line.private,
        thread=line.thread,
        sent_at=int(line.at * 1000),
    )


def deliver_line(delivery: RoomDelivery, line: ChatLine) -> None:
    """``line`` to this process's sockets that may read it (the sender has it already): room chat to
    everyone seated in the sender's group (issue 15: a breakout is a group of its own); a private line to its client (waiting or seated) and the seated hosts."""
    if line.private:
        room = delivery.snapshot(line.room_id)
        if room is None:
            return  # nobody of this room here
        hosts = {p.id for p in room.participants if p.role is DomainRole.HOST}
        frame = encode_text(wire_line(line))
        for conn in delivery.connections.in_room(line.room_id):
            pid = conn.participant_id
            if pid is None or pid == line.sender:
                continue
            if pid == line.thread or (pid in hosts and delivery.is_seated_here(conn)):
                conn.send_frame(frame)
        return
    # Room chat stays in the sender's group: a private breakout's two sides, or everyone else (issue 15).
    group = delivery.group_of(line.room_id, line.sender)
    delivery.to_group(line.room_id, group, wire_line(line), exclude=line.sender)


async def run_chat_loop(services: Services, delivery: RoomDelivery, retry: float = 1.0) -> None:
    """Deliver every chat line from every process, for the life of the app."""
    while True:
        try:
            async for line in services.chat.lines():
                try:
                    deliver_line(delivery, line)
                except Exception:
                    log.exception("chat delivery failed", extra={"room_id": line.room_id})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat bus failed; resubscribing")
            await asyncio.sleep(retry)
