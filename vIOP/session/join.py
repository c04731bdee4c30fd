"""Join and resume: the first message on a signaling socket (``join``) and what it takes to seat a
participant, new or coming back (resume token, a clinician's own sign-in, a client knocking again).

Part of :class:`~vIOP.session.signal.SignalSession` (its ``join`` handler), apart so each file holds one
concept: the session dispatches, this module joins.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from vIOP.auth.permissions import Role
from vIOP.errors import BadRequest, Conflict, Unauthenticated
from vIOP.ids import ClientId, ParticipantId, UserId
from vIOP.logging import register_secret
from vIOP.rooms.participant import Participant
from vIOP.rooms.participant import Role as RoomRole
from vIOP.rooms.room import Room
from vIOP.session.delivery import wire_role
from vIOP.signaling import messages as m
from vIOP.signaling.connections import ConnectionState
from vIOP.signaling.resume import ResumeGrant
from vIOP.storage.audit import AuditEvent

if TYPE_CHECKING:
    from vIOP.session.signal import SignalSession

log = logging.getLogger("vIOP.signal")


class AlreadyConnected(Conflict):
    code = "already_connected"


async def join(session: SignalSession, msg: m.Join) -> None:
    """Seat ``session``'s participant (resumed, a clinician back in their own seat, or a new knock or host
    entry), then ``welcome`` and the state they need to see, with the connection attached in between."""
    if session.pid is not None:
        raise Conflict("already joined")
    if msg.protocol_version != m.PROTOCOL_VERSION:
        raise BadRequest(f"this server speaks protocol version {m.PROTOCOL_VERSION}")
    rooms = session.services.rooms
    subject = session.principal.subject
    room = await rooms.room(session.room_id)
    resumed = False
    if msg.resume_token is not None:
        resume_grant = await session.services.resume.redeem(
            msg.resume_token, room_id=session.room_id, subject=subject
        )
        participant = room.participant(resume_grant.participant_id)
        if not participant.is_active:
            raise Unauthenticated("resume token not accepted; join again")
        resumed = True
        await session._audit(AuditEvent.RESUMED, "participant", participant.id)
    else:
        existing = room.active_of(subject)
        # Not marked reconnecting: a live socket holds it (here or in another process).
        if existing is not None and existing.reconnecting_since is None:
            raise AlreadyConnected("you are already connected to this room from another window")
        if existing is not None and session.principal.role is Role.CLINICIAN:
            # A clinician proves who they are with their own sign-in: their seat is theirs to take back.
            participant, resumed = existing, True
            await session._audit(AuditEvent.RESUMED, "participant", participant.id)
        else:
            # A client without the seat's resume token (a second device, a link copied out of a
            # browser's history) knocks like anyone else; a seat left reconnecting is let go.
            participant = await _enter(session, room)
            entered = AuditEvent.KNOCK if participant.role.value == "client" else AuditEvent.HOST_ENTERED
            await session._audit(entered, "participant", participant.id)
    if session.conn.state is not ConnectionState.OPEN:
        return  # the socket closed while we were joining; the teardown takes over
    session.pid = participant.id
    if resumed and participant.reconnecting_since is not None:
        await rooms.resume(session.room_id, participant.id)
    await session._heartbeat(force=True)
    issued = await session.services.resume.issue(ResumeGrant(participant.id, session.room_id, subject))
    session.resume_handle = issued.handle
    await session._generation.lost_since_last_check()  # remember which Redis data set this joined
    if session.conn.state is not ConnectionState.OPEN:
        return
    # `welcome` goes first (events used to slip in ahead of it, e.g. `admitted` from a quick host), and
    # in the same step the connection is attached, so no event is missed: what happens from here on is
    # queued after it. The state below comes from a snapshot read after attaching.
    replaced = session.services.connections.attach(session.conn, participant.id)
    if replaced is not None:
        log.info("connection replaced by a resumed one", extra={"participant_id": participant.id})
    session.delivery.controls.set_own(session.room_id, participant.id, audio=msg.audio, video=msg.video)
    settings = session.services.settings
    ice_servers = _ice_servers(session, participant.id)
    if any(server.credential for server in ice_servers):
        await session._audit(AuditEvent.TURN_ISSUED, "room", session.room_id)
    session.conn.send(
        m.Welcome(
            id=msg.id,
            protocol_version=m.PROTOCOL_VERSION,
            participant_id=participant.id,
            room_id=session.room_id,
            role=wire_role(participant.role),
            resume_token=issued.token,
            resume_grace_seconds=settings.reconnect_grace_seconds,
            heartbeat_seconds=settings.heartbeat_seconds,
            ice_servers=ice_servers,
            resumed=resumed,
        )
    )
    room = await rooms.room(session.room_id)
    rooms.holdings.hold(room, participant.id)
    _send_state(session, room, room.participant(participant.id))
    session.services.live.signal_sessions.add(session)  # re-asserted by vIOP.session.loops.repair


async def _enter(session: SignalSession, room: Room) -> Participant:
    rooms = session.services.rooms
    if session.principal.role is Role.CLINICIAN:
        account = await session.services.authenticator.active_account(UserId(session.principal.subject))
        t = await rooms.host_enter(
            session.room_id, user_id=UserId(account.id), display_name=account.display_name
        )
    else:
        name = await session.services.invite_store.client_display_name(ClientId(session.principal.subject))
        t = await rooms.knock(
            session.room_id,
            subject=ClientId(session.principal.subject),
            display_name=name,
            replace_reconnecting=True,
        )
    assert t.participant is not None
    # Defence in depth: even a stray exception message cannot carry this name into a log line.
    register_secret(t.participant.display_name)
    return t.participant


def _send_state(session: SignalSession, room: Room, me: Participant) -> None:
    """What a (re)joining participant needs to see at once; later changes come as events."""
    session.delivery.view_for(session.conn, room, me)
    if room.state.value == "locked":
        session.conn.send(m.RoomLocked())
    # Issue 15: requests to talk still waiting: a host (back) sees every one, a client only their own.
    host = me.role is RoomRole.HOST
    for p in room.active():
        if p.talk_requested_at is not None and (host or p.id == me.id):
            session.conn.send(m.TalkRequest(participant_id=p.id, pending=True))


def _ice_servers(session: SignalSession, pid: ParticipantId) -> tuple[m.IceServer, ...]:
    # TURN credentials end with the sign-in (token exp, invite expiry) at the latest (docs/API.md).
    entries = session.services.ice.client_ice_servers(
        pid, now=time.time(), session_ends_at=session.grant.session_ends_at
    )
    return tuple(m.IceServer(urls=e.urls, username=e.username, credential=e.credential) for e in entries)
