"""Issue 11, finding 1 and the invite part of finding 6: a revocation ends live sockets in every process.

Two real ``python -m vIOP serve`` processes on one redis-server and one database; the revocation comes from
a third process (the ``users disable`` CLI) or from the other server (``DELETE /api/v1/invites/{id}``).
Close times are measured from the revoking command, not slept for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.api.test_two_processes import PASSWORD, App
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m

CLOSE_WITHIN_SECONDS = 5.0


def _cli(app: App, cwd: Path, *args: str, stdin: str = "") -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vIOP", *args],
        input=stdin, env=app.env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def apps(tmp_path: Path, redis_url: str) -> Iterator[tuple[App, App]]:
    data_dir = tmp_path / "var"
    first = App(data_dir, redis_url)
    started = [first]
    try:
        first.wait_ready()
        for role, username in (("clinician", "dr.gone"), ("staff", "staff.eye")):
            _cli(first, tmp_path, "users", "create", "--role", role, "--username", username,
                 "--password-stdin", stdin=PASSWORD)  # fmt: skip
        second = App(data_dir, redis_url)
        started.append(second)
        second.wait_ready()
        yield first, second
    finally:
        for app in started:
            app.stop()


def _closed_at(task: asyncio.Task[Any]) -> list[float]:
    """Stamp the moment ``task`` (a wait for a socket's close) finishes. The stamp is a done callback, run
    one loop step after the task ends: read it after ``_stamped`` (awaiting a task that is already done
    does not yield, so the callback may not have run yet)."""
    stamp: list[float] = []
    task.add_done_callback(lambda _: stamp.append(time.monotonic()))
    return stamp


async def _stamped(stamp: list[float]) -> float:
    while not stamp:  # the done callback is already scheduled: one loop step runs it
        await asyncio.sleep(0)
    return stamp[0]


async def _room_with_waiting_client(
    api: HttpApi, token: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    room = (await api.http.post("/api/v1/rooms", json={"kind": "group", "title": "Revocation"},
                                headers=headers)).json()  # fmt: skip
    invite = (await api.http.post(f"/api/v1/rooms/{room['id']}/invites", json={"display_name": "Kim"},
                                  headers=headers)).json()  # fmt: skip
    return room, invite, headers


async def test_disabling_a_clinician_closes_their_sockets_on_every_process_within_5_s_and_nothing_they_send_after_takes_effect(
    apps: tuple[App, App], tmp_path: Path
) -> None:
    a, b = apps
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    host = client = presence = None
    try:
        token = await api_a.login("dr.gone", PASSWORD)
        room, invite, headers = await _room_with_waiting_client(api_a, token)
        host = RoomClient(api_a.ticket_source(token, room["id"]), origin=a.base_url)  # signaling on A
        await host.join()
        client = RoomClient(api_b.ticket_source(invite["invite_token"], room["id"]), origin=b.base_url)
        await client.join()
        await client.wait_message(m.Waiting)
        await host.wait_message(m.Lobby, where=lambda lobby: len(lobby.waiting) == 1)
        ticket = (await api_b.http.post("/api/v1/signal-tickets", json={"purpose": "presence"},
                                        headers=headers)).json()  # fmt: skip
        presence = await connect(ticket["ws_url"], origin=b.base_url, compression=None, proxy=None)  # on B
        assert json.loads(await presence.recv())["type"] == "presence_snapshot"

        signal_closed = asyncio.create_task(host.wait_closed(within=30))
        presence_closed = asyncio.create_task(presence.wait_closed())
        signal_stamp, presence_stamp = _closed_at(signal_closed), _closed_at(presence_closed)
        cli_started = time.monotonic()
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vIOP", "users", "disable", "--username", "dr.gone",
            env=a.env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await cli.communicate()
        cli_done = time.monotonic()
        assert cli.returncode == 0, err.decode()
        # Right after the command returns: host actions on the (maybe still open) socket.
        for action in (m.Admit(participant_id=client.participant_id), m.End()):
            with contextlib.suppress(Exception):  # the socket may be closed already: refused either way
                await host.send(action)

        async with asyncio.timeout(cli_done - cli_started + CLOSE_WITHIN_SECONDS):
            closed = await signal_closed
            await presence_closed
        signal_after = await _stamped(signal_stamp) - cli_done
        presence_after = await _stamped(presence_stamp) - cli_done
        print(
            f"\nCLI ran {cli_done - cli_started:.2f} s; signaling closed {signal_after:+.3f} s and presence "
            f"{presence_after:+.3f} s after it returned"
        )
        assert signal_after < CLOSE_WITHIN_SECONDS and presence_after < CLOSE_WITHIN_SECONDS
        assert closed.close_code == 1008
        assert presence.close_code == 1008

        # Nothing the disabled clinician sent took effect: the client still waits, the room goes on.
        await client.send(m.Ping())
        await client.wait_message(m.Pong)
        assert client.latest(m.Admitted) is None and client.latest(m.RoomEnded) is None
        assert client.closed is None
        staff = await api_b.login("staff.eye", PASSWORD)
        seen = await api_b.http.get(
            f"/api/v1/rooms/{room['id']}", headers={"Authorization": f"Bearer {staff}"}
        )
        assert seen.status_code == 200 and seen.json()["state"] != "ended"
        # And no way back in: the token is dead on both processes.
        for api in (api_a, api_b):
            assert (await api.http.get("/api/v1/rooms", headers=headers)).status_code == 401
    finally:
        for c in (host, client):
            if c is not None:
                await c.close()
        if presence is not None:
            await presence.close()
        await api_a.close()
        await api_b.close()


async def test_revoking_an_invite_on_one_process_closes_the_clients_socket_on_the_other_and_ends_the_seat(
    apps: tuple[App, App],
) -> None:
    a, b = apps
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    host = client = None
    try:
        token = await api_a.login("dr.gone", PASSWORD)
        room, invite, headers = await _room_with_waiting_client(api_a, token)
        host = RoomClient(api_a.ticket_source(token, room["id"]), origin=a.base_url)
        await host.join()
        client = RoomClient(api_b.ticket_source(invite["invite_token"], room["id"]), origin=b.base_url)
        await client.join()
        await host.wait_message(m.Lobby, where=lambda lobby: len(lobby.waiting) == 1)
        await host.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)

        closed = asyncio.create_task(client.wait_closed(within=30))
        stamp = _closed_at(closed)
        revoked_at = time.monotonic()
        response = await api_a.http.delete(f"/api/v1/invites/{invite['id']}", headers=headers)
        assert response.status_code == 204
        async with asyncio.timeout(CLOSE_WITHIN_SECONDS):
            info = await closed
        closed_after = await _stamped(stamp) - revoked_at
        print(f"\nclient socket on B closed {closed_after:.3f} s after the revocation on A")
        assert info.close_code == 1008
        # The seat ended at once (not "reconnecting" for the grace window) and the host saw it.
        left = await host.wait_message(
            m.ParticipantLeft, where=lambda e: e.participant_id == client.participant_id
        )
        assert left.participant_id == client.participant_id
        # The link is dead: no new ticket on either process.
        for api in (api_a, api_b):
            refused = await api.http.post(
                "/api/v1/signal-tickets",
                json={"room_id": room["id"]},
                headers={"Authorization": f"Bearer {invite['invite_token']}"},
            )
            assert refused.status_code == 401
    finally:
        for c in (host, client):
            if c is not None:
                await c.close()
        await api_a.close()
        await api_b.close()
