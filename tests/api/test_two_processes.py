"""Two real app processes on one Redis (and one database): a knock on process A reaches the host on B, and
the admit crosses back. Everything through the public surface: CLI, HTTP API and signaling sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


def _env(data_dir: Path, redis_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
    env.update(
        PYTHONPATH=str(REPO), VIOP_DATA_DIR=str(data_dir), VIOP_REDIS_URL=redis_url, VIOP_PORT=str(port),
        VIOP_ICE_HOST_ADDRESSES="127.0.0.1",
    )  # fmt: skip
    return env


class App:
    def __init__(self, data_dir: Path, redis_url: str, **settings: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = _env(data_dir, redis_url, self.port) | settings
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vIOP", "serve"], env=self.env, cwd=data_dir.parent,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"app exited: {self.process.stderr.read().decode()[-2000:] if self.process.stderr else ''}"
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError("app not ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def two_apps(tmp_path: Path, redis_url: str) -> Iterator[tuple[App, App]]:
    data_dir = tmp_path / "var"
    first = App(data_dir, redis_url)
    apps = [first]
    try:
        first.wait_ready()  # the first one migrates the database and creates the key file
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.two",
             "--password-stdin"],
            input=PASSWORD, env=first.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        second = App(data_dir, redis_url)
        apps.append(second)
        second.wait_ready()
        yield first, second
    finally:
        for app in apps:
            app.stop()


async def test_knock_on_one_process_reaches_the_host_on_the_other_and_the_admit_crosses_back(
    two_apps: tuple[App, App], redis_client: object
) -> None:
    a, b = two_apps
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    host = client = None
    try:
        token = await api_b.login("dr.two", PASSWORD)
        room = (await api_b.http.post("/api/v1/rooms", json={"kind": "group", "title": "Two-process group"},
                                      headers={"Authorization": f"Bearer {token}"})).json()  # fmt: skip
        invite = (await api_b.http.post(f"/api/v1/rooms/{room['id']}/invites", json={"display_name": "Kim"},
                                        headers={"Authorization": f"Bearer {token}"})).json()  # fmt: skip
        host = RoomClient(api_b.ticket_source(token, room["id"]), origin=b.base_url)
        await host.join()
        await host.wait_message(m.Lobby)

        client = RoomClient(api_a.ticket_source(invite["invite_token"], room["id"]), origin=a.base_url)
        await client.join()
        waiting = await client.wait_message(m.Waiting)
        assert waiting.position == 1

        lobby = await host.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 1)
        assert lobby.waiting[0].display_name == "Kim"
        assert lobby.waiting[0].participant_id == client.participant_id

        await host.send(m.Admit(participant_id=client.participant_id))
        await client.wait_message(m.Admitted)
        roster = await client.wait_message(m.Roster)
        assert roster.locked is False
    finally:
        for c in (host, client):
            if c is not None:
                await c.close()
        await api_a.close()
        await api_b.close()


def test_python_client_cli_joins_admits_and_counts_frames(tmp_path: Path, redis_url: str) -> None:
    """`python -m vIOP.client` as a clinician (admit-all) and as a client from an invite, one server."""
    import asyncio as aio

    # Sockets silent for 3 s are closed 1001: both runs outlast that, so they stay only if they ping.
    app = App(tmp_path / "var", redis_url, VIOP_HEARTBEAT_SECONDS="1", VIOP_PRESENCE_EXPIRY_SECONDS="3")
    try:
        app.wait_ready()
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.cli",
             "--password-stdin"],
            input=PASSWORD, env=app.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr

        async def setup() -> tuple[str, str, str]:
            api = HttpApi(app.base_url)
            try:
                token = await api.login("dr.cli", PASSWORD)
                headers = {"Authorization": f"Bearer {token}"}
                room = (
                    await api.http.post(
                        "/api/v1/rooms", json={"kind": "group", "title": "CLI"}, headers=headers
                    )
                ).json()
                invite = (
                    await api.http.post(
                        f"/api/v1/rooms/{room['id']}/invites", json={"display_name": "Lou"}, headers=headers
                    )
                ).json()
                return room["id"], invite["invite_token"], token
            finally:
                await api.close()

        room_id, invite, token = aio.run(setup())
        common = [sys.executable, "-m", "vIOP.client", "--server", app.base_url, "--room", room_id,
                  "--host-address", "127.0.0.1"]  # fmt: skip
        host = subprocess.Popen(
            [*common, "--username", "dr.cli", "--password-stdin", "--admit-all", "--seconds", "12"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=app.env,
        )  # fmt: skip
        assert host.stdin is not None
        host.stdin.write(PASSWORD + "\n")
        host.stdin.close()
        # The host enters first: the room turns live when it does.
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{app.base_url}/api/v1/rooms/{room_id}", headers={"Authorization": f"Bearer {token}"})
            .json()
            .get("state")
            != "live"
        ):
            assert time.monotonic() < deadline, "the host never entered"
            assert host.poll() is None, host.stderr.read() if host.stderr else ""
            time.sleep(0.1)
        client = subprocess.run(
            [*common, "--invite", invite, "--seconds", "8"],
            capture_output=True,
            text=True,
            env=app.env,
            timeout=60,
        )
        host.wait(60)
        host_out = host.stdout.read() if host.stdout else ""
        host_err = host.stderr.read() if host.stderr else ""
        assert client.returncode == 0, client.stderr
        assert host.returncode == 0, host_err
        import json as _json

        client_summary, host_summary = _json.loads(client.stdout), _json.loads(host_out)
        assert client_summary["role"] == "client"
        assert host_summary["role"] == "host"
        assert client_summary["closed"] is None and host_summary["closed"] is None  # heartbeats kept them
        assert client_summary["frames"].get(f"{host_summary['participant_id']}/video", 0) > 0
        assert host_summary["frames"].get(f"{client_summary['participant_id']}/video", 0) > 0
        # The receive report: what the client decoded of the host, as a browser's getStats would show it.
        seen = client_summary["received"][f"{host_summary['participant_id']}/video"]
        assert seen["frames"] > 0 and seen["frame_rate"] > 0 and seen["bytes_per_second"] > 0
    finally:
        app.stop()


async def test_chat_crosses_processes_room_private_and_lobby(two_apps: tuple[App, App]) -> None:
    """Issue 15: chat lines reach people on the other process (through the sealed chat bus): room chat
    from a client on A to the host on B, the host's private reply back, and lobby chat with a waiting
    client on A, both ways; the waiting client hears no room chat."""
    a, b = two_apps
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        token = await api_b.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        room = (await api_b.http.post("/api/v1/rooms", json={"kind": "group", "title": "Chat group"},
                                      headers=headers)).json()  # fmt: skip
        invites = [
            (
                await api_b.http.post(
                    f"/api/v1/rooms/{room['id']}/invites", json={"display_name": name}, headers=headers
                )
            ).json()
            for name in ("Kim", "Lee")
        ]
        host = RoomClient(api_b.ticket_source(token, room["id"]), origin=b.base_url)
        kim, lee = (
            RoomClient(api_a.ticket_source(i["invite_token"], room["id"]), origin=a.base_url) for i in invites
        )
        people += [host, kim, lee]
        await host.join()
        await kim.join()
        await lee.join()
        await lee.wait_message(m.Waiting)
        await host.wait_message(m.Lobby, where=lambda lb: len(lb.waiting) == 2)
        await host.send(m.Admit(participant_id=kim.participant_id))
        await kim.wait_message(m.Admitted)
        await kim.wait_message(m.ChatPolicy)

        await kim.send(m.Chat(text="hello from process A"))
        line = await host.wait_message(m.ChatMessage, where=lambda x: x.text == "hello from process A")
        assert line.sender == kim.participant_id and not line.private
        await host.send(m.Chat(text="hello back, privately", private=True, to=kim.participant_id))
        reply = await kim.wait_message(m.ChatMessage, where=lambda x: x.text == "hello back, privately")
        assert reply.private and reply.thread == kim.participant_id

        await lee.send(m.Chat(text="running late", private=True))
        knock = await host.wait_message(m.ChatMessage, where=lambda x: x.text == "running late")
        assert knock.thread == lee.participant_id
        await host.send(m.Chat(text="see you soon", private=True, to=lee.participant_id))
        await lee.wait_message(m.ChatMessage, where=lambda x: x.text == "see you soon")
        # Process A's chat loop takes lines in the bus's order: the room line came before this one.
        heard = [x.text for x in lee.messages if isinstance(x, m.ChatMessage)]
        assert heard == ["running late", "see you soon"]
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()
