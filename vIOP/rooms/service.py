"""Room use cases over the ports: what the signaling and HTTP layers call.

Each call reads the clock once, runs one pure step atomically in the room store (which publishes its
events with the change), keeps this process's :class:`Holdings` current and writes the attendance ledger.
Authorisation by role (who may call what) is the caller's job; the domain still checks that a host action
comes from a host present in the room.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from vIOP.errors import VIOPError
from vIOP.ids import ClientId, ParticipantId, RoomId, SessionId, UserId, new_participant_id, new_session_id
from vIOP.rooms import breakout, chat, cohosts, in_room, talk, waiting_room
from vIOP.rooms.attendance import (
    DEFAULT_GRACE_SECONDS,
    AudioOnlyMark,
    BreakoutMark,
    CloseMark,
    Mark,
    OpenMark,
    marks_for,
)
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.clock import Clock, system_clock
from vIOP.rooms.events import MuteKind
from vIOP.rooms.holdings import Holdings
from vIOP.rooms.participant import ParticipantState
from vIOP.rooms.ports import (
    AttendanceStore,
    HeartbeatResult,
    PresenceStore,
    Reasserted,
    RoomStore,
)
from vIOP.rooms.presence import PresenceSnapshot, RoomPresence, Viewer, presence_snapshot, room_presence
from vIOP.rooms.room import DEFAULT_CAPACITY, Room, RoomKind, Transition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RoomPolicy:
    heartbeat_expiry: float = 30.0  # no heartbeat for this long: reconnecting
    reconnect_grace: float = DEFAULT_GRACE_SECONDS  # reconnecting for this long: gone
    attendance_grace: float = DEFAULT_GRACE_SECONDS  # a return within this long continues the interval
    pending_marks_limit: int = 100_000  # ledger entries kept in memory while the database is unreachable


class RoomService:
    def __init__(
        self,
        rooms: RoomStore,
        presence: PresenceStore,
        *,
        clock: Clock = system_clock,
        attendance: AttendanceStore | None = None,
        holdings: Holdings | None = None,
        policy: RoomPolicy | None = None,
        new_participant: Callable[[], ParticipantId] = new_participant_id,
        new_session: Callable[[], SessionId] = new_session_id,
    ) -> None:
        self.rooms = rooms
        self.presence = presence
        self.clock = clock
        self.attendance = attendance
        self._pending_marks: collections.deque[Mark] = collections.deque()
        self._ledger_lock = asyncio.Lock()  # one writer at a time keeps the entries in order
        self.holdings = holdings if holdings is not None else Holdings()
        self.policy = policy or RoomPolicy()
        self._new_participant = new_participant
        self._new_session = new_session

    # --- rooms -----------------------------------------------------------------------------------

    async def open_room(
        self,
        room_id: RoomId,
        *,
        kind: RoomKind,
        host_ids: frozenset[UserId],
        capacity: int | None = None,
    ) -> Room:
        """Open a new session of ``room_id`` (RoomAlreadyOpen while the previous one has not ended)."""
        room = Room(
            id=room_id,
            session_id=self._new_session(),
            kind=kind,
            capacity=capacity if capacity is not None else DEFAULT_CAPACITY[kind],
            host_ids=host_ids,
            opened_at=self.clock(),
        )
        await self.rooms.create(room)
        return room

    async def room(self, room_id: RoomId) -> Room:
        """The current room; also refreshes this process's copy (call it on events about held people)."""
        room = await self.rooms.get(room_id)
        self.holdings.observe(room)
        return room

    # --- lobby -----------------------------------------------------------------------------------

    async def knock(
        self,
        room_id: RoomId,
        *,
        subject: ClientId,
        display_name: str,
        replace_reconnecting: bool = False,
    ) -> Transition:
        pid = self._new_participant()
        step = partial(
            waiting_room.knock,
            participant_id=pid,
            subject=subject,
            display_name=display_name,
            replace_reconnecting=replace_reconnecting,
        )
        return await self._run(room_id, step)

    async def host_enter(self, room_id: RoomId, *, user_id: UserId, display_name: str) -> Transition:
        pid = self._new_participant()
        return await self._run(
            room_id,
            partial(waiting_room.host_enter, participant_id=pid, user_id=user_id, display_name=display_name),
        )

    async def admit(self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(waiting_room.admit, by=by, participant_id=participant_id))

    async def admit_all(self, room_id: RoomId, *, by: ParticipantId) -> Transition:
        return await self._run(room_id, partial(waiting_room.admit_all, by=by))

    async def deny(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId, message: str | None = None
    ) -> Transition:
        return await self._run(
            room_id, partial(waiting_room.deny, by=by, participant_id=participant_id, message=message)
        )

    async def lobby_message(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId, message: str
    ) -> Transition:
        return await self._run(
            room_id,
            partial(waiting_room.lobby_message, by=by, participant_id=participant_id, message=message),
        )

    async def return_to_lobby(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId
    ) -> Transition:
        return await self._run(
            room_id, partial(waiting_room.return_to_lobby, by=by, participant_id=participant_id)
        )

    # --- in the room -----------------------------------------------------------------------------

    async def join(self, room_id: RoomId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.join, participant_id=participant_id))

    async def leave(self, room_id: RoomId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.leave, participant_id=participant_id))

    async def remove(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId, message: str | None = None
    ) -> Transition:
        return await self._run(
            room_id, partial(in_room.remove, by=by, participant_id=participant_id, message=message)
        )

    async def mute(
        self,
        room_id: RoomId,
        *,
        by: ParticipantId,
        participant_id: ParticipantId,
        muted: bool = True,
        media: MuteKind = MuteKind.AUDIO,
    ) -> Transition:
        return await self._run(
            room_id, partial(in_room.mute, by=by, participant_id=participant_id, muted=muted, media=media)
        )

    async def lock(self, room_id: RoomId, *, by: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.lock, by=by))

    async def unlock(self, room_id: RoomId, *, by: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.unlock, by=by))

    async def end(self, room_id: RoomId, *, by: ParticipantId | None) -> Transition:
        return await self._run(room_id, partial(in_room.end, by=by))

    # --- chat (issue 15) ----------------------------------------------------------------------------

    async def set_chat_policy(
        self, room_id: RoomId, *, by: ParticipantId, clients_may_chat: bool
    ) -> Transition:
        return await self._run(
            room_id, partial(chat.set_chat_policy, by=by, clients_may_chat=clients_may_chat)
        )

    # --- "I need to talk" (issue 15) ----------------------------------------------------------------

    async def request_talk(self, room_id: RoomId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(talk.request_talk, participant_id=participant_id))

    async def acknowledge_talk(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId
    ) -> Transition:
        return await self._run(room_id, partial(talk.acknowledge_talk, by=by, participant_id=participant_id))

    # --- private breakout (issue 15) ----------------------------------------------------------------

    async def start_breakout(
        self,
        room_id: RoomId,
        *,
        by: ParticipantId,
        participant_id: ParticipantId,
        clinician_id: ParticipantId | None = None,
    ) -> Transition:
        return await self._run(
            room_id,
            partial(breakout.start_breakout, by=by, participant_id=participant_id, clinician_id=clinician_id),
        )

    async def end_breakout(
        self, room_id: RoomId, *, by: ParticipantId, participant_id: ParticipantId
    ) -> Transition:
        return await self._run(room_id, partial(breakout.end_breakout, by=by, participant_id=participant_id))

    # --- co-hosts (issue 15) ---------------------------------------------------------------------

    async def add_host(self, room_id: RoomId, *, user_id: UserId, by: UserId | None) -> Transition:
        return await self._run(room_id, partial(cohosts.add_host, user_id=user_id, by=by))

    async def remove_host(
        self, room_id: RoomId, *, user_id: UserId, owner: UserId, by: UserId | None
    ) -> Transition:
        return await self._run(room_id, partial(cohosts.remove_host, user_id=user_id, owner=owner, by=by))

    async def hostless_due(self, grace: float, now: float | None = None) -> list[RoomId]:
        """Started rooms whose hosts have all been gone for ``grace`` seconds at ``now`` (default: the
        clock): for the caller to end (through ``vIOP.session.room_end.end_room``)."""
        at = self.clock() if now is None else now
        return [
            room.id
            for room in await self.rooms.open_rooms()
            if room.hostless_since is not None and at - room.hostless_since >= grace
        ]

    async def end_if_hostless(self, room_id: RoomId, *, grace: float, now: float | None = None) -> Transition:
        """End the room if its hosts are still all gone after ``grace`` (re-checked in the atomic step)."""
        return await self._run(room_id, partial(in_room.end_if_hostless, grace=grace), now=now)

    # --- liveness --------------------------------------------------------------------------------

    async def heartbeat(self, room_id: RoomId, participant_id: ParticipantId) -> HeartbeatResult:
        """Record a heartbeat; a participant already marked reconnecting is resumed."""
        result = await self.presence.heartbeat(room_id, participant_id, self.clock())
        if result is HeartbeatResult.REVIVED:
            await self.resume(room_id, participant_id)
        return result

    async def mark_reconnecting(self, room_id: RoomId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.mark_reconnecting, participant_id=participant_id))

    async def resume(self, room_id: RoomId, participant_id: ParticipantId) -> Transition:
        return await self._run(room_id, partial(in_room.resume, participant_id=participant_id))

    async def sweep(self) -> list[Transition]:
        """Mark silent connections reconnecting and let go of those whose grace ran out. Safe to run in
        every process at once: each step re-checks the room and is a no-op when someone else won."""
        now = self.clock()
        done: list[Transition] = []
        for quiet in await self.presence.silent(now - self.policy.heartbeat_expiry):
            step = partial(in_room.mark_reconnecting, participant_id=quiet.participant_id, since=quiet.since)
            done += await self._sweep_one(quiet.room_id, step, now)
        for gone in await self.presence.grace_over(now - self.policy.reconnect_grace):
            step = partial(
                in_room.expire, participant_id=gone.participant_id, grace=self.policy.reconnect_grace
            )
            done += await self._sweep_one(gone.room_id, step, now)
        return done

    async def _sweep_one(
        self, room_id: RoomId, step: Callable[..., Transition], now: float
    ) -> list[Transition]:
        try:
            t = await self._run(room_id, step, now=now)
        except VIOPError as exc:  # the participant or room went away meanwhile
            log.debug("sweep skipped %s in %s: %s", type(exc).__name__, room_id, exc.code)
            return []
        return [t] if t.changed else []

    # --- views and recovery ----------------------------------------------------------------------

    async def snapshot(self, viewer: Viewer) -> PresenceSnapshot:
        return presence_snapshot(await self.rooms.open_rooms(), viewer, self.clock())

    async def room_view(self, room_id: RoomId) -> RoomPresence:
        """One room as its hosts see it: the live lobby (names, wait times) and who holds seats."""
        return room_presence(await self.room(room_id), self.clock())

    async def reassert(self) -> list[Reasserted]:
        """Put back what this process holds after the room store lost its data (Redis restarted empty)."""
        now = self.clock()
        results = []
        for room, held in self.holdings.plan():
            results.append(await self.rooms.reassert(room, held, now))
            self.holdings.observe(await self.rooms.get(room.id))
        return results

    # --- attendance ------------------------------------------------------------------------------

    @property
    def pending_attendance(self) -> int:
        """Ledger entries not yet written (the database was unreachable)."""
        return len(self._pending_marks)

    async def flush_attendance(self) -> None:
        """Write the ledger entries of stored changes, oldest first. The room change has already happened,
        so a database failure must not undo or fail it: the entries wait here (in order) and the next
        change or sweep writes them."""
        if self.attendance is None:
            self._pending_marks.clear()
            return
        async with self._ledger_lock:
            await self._write_pending(self.attendance)

    async def _write_pending(self, ledger: AttendanceStore) -> None:
        while self._pending_marks:
            mark = self._pending_marks[0]
            try:
                if isinstance(mark, OpenMark):
                    await ledger.open(mark, self.policy.attendance_grace)
                elif isinstance(mark, CloseMark):
                    await ledger.close(mark)
                elif isinstance(mark, AudioOnlyMark):
                    await ledger.audio_only(mark)
                elif isinstance(mark, BreakoutMark):
                    await ledger.breakout(mark)
                else:
                    await ledger.end_session(mark)
            except Exception as exc:  # any database failure: keep the entry, try again later
                log.error(
                    "attendance ledger write failed (%s); %d entries waiting",
                    type(exc).__name__,
                    len(self._pending_marks),
                )
                self._trim_pending()
                return
            self._pending_marks.popleft()

    async def record_audio_only(
        self, room: Room, pid: ParticipantId, reason: AudioOnlyReason | None, at: float | None = None
    ) -> None:
        """The relay stopped video to ``pid`` (``reason``) or resumed it (None) at ``at``; ``room`` as read
        after that. A ledger entry, written like the others (held back in order while the database is
        away). Only for someone in the room: a change that arrives after they left has nothing to add
        (their leaving ended the span)."""
        when = self.clock() if at is None else at
        p = next((p for p in room.participants if p.id == pid), None)
        if p is None or p.state is not ParticipantState.IN_ROOM:
            return
        self._pending_marks.append(
            AudioOnlyMark(room.id, room.session_id, p.id, p.subject, p.role, at=when, reason=reason)
        )
        if not self._ledger_lock.locked():
            await self.flush_attendance()

    def _trim_pending(self) -> None:
        excess = len(self._pending_marks) - self.policy.pending_marks_limit
        if excess > 0:
            for _ in range(excess):
                self._pending_marks.popleft()
            log.critical("attendance ledger: %d entries dropped, the database stayed unreachable", excess)

    # --- plumbing --------------------------------------------------------------------------------

    async def _run(
        self, room_id: RoomId, step: Callable[..., Transition], now: float | None = None
    ) -> Transition:
        at = self.clock() if now is None else now

        def bound(room: Room) -> Transition:  # bound once: a retried step sees the same time
            # Pruned: keeps the stored room bounded. Settled: no step leaves half a breakout behind.
            return breakout.settled(step(room.without_old_departures(), at=at), at)

        t = await self.rooms.apply(room_id, bound)
        self.holdings.observe(t.room)
        self._pending_marks.extend(marks_for(t))
        if not self._ledger_lock.locked():
            # Otherwise a writer is at it (maybe stuck on a database that is away): it takes these entries
            # in order when it can, and this room change does not queue up behind it.
            await self.flush_attendance()
        return t
