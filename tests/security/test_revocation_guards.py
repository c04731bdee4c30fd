"""Issue 11: what each socket checks for itself (one real server, real Redis, real sockets).

- a revocation whose stream entry never arrived is caught by the next host action and by the heartbeat;
- a socket closes at its sign-in's absolute end, not a minute later (finding 6);
- TURN credentials in ``welcome`` end with the sign-in (finding 6);
- a ticket or session record written straight into Redis opens nothing (finding 7);
- ``users reset-mfa`` (the CLI, its own process) voids the account's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.api import signal_support as ss
from tests.api.support import Api
from tests.auth.support import ManualClock
from tests.support import LiveServer, test_settings
from vIOP.app import close_services, create_app, open_services
from vIOP.auth.permissions import Role
from vIOP.auth.tickets import TicketPurpose
from vIOP.client.session import RoomClient
from vIOP.client.signaling import SignalingClosed
from vIOP.server import bind_socket, uvicorn_config
from vIOP.signaling import messages as m

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=15) as http:
        yield Api(live_server, http)


async def _host_and_waiting_client(live: LiveServer) -> tuple[ss.Clinician, Any, Any]:
    host = await ss.clinician(live)
    scope = await ss.room(live, host)
    client_principal = await ss.invite(live, host, scope, "Ana")
    h = ss.participant(live, host.principal, scope, host.session, tracks=tuple)
    await h.join()
    c = ss.participant(live, client_principal, scope, tracks=tuple)
    await c.join()
    await c.wait_message(m.Waiting)
    await h.wait_message(m.Lobby, where=lambda lobby: len(lobby.waiting) == 1)
    return host, h, c


async def test_a_revocation_missed_on_the_stream_refuses_the_next_host_action(
    live_server: LiveServer, redis_client: aioredis.Redis
) -> None:
    host, h, c = await _host_and_waiting_client(live_server)
    try:
        # Only the durable record, as if this process never saw the stream entry (e.g. it was reconnecting).
        await redis_client.set(f"viop:revoked:account:{host.principal.subject}", repr(time.time()))
        await h.send(m.Admit(participant_id=c.participant_id))
        closed = await h.wait_closed(5)
        assert closed.close_code == 1008
        await c.send(m.Ping())
        await c.wait_message(m.Pong)
        assert c.latest(m.Admitted) is None
    finally:
        await h.close()
        await c.close()


async def test_a_revocation_missed_on_the_stream_closes_the_socket_at_its_heartbeat(
    live_server_factory: Any, redis_client: aioredis.Redis
) -> None:
    async with live_server_factory(heartbeat_seconds=1, presence_expiry_seconds=3) as live:
        host, h, c = await _host_and_waiting_client(live)
        try:
            await redis_client.set(f"viop:revoked:account:{host.principal.subject}", repr(time.time()))
            async with asyncio.timeout(5):  # bounded: the server heeds a ping every half heartbeat (0.5 s)
                while h.closed is None:
                    h.messages.clear()
                    with contextlib.suppress(SignalingClosed, ConnectionClosed):
                        await h.send(m.Ping())
                        await h.wait_message(m.Pong)
                    await asyncio.sleep(0.1)  # the client's ping timer
            assert h.closed.close_code == 1008
        finally:
            await h.close()
            await c.close()


async def test_a_socket_closes_at_its_sign_ins_absolute_end(live_server: LiveServer) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    svc = ss.services(live_server)
    ends_at = time.time() + 1.0
    issued = await svc.tickets.issue(
        host.principal, TicketPurpose.SIGNAL, scope, session=host.session, session_ends_at=ends_at
    )
    presence_ticket = await svc.tickets.issue(
        host.principal, TicketPurpose.PRESENCE, None, session=host.session, session_ends_at=ends_at
    )

    async def tickets() -> str:
        return f"{live_server.ws_url}/ws/signal?ticket={issued.ticket}"

    h = RoomClient(tickets, origin=live_server.base_url)
    presence = await connect(
        f"{live_server.ws_url}/ws/presence?ticket={presence_ticket.ticket}",
        origin=live_server.base_url,
        compression=None,
        proxy=None,
    )
    try:
        await h.join()
        closed = await h.wait_closed(10)
        late = time.time() - ends_at
        async with asyncio.timeout(5):
            await presence.wait_closed()
        print(f"\nsignaling socket closed {late:.3f} s after the sign-in's end")
        assert closed.close_code == 1008 and closed.reason == "session ended"
        assert presence.close_code == 1008
        assert late < 1.0  # at the end, not a heartbeat or the Redis slack (60 s) later
    finally:
        await h.close()
        await presence.close()


@contextlib.asynccontextmanager
async def _server_with_clock(settings: Any, clock: ManualClock) -> AsyncIterator[LiveServer]:
    """A live server whose services run on ``clock`` (``open_services(clock=...)``), on a real socket."""
    services = await open_services(settings, clock=clock)
    app = create_app(settings, services)
    sock = bind_socket(settings.host, settings.port)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not task.done(), task.result()
                await asyncio.sleep(0.01)
        yield LiveServer(settings=settings, app=app, server=server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await close_services(services)
        sock.close()


async def test_a_socket_closes_when_the_injected_clock_reaches_the_tokens_exp(
    data_dir: Path, redis_url: str, redis_client: aioredis.Redis
) -> None:
    clock = ManualClock(time.time())
    settings = test_settings(
        data_dir, redis_url, heartbeat_seconds=1, presence_expiry_seconds=3,
        token_lifetime_seconds=300, token_idle_seconds=300,  # never idle in between: only exp ends it
    )  # fmt: skip
    async with _server_with_clock(settings, clock) as live:
        host = await ss.clinician(live)
        scope = await ss.room(live, host)
        svc = ss.services(live)
        exp = svc.tokens.decode(
            (await svc.tokens.issue(host.principal.subject, Role.CLINICIAN)).token  # type: ignore[arg-type]
        ).expires_at
        issued = await svc.tickets.issue(
            host.principal, TicketPurpose.SIGNAL, scope, session=host.session, session_ends_at=exp
        )

        async def tickets() -> str:
            return f"{live.ws_url}/ws/signal?ticket={issued.ticket}"

        h = RoomClient(tickets, origin=live.base_url)
        try:
            await h.join()
            clock.advance(exp - clock() - 1)  # one second before the token's exp: still open
            await h.send(m.Ping())
            await h.wait_message(m.Pong)
            assert h.closed is None
            clock.advance(1)  # the token's exp (5 min after sign-in)
            moved = time.monotonic()
            closed = await h.wait_closed(5)
            print(f"\nclosed {time.monotonic() - moved:.3f} s after the clock reached exp")
            assert closed.close_code == 1008 and closed.reason == "session ended"
            assert time.monotonic() - moved < 2.0  # within one heartbeat interval (1 s here), not 60 s
        finally:
            await h.close()


async def test_turn_credentials_in_welcome_end_with_the_sign_in(live_server_factory: Any) -> None:
    async with live_server_factory(
        turn_secret="s3cret-for-tests", ice_servers="stun:127.0.0.1:3478,turn:127.0.0.1:3478"
    ) as live:
        host = await ss.clinician(live)
        scope = await ss.room(live, host)
        ends_at = time.time() + 600  # the sign-in ends in 10 min; TURN_TTL is 4 h
        issued = await ss.services(live).tickets.issue(
            host.principal, TicketPurpose.SIGNAL, scope, session=host.session, session_ends_at=ends_at
        )

        async def tickets() -> str:
            return f"{live.ws_url}/ws/signal?ticket={issued.ticket}"

        h = RoomClient(tickets, origin=live.base_url)

        try:
            welcome = await h.join()
            (turn,) = [s for s in welcome.ice_servers if s.username]
            assert turn.username is not None
            assert int(turn.username.split(":")[0]) <= ends_at
        finally:
            await h.close()


async def _refused(url: str, origin: str) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url, origin=origin, compression=None, proxy=None):
            pass
    return caught.value.response.status_code


@pytest.mark.parametrize("mac", ["none (the old format)", "wrong"])
async def test_a_ticket_written_straight_into_redis_opens_nothing(
    live_server: LiveServer, redis_client: aioredis.Redis, mac: str
) -> None:
    host = await ss.clinician(live_server)
    scope = await ss.room(live_server, host)
    ticket = "vtk_" + secrets.token_urlsafe(32)
    record = json.dumps(
        {
            "role": "clinician",
            "subject": host.principal.subject,
            "principal_room": None,
            "purpose": "signal",
            "room": scope.room_id,
            "session": host.session,
            "expires_at": time.time() + 30,
        }
    ).encode()
    value = record if mac.startswith("none") else os.urandom(32) + record
    await redis_client.set("viop:ticket:" + hashlib.sha256(ticket.encode()).hexdigest(), value, ex=30)
    url = f"{live_server.ws_url}/ws/signal?ticket={ticket}"
    assert await _refused(url, live_server.base_url) == 403


@pytest.mark.parametrize("forged", ["string (the old format)", "hash with a wrong MAC"])
async def test_a_session_record_written_straight_into_redis_revives_nothing(
    api: Api, redis_client: aioredis.Redis, forged: str
) -> None:
    user = await api.user(Role.CLINICIAN)
    jti = api.services.tokens.decode(user.token).jti
    assert (await api.http.post("/api/v1/auth/logout", headers=user.headers)).status_code == 204
    # Someone with write access to Redis lifts the sign-out and writes an activity record.
    await redis_client.delete(f"viop:auth:revoked:{jti}")
    await redis_client.delete(f"viop:auth:active:{jti}")
    if forged.startswith("string"):
        await redis_client.set(f"viop:auth:active:{jti}", int(time.time()))
    else:
        await redis_client.hset(
            f"viop:auth:active:{jti}", mapping={"t": int(time.time()), "m": os.urandom(32)}
        )
    assert (await api.http.get("/api/v1/rooms", headers=user.headers)).status_code == 401


async def test_users_reset_mfa_from_the_cli_voids_the_accounts_tokens(api: Api, tmp_path: Path) -> None:
    user = await api.user(Role.CLINICIAN)
    other = await api.user(Role.CLINICIAN)
    settings = api.live.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(
        PYTHONPATH=str(REPO), VIOP_DATA_DIR=str(settings.data_dir), VIOP_REDIS_URL=str(settings.redis_url)
    )
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vIOP", "users", "reset-mfa", "--username", user.account.username,
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await done.communicate()
    assert done.returncode == 0, err.decode()
    assert (await api.http.get("/api/v1/rooms", headers=user.headers)).status_code == 401
    assert (await api.http.get("/api/v1/rooms", headers=other.headers)).status_code == 200
