"""Deployment behind nginx (issue 14): the real nginx binary runs the repo's own proxy configuration
(config/nginx: http.conf, upstream.conf with the two test nodes' ports, server.conf) in front of two real
`python -m vIOP serve` nodes on one redis-server, as docker-compose.yml deploys them. Through the one
origin: the HTTP API, the presence WebSocket and the signaling WebSocket work, people whose sockets nginx
put on different nodes decode each other's media, the client address the nodes see is the client's
(not nginx's), a node's loss is passed over, and neither nginx's logs nor the nodes' name a client
address or a ticket."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from tests.api.test_two_processes import PASSWORD, REPO, App, _env
from tests.cluster.test_signaling_on_any_node import NODE_SETTINGS, both_registered, media_tracks
from tests.support import free_port
from vIOP.auth.tickets import TICKET_PREFIX
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m

NGINX = Path("/usr/sbin/nginx")
CONFIG = REPO / "config" / "nginx"
# Both nodes and nginx are on 127.0.0.1; the people connect from other loopback addresses, so the address
# a node records tells nginx's (127.0.0.1) from the client's.
ATTACKER, COLLEAGUE = "127.0.0.2", "127.0.0.3"


class LoggedApp(App):
    """App (tests/api/test_two_processes.py) with its log in a file, to be scanned afterwards."""

    def __init__(self, data_dir: Path, redis_url: str, log: Path, **settings: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = _env(data_dir, redis_url, self.port) | settings
        self.log_path = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vIOP", "serve"], env=self.env, cwd=data_dir.parent,
                stdout=subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    access_log: Path
    error_log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def nginx_config(workdir: Path, port: int, node_ports: tuple[int, int]) -> Path:
    """The test's outer shell around the repo's files. Templated: the listen port, the pid and temp paths,
    and upstream.conf's two node addresses (docker-compose.yml's 127.0.0.1:8001 and :8002)."""
    conf = workdir / "conf"
    conf.mkdir()
    (conf / "viop").symlink_to(CONFIG)  # relative includes resolve against the conf folder, as in compose
    upstream = (CONFIG / "upstream.conf").read_text()
    for compose_port, test_port in zip((8001, 8002), node_ports, strict=True):
        address = f"127.0.0.1:{compose_port}"
        assert upstream.count(address) == 1, f"upstream.conf no longer names {address}"
        upstream = upstream.replace(address, f"127.0.0.1:{test_port}")
    (conf / "upstream.conf").write_text(upstream)
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # CI runs as root; keep the workers' file access
    path = conf / "nginx.conf"
    path.write_text(
        f"""{user}daemon off;
worker_processes 1;
pid {workdir / "nginx.pid"};
error_log {workdir / "startup.log"} notice;
events {{ worker_connections 256; }}
http {{
{temp}
    include viop/http.conf;
    include upstream.conf;
    server {{
        listen 127.0.0.1:{port};
        include viop/server.conf;
    }}
}}
"""
    )
    return path


@pytest.fixture
def behind_nginx(tmp_path: Path, redis_url: str) -> Iterator[tuple[Nginx, LoggedApp, LoggedApp]]:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    settings = NODE_SETTINGS | {
        # The public origin is nginx's: tickets name its ws:// URLs and browsers' Origin is its.
        "VIOP_PUBLIC_URL": origin,
        "VIOP_ALLOWED_ORIGINS": origin,
        "VIOP_TRUSTED_PROXIES": "127.0.0.1",
    }
    data_dir = tmp_path / "var"
    first = LoggedApp(data_dir, redis_url, tmp_path / "node-a.log", VIOP_NODE_ID="node-a", **settings)
    apps: list[LoggedApp] = [first]
    proxy: subprocess.Popen[bytes] | None = None
    try:
        first.wait_ready()  # the first one migrates the database and creates the key file
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.two",
             "--password-stdin"],
            input=PASSWORD, env=first.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        second = LoggedApp(data_dir, redis_url, tmp_path / "node-b.log", VIOP_NODE_ID="node-b", **settings)
        apps.append(second)
        second.wait_ready()

        workdir = tmp_path / "nginx"
        workdir.mkdir()
        conf = nginx_config(workdir, port, (first.port, second.port))
        checked = subprocess.run(
            [str(NGINX), "-t", "-p", str(workdir), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, checked.stderr
        access_log, error_log = workdir / "access.log", workdir / "error.log"
        with access_log.open("wb") as stdout, error_log.open("wb") as stderr:
            # http.conf logs to /dev/stdout and stderr, as in the nginx container: here, these two files.
            proxy = subprocess.Popen(
                [str(NGINX), "-p", str(workdir), "-c", str(conf)], stdout=stdout, stderr=stderr
            )
        front = Nginx(proxy, port, access_log, error_log)
        deadline = time.monotonic() + 15
        while True:  # bounded poll of another process: nginx listening and reaching a node
            assert proxy.poll() is None, (workdir / "startup.log").read_text()
            try:
                if httpx.get(f"{origin}/readyz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "nginx never answered /readyz"
            time.sleep(0.1)
        yield front, first, second
    finally:
        if proxy is not None and proxy.poll() is None:
            proxy.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                proxy.wait(10)
            except subprocess.TimeoutExpired:
                proxy.kill()
        for app in apps:
            app.stop()


def test_the_compose_shell_around_the_shared_files_is_valid_nginx(tmp_path: Path) -> None:
    """nginx.conf as docker-compose.yml mounts it (TLS server, port-80 redirect) passes `nginx -t` with the
    shared files included; templated: the worker user, the pid path and the certificate's folder."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "viop").symlink_to(CONFIG)
    tls = tmp_path / "tls"
    tls.mkdir()
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=clinic.test",
         "-keyout", str(tls / "privkey.pem"), "-out", str(tls / "fullchain.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = (CONFIG / "nginx.conf").read_text()
    for compose, here in (
        ("user nginx;", "user root;" if os.geteuid() == 0 else ""),
        ("pid /var/run/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};"),
        ("/etc/nginx/tls/", f"{tls}/"),
    ):
        assert compose in text, compose
        text = text.replace(compose, here)
    (conf / "nginx.conf").write_text(text)
    checked = subprocess.run(
        [str(NGINX), "-t", "-p", str(tmp_path), "-c", str(conf / "nginx.conf"), "-g", "error_log stderr notice;"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def from_address(api: HttpApi, address: str) -> HttpApi:
    """This participant's HTTP calls leave from ``address`` (another loopback address than nginx's)."""
    api.http = httpx.AsyncClient(
        base_url=api.base_url,
        timeout=10.0,
        trust_env=False,
        transport=httpx.AsyncHTTPTransport(local_address=address),
    )
    return api


def open_sockets(node: App, endpoint: str) -> float:
    """The node's own count of open WebSockets of ``endpoint`` (its /metrics, read on the node directly)."""
    text = httpx.get(f"{node.base_url}/metrics", timeout=5, trust_env=False).text
    found = re.search(rf'^viop_websocket_connections_active{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def next_message(ws: Any, kind: str, where: Any = None, within: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and (where is None or where(message)):
                return dict(message)


def assert_no_client_address_or_ticket(*logs: Path) -> None:
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (ATTACKER, COLLEAGUE, "ticket=", TICKET_PREFIX):
            assert secret not in text, f"{log.name} holds {secret!r}"


async def test_http_both_websockets_and_media_work_through_nginx_in_front_of_two_nodes(
    behind_nginx: tuple[Nginx, LoggedApp, LoggedApp], redis_client: aioredis.Redis
) -> None:
    front, a, b = behind_nginx
    await both_registered(redis_client)
    api = from_address(HttpApi(front.origin), COLLEAGUE)
    people: list[RoomClient] = []
    presence: Any = None
    try:
        # HTTP through nginx: sign in, a room, two invites.
        token = await api.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        created = await api.http.post("/api/v1/rooms", json={"kind": "group", "title": "Behind nginx"},
                                      headers=headers)  # fmt: skip
        assert created.status_code == 201, created.text
        room = created.json()
        invites = [
            (
                await api.http.post(
                    f"/api/v1/rooms/{room['id']}/invites", json={"display_name": name}, headers=headers
                )
            ).json()["invite_token"]
            for name in ("Kim", "Lee")
        ]

        # The presence WebSocket: the ticket names nginx's origin, the upgrade goes through it.
        issued = await api.http.post("/api/v1/signal-tickets", json={"purpose": "presence"}, headers=headers)
        ws_url = issued.json()["ws_url"]
        assert ws_url.startswith(f"ws://127.0.0.1:{front.port}/ws/presence?ticket=")
        presence = await connect(ws_url, origin=front.origin, compression=None, proxy=None)
        snapshot = await next_message(presence, "presence_snapshot")
        assert [r["room_id"] for r in snapshot["rooms"]] == [room["id"]]

        # The signaling WebSocket: a host and two guests, every socket and ticket through nginx.
        host = RoomClient(api.ticket_source(token, room["id"]), origin=front.origin, tracks=media_tracks)
        kim = RoomClient(api.ticket_source(invites[0], room["id"]), origin=front.origin, tracks=media_tracks)
        lee = RoomClient(api.ticket_source(invites[1], room["id"]), origin=front.origin, tracks=media_tracks)
        people += [host, kim, lee]
        await host.join()
        await host.start_media()
        for guest in (kim, lee):
            await guest.join()
            await guest.wait_message(m.Waiting)
            knock = await next_message(presence, "presence_event", where=lambda e: e["event"] == "knocked")
            assert knock["participant_id"] == guest.participant_id
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
            await guest.start_media()

        # nginx spread the sockets over both nodes (least connections, no stickiness) ...
        signal_sockets = {node.port: open_sockets(node, "signal") for node in (a, b)}
        assert sum(signal_sockets.values()) == 3 and min(signal_sockets.values()) >= 1, signal_sockets
        assert open_sockets(a, "presence") + open_sockets(b, "presence") == 1
        # ... and everyone decodes everyone's audio and video, whichever node carries the room's media.
        for viewer in people:
            for publisher in people:
                if publisher is not viewer:
                    for kind in ("audio", "video"):
                        await viewer.wait_frames(publisher.participant_id, kind, at_least=10, within=30)

        # The HTTP requests went to both nodes too (nginx's log names the node that answered each).
        answered_by = front.access_log.read_text()
        assert f"127.0.0.1:{a.port}" in answered_by and f"127.0.0.1:{b.port}" in answered_by
    finally:
        if presence is not None:
            await presence.close()
        for person in people:
            await person.close()
        await api.close()
    assert_no_client_address_or_ticket(front.access_log, front.error_log, a.log_path, b.log_path)


async def test_the_nodes_see_the_clients_address_so_an_attacker_cannot_lock_a_colleague_out(
    behind_nginx: tuple[Nginx, LoggedApp, LoggedApp],
) -> None:
    """Login throttling is per (account, client address) (issue 11). Behind a proxy every request comes from
    the proxy's address, so without VIOP_TRUSTED_PROXIES an attacker's wrong passwords slowed down the
    clinician everywhere. Also: a client cannot plant an address with its own X-Forwarded-For."""
    front, _, _ = behind_nginx
    attacker = from_address(HttpApi(front.origin), ATTACKER)
    colleague = from_address(HttpApi(front.origin), COLLEAGUE)
    try:
        statuses = []
        for _ in range(6):
            wrong = {"username": "dr.two", "password": "not the password"}
            statuses.append((await attacker.http.post("/api/v1/auth/login", json=wrong)).status_code)
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
        # The same account from the colleague's address, planting the attacker's address: signed in.
        signed_in = await colleague.http.post(
            "/api/v1/auth/login",
            json={"username": "dr.two", "password": PASSWORD},
            headers={"X-Forwarded-For": ATTACKER},
        )
        assert signed_in.status_code == 200, signed_in.text
    finally:
        await attacker.close()
        await colleague.close()


async def test_a_dead_node_is_passed_over_and_the_logs_name_no_client(
    behind_nginx: tuple[Nginx, LoggedApp, LoggedApp], redis_client: aioredis.Redis
) -> None:
    """Node a is SIGKILLed: nginx's connect to it is refused, the request goes on to node b, and node a is
    skipped from then on (passive failover): every request and socket is served. With node b gone too,
    nginx answers 503 `unavailable` in the API's error shape. nginx's error lines about the dead nodes
    would name the client and the request line (with its ticket): none are written."""
    front, a, b = behind_nginx
    await both_registered(redis_client)
    a.process.kill()
    a.process.wait(10)
    api = from_address(HttpApi(front.origin), COLLEAGUE)
    host: RoomClient | None = None
    try:
        token = await api.login("dr.two", PASSWORD)  # a POST
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(4):  # round-robin would send every other request to node a
            assert (await api.http.get("/readyz")).status_code == 200
            listed = await api.http.get("/api/v1/rooms", headers=headers)
            assert listed.status_code == 200, listed.text
        room = (await api.http.post("/api/v1/rooms", json={"kind": "group", "title": "Failover"},
                                    headers=headers)).json()  # fmt: skip
        host = RoomClient(api.ticket_source(token, room["id"]), origin=front.origin)
        await host.join()
        await host.wait_message(m.Lobby)
        assert open_sockets(b, "signal") == 1
        # The metrics endpoint is the node's own, never served through the public origin.
        assert (await api.http.get("/metrics")).status_code == 404
        # Bad input and faults keep the API's error shape through the proxy: an oversized body reaches a
        # node (nginx's own cap is above the app's), and with no node left nginx answers like a node.
        oversized = await api.http.post("/api/v1/rooms", content=b"x" * 100_000, headers=headers)
        assert oversized.status_code == 413 and oversized.json()["error"]["code"] == "payload_too_large"
        await host.close()
        b.process.kill()
        b.process.wait(10)
        nobody = await api.http.get("/api/v1/rooms", headers=headers)
        assert nobody.status_code == 503, nobody.text
        assert nobody.json()["error"]["code"] == "unavailable"
    finally:
        if host is not None:
            await host.close()
        await api.close()
    # nginx did try node a once (refused: 502) and the same request was answered by node b.
    tried = f'"127.0.0.1:{a.port}, 127.0.0.1:{b.port}" "502, 200"'
    assert tried in front.access_log.read_text()
    assert_no_client_address_or_ticket(front.access_log, front.error_log)
