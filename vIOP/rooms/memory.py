"""In-memory twins of the room ports, for fast domain tests. Same contracts as the Redis and SQL stores
(the contract tests run against both); not for production: one process, nothing survives a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Sequence

from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.attendance import (
    AudioOnlyMark,
    AudioOnlySpan,
    BreakoutMark,
    BreakoutSpan,
    CloseMark,
    Interval,
    OpenAction,
    OpenMark,
    SessionEndMark,
    decide_open,
)
from vIOP.rooms.errors import NotActive, RoomAlreadyOpen, RoomNotFound
from vIOP.rooms.events import Event, Resync
from vIOP.rooms.holdings import merge_held
from vIOP.rooms.participant import Participant
from vIOP.rooms.ports import AttendanceQuery, HeartbeatResult, Reasserted, Silent, Step
from vIOP.rooms.presence import liveness
from vIOP.rooms.room import Room, RoomState, Transition

_Key = tuple[RoomId, ParticipantId]


class MemorySubscription:
    def __init__(self, bus: MemoryEventBus, limit: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | Resync | None] = asyncio.Queue()
        self._limit = limit
        self._closed = False

    def deliver(self, event: Event) -> None:
        if self._queue.qsize() >= self._limit:
            # A consumer this far behind has to reload anyway: drop the backlog, say so.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(Resync())
        self._queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[Event | Resync]:
        return self

    async def __anext__(self) -> Event | Resync:
        if self._closed:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus.unsubscribe(self)
            self._queue.put_nowait(None)


class MemoryEventBus:
    def __init__(self, backlog_limit: int = 10_000) -> None:
        self._subscribers: list[MemorySubscription] = []
        self._limit = backlog_limit

    async def publish(self, events: Sequence[Event]) -> None:
        self.deliver(events)

    def deliver(self, events: Sequence[Event]) -> None:
        for sub in list(self._subscribers):
            for event in events:
                sub.deliver(event)

    async def subscribe(self) -> MemorySubscription:
        sub = MemorySubscription(self, self._limit)
        self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: MemorySubscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)


class MemoryRoomStore:
    """Rooms in a dict, one lock for every change; events go to ``bus`` with the change."""

    def __init__(self, bus: MemoryEventBus | None = None) -> None:
        self.bus = bus or MemoryEventBus()
        self._rooms: dict[RoomId, Room] = {}
        self.listening: dict[_Key, float] = {}
        self.reconnecting: dict[_Key, float] = {}
        self._lock = asyncio.Lock()

    async def create(self, room: Room) -> None:
        async with self._lock:
            known = self._rooms.get(room.id)
            if known is not None and known.state is not RoomState.ENDED:
                raise RoomAlreadyOpen("a session of this room is still open")
            self._store(room, room.opened_at)

    async def get(self, room_id: RoomId) -> Room:
        try:
            return self._rooms[room_id]
        except KeyError:
            raise RoomNotFound("no such room") from None

    async def apply(self, room_id: RoomId, step: Step) -> Transition:
        async with self._lock:
            before = await self.get(room_id)
            result = step(before)
            if not result.events:
                return result
            after = dataclasses.replace(result.room, version=before.version + 1)
            self._store(after, max(e.at for e in result.events))
            self.bus.deliver(result.events)
            return Transition(after, result.events, result.participant)

    async def open_rooms(self) -> list[Room]:
        return [r for r in self._rooms.values() if r.state is not RoomState.ENDED]

    async def reassert(self, room: Room, held: Sequence[Participant], at: float) -> Reasserted:
        async with self._lock:
            current = self._rooms.get(room.id)
            merged, restored = merge_held(current, room, held)
            if current is None or restored:
                self._store(dataclasses.replace(merged, version=max(merged.version, room.version) + 1), at)
            return Reasserted(current is None, restored)

    def lose_everything(self) -> None:
        """What a Redis restart without data does, for the twin's reassert tests."""
        self._rooms.clear()
        self.listening.clear()
        self.reconnecting.clear()

    def _store(self, room: Room, at: float) -> None:
        self._rooms[room.id] = room
        index = liveness(room, at)
        for p in room.participants:
            key = (room.id, p.id)
            if p.id in index.listening:
                self.listening.setdefault(key, index.listening[p.id])
            else:
                self.listening.pop(key, None)
            if p.id in index.reconnecting:
                self.reconnecting[key] = index.reconnecting[p.id]
            else:
                self.reconnecting.pop(key, None)


class MemoryPresenceStore:
    def __init__(self, rooms: MemoryRoomStore) -> None:
        self._rooms = rooms

    async def heartbeat(self, room_id: RoomId, participant_id: ParticipantId, at: float) -> HeartbeatResult:
        await self._rooms.get(room_id)
        key = (room_id, participant_id)
        if key in self._rooms.listening:
            self._rooms.listening[key] = at
            return HeartbeatResult.FRESH
        if key in self._rooms.reconnecting:
            return HeartbeatResult.REVIVED
        raise NotActive("the participant is not waiting or in the room")

    async def silent(self, before: float, limit: int = 500) -> list[Silent]:
        found = sorted((t, k) for k, t in self._rooms.listening.items() if t < before)[:limit]
        return [Silent(k[0], k[1], t) for t, k in found]

    async def grace_over(self, before: float, limit: int = 500) -> list[Silent]:
        found = sorted((t, k) for k, t in self._rooms.reconnecting.items() if t < before)[:limit]
        return [Silent(k[0], k[1], t) for t, k in found]


class MemoryAttendanceStore:
    def __init__(self) -> None:
        self.rows: list[Interval] = []
        self.sessions_ended: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def _latest(self, room_id: RoomId, session_id: str, subject: str) -> int | None:
        candidates = [
            i
            for i, row in enumerate(self.rows)
            if (row.room_id, row.session_id, row.subject) == (room_id, session_id, subject)
        ]
        return max(candidates, key=lambda i: self.rows[i].joined_at, default=None)

    async def open(self, mark: OpenMark, grace: float) -> None:
        async with self._lock:
            index = self._latest(mark.room_id, mark.session_id, mark.subject)
            latest = self.rows[index] if index is not None else None
            action = decide_open(latest, mark.at, grace)
            if action is OpenAction.REOPEN and index is not None:
                self.rows[index] = dataclasses.replace(self.rows[index], left_at=None, close_reason=None)
            elif action is OpenAction.NEW:
                row = Interval(
                    id=f"at_{next(self._ids)}",
                    room_id=mark.room_id,
                    session_id=mark.session_id,
                    participant_id=mark.participant_id,
                    subject=mark.subject,
                    role=mark.role,
                    joined_at=mark.at,
                )
                self.rows.append(row)

    async def close(self, mark: CloseMark) -> None:
        async with self._lock:
            index = self._latest(mark.room_id, mark.session_id, mark.subject)
            if index is not None and self.rows[index].left_at is None:
                at = max(mark.at, self.rows[index].joined_at)
                self.rows[index] = dataclasses.replace(self.rows[index], left_at=at, close_reason=mark.reason)
            if index is not None:
                self._end_span(index, mark.at)

    async def end_session(self, mark: SessionEndMark) -> None:
        self.sessions_ended.setdefault(mark.session_id, mark.at)
        async with self._lock:
            for index, row in enumerate(self.rows):
                if row.session_id == mark.session_id:
                    self._end_span(index, mark.at)

    async def audio_only(self, mark: AudioOnlyMark) -> None:
        async with self._lock:
            index = self._latest(mark.room_id, mark.session_id, mark.subject)
            if index is None:
                return
            spans = self.rows[index].audio_only
            current = spans[-1] if spans and spans[-1].ended_at is None else None
            if current is not None and current.reason == mark.reason:
                return
            self._end_audio_only(index, mark.at)
            if mark.reason is not None:
                span = AudioOnlySpan(started_at=mark.at, ended_at=None, reason=mark.reason)
                self.rows[index] = dataclasses.replace(
                    self.rows[index], audio_only=(*self.rows[index].audio_only, span)
                )

    async def breakout(self, mark: BreakoutMark) -> None:
        async with self._lock:
            index = self._latest(mark.room_id, mark.session_id, mark.subject)
            if index is None:
                return
            spans = self.rows[index].breakouts
            open_now = bool(spans) and spans[-1].ended_at is None
            if mark.started and not open_now:
                span = BreakoutSpan(started_at=mark.at, ended_at=None, clinician=mark.clinician)
                self.rows[index] = dataclasses.replace(self.rows[index], breakouts=(*spans, span))
            elif not mark.started:
                self._end_breakout(index, mark.at)

    def _end_span(self, index: int, at: float) -> None:
        """The stay (or the session) closed: its open audio-only and breakout spans end."""
        self._end_audio_only(index, at)
        self._end_breakout(index, at)

    def _end_audio_only(self, index: int, at: float) -> None:
        spans = self.rows[index].audio_only
        if spans and spans[-1].ended_at is None:
            last = dataclasses.replace(spans[-1], ended_at=max(at, spans[-1].started_at))
            self.rows[index] = dataclasses.replace(self.rows[index], audio_only=(*spans[:-1], last))

    def _end_breakout(self, index: int, at: float) -> None:
        spans = self.rows[index].breakouts
        if spans and spans[-1].ended_at is None:
            last = dataclasses.replace(spans[-1], ended_at=max(at, spans[-1].started_at))
            self.rows[index] = dataclasses.replace(self.rows[index], breakouts=(*spans[:-1], last))

    async def intervals(self, query: AttendanceQuery) -> list[Interval]:
        return [row for row in self.rows if matches(row, query)]


def matches(row: Interval, query: AttendanceQuery) -> bool:
    """Whether ``row`` is selected by ``query`` (overlap semantics for the time window)."""
    if query.room_id is not None and row.room_id != query.room_id:
        return False
    if query.session_id is not None and row.session_id != query.session_id:
        return False
    if query.subject is not None and row.subject != query.subject:
        return False
    if query.end is not None and row.joined_at >= query.end:
        return False
    return not (query.start is not None and row.left_at is not None and row.left_at <= query.start)
