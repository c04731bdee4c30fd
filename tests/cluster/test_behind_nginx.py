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
import ssl
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
    https_port: int
    http_port: int
    tls: ssl.SSLContext  # trusts the test's self-signed certificate for 127.0.0.1
    access_log: Path
    error_log: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def self_signed_certificate(folder: Path) -> Path:
    folder.mkdir()
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return folder / "fullchain.pem"


def templated(text: str, replacements: list[tuple[str, str]], name: str) -> str:
    for compose, here in replacements:
        assert text.count(compose) == 1, f"{name} no longer has exactly one {compose!r}"
        text = text.replace(compose, here)
    return text


def nginx_config(workdir: Path, ports: tuple[int, int], node_ports: tuple[int, int]) -> Path:
    """config/nginx as docker-compose.yml mounts it (nginx.conf as the main file, the folder as viop/),
    templated only where a test on a shared machine must differ: the listen addresses, the worker user,
    the pid path, the certificate's folder, and upstream.conf's node addresses (compose: 127.0.0.1:8001
    and :8002). Everything else (TLS, redirect, proxying, timeouts, failover, logs) is the repo's text."""
    shared = sorted(p.name for p in CONFIG.glob("*.conf"))
    assert shared == ["http.conf", "nginx.conf", "server.conf", "upstream.conf"], shared
    http_port, https_port = ports
    tls = self_signed_certificate(workdir / "tls")
    conf = workdir / "conf"
    (conf / "viop").mkdir(parents=True)  # relative includes resolve against the main file's folder
    for name in ("http.conf", "server.conf"):
        (conf / "viop" / name).symlink_to(CONFIG / name)
    nodes = [
        (f"127.0.0.1:{compose}", f"127.0.0.1:{test}")
        for compose, test in zip((8001, 8002), node_ports, strict=True)
    ]
    upstream = templated((CONFIG / "upstream.conf").read_text(), nodes, "upstream.conf")
    (conf / "viop" / "upstream.conf").write_text(upstream)
    main = templated(
        (CONFIG / "nginx.conf").read_text(),
        [
            ("user nginx;", "user root;" if os.geteuid() == 0 else ""),  # CI runs as root
            ("pid /var/run/nginx.pid;", f"pid {workdir / 'nginx.pid'};"),
            ("/etc/nginx/tls/fullchain.pem", str(tls)),
            ("/etc/nginx/tls/privkey.pem", str(tls.parent / "privkey.pem")),
            ("listen 80;", f"listen 127.0.0.1:{http_port};"),
            ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
        ],
        "nginx.conf",
    )
    (conf / "nginx.conf").write_text(main)
    return conf / "nginx.conf"


@pytest.fixture
def behind_nginx(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Nginx, LoggedApp, LoggedApp]]:
    http_port, https_port = free_port(), free_port()
    origin = f"https://127.0.0.1:{https_port}"
    settings = NODE_SETTINGS | {
        # The public origin is nginx's: tickets name its wss:// URLs and browsers' Origin is its.
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
        conf = nginx_config(workdir, (http_port, https_port), (first.port, second.port))
        certificate = workdir / "tls" / "fullchain.pem"
        # vIOP.client's wss:// sockets use Python's default trust store: here, this certificate only.
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
        tls = ssl.create_default_context(cafile=str(certificate))
        command = [str(NGINX), "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"]
        checked = subprocess.run([*command[:5], "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        access_log, error_log = workdir / "access.log", workdir / "error.log"
        with access_log.open("wb") as stdout, error_log.open("wb") as stderr:
            # The configuration logs to /dev/stdout and stderr, as in the nginx container: here, two files.
            proxy = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        front = Nginx(proxy, https_port, http_port, tls, access_log, error_log)
        deadline = time.monotonic() + 15
        while True:  # bounded poll of another process: nginx listening and reaching a node
            assert proxy.poll() is None, error_log.read_text()
            try:
                if httpx.get(f"{origin}/readyz", timeout=1, verify=tls, trust_env=False).status_code == 200:
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


def from_address(front: Nginx, address: str) -> HttpApi:
    """A participant's HTTP calls to nginx's origin over TLS, leaving from ``address`` (another loopback
    address than nginx's)."""
    api = HttpApi(front.origin)
    api.http = httpx.AsyncClient(
        base_url=api.base_url,
        timeout=10.0,
        trust_env=False,
        transport=httpx.AsyncHTTPTransport(local_address=address, verify=front.tls),
    )
    return api


async def open_sockets(node: App, endpoint: str) -> float:
    """The node's own count of open WebSockets of ``endpoint`` (its /metrics, read on the node directly)."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        text = (await http.get(f"{node.base_url}/metrics")).text
    found = re.search(rf'^viop_websocket_connections_active{{endpoint="{endpoint}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def next_message(ws: Any, kind: str, where: Any = None, within: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind and (where is None or where(message)):
                return dict(message)


def assert_no_client_address_or_ticket(*logs: Path, also: tuple[str, ...] = ()) -> None:
    for log in logs:
        text = log.read_text(errors="replace")
        for secret in (ATTACKER, COLLEAGUE, "ticket=", TICKET_PREFIX, *also):
            assert secret not in text, f"{log.name} holds {secret!r}"


async def test_http_both_websockets_and_media_work_through_nginx_in_front_of_two_nodes(
    behind_nginx: tuple[Nginx, LoggedApp, LoggedApp], redis_client: aioredis.Redis
) -> None:
    front, a, b = behind_nginx
    await both_registered(redis_client)
    api = from_address(front, COLLEAGUE)
    people: list[RoomClient] = []
    presence: Any = None
    feed_secret = "vcal_"  # the prefix until the feed exists
    try:
        # Plain HTTP only redirects to TLS; TLS answers carry HSTS.
        plain = await api.http.get(f"http://127.0.0.1:{front.http_port}/api/v1/rooms?x=1")
        assert plain.status_code == 308
        assert plain.headers["location"] == "https://127.0.0.1/api/v1/rooms?x=1"
        # HTTP through nginx: sign in, a room, two invites.
        token = await api.login("dr.two", PASSWORD)
        ready = await api.http.get("/readyz")
        assert ready.headers["strict-transport-security"] == "max-age=63072000"
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
        assert ws_url.startswith(f"wss://127.0.0.1:{front.https_port}/ws/presence?ticket=")
        presence = await connect(ws_url, origin=front.origin, compression=None, proxy=None, ssl=front.tls)
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
        signal_sockets = {node.port: await open_sockets(node, "signal") for node in (a, b)}
        assert sum(signal_sockets.values()) == 3 and min(signal_sockets.values()) >= 1, signal_sockets
        assert await open_sockets(a, "presence") + await open_sockets(b, "presence") == 1
        # ... and everyone decodes everyone's audio and video, whichever node carries the room's media.
        for viewer in people:
            for publisher in people:
                if publisher is not viewer:
                    for kind in ("audio", "video"):
                        await viewer.wait_frames(publisher.participant_id, kind, at_least=10, within=30)

        # A calendar feed's path is its secret: nginx's log keeps the template, as the app's does.
        created_feed = await api.http.post("/api/v1/calendar-feeds", json={}, headers=headers)
        assert created_feed.status_code == 201, created_feed.text
        feed_url = httpx.URL(created_feed.json()["url"])
        assert feed_url.host == "127.0.0.1" and feed_url.port == front.https_port
        feed_secret = feed_url.path.removeprefix("/calendar/").removesuffix(".ics")
        feed = await api.http.get(feed_url.path)
        assert feed.status_code == 200 and feed.text.startswith("BEGIN:VCALENDAR"), feed.text

        # The HTTP requests went to both nodes too (nginx's log names the node that answered each).
        answered_by = front.access_log.read_text()
        assert f"127.0.0.1:{a.port}" in answered_by and f"127.0.0.1:{b.port}" in answered_by
    finally:
        if presence is not None:
            await presence.close()
        for person in people:
            await person.close()
        await api.close()
    assert_no_client_address_or_ticket(
        front.access_log, front.error_log, a.log_path, b.log_path, also=(feed_secret,)
    )


async def test_the_nodes_see_the_clients_address_so_an_attacker_cannot_lock_a_colleague_out(
    behind_nginx: tuple[Nginx, LoggedApp, LoggedApp],
) -> None:
    """Login throttling is per (account, client address) (issue 11). Behind a proxy every request comes from
    the proxy's address, so without VIOP_TRUSTED_PROXIES an attacker's wrong passwords slowed down the
    clinician everywhere. Also: a client cannot plant an address with its own X-Forwarded-For."""
    front, _, _ = behind_nginx
    attacker = from_address(front, ATTACKER)
    colleague = from_address(front, COLLEAGUE)
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
    api = from_address(front, COLLEAGUE)
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
        assert await open_sockets(b, "signal") == 1
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
