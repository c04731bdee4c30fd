"""Live sockets follow revocations: this process's side of :mod:`vIOP.auth.revocation`.

Every process follows the revocation stream and closes its own sockets of the revoked subject (those whose
ticket was issued at or before the revocation): account changes and revoked invites close ``1008``,
logout closes ``1000 "signed out"`` (docs/API.md "Revocation"). A missed entry is caught by the sockets'
heartbeats, which read the same revocation from Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from vIOP.auth.revocation import Revocation, RevocationKind
from vIOP.errors import NotFound, VIOPError
from vIOP.ids import ClientId, RoomId
from vIOP.session.live import RevocableSocket
from vIOP.session.services import Services

log = logging.getLogger("vIOP.revocation")

# (close code, reason) per kind: what the socket's owner sees.
CLOSE: Final = {
    RevocationKind.ACCOUNT: (1008, "session ended"),
    RevocationKind.SIGNED_OUT: (1000, "signed out"),
    RevocationKind.INVITE: (1008, "invite revoked"),
}


async def sleep_until(moment: float, clock: Callable[[], float], step: float) -> None:
    """Until ``clock()`` reaches ``moment``, waking at least every ``step`` seconds to read it again."""
    # A timer, not an event: the moment is on a clock that may be stepped (NTP, or a test's injected one).
    while (remaining := moment - clock()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(remaining, step))


def sockets_of(services: Services, subject: str) -> list[RevocableSocket]:
    live = services.live
    found: list[RevocableSocket] = list(live.user_sockets.get(subject, ()))
    found += [s for s in live.presence_streams if s.grant.principal.subject == subject]
    return found


def close_revoked(services: Services, revocation: Revocation) -> int:
    """Close this process's sockets covered by ``revocation``; how many."""
    closed = 0
    for socket in sockets_of(services, revocation.subject):
        if revocation.covers(socket.grant.principal.subject, socket.grant.issued_at):
            socket.revoke(revocation)
            closed += 1
    return closed


async def run_revocation_listener(services: Services, retry: float = 1.0) -> None:
    """For the life of the app: apply every revocation any process (or the CLI) publishes."""
    while True:
        try:
            async for revocation in services.revocations.follow():
                closed = close_revoked(services, revocation)
                if closed:
                    log.info("closed revoked sockets", extra={"kind": revocation.kind.value, "count": closed})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("revocation stream unavailable; retrying (heartbeats cover the gap)")
            await asyncio.sleep(retry)


async def close_user_sockets(services: Services, user_id: str) -> None:
    """Logout, in this process and at once: the user's signaling and presence sockets close 1000 "signed
    out". Other processes do the same from the revocation stream (``revocations.publish``)."""
    revocation = Revocation(RevocationKind.SIGNED_OUT, user_id, services.revocations.clock())
    services.revocations.note(revocation)
    for socket in sockets_of(services, user_id):
        socket.revoke(revocation)


async def revoke_invite_sessions(services: Services, room_id: RoomId, client_id: ClientId) -> None:
    """An invite was revoked: its client's sockets close everywhere (1008) and their seat ends now, also
    when no socket holds it (a "reconnecting" seat would otherwise wait out the grace window)."""
    await services.revocations.publish(RevocationKind.INVITE, client_id)
    try:
        room = await services.rooms.room(room_id)
    except NotFound:
        return
    seat = room.active_of(client_id)
    if seat is not None:
        with contextlib.suppress(VIOPError):  # e.g. the room ended meanwhile, or they left by themselves
            await services.rooms.leave(room_id, seat.id)
