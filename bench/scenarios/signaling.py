"""Building blocks for signaling scenarios against a live server: accounts, rooms, invites, tickets, clients.

Everything goes through the app's own services (the same ones the HTTP routes use), so these scenarios
need no HTTP route to exist and still exercise the real socket, stores and relay. Tests and benchmarks
(``bench/presence.py``) both use them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import AudioStreamTrack, MediaStreamTrack

from bench.scenarios.live_server import LiveServer
from vIOP.auth.accounts import AccountAdmin
from vIOP.auth.passwords import PasswordHasher
from vIOP.auth.permissions import Principal, Role, RoomScope
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.media import KeyframeOnRequestVideoTrack, ReceiveMode
from vIOP.client.session import RoomClient
from vIOP.client.simulcast import SimulcastLayer
from vIOP.ids import RoomId, UserId, new_room_id
from vIOP.rooms.room import RoomKind
from vIOP.session.services import Services
from vIOP.storage.accounts_sql import SqlAccountStore
from vIOP.storage.rooms_sql import RoomRecord


def services(live: LiveServer) -> Services:
    s = live.app.state.services
    assert isinstance(s, Services)
    return s


@dataclass
class Clinician:
    principal: Principal
    session: str  # the access token's jti: what keeps the sign-in alive


async def clinician(
    live: LiveServer, username: str = "dr.alvarez", display_name: str | None = None
) -> Clinician:
    svc = services(live)
    ring = svc.storage.keys
    admin = AccountAdmin(
        SqlAccountStore(svc.storage.db, ring),
        lambda name: ring.blind_index("username", name),
        PasswordHasher(),
        require_totp=False,
    )
    shown = {} if display_name is None else {"display_name": display_name}
    created = await admin.create(
        Role.CLINICIAN, username, "correct horse battery staple", with_totp=False, **shown
    )
    issued = await svc.tokens.issue(created.account.id, Role.CLINICIAN)
    return Clinician(Principal(Role.CLINICIAN, created.account.id), issued.claims.jti)


async def room(
    live: LiveServer, host: Clinician, kind: RoomKind = RoomKind.GROUP, capacity: int = 15
) -> RoomScope:
    svc = services(live)
    room_id: RoomId = new_room_id()
    from datetime import UTC, datetime

    await svc.room_directory.add(
        RoomRecord(
            id=room_id,
            kind=kind.value,
            title="Evening group",
            capacity=capacity,
            host_user_id=UserId(host.principal.subject),
            state="open",
            created_at=datetime.now(UTC),
            ended_at=None,
        )
    )
    await svc.rooms.open_room(
        room_id, kind=kind, host_ids=frozenset({UserId(host.principal.subject)}), capacity=capacity
    )
    return RoomScope(room_id, frozenset({host.principal.subject}))


async def invite(live: LiveServer, host: Clinician, scope: RoomScope, display_name: str) -> Principal:
    created = await services(live).invites.create(host.principal, scope, display_name)
    return created.invite.principal


def ticket_source(live: LiveServer, principal: Principal, scope: RoomScope, session: str | None):
    async def next_url() -> str:
        issued = await services(live).tickets.issue(principal, TicketPurpose.SIGNAL, scope, session=session)
        return f"{live.ws_url}/ws/signal?ticket={issued.ticket}"

    return next_url


def participant(
    live: LiveServer,
    principal: Principal,
    scope: RoomScope,
    session: str | None = None,
    *,
    tracks: Callable[[], tuple[MediaStreamTrack, ...]] | None = None,
    receive: ReceiveMode = ReceiveMode.ENCODED,
    simulcast: Callable[[], tuple[SimulcastLayer, ...]] | None = None,
) -> RoomClient:
    """A client that publishes a keyframe-on-request VP8 track (so keyframe forwarding is exercised) and
    silence on Opus, and counts encoded frames per publisher. ``simulcast``: video layers sent as
    simulcast after ``tracks`` (see ``vIOP.client.simulcast``)."""
    if tracks is None:

        def tracks() -> tuple[MediaStreamTrack, ...]:
            return (AudioStreamTrack(), KeyframeOnRequestVideoTrack(width=160, height=120, fps=15))

    return RoomClient(
        ticket_source(live, principal, scope, session),
        origin=live.base_url,
        tracks=tracks,
        receive=receive,
        simulcast=simulcast,
    )


def now() -> float:
    return time.monotonic()
