"""``WS /ws/signal``: one participant's signaling socket in one room.

The endpoint admits the socket (``ws_guard``), then a :class:`SignalSession` runs it: the first message must
be ``join``; every later message is decoded by the codec, checked against the permission table and turned
into a room use case or a media call. Room events come back through :class:`RoomDelivery` (the bus), so
what a participant sees does not depend on which process caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from vIOP import metrics
from vIOP.api.audit_trail import AUDIT_NAMES, audit_name
from vIOP.api.context import Services
from vIOP.api.room_delivery import RoomDelivery
from vIOP.api.ws_guard import admit_socket, client_ip
from vIOP.api.ws_revocation import CLOSE, RevocableSocket, sleep_until
from vIOP.auth.permissions import Action, Principal, Role, RoomScope, authorize
from vIOP.auth.revocation import Revocation
from vIOP.auth.tickets import TicketGrant, TicketPurpose
from vIOP.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated, Unavailable, VIOPError
from vIOP.ids import ClientId, ParticipantId, RoomId, UserId
from vIOP.logging import register_secret
from vIOP.rooms.events import MuteKind
from vIOP.rooms.participant import Participant, ParticipantState
from vIOP.rooms.room import Room
from vIOP.signaling import messages as m
from vIOP.signaling.codec import DecodeFailure, binary_frame_failure, decode_client, error_reply
from vIOP.signaling.connections import Connection, ConnectionState
from vIOP.signaling.ratelimit import InboundVerdict
from vIOP.signaling.resume import ResumeGrant
from vIOP.storage.audit import AuditEvent, Outcome
from vIOP.storage.outage import is_store_outage
from vIOP.storage.redis_rooms import StoreGeneration

log = logging.getLogger("vIOP.signal")

JOIN_TIMEOUT_SECONDS = 15.0
# Host actions audited when done (names: vIOP.api.audit_trail.AUDIT_NAMES); every refusal is audited too.
_AUDITED: frozenset[Action] = frozenset(
    {Action.ADMIT, Action.ADMIT_ALL, Action.DENY, Action.LOBBY_MESSAGE, Action.RETURN_TO_LOBBY}
    | {Action.MUTE, Action.REMOVE, Action.LOCK, Action.UNLOCK, Action.END}
)


class AlreadyConnected(Conflict):
    code = "already_connected"


class NotInRoomYet(Conflict):
    """A waiting (or knocking) client asked for something only seated participants may do."""

    code = "not_in_room"


async def signal_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    grant = await admit_socket(websocket, services, TicketPurpose.SIGNAL, "signal")
    if grant is None:
        return
    if grant.room_id is None:
        await websocket.close(1008)
        return
    try:
        scope = await services.room_directory.room_scope(grant.room_id)
    except NotFound:
        await websocket.close(1008)
        return
    await websocket.accept()
    metrics.WS_CONNECTIONS.labels("signal").inc()
    metrics.WS_ACTIVE.labels("signal").inc()
    try:
        await SignalSession(services, websocket, grant, scope).run()
    finally:
        metrics.WS_ACTIVE.labels("signal").dec()


class SignalSession:
    def __init__(
        self, services: Services, websocket: WebSocket, grant: TicketGrant, scope: RoomScope
    ) -> None:
        self.services = services
        self.websocket = websocket
        self.grant = grant
        self.principal: Principal = grant.principal
        self.scope = scope
        self.room_id: RoomId = scope.room_id
        self.delivery: RoomDelivery = services.extras["delivery"]
        self.conn: Connection = services.connections.open(websocket, self.room_id)
        self.user_sockets: dict[str, set[RevocableSocket]] = services.extras["user_sockets"]
        self.user_sockets.setdefault(self.principal.subject, set()).add(self)
        self.revoked: Revocation | None = None
        self.pid: ParticipantId | None = None
        self.resume_handle: str | None = None
        self.finished = False  # left, removed, denied or ended: no reconnect grace
        self._last_heartbeat = 0.0
        self._generation = StoreGeneration(services.redis)  # tells a Redis data loss from a session end

    # --- the socket ------------------------------------------------------------------------------

    async def run(self) -> None:
        deadlines = [asyncio.create_task(self._join_deadline())]
        if self.grant.session_ends_at is not None:
            deadlines.append(asyncio.create_task(self._session_deadline(self.grant.session_ends_at)))
        try:
            await self._receive_loop()
        finally:
            for deadline in deadlines:
                deadline.cancel()
            await self._teardown()

    async def _receive_loop(self) -> None:
        """The hot path: one plain await per frame. Once the server has closed the socket (leave, removal,
        the room's end, the join deadline), the ASGI server answers the next receive with a disconnect."""
        try:
            while self.conn.state is ConnectionState.OPEN:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    self.conn.lost(int(message.get("code", 1006)))
                    return
                await self._on_frame(message)
        except WebSocketDisconnect as exc:
            self.conn.lost(exc.code)

    async def _join_deadline(self) -> None:
        await asyncio.sleep(JOIN_TIMEOUT_SECONDS)
        if self.pid is None:
            self._fail(BadRequest("send join first"), None, m.CloseCode.POLICY_VIOLATION)

    async def _session_deadline(self, ends_at: float) -> None:
        """The sign-in's absolute end (token ``exp``, invite expiry): the socket closes then, not later.
        Re-reads the (injectable) clock at least once per heartbeat interval, so a stepped clock counts."""
        await sleep_until(ends_at, self.services.revocations.clock, self.services.settings.heartbeat_seconds)
        self._end_session()

    def _end_session(self) -> None:
        self.conn.send(m.ErrorMessage(code="unauthenticated", message="session ended"))
        self.conn.close(m.CloseCode.POLICY_VIOLATION, "session ended")

    def revoke(self, revocation: Revocation) -> None:
        """A revocation covers this socket (``ws_revocation``): nothing more is dispatched; close now."""
        self.revoked = revocation
        code, reason = CLOSE[revocation.kind]
        self.conn.send(m.ErrorMessage(code="unauthenticated", message=reason))
        self.conn.close(m.CloseCode(code), reason)

    async def _still_authorized(self) -> None:
        """Before a host action (rare, and doing Redis work anyway): the subject's revocation in Redis, so
        an action sent the moment an account is disabled elsewhere cannot win the race with the stream."""
        grant = self.grant
        found = await self.services.revocations.check(
            self.principal.subject, grant.issued_at, account=self.principal.role is not Role.CLIENT
        )
        if found is not None:
            self.revoke(found)
            raise Unauthenticated("session ended")

    async def _on_frame(self, message: Message) -> None:
        verdict = self.conn.accept_inbound()
        if verdict is InboundVerdict.CLOSE:
            self.conn.send(m.ErrorMessage(code="rate_limited", message="too many messages"))
            self.conn.close(m.CloseCode.POLICY_VIOLATION, "message flood")
            return
        if verdict is InboundVerdict.REJECT:
            self.conn.send(m.ErrorMessage(code="rate_limited", message="too many messages; slow down"))
            return
        text = message.get("text")
        decoded = decode_client(text) if text is not None else binary_frame_failure()
        if isinstance(decoded, DecodeFailure):
            self.conn.send(decoded.reply())
            if decoded.close_code is not None:
                self.conn.close(decoded.close_code, decoded.error.code)
            return
        kind = m.message_type(decoded)
        metrics.SIGNAL_MESSAGES.labels(kind).inc()
        try:
            await self._dispatch(kind, decoded)
        except VIOPError as exc:
            self.conn.send(error_reply(exc, decoded.id))
            refused = _refused_as(kind, decoded, exc)
            if refused is not None:
                self._audit_refusal(refused)
            if isinstance(exc, Unauthenticated | AlreadyConnected):
                self.conn.close(m.CloseCode.POLICY_VIOLATION, exc.code)
        except Exception as exc:
            if is_store_outage(exc):  # Redis or the database is away: nothing changed, the client retries
                log.warning("store unavailable", extra={"kind": kind, "room_id": self.room_id})
                self.conn.send(error_reply(Unavailable("a data store is unavailable; try again"), decoded.id))
                return
            log.exception("signaling message failed", extra={"kind": kind, "room_id": self.room_id})
            self.conn.send(
                m.ErrorMessage(
                    code="internal", message="the server could not do that; try again", id=decoded.id
                )
            )

    def _fail(self, error: VIOPError, request_id: m.RequestId | None, close: m.CloseCode | None) -> None:
        self.conn.send(error_reply(error, request_id))
        if close is not None:
            self.conn.close(close, error.code)

    # --- dispatch --------------------------------------------------------------------------------

    async def _dispatch(self, kind: str, msg: m.ClientMessage) -> None:
        # In memory, fed by the revocation stream and heartbeats: no I/O on the hot path.
        revoked = self.revoked or self.services.revocations.blocking(
            self.principal.subject, self.grant.issued_at
        )
        if revoked is not None:
            self.revoke(revoked)
            return
        authorize(self.principal, Action(kind), self.scope)
        if isinstance(msg, m.Ping):
            await self._heartbeat(active=msg.active)
            self.conn.send(m.Pong(id=msg.id))
            return
        if isinstance(msg, m.Join):
            await self._join(msg)
            return
        if self.pid is None:
            raise BadRequest("send join first")
        pid = self.pid
        rooms = self.services.rooms
        relay = self.services.relay
        if isinstance(msg, m.Offer):
            if relay is None:
                raise Conflict("this server runs without media")
            room = await rooms.room(self.room_id)
            me = room.participant(pid)
            if not me.is_seated:
                raise Conflict("media starts once you are admitted")
            if pid not in relay.participants():
                await relay.add_participant(pid, room=self.room_id)
                # A host's mutes live with the participant: they outlive a reconnect and a return to the lobby.
                if me.muted:
                    relay.set_audio_forwarding(pid, False)
                if me.video_muted:
                    relay.set_forwarding(pid, "video", False)
            answer = await relay.handle_offer(pid, msg.sdp)
            self.conn.send(m.ServerAnswer(sdp=answer, id=msg.id))
            if me.state is ParticipantState.ADMITTED:
                await rooms.join(self.room_id, pid)
        elif isinstance(msg, m.Answer):
            if relay is None or pid not in relay.participants():
                raise Conflict("no media negotiation in progress")
            await relay.handle_answer(pid, msg.sdp)
        elif isinstance(msg, m.Candidate):
            if relay is None or pid not in relay.participants():
                raise Conflict("send an offer first")
            await relay.add_remote_candidate(
                pid, {"candidate": msg.candidate, "sdpMid": msg.sdp_mid, "sdpMLineIndex": msg.sdp_mline_index}
            )
        elif isinstance(msg, m.Leave):
            self.finished = True
            await self._revoke_resume()
            await rooms.leave(self.room_id, pid)
            await self._audit(AuditEvent.LEFT, "participant", pid)
            self.conn.close(m.CloseCode.NORMAL, "left")
        elif isinstance(msg, m.SetMedia):
            flags = self.delivery.set_flags(self.room_id, pid, audio=msg.audio, video=msg.video)
            # Kept private until admission: the room learns nothing of someone who may yet be denied; the
            # flags show in the roster once they are in.
            if self.delivery.is_seated_here(self.conn):
                self.delivery.to_room(
                    self.room_id, m.MediaChanged(participant_id=pid, audio=flags.audio, video=flags.video)
                )
        elif isinstance(msg, m.RaiseHand):
            if not self.delivery.is_seated_here(self.conn):
                raise NotInRoomYet("you are not in the room yet")
            self.delivery.set_flags(self.room_id, pid, hand=msg.up)
            self.delivery.to_room(self.room_id, m.HandRaised(participant_id=pid, up=msg.up))
        else:
            await self._host_action(kind, msg, pid)

    async def _host_action(self, kind: str, msg: m.ClientMessage, pid: ParticipantId) -> None:
        await self._still_authorized()
        rooms = self.services.rooms
        target: ParticipantId | None = None
        if isinstance(msg, m.Admit):
            target = ParticipantId(msg.participant_id)
            await rooms.admit(self.room_id, by=pid, participant_id=target)
        elif isinstance(msg, m.AdmitAll):
            await rooms.admit_all(self.room_id, by=pid)
        elif isinstance(msg, m.Deny):
            target = ParticipantId(msg.participant_id)
            await rooms.deny(self.room_id, by=pid, participant_id=target, message=msg.message)
        elif isinstance(msg, m.LobbyMessage):
            target = ParticipantId(msg.participant_id)
            await rooms.lobby_message(self.room_id, by=pid, participant_id=target, message=msg.message)
        elif isinstance(msg, m.ReturnToLobby):
            target = ParticipantId(msg.participant_id)
            await rooms.return_to_lobby(self.room_id, by=pid, participant_id=target)
        elif isinstance(msg, m.Mute):
            target = ParticipantId(msg.participant_id)
            media = MuteKind.AUDIO if msg.kind is m.MediaKind.AUDIO else MuteKind.VIDEO
            await rooms.mute(self.room_id, by=pid, participant_id=target, muted=msg.muted, media=media)
        elif isinstance(msg, m.Remove):
            target = ParticipantId(msg.participant_id)
            await rooms.remove(self.room_id, by=pid, participant_id=target, message=msg.message)
            # The relay is local to this room's process: stop their media now, not after the bus round trip.
            self.delivery.media.remove(target)
        elif isinstance(msg, m.Lock):
            await rooms.lock(self.room_id, by=pid)
        elif isinstance(msg, m.Unlock):
            await rooms.unlock(self.room_id, by=pid)
        elif isinstance(msg, m.End):
            t = await rooms.end(self.room_id, by=pid)
            await self.services.room_directory.set_state(self.room_id, "ended", ended_at=t.room.ended_at)
        if kind in _AUDITED:
            await self._audit(
                AUDIT_NAMES[Action(kind)], "participant" if target else "room", target or self.room_id
            )

    # --- join and resume -------------------------------------------------------------------------

    async def _join(self, msg: m.Join) -> None:
        if self.pid is not None:
            raise Conflict("already joined")
        if msg.protocol_version != m.PROTOCOL_VERSION:
            raise BadRequest(f"this server speaks protocol version {m.PROTOCOL_VERSION}")
        rooms = self.services.rooms
        subject = self.principal.subject
        room = await rooms.room(self.room_id)
        resumed = False
        if msg.resume_token is not None:
            resume_grant = await self.services.resume.redeem(
                msg.resume_token, room_id=self.room_id, subject=subject
            )
            participant = room.participant(resume_grant.participant_id)
            if not participant.is_active:
                raise Unauthenticated("resume token not accepted; join again")
            resumed = True
            await self._audit(AuditEvent.RESUMED, "participant", participant.id)
        else:
            existing = room.active_of(subject)
            # Not marked reconnecting: a live socket holds it (here or in another process).
            if existing is not None and existing.reconnecting_since is None:
                raise AlreadyConnected("you are already connected to this room from another window")
            if existing is not None and self.principal.role is Role.CLINICIAN:
                # A clinician proves who they are with their own sign-in: their seat is theirs to take back.
                participant, resumed = existing, True
                await self._audit(AuditEvent.RESUMED, "participant", participant.id)
            else:
                # A client without the seat's resume token (a second device, a link copied out of a
                # browser's history) knocks like anyone else; a seat left reconnecting is let go.
                participant = await self._enter(room)
                entered = AuditEvent.KNOCK if participant.role.value == "client" else AuditEvent.HOST_ENTERED
                await self._audit(entered, "participant", participant.id)
        if self.conn.state is not ConnectionState.OPEN:
            return  # the socket closed while we were joining; the teardown takes over
        self.pid = participant.id
        if resumed and participant.reconnecting_since is not None:
            await rooms.resume(self.room_id, participant.id)
        await self._heartbeat(force=True)
        issued = await self.services.resume.issue(ResumeGrant(participant.id, self.room_id, subject))
        self.resume_handle = issued.handle
        await self._generation.lost_since_last_check()  # remember which Redis data set this joined
        if self.conn.state is not ConnectionState.OPEN:
            return
        # `welcome` goes first (events used to slip in ahead of it, e.g. `admitted` from a quick host), and
        # in the same step the connection is attached, so no event is missed: what happens from here on is
        # queued after it. The state below comes from a snapshot read after attaching.
        replaced = self.services.connections.attach(self.conn, participant.id)
        if replaced is not None:
            log.info("connection replaced by a resumed one", extra={"participant_id": participant.id})
        self.delivery.set_flags(self.room_id, participant.id, audio=msg.audio, video=msg.video)
        settings = self.services.settings
        ice_servers = self._ice_servers(participant.id)
        if any(server.credential for server in ice_servers):
            await self._audit(AuditEvent.TURN_ISSUED, "room", self.room_id)
        self.conn.send(
            m.Welcome(
                id=msg.id,
                protocol_version=m.PROTOCOL_VERSION,
                participant_id=participant.id,
                room_id=self.room_id,
                role=m.Role.HOST if self.principal.role is Role.CLINICIAN else m.Role.CLIENT,
                resume_token=issued.token,
                resume_grace_seconds=settings.reconnect_grace_seconds,
                heartbeat_seconds=settings.heartbeat_seconds,
                ice_servers=ice_servers,
                resumed=resumed,
            )
        )
        room = await rooms.room(self.room_id)
        rooms.holdings.hold(room, participant.id)
        self._send_state(room, room.participant(participant.id))
        self.services.extras.setdefault("signal_sessions", set()).add(self)  # re-asserted by live.repair

    async def _enter(self, room: Room) -> Participant:
        rooms = self.services.rooms
        if self.principal.role is Role.CLINICIAN:
            account = await self.services.authenticator.active_account(UserId(self.principal.subject))
            t = await rooms.host_enter(
                self.room_id, user_id=UserId(account.id), display_name=account.display_name
            )
        else:
            name = await self.services.invite_store.client_display_name(ClientId(self.principal.subject))
            t = await rooms.knock(
                self.room_id,
                subject=ClientId(self.principal.subject),
                display_name=name,
                replace_reconnecting=True,
            )
        assert t.participant is not None
        # Defence in depth: even a stray exception message cannot carry this name into a log line.
        register_secret(t.participant.display_name)
        return t.participant

    def _send_state(self, room: Room, me: Participant) -> None:
        """What a (re)joining participant needs to see at once; later changes come as events."""
        self.delivery.view_for(self.conn, room, me)
        if room.state.value == "locked":
            self.conn.send(m.RoomLocked())

    def _ice_servers(self, pid: ParticipantId) -> tuple[m.IceServer, ...]:
        # TURN credentials end with the sign-in (token exp, invite expiry) at the latest (docs/API.md).
        entries = self.services.ice.client_ice_servers(
            pid, now=time.time(), session_ends_at=self.grant.session_ends_at
        )
        return tuple(m.IceServer(urls=e.urls, username=e.username, credential=e.credential) for e in entries)

    # --- liveness and teardown -------------------------------------------------------------------

    async def _heartbeat(self, force: bool = False, active: bool = True) -> None:
        """Presence in Redis, the resume token's lifetime and (for clinicians) the sign-in's idle timer;
        written at most twice per heartbeat interval however often the client pings."""
        if self.pid is None:
            return
        now = time.monotonic()
        if not force and now - self._last_heartbeat < self.services.settings.heartbeat_seconds / 2:
            return
        self._last_heartbeat = now
        ends_at = self.grant.session_ends_at
        if ends_at is not None and self.services.revocations.clock() >= ends_at:
            self._end_session()
            return
        revoked = await self.services.revocations.check(
            self.principal.subject, self.grant.issued_at, account=self.principal.role is not Role.CLIENT
        )
        if revoked is not None:  # the stream's message was missed (or not sent yet): caught here
            self.revoke(revoked)
            return
        await self.services.rooms.heartbeat(self.room_id, self.pid)
        kept = True
        if self.resume_handle is not None:
            kept = await self.services.resume.keep_alive(self.resume_handle)
        session = self.grant.session if self.principal.role is not Role.CLIENT else None
        # Only a page in use renews the sign-in; an unattended one keeps its seat until the idle timeout.
        signed_in = session is None or await self.services.tokens.keep_alive(session, active=active)
        if not (kept and signed_in) and await self._generation.lost_since_last_check():
            # Redis came back without its data (this may run before the process's repair does): the
            # token and sign-in of a socket that was live a moment ago are put back, not ended.
            await self.reassert()
            return
        if not signed_in:
            raise Unauthenticated("session ended")

    async def reassert(self) -> None:
        """Redis lost its data while this socket was live: put back its resume token and its sign-in."""
        if self.pid is not None and self.resume_handle is not None:
            grant = ResumeGrant(self.pid, self.room_id, self.principal.subject)
            await self.services.resume.restore(self.resume_handle, grant)
        if self.principal.role is not Role.CLIENT and self.grant.session:
            await self.services.tokens.reassert(self.grant.session)

    async def _revoke_resume(self) -> None:
        if self.resume_handle is not None:
            await self.services.resume.revoke(self.resume_handle)
            self.resume_handle = None

    async def _teardown(self) -> None:
        """The socket is gone. Unless the participant left for good, they are reconnecting: peers see it
        and the resume token lives exactly the grace window (the sweeper lets them go after it)."""
        self.services.extras.get("signal_sessions", set()).discard(self)
        mine = self.user_sockets.get(self.principal.subject)
        if mine is not None:
            mine.discard(self)
            if not mine:
                del self.user_sockets[self.principal.subject]
        if self.conn.state is ConnectionState.OPEN:
            self.conn.lost(1006)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 5)
        pid = self.pid
        if pid is None:
            return
        current = self.services.connections.get(pid)
        if current is not None and current is not self.conn:
            return  # replaced by a resumed connection: nothing to do
        if self.revoked is not None:
            await self._end_seat(pid)
            return
        if self.finished:
            return
        try:
            room = await self.services.rooms.room(self.room_id)
            me = room.participant(pid)
            if not me.is_active:  # denied, removed, ended: no way back in with this token
                self.services.rooms.holdings.release(self.room_id, pid)
                await self._revoke_resume()
                return
            if me.reconnecting_since is None:
                await self.services.rooms.mark_reconnecting(self.room_id, pid)
            if self.resume_handle is not None:
                await self.services.resume.start_grace(self.resume_handle)
        except VIOPError:
            pass
        except Exception:
            log.exception("teardown failed", extra={"participant_id": pid})

    async def _end_seat(self, pid: ParticipantId) -> None:
        """A revoked socket does not leave a seat "reconnecting": no way back in with its resume token."""
        self.services.rooms.holdings.release(self.room_id, pid)
        try:
            await self._revoke_resume()
            room = await self.services.rooms.room(self.room_id)
            if room.participant(pid).is_active:
                await self.services.rooms.leave(self.room_id, pid)
        except VIOPError:
            pass
        except Exception:
            log.exception("ending a revoked seat failed", extra={"participant_id": pid})

    async def _audit(self, action: AuditEvent, object_type: str, object_id: str) -> None:
        # Queued, not awaited: the room change is done, and a database that is away (or locked) must
        # neither hold up this socket nor lose the row (it is written, with this time, once it is back).
        self.services.audit_outbox.record(
            self.principal.subject,
            self.principal.role.value,
            action,
            object_type,
            object_id,
            ip=client_ip(self.websocket),
            user_agent=self.websocket.headers.get("user-agent"),
        )

    def _audit_refusal(self, action: AuditEvent | str) -> None:
        """A refusal on this socket: a `denied` row on the room, queued like every socket row."""
        self.services.audit_outbox.record(
            self.principal.subject,
            self.principal.role.value,
            action,
            "room",
            self.room_id,
            Outcome.DENIED,
            client_ip(self.websocket),
            self.websocket.headers.get("user-agent"),
        )


def _refused_as(kind: str, msg: m.ClientMessage, exc: VIOPError) -> AuditEvent | str | None:
    """The audit name of a refusal worth a `denied` row: the permission table's (and a host check's), a
    second socket for a live seat, a resume token not accepted. Other errors (state, input) are not."""
    if isinstance(exc, Forbidden):
        return audit_name(Action(kind))
    if isinstance(exc, AlreadyConnected):
        return AuditEvent.ALREADY_CONNECTED
    if isinstance(msg, m.Join) and msg.resume_token is not None and isinstance(exc, Unauthenticated):
        return AuditEvent.RESUME_REJECTED
    return None
