"""`python -m vIOP serve --workers 2` (issue 14): a real supervisor, two real worker processes on one port,
the managed redis-server and SQLite it starts once, real aiortc peers. Which worker accepted each socket
is read from the operating system (the worker process that owns the server end of the connection)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import redis.asyncio as aioredis

from tests.api.test_two_processes import PASSWORD
from tests.cli.test_serve import run_cli
from tests.cluster.test_signaling_on_any_node import NODE_SETTINGS, media_tracks
from tests.support import free_port
from vIOP.client.session import HttpApi, RoomClient
from vIOP.ids import RoomId
from vIOP.settings import MAX_WORKERS, available_cores, load_settings
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases
from vIOP.supervisor import RestartBackoff

REPO = Path(__file__).resolve().parents[2]


class Supervised:
    """``python -m vIOP serve --workers N`` on the embedded defaults, its log lines in a file."""

    def __init__(self, root: Path, workers: int = 2) -> None:
        self.data_dir = root / "var"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "serve.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")} | {
            "PYTHONPATH": str(REPO), "VIOP_DATA_DIR": str(self.data_dir), "VIOP_PORT": str(self.port),
            "VIOP_ICE_HOST_ADDRESSES": "127.0.0.1", **NODE_SETTINGS,
        }  # fmt: skip
        self.root = root
        with self.log_path.open("wb") as log:  # a file, not a pipe: nobody blocks on a full pipe
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vIOP", "serve", "--workers", str(workers)],
                env=self.env, cwd=root, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    @property
    def redis_url(self) -> str:
        return f"unix://{self.data_dir / 'redis' / 'redis.sock'}"

    def children(self, marker: str) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.process.pid).children():
            try:
                if marker in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def worker_pids(self) -> set[int]:
        return {p.pid for p in self.children("multiprocessing.spawn")}

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        return lines

    def node_of_pid(self) -> dict[int, str]:
        """From the workers' own "serving" lines: which node id each worker process is."""
        return {
            int(str(line["pid"])): str(line["node_id"])
            for line in self.log_lines()
            if line.get("msg") == "serving" and line.get("logger") == "vIOP.server"
        }

    def worker_owning(self, client_port: int) -> int:
        """The worker process holding the server end of the TCP connection from ``client_port``."""
        for pid in self.worker_pids():
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.raddr and conn.raddr.port == client_port and conn.laddr.port == self.port:
                    return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def wait_serving(self, workers: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            serving = [line for line in self.log_lines() if line.get("msg") == "worker serving"]
            if len(serving) >= workers:
                return
            time.sleep(0.1)
        raise TimeoutError("the workers did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    server = Supervised(tmp_path)
    try:
        server.wait_serving(2)
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.two",
             "--password-stdin"],
            input=PASSWORD, env=server.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        yield server
    finally:
        server.stop()


@pytest.fixture
async def shared_redis(supervised: Supervised) -> AsyncIterator[aioredis.Redis]:
    """The supervisor's managed redis-server, which both workers use."""
    client = aioredis.from_url(supervised.redis_url)
    yield client
    await client.aclose()


async def live_node_ids(redis_client: aioredis.Redis, count: int) -> set[str]:
    registry = RedisNodeRegistry(redis_client)
    deadline = time.monotonic() + 20
    while len(ids := {n.id for n in await registry.nodes(time.time())}) != count:
        assert time.monotonic() < deadline, f"expected {count} live nodes, have {ids}"
        await asyncio.sleep(0.1)
    return ids


def client_port(person: RoomClient) -> int:
    assert person.signaling is not None
    return int(person.signaling._ws.local_address[1])


async def test_a_four_person_room_works_whichever_worker_accepts_each_socket(
    supervised: Supervised, shared_redis: aioredis.Redis
) -> None:
    """One port, two workers (two nodes on the supervisor's redis-server): the four sockets land on both
    workers (the kernel spreads them; a participant is reconnected until both workers hold one), and
    everyone decodes everyone's audio and video. A second room's media goes to the other worker and works
    too (each worker's media, on its own ephemeral UDP ports, is reachable)."""
    workers = supervised.worker_pids()
    assert len(workers) == 2
    nodes = await live_node_ids(shared_redis, 2)
    assert set(supervised.node_of_pid().values()) == nodes  # each worker is a node of its own
    api = HttpApi(supervised.base_url)
    people: list[RoomClient] = []
    try:
        token = await api.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        room = (await api.http.post("/api/v1/rooms", json={"kind": "group", "title": "Workers"},
                                    headers=headers)).json()  # fmt: skip
        host = RoomClient(
            api.ticket_source(token, room["id"]), origin=supervised.base_url, tracks=media_tracks
        )
        people.append(host)
        await host.join()
        await host.start_media()
        for name in ("Kim", "Lee", "Max"):
            invite = (await api.http.post(f"/api/v1/rooms/{room['id']}/invites", json={"display_name": name},
                                          headers=headers)).json()  # fmt: skip
            guest = RoomClient(
                api.ticket_source(invite["invite_token"], room["id"]),
                origin=supervised.base_url,
                tracks=media_tracks,
            )
            people.append(guest)
            await guest.join()
            await guest.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
        last = people[-1]
        for _ in range(40):  # each reconnection lands on either worker: (1/2)^40 to miss one
            if {supervised.worker_owning(client_port(p)) for p in people} == workers:
                break
            await last.drop()
            await host.wait_message(m.Reconnecting, where=lambda r: r.participant_id == last.participant_id)
            assert (await last.join(resume=True)).resumed
            await last.wait_message(m.Admitted)
        owners = {supervised.worker_owning(client_port(p)) for p in people}
        assert owners == workers, "the sockets never landed on both workers"
        for guest in people[1:]:
            await guest.start_media()

        lease = await RedisRoomLeases(shared_redis).current(RoomId(room["id"]))
        assert lease is not None and lease.node_id in nodes  # one worker carries the media
        for viewer in people:
            for publisher in people:
                if publisher is viewer:
                    continue
                for kind in ("audio", "video"):
                    await viewer.wait_frames(publisher.participant_id, kind, at_least=10, within=30)

        # A second room goes to the other worker (placement by load): its media address is reachable too.
        second = (await api.http.post("/api/v1/rooms", json={"kind": "group", "title": "Second"},
                                      headers=headers)).json()  # fmt: skip
        invite = (await api.http.post(f"/api/v1/rooms/{second['id']}/invites", json={"display_name": "Ana"},
                                      headers=headers)).json()  # fmt: skip
        host2 = RoomClient(
            api.ticket_source(token, second["id"]), origin=supervised.base_url, tracks=media_tracks
        )
        ana = RoomClient(
            api.ticket_source(invite["invite_token"], second["id"]),
            origin=supervised.base_url,
            tracks=media_tracks,
        )
        people += [host2, ana]
        await host2.join()
        await host2.start_media()
        await ana.join()
        await ana.wait_message(m.Waiting)
        await host2.send(m.Admit(participant_id=ana.participant_id))
        await ana.wait_message(m.Admitted)
        await ana.start_media()
        lease2 = await RedisRoomLeases(shared_redis).current(RoomId(second["id"]))
        assert lease2 is not None and {lease.node_id, lease2.node_id} == nodes
        for viewer, publisher in ((host2, ana), (ana, host2)):
            for kind in ("audio", "video"):
                await viewer.wait_frames(publisher.participant_id, kind, at_least=10, within=30)
    finally:
        for person in people:
            await person.close()
        await api.close()


async def test_a_sigkilled_worker_is_restarted_and_the_port_keeps_answering(
    supervised: Supervised, shared_redis: aioredis.Redis
) -> None:
    before = supervised.worker_pids()
    nodes_before = await live_node_ids(shared_redis, 2)
    victim = min(before)
    victim_node = supervised.node_of_pid()[victim]
    os.kill(victim, signal.SIGKILL)
    answered = 0
    async with httpx.AsyncClient(base_url=supervised.base_url, timeout=5) as http:
        deadline = time.monotonic() + 30
        while True:
            # A new connection each time: the kernel spreads them over the live workers' sockets.
            response = await http.get("/readyz", headers={"Connection": "close"})
            assert response.status_code == 200, response.text
            answered += 1
            pids = supervised.worker_pids()
            ids = {n.id for n in await RedisNodeRegistry(shared_redis).nodes(time.time())}
            restarted = pids - before
            if len(pids) == 2 and restarted and victim_node not in ids and len(ids) == 2:
                break
            assert time.monotonic() < deadline, (pids, ids)
            await asyncio.sleep(0.1)
    assert victim not in pids
    (new_pid,) = restarted
    new_node = supervised.node_of_pid()[new_pid]
    assert new_node not in nodes_before and new_node in ids  # the restarted worker is a new node
    died = [line for line in supervised.log_lines() if str(line.get("msg", "")).startswith("worker died")]
    assert [(line["pid"], line["exit_code"]) for line in died] == [(victim, -signal.SIGKILL)]
    assert answered > 1


async def test_a_restarting_worker_takes_no_connection_until_it_serves(supervised: Supervised) -> None:
    """The replacement of a SIGKILLed worker is held (SIGSTOP) while it starts: its socket of the port is
    bound but not listening, so every new connection goes to the live worker and is answered. (A first
    version listened at once: the kernel queued about half the connections for the starting worker.)"""
    before = supervised.worker_pids()
    os.kill(min(before), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while not (fresh := supervised.worker_pids() - before):
        assert time.monotonic() < deadline, "no replacement started"
        await asyncio.sleep(0.02)
    (starting,) = fresh
    os.kill(starting, signal.SIGSTOP)  # caught within tens of ms; its start takes over a second
    try:
        states = {
            c.status
            for c in psutil.Process(starting).net_connections("tcp")
            if c.laddr.port == supervised.port
        }
        assert psutil.CONN_LISTEN not in states, states  # bound (a bound-only socket is not even listed)
        async with httpx.AsyncClient(base_url=supervised.base_url, timeout=5) as http:
            for _ in range(30):  # new connections, spread by the kernel over the listening sockets only
                response = await http.get("/readyz", headers={"Connection": "close"})
                assert response.status_code == 200
    finally:
        os.kill(starting, signal.SIGCONT)
    await asyncio.to_thread(supervised.wait_serving, 3)  # then it starts: 2 workers at first, 1 restart
    states = {
        c.status for c in psutil.Process(starting).net_connections("tcp") if c.laddr.port == supervised.port
    }
    assert psutil.CONN_LISTEN in states


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_every_worker_and_the_managed_redis_and_exits_0(
    supervised: Supervised, stop: signal.Signals
) -> None:
    """SIGTERM (an orchestrator) or SIGINT (Ctrl-C, which reaches the supervisor alone: workers have their
    own process group) is forwarded once; every worker drains and stops, then the redis-server."""
    workers = supervised.children("multiprocessing.spawn")
    redis_servers = supervised.children("redis-server")
    assert len(workers) == 2 and len(redis_servers) == 1  # one redis-server for both workers
    assert {os.getpgid(w.pid) for w in workers} == {w.pid for w in workers}
    supervised.process.send_signal(stop)
    assert supervised.process.wait(40) == 0
    _gone, alive = psutil.wait_procs([*workers, *redis_servers], timeout=10)
    assert alive == []
    assert "Traceback" not in supervised.log_path.read_text()
    stopped = [line for line in supervised.log_lines() if line.get("msg") == "stopped"]
    assert len(stopped) == 2  # both workers drained and closed their services


async def test_sigusr1_is_passed_on_to_every_worker_and_stops_nothing(supervised: Supervised) -> None:
    """``kill -USR1`` (log the media state) on the supervisor: before, its default action killed the
    supervisor and with it every worker. Each worker's log marks the signal; none is restarted."""
    before = supervised.worker_pids()
    supervised.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while True:  # bounded poll of another process's log file
        marks = [line for line in supervised.log_lines() if line.get("msg") == "media state requested"]
        if len(marks) == 2 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    assert len(marks) == 2, marks
    assert supervised.process.poll() is None
    assert supervised.worker_pids() == before
    assert not [line for line in supervised.log_lines() if str(line.get("msg", "")).startswith("worker died")]


def test_a_sigkilled_supervisor_takes_its_workers_and_redis_with_it(supervised: Supervised) -> None:
    """Nothing is left holding the port or the data folder (the kernel's parent-death signal)."""
    left = [*supervised.children("multiprocessing.spawn"), *supervised.children("redis-server")]
    assert len(left) == 3
    supervised.process.kill()
    supervised.process.wait(10)
    _gone, alive = psutil.wait_procs(left, timeout=30)
    assert alive == []
    with socket.create_server(("127.0.0.1", supervised.port)):
        pass  # the port is free again


@pytest.mark.parametrize("count", ["0", "-1", "abc", str(MAX_WORKERS + 1)])
def test_a_bad_worker_count_is_one_line_and_exit_2(tmp_path: Path, count: str) -> None:
    result = run_cli("serve", "--port", str(free_port()), "--workers", count, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0], result.stderr
    assert not (tmp_path / "var").exists()  # nothing started, nothing created


def test_a_first_worker_that_cannot_start_stops_the_supervisor_with_its_line(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--workers", "2", "--port", str(free_port()), cwd=tmp_path,
        VIOP_REDIS_URL=f"unix://{tmp_path}/no-such.sock",
    )  # fmt: skip
    assert result.returncode == 1
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert plain == ["vIOP: Redis is unreachable at VIOP_REDIS_URL: start Redis or fix VIOP_REDIS_URL"]
    assert result.stderr.count('"msg": "worker started"') == 1  # the second was never started


def test_workers_auto_is_one_per_available_core() -> None:
    assert load_settings(environ={}).workers == 1  # the single process unless asked
    assert load_settings(environ={"VIOP_WORKERS": "auto"}).workers == min(available_cores(), MAX_WORKERS)
    assert load_settings(environ={"VIOP_WORKERS": " 3 "}).workers == 3


def test_restart_backoff_doubles_for_a_crash_loop_up_to_its_bound_and_resets_after_a_healthy_run() -> None:
    backoff = RestartBackoff(first=0.5, longest=30.0, stable_after=60.0)
    delays = [backoff.after_exit(ran_for=1.0) for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert backoff.after_exit(ran_for=600.0) == 0.5  # it had been serving: a fresh start
    assert backoff.after_exit(ran_for=2.0) == 1.0
