"""One participant's signaling session in one room: what each message on the socket means.

The edge (``vIOP.api.ws_signal``) pumps frames and hands each decoded message to :meth:`SignalSession.handle`;
the session checks revocation and the permission table, then dispatches through a table with one small
method per message type. The first message must be ``join``; host actions re-check the subject's
revocation in Redis and are audited. Room events come back through
:class:`~vIOP.session.delivery.RoomDelivery` (the bus), so what a participant sees does not depend on
which process caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from vIOP import metrics
from vIOP.auth.permissions import Action, Principal, Role, RoomScope, authorize
from vIOP.auth.revocation import Revocation
from vIOP.auth.tickets import TicketGrant
from vIOP.errors import BadRequest, Conflict, Forbidden, Unauthenticated, Unavailable, VIOPError
from vIOP.ids import ParticipantId, RoomId
from vIOP.rooms.events import MuteKind
from vIOP.session.audit_names import AUDIT_NAMES, audit_name
from vIOP.session.chat import ChatSender
from vIOP.session.delivery import RoomDelivery
from vIOP.session.join import AlreadyConnected, join
from vIOP.session.media_route import (
    MediaMessage,
    answer_here,
    candidate_here,
    offer_here,
    subscriptions_here,
)
from vIOP.session.revocation import CLOSE, sleep_until
from vIOP.session.room_end import end_room
from vIOP.session.services import Services
from vIOP.signaling import messages as m
from vIOP.signaling.codec import error_reply
from vIOP.signaling.connections import Connection, ConnectionState
from vIOP.signaling.resume import ResumeGrant
from vIOP.storage.audit import AuditEvent, Outcome
from vIOP.storage.outage import is_store_outage
from vIOP.storage.redis_rooms import StoreGeneration

log = logging.getLogger("vIOP.signal")

JOIN_TIMEOUT_SECONDS = 15.0


class NotInRoomYet(Conflict):
    """A waiting (or knocking) client asked for something only seated participants may do."""

    code = "not_in_room"


class SignalSession:
    """The application side of one signaling socket; ``conn`` is its outbound side."""

    def __init__(
        self,
        services: Services,
        conn: Connection,
        grant: TicketGrant,
        scope: RoomScope,
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        self.services = services
        self.conn = conn
        self.grant = grant
        self.principal: Principal = grant.principal
        self.scope = scope
        self.room_id: RoomId = scope.room_id
        self.ip = ip
        self.user_agent = user_agent
        self.delivery: RoomDelivery = services.live.room_delivery()
        services.live.user_sockets.setdefault(self.principal.subject, set()).add(self)
        self.revoked: Revocation | None = None
        self.pid: ParticipantId | None = None
        self.resume_handle: str | None = None
        self.finished = False  # left, removed, denied or ended: no reconnect grace
        self._last_heartbeat = 0.0
        self._generation = StoreGeneration(services.redis)  # tells a Redis data loss from a session end
        self._deadlines: list[asyncio.Task[None]] = []
        self._chat = ChatSender()  # this socket's chat rate (issue 15)
        # The node whose relay carries this participant's media, when another one does (set by the offer).
        self.media_node: str | None = None

    # --- lifetime --------------------------------------------------------------------------------

    def start(self) -> None:
        """The socket is accepted: the join deadline and the sign-in's absolute end start counting."""
        self._deadlines.append(asyncio.create_task(self._join_deadline()))
        if self.grant.session_ends_at is not None:
            self._deadlines.append(asyncio.create_task(self._session_deadline(self.grant.session_ends_at)))

    async def close(self) -> None:
        """The socket's receive pump has ended."""
        for deadline in self._deadlines:
            deadline.cancel()
        await self._teardown()

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
        """A revocation covers this socket (``vIOP.session.revocation``): nothing more is dispatched."""
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

    def _fail(self, error: VIOPError, request_id: m.RequestId | None, close: m.CloseCode | None) -> None:
        self.conn.send(error_reply(error, request_id))
        if close is not None:
            self.conn.close(close, error.code)

    # --- dispatch --------------------------------------------------------------------------------

    async def handle(self, msg: m.ClientMessage) -> None:
        """One decoded message from the socket. Errors become an ``error`` reply (and a ``denied`` audit
        row for a refusal); nothing raises out of here."""
        kind = m.message_type(msg)
        metrics.SIGNAL_MESSAGES.labels(kind).inc()
        try:
            # In memory, fed by the revocation stream and heartbeats: no I/O on the hot path.
            revoked = self.revoked or self.services.revocations.blocking(
                self.principal.subject, self.grant.issued_at
            )
            if revoked is not None:
                self.revoke(revoked)
                return
            authorize(self.principal, Action(kind), self.scope)
            handler = _HANDLERS.get(type(msg))
            if handler is not None:
                await handler(self, msg)
            else:
                await self._host_action(kind, _HOST_ACTIONS[type(msg)], msg)
        except VIOPError as exc:
            self.conn.send(error_reply(exc, msg.id))
            refused = _refused_as(kind, msg, exc)
            if refused is not None:
                self._audit_refusal(refused)
            if isinstance(exc, Unauthenticated | AlreadyConnected):
                self.conn.close(m.CloseCode.POLICY_VIOLATION, exc.code)
        except Exception as exc:
            if is_store_outage(exc):  # Redis or the database is away: nothing changed, the client retries
                log.warning("store unavailable", extra={"kind": kind, "room_id": self.room_id})
                self.conn.send(error_reply(Unavailable("a data store is unavailable; try again"), msg.id))
                return
            log.exception("signaling message failed", extra={"kind": kind, "room_id": self.room_id})
            self.conn.send(
                m.ErrorMessage(code="internal", message="the server could not do that; try again", id=msg.id)
            )

    def _seat(self) -> ParticipantId:
        if self.pid is None:
            raise BadRequest("send join first")
        return self.pid

    async def _on_ping(self, msg: m.Ping) -> None:
        await self._heartbeat(active=msg.active)
        self.conn.send(m.Pong(id=msg.id))

    async def _on_join(self, msg: m.Join) -> None:
        await join(self, msg)

    async def _on_offer(self, msg: m.Offer) -> None:
        pid = self._seat()
        router = self.services.media_router
        if router is None:
            await offer_here(self.services, self.room_id, pid, msg, self.conn.send)
            return
        save_data = self.delivery.controls.of(self.room_id, pid).save_data
        self.media_node = await router.offer(self.room_id, pid, msg, self.conn.send, save_data=save_data)

    def _media_elsewhere(self, pid: ParticipantId) -> str | None:
        """The node carrying this participant's media when it is not this one (in memory: no I/O)."""
        relay, router = self.services.relay, self.services.media_router
        if self.media_node is None:
            return None
        # Carried here, unless this node is moving the room away and the new connection is elsewhere.
        carried_here = relay is not None and pid in relay.participants()
        if carried_here and (router is None or pid not in router.leaving):
            return None
        return self.media_node

    async def _to_media_node(self, node_id: str, pid: ParticipantId, msg: MediaMessage) -> None:
        router = self.services.media_router
        assert router is not None  # only set through it
        await router.send_to_media(node_id, self.room_id, pid, msg)

    async def _on_answer(self, msg: m.Answer) -> None:
        pid = self._seat()
        if (elsewhere := self._media_elsewhere(pid)) is not None:
            await self._to_media_node(elsewhere, pid, msg)
            if self.services.media_router is not None:
                self.services.media_router.answered(pid)
        else:
            await answer_here(self.services, pid, msg)

    async def _on_candidate(self, msg: m.Candidate) -> None:
        pid = self._seat()
        if (elsewhere := self._media_elsewhere(pid)) is not None:
            await self._to_media_node(elsewhere, pid, msg)
        else:
            await candidate_here(self.services, pid, msg)

    async def _on_leave(self, msg: m.Leave) -> None:
        pid = self._seat()
        self.finished = True
        await self._revoke_resume()
        await self.services.rooms.leave(self.room_id, pid)
        await self._audit(AuditEvent.LEFT, "participant", pid)
        self.conn.close(m.CloseCode.NORMAL, "left")

    async def _on_set_media(self, msg: m.SetMedia) -> None:
        pid = self._seat()
        own = self.delivery.controls.set_own(self.room_id, pid, audio=msg.audio, video=msg.video)
        # Kept private until admission: the room learns nothing of someone who may yet be denied; the
        # flags show in the roster once they are in.
        if self.delivery.is_seated_here(self.conn):
            self.delivery.to_room(
                self.room_id, m.MediaChanged(participant_id=pid, audio=own.audio, video=own.video)
            )

    async def _on_save_data(self, msg: m.SaveData) -> None:
        """Kept with the participant's live flags: sent before media starts, it applies from the offer."""
        pid = self._seat()
        self.delivery.controls.set_save_data(self.room_id, pid, msg.on)
        if (elsewhere := self._media_elsewhere(pid)) is not None:
            await self._to_media_node(elsewhere, pid, msg)

    async def _on_raise_hand(self, msg: m.RaiseHand) -> None:
        pid = self._seat()
        if not self.delivery.is_seated_here(self.conn):
            raise NotInRoomYet("you are not in the room yet")
        self.delivery.controls.set_hand(self.room_id, pid, msg.up)
        self.delivery.to_room(self.room_id, m.HandRaised(participant_id=pid, up=msg.up))

    async def _on_need_to_talk(self, msg: m.NeedToTalk) -> None:
        """Issue 15: recorded with the participant (ids only), audited, delivered to hosts and staff."""
        pid = self._seat()
        t = await self.services.rooms.request_talk(self.room_id, pid)
        if t.changed:
            await self._audit(AuditEvent.NEED_TO_TALK, "participant", pid)

    async def _on_set_subscriptions(self, msg: m.SetSubscriptions) -> None:
        pid = self._seat()
        if (elsewhere := self._media_elsewhere(pid)) is not None:
            await self._to_media_node(elsewhere, pid, msg)
        else:
            await subscriptions_here(self.services, self.room_id, pid, msg)

    # --- screen share (issue 15) ----------------------------------------------------------------

    def _seated_here(self) -> ParticipantId:
        pid = self._seat()
        if not self.delivery.is_seated_here(self.conn):
            raise NotInRoomYet("you are not in the room yet")
        return pid

    async def _on_start_share(self, msg: m.StartShare) -> None:
        """In memory only (the room's share state lives with its media in this process): no store trip.
        A clinician on this socket hosts the room (the permission table lets no other clinician join)."""
        pid = self._seated_here()
        sharing_before = self.delivery.controls.share(self.room_id).sharer == pid
        self.delivery.controls.start_share(self.room_id, pid, is_host=self.principal.role is Role.CLINICIAN)
        if not sharing_before:
            await self._audit(AuditEvent.SHARE_STARTED, "participant", pid)

    async def _on_stop_share(self, msg: m.StopShare) -> None:
        pid = self._seated_here()
        self.delivery.controls.stop_share(self.room_id, pid)
        await self._audit(AuditEvent.SHARE_STOPPED, "participant", pid)

    async def _seated_target(self, participant_id: str) -> ParticipantId:
        """A participant seated in this room (a host action: rare, and it reads the store anyway)."""
        target = ParticipantId(participant_id)
        room = await self.services.rooms.room(self.room_id)
        if not room.participant(target).is_seated:  # ParticipantNotFound: not in this room
            raise NotInRoomYet("that participant is not in the room")
        return target

    async def _allow_share(self, msg: m.AllowShare, by: ParticipantId) -> ParticipantId | None:
        target = await self._seated_target(msg.participant_id)
        self.delivery.controls.allow_share(self.room_id, target)
        return target

    async def _revoke_share(self, msg: m.RevokeShare, by: ParticipantId) -> ParticipantId | None:
        target = await self._seated_target(msg.participant_id)
        self.delivery.controls.revoke_share(self.room_id, target)
        return target

    # --- chat (issue 15) -------------------------------------------------------------------------

    async def _on_chat(self, msg: m.Chat) -> None:
        await self._chat.send(self, msg)

    async def _set_chat_policy(self, msg: m.SetChatPolicy, by: ParticipantId) -> ParticipantId | None:
        await self.services.rooms.set_chat_policy(self.room_id, by=by, clients_may_chat=msg.clients_may_chat)
        return None

    # --- host actions: each returns the participant it acted on (None: the room) -----------------

    async def _host_action(self, kind: str, action: HostAction, msg: m.ClientMessage) -> None:
        pid = self._seat()
        await self._still_authorized()
        target = await action(self, msg, pid)
        await self._audit(
            AUDIT_NAMES[Action(kind)], "participant" if target else "room", target or self.room_id
        )

    async def _admit(self, msg: m.Admit, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.admit(self.room_id, by=by, participant_id=target)
        return target

    async def _admit_all(self, msg: m.AdmitAll, by: ParticipantId) -> ParticipantId | None:
        await self.services.rooms.admit_all(self.room_id, by=by)
        return None

    async def _deny(self, msg: m.Deny, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.deny(self.room_id, by=by, participant_id=target, message=msg.message)
        return target

    async def _lobby_message(self, msg: m.LobbyMessage, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.lobby_message(
            self.room_id, by=by, participant_id=target, message=msg.message
        )
        return target

    async def _return_to_lobby(self, msg: m.ReturnToLobby, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.return_to_lobby(self.room_id, by=by, participant_id=target)
        return target

    async def _mute(self, msg: m.Mute, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        media = MuteKind.AUDIO if msg.kind is m.MediaKind.AUDIO else MuteKind.VIDEO
        await self.services.rooms.mute(
            self.room_id, by=by, participant_id=target, muted=msg.muted, media=media
        )
        return target

    async def _remove(self, msg: m.Remove, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.remove(self.room_id, by=by, participant_id=target, message=msg.message)
        # The relay is local to this room's process: stop their media now, not after the bus round trip.
        self.delivery.controls.stop_media(target)
        return target

    async def _lock(self, msg: m.Lock, by: ParticipantId) -> ParticipantId | None:
        await self.services.rooms.lock(self.room_id, by=by)
        return None

    async def _unlock(self, msg: m.Unlock, by: ParticipantId) -> ParticipantId | None:
        await self.services.rooms.unlock(self.room_id, by=by)
        return None

    async def _acknowledge_need(self, msg: m.AcknowledgeNeed, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.acknowledge_talk(self.room_id, by=by, participant_id=target)
        return target

    async def _start_breakout(self, msg: m.StartBreakout, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        clinician = ParticipantId(msg.clinician_id) if msg.clinician_id is not None else None
        await self.services.rooms.start_breakout(
            self.room_id, by=by, participant_id=target, clinician_id=clinician
        )
        return target

    async def _end_breakout(self, msg: m.EndBreakout, by: ParticipantId) -> ParticipantId | None:
        target = ParticipantId(msg.participant_id)
        await self.services.rooms.end_breakout(self.room_id, by=by, participant_id=target)
        return target

    async def _end(self, msg: m.End, by: ParticipantId) -> ParticipantId | None:
        await end_room(self.services, self.room_id, by=by)
        return None

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
        live = self.services.live
        live.signal_sessions.discard(self)
        mine = live.user_sockets.get(self.principal.subject)
        if mine is not None:
            mine.discard(self)
            if not mine:
                del live.user_sockets[self.principal.subject]
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
            ip=self.ip,
            user_agent=self.user_agent,
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
            self.ip,
            self.user_agent,
        )


# One entry per message type. The handlers' messages are the keys' types (``Any`` here only because a
# dict cannot tie each value's parameter to its own key).
Handler = Callable[[SignalSession, Any], Awaitable[None]]
HostAction = Callable[[SignalSession, Any, ParticipantId], Awaitable[ParticipantId | None]]

_HANDLERS: Final[dict[type[m.ClientMessage], Handler]] = {
    m.Ping: SignalSession._on_ping,
    m.Join: SignalSession._on_join,
    m.Offer: SignalSession._on_offer,
    m.Answer: SignalSession._on_answer,
    m.Candidate: SignalSession._on_candidate,
    m.Leave: SignalSession._on_leave,
    m.SetMedia: SignalSession._on_set_media,
    m.SaveData: SignalSession._on_save_data,
    m.RaiseHand: SignalSession._on_raise_hand,
    m.SetSubscriptions: SignalSession._on_set_subscriptions,
    # chat (issue 15)
    m.Chat: SignalSession._on_chat,
    m.NeedToTalk: SignalSession._on_need_to_talk,  # issue 15
    m.StartShare: SignalSession._on_start_share,  # issue 15
    m.StopShare: SignalSession._on_stop_share,
}
# Host actions: re-checked against Redis revocation first, audited when done (names: AUDIT_NAMES).
_HOST_ACTIONS: Final[dict[type[m.ClientMessage], HostAction]] = {
    m.Admit: SignalSession._admit,
    m.AdmitAll: SignalSession._admit_all,
    m.Deny: SignalSession._deny,
    m.LobbyMessage: SignalSession._lobby_message,
    m.ReturnToLobby: SignalSession._return_to_lobby,
    m.Mute: SignalSession._mute,
    m.Remove: SignalSession._remove,
    m.Lock: SignalSession._lock,
    m.Unlock: SignalSession._unlock,
    m.End: SignalSession._end,
    # chat (issue 15)
    m.SetChatPolicy: SignalSession._set_chat_policy,
    m.AcknowledgeNeed: SignalSession._acknowledge_need,  # issue 15
    m.StartBreakout: SignalSession._start_breakout,  # issue 15
    m.EndBreakout: SignalSession._end_breakout,
    m.AllowShare: SignalSession._allow_share,  # issue 15
    m.RevokeShare: SignalSession._revoke_share,
}


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
