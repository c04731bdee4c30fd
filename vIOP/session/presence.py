"""The presence stream for staff, admins (every room) and clinicians (own rooms): what their page is sent.

The stream opens with a snapshot; then every room event the viewer may see is sent at once as a small
``presence_event`` (ids and times only), followed by the affected room's refreshed view, coalesced per room
so a burst of events costs one read. After a gap in the event stream the snapshot is sent again.

Clients never get presence tickets. The viewer's sign-in stays alive while the page pings (``ping`` ->
``pong``); a stream left without pings for the idle timeout is closed 1008 "session ended", and so is one
whose sign-in reaches its absolute end or whose account is revoked (each ping also reads the revocation
from Redis; the revocation stream closes it at once, :mod:`vIOP.session.revocation`).

The edge (``vIOP.api.ws_presence``) accepts the socket, pumps its frames into :meth:`PresenceStream.on_text`
and closes it with :attr:`PresenceStream.close_code`; everything else happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol

import msgspec

from vIOP.auth.permissions import Role
from vIOP.auth.revocation import Revocation
from vIOP.auth.tickets import TicketGrant
from vIOP.errors import VIOPError
from vIOP.ids import RoomId, UserId
from vIOP.program.noshow import occurrence_id
from vIOP.program.schedule import Occurrence
from vIOP.rooms.events import Event, HostRemoved, ParticipantEvent, Resync
from vIOP.rooms.presence import RoomPresence, Viewer
from vIOP.rooms.room import Room
from vIOP.session.live import EventListener
from vIOP.session.noshow import OccurrencePresence, WeekHours, occurrence_presence, week_hours
from vIOP.session.revocation import CLOSE, sleep_until
from vIOP.session.services import Services
from vIOP.signaling.presence_messages import (
    PRESENCE_PING,
    ExpectedClient,
    LobbyView,
    OccurrenceView,
    PresenceEvent,
    PresencePong,
    PresenceRoom,
    PresenceRoomGone,
    PresenceSnapshot,
    RoomView,
    SeatPresence,
)
from vIOP.storage.audit import AuditEvent, Outcome

log = logging.getLogger("vIOP.presence")

QUEUE_LIMIT = 256
WEEK_HOURS_MAX_AGE = 60.0  # seconds a stream shows a client's weekly hours before counting them again
_PING_MARK = f'"{PRESENCE_PING}"'
# Events after which a clinician's stream re-reads a room it does not show yet: it may be theirs now.
_MAYBE_MINE = frozenset({"room_started", "host_added"})


class PresenceOutbound(Protocol):
    """The socket's outbound side as the stream sees it (a Starlette ``WebSocket`` is one)."""

    async def send_text(self, data: str) -> None: ...


_encode = msgspec.json.Encoder().encode


def room_view(p: RoomPresence, occurrence: OccurrenceView | None = None) -> RoomView:
    return RoomView(
        room_id=p.room_id,
        kind=p.kind.value,
        state=p.state.value,
        host_ids=tuple(p.host_ids),
        capacity=p.capacity,
        waiting_count=p.waiting_count,
        in_room_count=p.in_room_count,
        reconnecting_count=p.reconnecting_count,
        waiting=tuple(
            LobbyView(
                participant_id=w.participant_id,
                display_name=w.display_name,
                waiting_since=w.waiting_since,
                waited_seconds=int(w.waited_seconds),
                reconnecting=w.reconnecting,
                talk_requested_since=w.talk_requested_at,
            )
            for w in p.waiting
        ),
        seated=tuple(
            SeatPresence(
                participant_id=s.participant_id,
                display_name=s.display_name,
                role=s.role.value,
                state=s.state.value,
                since=s.since,
                reconnecting_since=s.reconnecting_since,
                talk_requested_since=s.talk_requested_at,
            )
            for s in p.seated
        ),
        occurrence=occurrence,
    )


def occurrence_view(
    projection: OccurrencePresence, names: Mapping[str, str], week: WeekHours | None = None
) -> OccurrenceView:
    o = projection.occurrence
    return OccurrenceView(
        track_id=o.track_id,
        occurrence_id=occurrence_id(o),
        starts_at=o.starts_at.timestamp(),
        ends_at=o.ends_at.timestamp(),
        no_show_at=projection.no_show_at.timestamp(),
        expected=tuple(
            ExpectedClient(
                client_id=e.client_id,
                display_name=names.get(e.client_id, ""),
                status=e.attendance.value,
                week_minutes=week.minutes.get(e.client_id) if week else None,
                week_minutes_missing=week.missing(e.client_id) if week else None,
            )
            for e in projection.expected
        ),
        today=week.today.isoformat() if week else None,
        week_start=week.week_start.isoformat() if week else None,
        week_end=week.week_end.isoformat() if week else None,
    )


class PresenceStream:
    """One viewer's stream: fed by the process's event loop, written by its own task."""

    def __init__(
        self,
        services: Services,
        outbound: PresenceOutbound,
        grant: TicketGrant,
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        self.services = services
        self.outbound = outbound
        self.ip = ip
        self.user_agent = user_agent
        self.grant = grant
        principal = grant.principal
        self.viewer = Viewer(
            UserId(principal.subject), sees_all_rooms=principal.role in (Role.STAFF, Role.ADMIN)
        )
        self.only_room: RoomId | None = grant.room_id
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self.dirty: set[RoomId] = set()
        self.visible: set[RoomId] = set()
        self.close_code: int | None = None
        self.close_reason = ""
        self._refresh: asyncio.Task[None] | None = None
        # Issue 16: which track occurrence each room was opened for (fixed for a room's life), and the
        # names of expected clients (read once per stream, shown only to viewers who see the room's names).
        self._occurrences: dict[RoomId, Occurrence | None] = {}
        self._names: dict[str, str] = {}
        # Issue 16: each occurrence room's weekly hours per expected client, and when they were counted
        # (re-counted at most every WEEK_HOURS_MAX_AGE seconds: the ledger is not read at every event).
        self._weeks: dict[RoomId, tuple[float, WeekHours | None]] = {}
        self.last_ping = time.monotonic()

    def sees(self, room_id: RoomId, host_ids: frozenset[str] | None = None) -> bool:
        if self.only_room is not None and room_id != self.only_room:
            return False
        if self.viewer.sees_all_rooms:
            return True
        return room_id in self.visible or (host_ids is not None and self.viewer.user_id in host_ids)

    def push(self, message: Any) -> None:
        try:
            self.queue.put_nowait(_encode(message))
        except asyncio.QueueFull:
            self.close(1013)  # a viewer that does not read: it reconnects and gets a fresh snapshot

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    def revoke(self, revocation: Revocation) -> None:
        self.close(*CLOSE[revocation.kind])

    async def snapshot(self) -> None:
        snap = await self.services.rooms.snapshot(self.viewer)
        rooms = [r for r in snap.rooms if self.only_room is None or r.room_id == self.only_room]
        self.visible = {r.room_id for r in rooms}
        views = [room_view(r, await self._occurrence_view(r.room_id)) for r in rooms]
        self.push(PresenceSnapshot(at=snap.at, rooms=tuple(views)))

    async def _occurrence_view(self, room_id: RoomId, room: Room | None = None) -> OccurrenceView | None:
        """Issue 16: expected vs present for a track occurrence's room; None for a room made by hand."""
        services = self.services
        if room_id not in self._occurrences:
            self._occurrences[room_id] = await services.tracks.occurrence_by_room(room_id)
        occurrence = self._occurrences[room_id]
        if occurrence is None:
            return None
        if room is None:
            try:
                room = await services.rooms.room(room_id)
            except VIOPError:
                return None
        projection = await occurrence_presence(services, room, occurrence)
        for expected in projection.expected:
            if expected.client_id not in self._names:
                try:
                    name = await services.invites.client_display_name(expected.client_id)
                except VIOPError:
                    name = ""  # crypto-shredded: the id only
                self._names[expected.client_id] = name
        return occurrence_view(projection, self._names, await self._week(room_id, projection))

    async def _week(self, room_id: RoomId, projection: OccurrencePresence) -> WeekHours | None:
        now = self.services.clock()
        counted = self._weeks.get(room_id)
        clients = [e.client_id for e in projection.expected]
        if (
            counted is None
            or now - counted[0] >= WEEK_HOURS_MAX_AGE
            or (counted[1] is not None and set(clients) - set(counted[1].minutes))
        ):
            counted = (now, await week_hours(self.services, projection.occurrence, clients, now))
            self._weeks[room_id] = counted
        return counted[1]

    def refresh(self, room_id: RoomId) -> None:
        """Re-send a room's view (the no-show watcher calls it when a limit passes)."""
        if not self.sees(room_id):
            return
        self.dirty.add(room_id)
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_dirty())

    async def on_event(self, item: Event | Resync) -> None:
        if isinstance(item, Resync):
            await self.snapshot()
            return
        room_id = item.room_id
        if (
            isinstance(item, HostRemoved)
            and not self.viewer.sees_all_rooms
            and item.user_id == self.viewer.user_id
        ):
            # Issue 15: no longer a co-host of that room: its presence leaves this clinician's stream at once.
            if room_id in self.visible:
                self.visible.discard(room_id)
                self.push(PresenceRoomGone(room_id=room_id, at=item.at))
            return
        if not self.viewer.sees_all_rooms and room_id not in self.visible and item.kind in _MAYBE_MINE:
            # maybe a room this clinician hosts (or now co-hosts): the refresh decides
            self.dirty.add(room_id)
        elif not self.sees(room_id):
            return
        else:
            pid = item.participant_id if isinstance(item, ParticipantEvent) else None
            self.push(PresenceEvent(event=item.kind, room_id=room_id, at=item.at, participant_id=pid))
            self.dirty.add(room_id)
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_dirty())

    async def _refresh_dirty(self) -> None:
        await asyncio.sleep(0)
        while self.dirty:
            room_id = self.dirty.pop()
            try:
                room = await self.services.rooms.room(room_id)
            except VIOPError:
                self.visible.discard(room_id)
                self.push(PresenceRoomGone(room_id=room_id, at=self.services.rooms.clock()))
                continue
            if not self.sees(room_id, frozenset(room.host_ids)):
                continue
            if room.state.value == "ended":
                self.visible.discard(room_id)
                self.push(PresenceRoomGone(room_id=room_id, at=self.services.rooms.clock()))
                continue
            self.visible.add(room_id)
            view = await self.services.rooms.room_view(room_id)
            occurrence = await self._occurrence_view(room_id, room)
            self.push(PresenceRoom(at=self.services.rooms.clock(), room=room_view(view, occurrence)))

    async def open(self) -> None:
        """Audit the viewing, then queue the first snapshot."""
        grant = self.grant
        await self.services.audit_outbox.write(
            grant.principal.subject, grant.principal.role.value, AuditEvent.PRESENCE_VIEWED,
            "room" if grant.room_id else None, grant.room_id, Outcome.SUCCESS, self.ip, self.user_agent,
        )  # fmt: skip
        await self.snapshot()

    async def serve(self, pump: Coroutine[Any, Any, None]) -> None:
        """Run until the first of: the edge's receive ``pump`` ends, the stream is closed (queue drained),
        the idle watch or the sign-in's end fires. The others are cancelled before this returns."""
        tasks = [
            asyncio.create_task(self.write_loop()),
            asyncio.create_task(pump),
            asyncio.create_task(self.idle_watch()),
            asyncio.create_task(self.session_deadline()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def write_loop(self) -> None:
        while True:
            frame = await self.queue.get()
            if frame is None:
                return
            await self.outbound.send_text(frame.decode())

    async def on_text(self, text: str | None) -> bool:
        """One frame from the viewer; False once the stream is to end. Only pings are expected; anything
        else is ignored (the stream is one-way)."""
        if text and _PING_MARK in text[:64]:
            self.last_ping = time.monotonic()
            if self.grant.session and not await self.services.tokens.keep_alive(self.grant.session):
                self.close(1008, "session ended")
                return False
            revoked = await self.services.revocations.check(
                self.grant.principal.subject, self.grant.issued_at, account=True
            )
            if revoked is not None:
                self.revoke(revoked)
                return False
            self.push(PresencePong())
        return True

    async def idle_watch(self) -> None:
        idle = self.services.settings.token_idle_seconds
        while self.close_code is None:
            await asyncio.sleep(min(30.0, idle / 4))
            if time.monotonic() - self.last_ping > idle:
                self.close(1008, "session ended")
                return

    async def session_deadline(self) -> None:
        """The sign-in's absolute end (token ``exp``): the stream closes then, not a heartbeat later."""
        ends_at = self.grant.session_ends_at
        if ends_at is None:
            await asyncio.Event().wait()  # no end of its own: the other tasks decide
            return
        await sleep_until(ends_at, self.services.revocations.clock, self.services.settings.heartbeat_seconds)
        self.close(1008, "session ended")


def presence_listener(services: Services) -> EventListener:
    """The event-loop listener that fans room events out to this process's presence streams."""

    async def listen(item: Event | Resync) -> None:
        for stream in list(services.live.presence_streams):
            await stream.on_event(item)

    return listen
