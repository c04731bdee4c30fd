"""What one process must remember to rebuild Redis after Redis lost its data.

Each process holds some connections. For each it keeps the participant's latest record and the newest copy
of the room it has seen (rooms carry a version). After a Redis restart it re-asserts exactly those, and the
stores merge them in (:func:`merge_held`): what Redis already has is newer and wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.participant import Participant
from vIOP.rooms.room import Room, RoomState


class Holdings:
    """Per process, not shared: the participants whose connections live here. Not thread-safe (one
    event loop)."""

    __slots__ = ("_held", "_rooms")

    def __init__(self) -> None:
        self._rooms: dict[RoomId, Room] = {}
        self._held: dict[RoomId, set[ParticipantId]] = {}

    def hold(self, room: Room, participant_id: ParticipantId) -> None:
        self.observe(room)
        self._held.setdefault(room.id, set()).add(participant_id)

    def release(self, room_id: RoomId, participant_id: ParticipantId) -> None:
        held = self._held.get(room_id)
        if held is None:
            return
        held.discard(participant_id)
        if not held:
            del self._held[room_id]
            self._rooms.pop(room_id, None)

    def observe(self, room: Room) -> None:
        """Remember ``room`` if it is newer than the copy we have (or of a newer session)."""
        known = self._rooms.get(room.id)
        if known is None or room.session_id != known.session_id or room.version >= known.version:
            self._rooms[room.id] = room
        if room.state is RoomState.ENDED:
            self._held.pop(room.id, None)
            self._rooms.pop(room.id, None)

    def holds(self, room_id: RoomId, participant_id: ParticipantId) -> bool:
        return participant_id in self._held.get(room_id, ())

    def plan(self) -> list[tuple[Room, tuple[Participant, ...]]]:
        """For each room: the room as last seen and the active participants held here."""
        out = []
        for room_id, held in self._held.items():
            room = self._rooms.get(room_id)
            if room is None:
                continue
            mine = tuple(p for p in room.participants if p.id in held and p.is_active)
            if mine:
                out.append((room, mine))
        return out


def merge_held(
    current: Room | None, remembered: Room, held: Sequence[Participant]
) -> tuple[Room, tuple[ParticipantId, ...]]:
    """The room to store after a data loss: ``current`` (or ``remembered`` without its participants when
    the store has nothing) plus every held participant the store lacks. Lobby order survives because
    participants keep their knock sequence numbers."""
    if current is not None and (
        current.session_id != remembered.session_id or current.state is RoomState.ENDED
    ):
        return current, ()  # a later session, or ended meanwhile: what we remember is history
    base = current if current is not None else dataclasses.replace(remembered, participants=())
    known = {p.id for p in base.participants}
    active_subjects = {p.subject for p in base.active()}
    restored = [
        p
        for p in held
        if p.room_id == base.id and p.is_active and p.id not in known and p.subject not in active_subjects
    ]
    room = base
    for p in restored:
        room = room.with_participant(p)
    next_seq = max([room.next_knock_seq, *(p.knock_seq + 1 for p in restored)])
    room = dataclasses.replace(room, next_knock_seq=next_seq)
    return room, tuple(p.id for p in restored)
