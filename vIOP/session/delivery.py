"""From room events to wire messages for this process's sockets, and the media that follows them.

Every domain event reaches every process through the bus (the process that caused it too: one path, one
order). For each event this process delivers what its own connections must see and hands what concerns
media (a participant gone, a host mute) to the room's media controls
(:class:`~vIOP.session.media_controls.MediaControls`, the one route into the relay). Lobby and roster views
are rebuilt from the stored room, coalesced per room so a burst of events costs one read.

Who receives audio only is told to that person and the room's hosts, never to other clients (42 CFR Part 2,
minimum necessary: a client's link or data plan is none of the other clients' business): the ``audio_only``
message goes to those two, and a client's roster shows ``audio_only`` only on their own line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from vIOP.errors import VIOPError
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms import events as ev
from vIOP.rooms.audio_only import AudioOnlyReason
from vIOP.rooms.participant import Participant, ParticipantState
from vIOP.rooms.participant import Role as DomainRole
from vIOP.rooms.room import Room
from vIOP.rooms.service import RoomService
from vIOP.rooms.share import RoomShare
from vIOP.rooms.waiting_room import lobby, positions
from vIOP.session.media_controls import MediaControls, MediaHooks
from vIOP.signaling import messages as m
from vIOP.signaling.codec import encode_text
from vIOP.signaling.connections import Connection, ConnectionRegistry

log = logging.getLogger("vIOP.delivery")


def wire_role(role: DomainRole) -> m.Role:
    return m.Role.HOST if role is DomainRole.HOST else m.Role.CLIENT


class RoomDelivery:
    def __init__(
        self,
        rooms: RoomService,
        connections: ConnectionRegistry,
        media: MediaHooks,
        *,
        send: Callable[[ParticipantId, m.ServerMessage], bool] | None = None,
    ) -> None:
        self.rooms = rooms
        self.connections = connections
        # What the relay here tells a participant (audio only) reaches their socket on any node
        # (``MediaRouter.send``); room events are not sent this way: every node delivers those itself.
        self.media_send = send or connections.send_to
        self.controls = MediaControls(media)
        self._dirty: set[RoomId] = set()
        self._refresh: asyncio.Task[None] | None = None
        # The socket each participant was last told `admitted` on (a resumed socket is told again).
        self._told_admitted: dict[ParticipantId, Connection] = {}
        # Audio-only changes reach the hosts and the ledger one after another, in the relay's order.
        self._audio_only_chain: asyncio.Task[None] | None = None
        # Chat (issue 15): the newest read of each room with local sockets (kept by every view refresh, so
        # by the room's events), for the chat rules and recipients without a Redis read per line; and the
        # chat policy each socket was last told.
        self._rooms: dict[RoomId, Room] = {}
        self._told_chat_policy: dict[ParticipantId, tuple[Connection, bool]] = {}
        self._talk_tasks: set[asyncio.Task[None]] = set()  # issue 15: requests to talk on their way to hosts
        # Screen share (issue 15): the socket each seated participant was last told the share state on (it
        # is told once on admission, then with every change, to the whole room).
        self._told_share: dict[ParticipantId, Connection] = {}
        self.controls.on_share = self._announce_share

    # --- views -----------------------------------------------------------------------------------

    def roster_entry(
        self,
        p: Participant,
        *,
        reveal_audio_only: bool,
        reveal_talk: bool = False,
        reader: Participant | None = None,
    ) -> m.RosterEntry:
        entry = self._entry(
            p.room_id,
            p.id,
            p.display_name,
            p.role,
            p.muted,
            p.video_muted,
            reconnecting=p.reconnecting_since is not None,
            reveal_audio_only=reveal_audio_only,
        )
        if reveal_talk and p.talk_requested_at is not None:  # issue 15: hosts only
            entry = msgspec.structs.replace(entry, talk_requested=True)
        if p.breakout_with is not None:  # issue 15: who is in a breakout; why and with whom, hosts only
            stepped_out = reader is not None and reader.id not in (p.id, p.breakout_with)
            entry = msgspec.structs.replace(
                entry, stepped_out=stepped_out, breakout_with=p.breakout_with if reveal_talk else None
            )
        return entry

    def _entry(
        self,
        room_id: RoomId,
        pid: ParticipantId,
        display_name: str,
        role: DomainRole,
        muted: bool,
        video_muted: bool,
        *,
        reconnecting: bool = False,
        reveal_audio_only: bool = False,
    ) -> m.RosterEntry:
        """One roster line: the participant's own media flags under the host's mutes (as stored: the room
        or event the view is built from). ``audio_only`` only where the reader may know it (a host, or the
        person themself); false otherwise."""
        control = self.controls.of(room_id, pid)
        return m.RosterEntry(
            participant_id=pid,
            display_name=display_name,
            role=wire_role(role),
            audio=control.audio and not muted,
            video=control.video and not video_muted,
            hand=control.hand,
            muted_by_host=muted,
            reconnecting=reconnecting,
            audio_only=reveal_audio_only and control.audio_only is not None,
        )

    def roster(self, room: Room, reader: Participant) -> m.Roster:
        """The roster as ``reader`` may see it: a host sees who is audio only, a client only themself. A
        client in a private breakout sees only its two sides; the group sees them as stepped out."""
        host = reader.role is DomainRole.HOST
        inside = [p for p in room.participants if p.state is ParticipantState.IN_ROOM]
        if not host and reader.breakout_with is not None:
            inside = [p for p in inside if p.id in (reader.id, reader.breakout_with)]
        return m.Roster(
            participants=tuple(
                self.roster_entry(
                    p, reveal_audio_only=host or p.id == reader.id, reveal_talk=host, reader=reader
                )
                for p in inside[: m.MAX_ROSTER]
            ),
            locked=room.state.value == "locked",
        )

    def lobby(self, room: Room, now: float) -> m.Lobby:
        return m.Lobby(
            waiting=tuple(
                m.LobbyEntry(
                    participant_id=e.participant_id,
                    display_name=e.display_name,
                    waited_seconds=int(e.waited_seconds),
                    returning_after_removal=e.returning_after_removal,
                    talk_requested=e.talk_requested_at is not None,
                )
                for e in lobby(room, now)[: m.MAX_LOBBY]
            )
        )

    def waiting_message(self, room: Room, pid: ParticipantId) -> m.Waiting | None:
        position = positions(room).get(pid)
        if position is None:
            return None
        message = room.participant(pid).lobby_message
        return m.Waiting(position=min(position, m.MAX_LOBBY), message=message or None)

    def host_pids(self, room: Room) -> list[ParticipantId]:
        return [p.id for p in room.participants if p.role is DomainRole.HOST and p.is_seated]

    # --- sending ---------------------------------------------------------------------------------

    def send(self, pid: ParticipantId, message: m.ServerMessage) -> None:
        self.connections.send_to(pid, message)

    def to_room(
        self,
        room_id: RoomId,
        message: m.ServerMessage,
        *,
        only_in_room: Room | None = None,
        exclude: ParticipantId | None = None,
        lobby_too: bool = False,
    ) -> None:
        """To the room's local connections that hold a seat (told ``admitted`` on that socket), or only
        those in the room proper, encoded once. The waiting room hears nothing of what happens inside (who
        joined and their name, hands, media): under 42 CFR Part 2 even that roster discloses treatment, to
        someone who may yet be denied. ``lobby_too`` for what concerns a waiting client as well (room
        locked, ended)."""
        if only_in_room is None:
            told = self._told_admitted
            seated = (
                None
                if lobby_too
                else (lambda c: c.participant_id is not None and told.get(c.participant_id) is c)
            )
            self.connections.broadcast(room_id, message, exclude=exclude, where=seated)
            return
        inside = {p.id for p in only_in_room.participants if p.state is ParticipantState.IN_ROOM}
        self.connections.broadcast(
            room_id, message, exclude=exclude, where=lambda c: c.participant_id in inside
        )

    def to_group(
        self,
        room_id: RoomId,
        group: ParticipantId | None,
        message: m.ServerMessage,
        *,
        exclude: ParticipantId | None = None,
    ) -> None:
        """To the room's seated local connections in ``group`` (issue 15: a private breakout's key; None:
        everyone not in one), encoded once."""
        told = self._told_admitted

        def in_group(c: Connection) -> bool:
            pid = c.participant_id
            return pid is not None and told.get(pid) is c and self.group_of(room_id, pid) == group

        self.connections.broadcast(room_id, message, exclude=exclude, where=in_group)

    def has_local(self, room_id: RoomId) -> bool:
        return any(c.participant_id is not None for c in self.connections.in_room(room_id))

    # --- events ----------------------------------------------------------------------------------

    async def deliver(self, event: ev.Event) -> None:
        """Apply one event for this process. Never raises: one bad event must not stop the stream."""
        try:
            self._deliver(event)
        except Exception:
            log.exception("event delivery failed", extra={"event": event.kind, "room_id": event.room_id})

    def _deliver(self, event: ev.Event) -> None:
        room_id = event.room_id
        if isinstance(event, ev.ParticipantEvent):
            pid = event.participant_id
            if isinstance(event, ev.Admitted):
                conn = self.connections.get(pid)
                if conn is not None:
                    self.tell_admitted(conn)
            elif isinstance(event, ev.PositionChanged | ev.LobbyMessage):
                pass  # the coalesced refresh sends the waiting client its position and message
            elif isinstance(event, ev.Denied):
                self.send(pid, m.Denied(message=event.message or None))
                self.controls.drop(room_id, pid)
                self._close(pid, "denied")
            elif isinstance(event, ev.ReturnedToLobby):
                self.forget_admitted(pid)
                self.controls.stop_media(pid)
                self.send(pid, m.ReturnedToLobby())
                self.to_room(
                    room_id,
                    m.ParticipantLeft(participant_id=pid, reason=m.LeaveReason.RETURNED_TO_LOBBY),
                    exclude=pid,
                )
            elif isinstance(event, ev.Joined):
                entry = self._entry(
                    room_id, pid, event.display_name, event.role, event.muted, event.video_muted
                )
                self.to_room(room_id, m.ParticipantJoined(participant=entry), exclude=pid)
            elif isinstance(event, ev.Left) and event.reason is ev.LeaveReason.ENDED:
                pass  # everyone leaves with the room: room_ended (which follows) says it once, then closes
            elif isinstance(event, ev.Left):
                self.controls.drop(room_id, pid)
                reason = (
                    m.LeaveReason.TIMEOUT if event.reason is ev.LeaveReason.TIMEOUT else m.LeaveReason.LEFT
                )
                self.to_room(room_id, m.ParticipantLeft(participant_id=pid, reason=reason), exclude=pid)
                self._close(pid, "left")
            elif isinstance(event, ev.Removed):
                self.controls.drop(room_id, pid)
                self.send(pid, m.Removed(message=event.message))
                self.to_room(
                    room_id, m.ParticipantLeft(participant_id=pid, reason=m.LeaveReason.REMOVED), exclude=pid
                )
                self._close(pid, "removed")
            elif isinstance(event, ev.Muted):
                self.controls.host_mute(room_id, pid, event.media, event.muted)
                kind = m.MediaKind.AUDIO if event.media is ev.MuteKind.AUDIO else m.MediaKind.VIDEO
                self.to_room(room_id, m.Muted(participant_id=pid, kind=kind, muted=event.muted))
            elif isinstance(event, ev.Reconnecting):
                self.to_room(room_id, m.Reconnecting(participant_id=pid), exclude=pid)
            elif isinstance(event, ev.Resumed):
                self.mark_dirty(room_id)
            elif isinstance(event, ev.TalkRequested | ev.TalkAcknowledged):
                self._tell_talk(room_id, pid, pending=isinstance(event, ev.TalkRequested))
            elif isinstance(event, ev.BreakoutStarted | ev.BreakoutEnded):
                self._breakout(event)
        elif isinstance(event, ev.RoomLocked):
            self.to_room(room_id, m.RoomLocked(), lobby_too=True)
        elif isinstance(event, ev.RoomUnlocked):
            self.to_room(room_id, m.RoomUnlocked(), lobby_too=True)
        elif isinstance(event, ev.RoomEnded):
            self._rooms.pop(room_id, None)
            self.to_room(room_id, m.RoomEnded(), lobby_too=True)
            local = list(self.connections.in_room(room_id))
            # The relay here may carry people whose sockets are on other nodes: the hooks stop theirs too.
            self.controls.drop_room(
                room_id, [c.participant_id for c in local if c.participant_id is not None]
            )
            for conn in local:
                if conn.participant_id is not None:
                    self.forget_admitted(conn.participant_id)
                conn.close(m.CloseCode.NORMAL, "room ended")
            return
        self.mark_dirty(room_id)

    # --- "I need to talk" (issue 15) ----------------------------------------------------------------

    def _tell_talk(self, room_id: RoomId, pid: ParticipantId, *, pending: bool) -> None:
        """The asker hears about their own request at once; the room's hosts after a read of the room (who
        hosts it now). Never another client: this never goes through :meth:`to_room`."""
        message = m.TalkRequest(participant_id=pid, pending=pending)
        self.send(pid, message)
        if self.has_local(room_id):
            task = asyncio.get_running_loop().create_task(self._talk_to_hosts(room_id, pid, message))
            self._talk_tasks.add(task)
            task.add_done_callback(self._talk_tasks.discard)

    async def _talk_to_hosts(self, room_id: RoomId, pid: ParticipantId, message: m.TalkRequest) -> None:
        try:
            room = await self.rooms.room(room_id)
        except VIOPError:
            return  # ended or gone meanwhile
        except Exception:
            log.exception("talk request: room read failed", extra={"room_id": room_id})
            return
        for host in self.host_pids(room):
            if host != pid:
                self.send(host, message)

    # --- private breakout (issue 15) -----------------------------------------------------------------

    def _breakout(self, event: ev.BreakoutStarted | ev.BreakoutEnded) -> None:
        """Both sides' media and chat move at once (this process's in-memory groups); the two and the
        room's hosts are told after a read of the room (the clinician's name, who hosts it now). The group
        learns only what its next roster shows: "stepped out"."""
        active = isinstance(event, ev.BreakoutStarted)
        group = event.participant_id if active else None
        self.controls.set_groups(event.room_id, (event.participant_id, event.clinician), group)
        if self.has_local(event.room_id):
            self._spawn(self._tell_breakout(event, active))

    async def _tell_breakout(self, event: ev.BreakoutStarted | ev.BreakoutEnded, active: bool) -> None:
        try:
            room = await self.rooms.room(event.room_id)
            clinician = room.participant(event.clinician)
        except VIOPError:
            return  # ended or gone meanwhile
        except Exception:
            log.exception("breakout: room read failed", extra={"room_id": event.room_id})
            return
        message = m.Breakout(
            participant_id=event.participant_id,
            clinician_id=clinician.id,
            clinician_name=clinician.display_name,
            active=active,
        )
        for pid in {event.participant_id, clinician.id, *self.host_pids(room)}:
            self.send(pid, message)

    def group_of(self, room_id: RoomId, pid: ParticipantId) -> ParticipantId | None:
        """``pid``'s chat and media group here (None: the room's group), from the room's events: in memory."""
        group = self.controls.of(room_id, pid).group
        return None if group is None else ParticipantId(group)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._talk_tasks.add(task)
        task.add_done_callback(self._talk_tasks.discard)

    def _close(self, pid: ParticipantId, reason: str) -> None:
        self.forget_admitted(pid)
        conn = self.connections.get(pid)
        if conn is not None:
            conn.close(m.CloseCode.NORMAL, reason)

    # --- coalesced lobby / roster refresh ----------------------------------------------------------

    def mark_dirty(self, room_id: RoomId) -> None:
        if not self.has_local(room_id):
            self._rooms.pop(room_id, None)
            return
        self._dirty.add(room_id)
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._refresh_dirty())

    async def _refresh_dirty(self) -> None:
        await asyncio.sleep(0)  # let the rest of this burst of events mark their rooms first
        while self._dirty:
            room_id = self._dirty.pop()
            try:
                room = await self.rooms.room(room_id)
            except VIOPError:
                continue  # ended or gone meanwhile
            except Exception:
                log.exception("room refresh failed", extra={"room_id": room_id})
                continue
            self.push_views(room)

    def push_views(self, room: Room) -> None:
        """Each local connection gets the view its state calls for (see :meth:`view_for`)."""
        now = self.rooms.clock()
        lobby_frame = encode_text(self.lobby(room, now))
        # Shared frames per (host or client, breakout): a client's shows nobody audio only, a breakout's
        # shows its two sides; a client who is audio only gets one of their own.
        frames: dict[tuple[bool, ParticipantId | None], str] = {}
        by_id = {p.id: p for p in room.participants}
        for conn in self.connections.in_room(room.id):
            p = by_id.get(conn.participant_id) if conn.participant_id else None
            if p is None:
                continue
            host = p.role is DomainRole.HOST
            roster_frame = None  # built by view_for for a client who is audio only
            if host or self.controls.of(room.id, p.id).audio_only is None:
                key = (host, p.id if p.breakout_with is not None else None)  # the pair sees itself in
                if key not in frames:
                    frames[key] = encode_text(self.roster(room, p))
                roster_frame = frames[key]
            self.view_for(conn, room, p, lobby_frame, roster_frame)

    def view_for(
        self,
        conn: Connection,
        room: Room,
        p: Participant,
        lobby_frame: str | None = None,
        roster_frame: str | None = None,
    ) -> None:
        """Hosts get the lobby; a waiting client its position; a seated participant ``admitted`` (once per
        socket, and always before its first roster) and the roster. Views come from a read of the room that
        may predate an admission already sent: a stale ``waiting`` is never sent after ``admitted``."""
        self.remember(room)
        if p.role is DomainRole.HOST:
            conn.send_frame(lobby_frame or encode_text(self.lobby(room, self.rooms.clock())))
        if p.state is ParticipantState.WAITING:
            if self._told_admitted.get(p.id) is conn:
                return
            waiting = self.waiting_message(room, p.id)
            if waiting is not None:
                conn.send(waiting)
        elif p.is_seated:
            self.tell_admitted(conn)
            conn.send_frame(roster_frame or encode_text(self.roster(room, p)))
            self._tell_chat_policy(conn, p.id, room.clients_may_chat)
            if self._told_share.get(p.id) is not conn and conn.send(self.share_state(room.id)):
                self._told_share[p.id] = conn

    def tell_admitted(self, conn: Connection) -> None:
        pid = conn.participant_id
        if pid is not None and self._told_admitted.get(pid) is not conn and conn.send(m.Admitted()):
            self._told_admitted[pid] = conn

    def is_seated_here(self, conn: Connection) -> bool:
        """Whether ``conn`` was told ``admitted`` (its participant holds a seat): an in-memory check fed by
        the room's events, cheap enough for every message."""
        pid = conn.participant_id
        return pid is not None and self._told_admitted.get(pid) is conn

    def forget_admitted(self, pid: ParticipantId) -> None:
        self._told_admitted.pop(pid, None)
        self._told_chat_policy.pop(pid, None)
        self._told_share.pop(pid, None)

    # --- chat (issue 15) -------------------------------------------------------------------------

    def remember(self, room: Room) -> None:
        """Keep ``room`` as this process's view of it unless a newer read is already kept."""
        kept = self._rooms.get(room.id)
        if kept is None or kept.version <= room.version:
            self._rooms[room.id] = room

    def snapshot(self, room_id: RoomId) -> Room | None:
        """The newest read of a room with sockets here (None if there is none)."""
        return self._rooms.get(room_id)

    def share_state(self, room_id: RoomId) -> m.ShareState:
        share = self.controls.share(room_id)
        return m.ShareState(sharer=share.sharer, allowed=tuple(sorted(share.allowed)))

    def _announce_share(self, room_id: RoomId, share: RoomShare) -> None:
        """A share started, stopped, or a permission changed: everyone seated here hears it now (the sharer's
        media already stopped in the relay; this message makes the pages drop the share's view)."""
        self.to_room(room_id, self.share_state(room_id))

    def _tell_chat_policy(self, conn: Connection, pid: ParticipantId, clients_may_chat: bool) -> None:
        """``chat_policy`` to a seated socket once on admission and again whenever it changes."""
        told = self._told_chat_policy.get(pid)
        if told is not None and told[0] is conn and told[1] == clients_may_chat:
            return
        if conn.send(m.ChatPolicy(clients_may_chat=clients_may_chat)):
            self._told_chat_policy[pid] = (conn, clients_may_chat)

    def set_audio_only(self, room_id: RoomId, pid: ParticipantId, reason: AudioOnlyReason | None) -> None:
        """The relay stopped (``reason``) or resumed (None) video to ``pid``: once per change, the person
        is told at once; then (in order, after a read of the room) the room's hosts, and the attendance
        ledger records it."""
        previous = self.controls.set_audio_only(room_id, pid, reason)
        if previous == reason:
            return
        shown = reason or previous
        assert shown is not None
        message = m.AudioOnly(participant_id=pid, on=reason is not None, reason=shown)
        self.media_send(pid, message)
        at = self.rooms.clock()
        before = self._audio_only_chain
        self._audio_only_chain = asyncio.get_running_loop().create_task(
            self._audio_only_after(before, room_id, pid, reason, message, at)
        )

    async def _audio_only_after(
        self,
        before: asyncio.Task[None] | None,
        room_id: RoomId,
        pid: ParticipantId,
        reason: AudioOnlyReason | None,
        message: m.AudioOnly,
        at: float,
    ) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(before)
        try:
            room = await self.rooms.room(room_id)
        except VIOPError:
            return  # ended meanwhile: the end closed the span
        except Exception:
            log.exception("audio-only change: room read failed", extra={"room_id": room_id})
            return
        for host in self.host_pids(room):
            if host != pid:
                self.media_send(host, message)
        self.mark_dirty(room_id)  # the hosts' rosters (and the person's own line) show it
        await self.rooms.record_audio_only(room, pid, reason, at)

    async def audio_only_settled(self) -> None:
        """Wait for the audio-only changes so far to reach the hosts and the ledger (shutdown, tests)."""
        if self._audio_only_chain is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._audio_only_chain)

    async def close(self) -> None:
        if self._audio_only_chain is not None:
            self._audio_only_chain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._audio_only_chain
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        for task in list(self._talk_tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
