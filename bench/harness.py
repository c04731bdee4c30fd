"""Real processes for benchmarks and fault-injection tests: a ``python -m vIOP serve`` child, an external
redis-server we can SIGKILL, HTTP provisioning (clinician, rooms, invites, tickets) and figures.

Everything listens on loopback only. Nothing here reaches into the server process: it is driven from the
outside exactly as an operator and its clients would, so its CPU can be read from /proc and it can be
killed with a real signal.

Used by ``bench/signaling_load.py``, ``bench/join_latency.py`` and ``tests/faults/``. Scripts run as
``python bench/<name>.py`` put the repository root on ``sys.path`` before importing ``bench.harness``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import pwd
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from vIOP.client.session import HttpApi
from vIOP.storage.embedded_redis import EmbeddedRedis, find_redis_server

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = "load-test horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_fd_limit(wanted: int = 65_536) -> int:
    """Raise this process's open-file limit towards ``wanted`` (1,000 sockets need more than 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid``; 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def child_pids(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def wait_until(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


@dataclass
class RedisProcess:
    """An external redis-server on a unix socket that survives the app and can be SIGKILLed.

    ``persistent``: AOF on (what the embedded default runs) so a restart finds the data; off for the
    worst case, Redis back empty.
    """

    directory: Path
    persistent: bool = True
    _server: EmbeddedRedis | None = None

    @property
    def url(self) -> str:
        return f"unix://{(self.directory / 'redis.sock').absolute()}"

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None

    def start(self) -> None:
        self._server = EmbeddedRedis(self.directory, appendonly=self.persistent)
        self._server.start()

    def kill(self) -> None:
        if self._server is not None:
            self._server.kill()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


class SentinelGroup:
    """A Redis master, one replica and three sentinels on loopback TCP ports (sentinels cannot watch a unix
    socket), each a real redis-server child that can be SIGKILLed. ``down_after_ms``: how long the master
    must be silent before a sentinel calls it down (quorum 2 of 3)."""

    MASTER_NAME = "viop"

    def __init__(
        self,
        directory: Path,
        *,
        down_after_ms: int = 1000,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.directory = directory.absolute()
        self.down_after_ms = down_after_ms
        self.password = password  # the master's and replica's requirepass
        self.sentinel_password = sentinel_password  # the sentinels' own requirepass
        self.data_ports = [free_port(), free_port()]  # [0] starts as the master, [1] as its replica
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def sentinels(self) -> str:
        """The ``VIOP_REDIS_SENTINELS`` value."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def settings(self) -> dict[str, str]:
        """``VIOP_*`` settings (lower-case names) for a server using this group."""
        out = {"redis_sentinels": self.sentinels, "redis_sentinel_master": self.MASTER_NAME}
        if self.password is not None:
            out["redis_password"] = self.password
        if self.sentinel_password is not None:
            out["redis_sentinel_password"] = self.sentinel_password
        return out

    def _password_of(self, port: int) -> str | None:
        return self.sentinel_password if port in self.sentinel_ports else self.password

    def _spawn(self, port: int, args: list[str]) -> None:
        folder = self.directory / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "log").open("ab")
        try:
            self.processes[port] = subprocess.Popen(
                [find_redis_server(), *args],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        if not wait_until(lambda: _answers(port, self._password_of(port)), timeout=10):
            raise RuntimeError(f"redis-server on port {port} did not start: {self.log_tail(port)}")

    def start(self) -> None:
        """Start all five, or none: a failed start stops what it had started."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        master, replica = self.data_ports
        for port in self.data_ports:
            folder = self.directory / str(port)
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
            args += ["--appendonly", "yes", "--loglevel", "warning"]
            if self.password is not None:
                args += ["--requirepass", self.password, "--masterauth", self.password]
            if port == replica:
                # Writable (writes stay local) only so a test can make the promoted replica lose data.
                args += ["--replicaof", "127.0.0.1", str(master), "--replica-read-only", "no"]
            self._spawn(port, args)
        if not wait_until(
            lambda: _redis_info(replica, self.password).get("master_link_status") == "up", timeout=10
        ):
            raise RuntimeError("the replica did not sync with the master")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {master} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER_NAME} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
                + (f"sentinel auth-pass {self.MASTER_NAME} {self.password}\n" if self.password else "")
                + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
            )
            self._spawn(port, [str(config), "--sentinel"])
        # Until every sentinel knows the replica and its two peers: a failover needs both.
        if not wait_until(lambda: all(self._sentinel_ready(p) for p in self.sentinel_ports), timeout=30):
            raise RuntimeError("the sentinels did not discover each other and the replica")

    def _sentinel_ready(self, port: int) -> bool:
        state = _sentinel_master_state(port, self.MASTER_NAME, self.sentinel_password)
        return int(state.get("num-slaves", 0)) >= 1 and int(state.get("num-other-sentinels", 0)) >= 2

    def master_port(self) -> int | None:
        """The master's port as the sentinels report it (the first that answers)."""
        for port in self.sentinel_ports:
            reply = _command(
                port, "SENTINEL", "get-master-addr-by-name", self.MASTER_NAME, password=self.sentinel_password
            )
            if isinstance(reply, list | tuple) and len(reply) == 2:
                return int(_text(reply[1]))
        return None

    def kill(self, port: int) -> None:
        process = self.processes.get(port)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def command(self, port: int, *args: str) -> object:
        return _command(port, *args, password=self._password_of(port))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def log_tail(self, port: int, chars: int = 800) -> str:
        try:
            return (self.directory / str(port) / "log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _command(port: int, *args: str, password: str | None = None) -> object:
    """One command to a loopback Redis or sentinel with the synchronous client; None if it does not answer."""
    import redis

    client = redis.Redis(
        host="127.0.0.1", port=port, password=password, socket_timeout=1, socket_connect_timeout=1
    )
    try:
        return client.execute_command(*args)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _answers(port: int, password: str | None) -> bool:
    return _command(port, "PING", password=password) is True


def _redis_info(port: int, password: str | None) -> dict[str, object]:
    reply = _command(port, "INFO", "replication", password=password)
    return reply if isinstance(reply, dict) else {}


def _sentinel_master_state(port: int, name: str, password: str | None) -> dict[str, str]:
    reply = _command(port, "SENTINEL", "master", name, password=password)
    if isinstance(reply, list):  # RESP2 without redis-py's parsing: a flat list
        reply = dict(zip(reply[::2], reply[1::2], strict=False))
    if not isinstance(reply, dict):
        return {}
    return {_text(k): _text(v) for k, v in reply.items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class PostgresProcess:
    """A throwaway PostgreSQL cluster on a unix socket (no TCP) that can be stopped and started again.

    As root, the server runs as the ``postgres`` account (initdb refuses root); its folder lives directly
    under /tmp so that account can reach it.
    """

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="viop-pg-")))
    database: str = "viop"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@/{self.database}?host={self.directory}"

    @staticmethod
    def available() -> bool:
        return _pg_bin("initdb") is not None and (os.geteuid() != 0 or _has_user("postgres"))

    def _run(self, tool: str, *args: str) -> None:
        binary = _pg_bin(tool)
        assert binary is not None, f"{tool} not found"
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_postgres, binary, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = self.directory / "data"
        fresh = not data.exists()
        if fresh:
            self.directory.chmod(0o755)
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
            self._run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
        self._run(
            "pg_ctl", "-D", str(data), "-l", str(self.directory / "log"), "-w",
            "-o", f"-k {self.directory} -c listen_addresses=''", "start",
        )  # fmt: skip
        if fresh:
            self._run("createdb", "-h", str(self.directory), "-U", "postgres", self.database)

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no shutdown checkpoint, clients cut off at once."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"))
    return str(versions[-1]) if versions else None


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class ServerProcess:
    """``python -m vIOP serve`` in its own process, configured only through explicit ``VIOP_*`` env."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    redis_url: str | None = None  # None: the server runs its own embedded Redis (a child process)
    database_url: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)  # extra VIOP_* values, e.g. grace
    log_name: str = "server.log"
    profile_to: Path | None = None  # run under cProfile, stats written here on a graceful stop
    gc_probe_to: Path | None = None  # record garbage-collection pauses (bench/gc_probe.py) into this file
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.base_url

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log_name

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIOP_")}
        env.update(
            {
                "PYTHONPATH": str(REPO),
                "VIOP_HOST": "127.0.0.1",
                "VIOP_PORT": str(self.port),
                "VIOP_DATA_DIR": str(self.data_dir),
                "VIOP_LOG_LEVEL": "warning",
            }
        )
        if self.redis_url is not None:
            env["VIOP_REDIS_URL"] = self.redis_url
        if self.database_url is not None:
            env["VIOP_DATABASE_URL"] = self.database_url
        env.update({f"VIOP_{k.upper()}": str(v) for k, v in self.settings.items()})
        return env

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """Run ``python -m vIOP <args>`` against the same configuration; its stdout, or RuntimeError."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "vIOP", *args],
            cwd=self.data_dir,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"`vIOP {' '.join(args[:2])}` failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def create_account(self, username: str, role: str = "clinician", password: str = PASSWORD) -> None:
        self.cli(
            "users", "create", "--role", role, "--username", username, "--password-stdin",
            stdin=password + "\n",
        )  # fmt: skip

    def create_clinician(self, username: str, password: str = PASSWORD) -> None:
        self.create_account(username, "clinician", password)

    def create_accounts(self, accounts: Sequence[tuple[str, str]]) -> None:
        """(username, role) pairs, a few CLI processes at a time (each hashes a password with argon2). The
        first runs alone: on a new data folder it creates and migrates the database."""
        if not accounts:
            return
        self.create_account(*accounts[0])
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(self.create_account, name, role) for name, role in accounts[1:]]:
                future.result()

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait until ``/healthz`` answers (or fail with the tail of its log)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        profiler = ["-m", "cProfile", "-o", str(self.profile_to)] if self.profile_to else []
        if self.gc_probe_to is not None:
            command = [sys.executable, str(REPO / "bench" / "gc_probe.py"), str(self.gc_probe_to), "serve"]
        else:
            command = [sys.executable, *profiler, "-m", "vIOP", "serve"]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=raise_fd_limit,  # 1,000 sockets need more than the usual 1,024
            )
        finally:
            log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"vIOP serve exited {self.process.returncode}: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"vIOP serve did not answer within {timeout:.0f} s: {self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful drain), then SIGKILL if it hangs. Returns the exit code."""
        process = self.process
        if process is None or process.poll() is not None:
            return process.returncode if process else None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def kill(self) -> None:
        """SIGKILL: no drain, no close frames, no last writes."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def cpu_seconds(self) -> float:
        return process_cpu(self.pid)

    def rss_mb(self) -> float:
        """Resident memory of the server process now, in MB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def children_cpu_seconds(self) -> float:
        """CPU of its child processes (the embedded redis-server)."""
        return sum(process_cpu(child) for child in child_pids(self.pid))

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ClinicApi(HttpApi):
    """HttpApi plus the clinician's provisioning calls (docs/API.md)."""

    async def create_room(self, bearer: str, title: str, capacity: int | None = None) -> str:
        body: dict[str, object] = {"kind": "group", "title": title}
        if capacity is not None:
            body["capacity"] = capacity
        response = await self.http.post(
            "/api/v1/rooms", json=body, headers={"Authorization": f"Bearer {bearer}"}
        )
        response.raise_for_status()
        return str(response.json()["id"])

    async def create_invite(self, bearer: str, room_id: str, display_name: str) -> str:
        response = await self.http.post(
            f"/api/v1/rooms/{room_id}/invites",
            json={"display_name": display_name},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        response.raise_for_status()
        return str(response.json()["invite_token"])


async def gather_limited(limit: int, jobs: Sequence[object]) -> list[object]:
    """Await coroutines with at most ``limit`` in flight; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(job: object) -> object:
        async with gate:
            return await job  # type: ignore[misc]

    return list(await asyncio.gather(*(one(j) for j in jobs)))


@contextlib.contextmanager
def running(*processes: ServerProcess | RedisProcess) -> Iterator[None]:
    """Stop what was started, whatever happens (no stray servers behind a failed run)."""
    try:
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                if isinstance(process, ServerProcess):
                    process.stop(timeout=15)
                else:
                    process.stop()


Figures = TypeVar("Figures")


def run_with_server(
    prefix: str, clinician: str, run: Callable[[ServerProcess], Awaitable[Figures]], max_seconds: float
) -> Figures:
    """``run`` against a fresh server (its data in a temporary folder named ``prefix``..., ICE on loopback,
    ``clinician`` created with :data:`PASSWORD`), stopped after ``max_seconds``; the server stops whatever
    happens."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = ServerProcess(Path(tmp) / "var", settings={"ice_host_addresses": "127.0.0.1"})
        server.create_clinician(clinician)
        server.start()
        try:
            return asyncio.run(asyncio.wait_for(run(server), max_seconds))
        finally:
            server.stop()


def report_figures(script: str, figures: Mapping[str, object], json_path: str | None) -> None:
    """Print the command that made ``figures`` (``script`` and this run's arguments) and the figures; with
    ``json_path``, also write both there."""
    command = f".venv/bin/python {script} {shlex.join(sys.argv[1:])}".strip()
    print(f"command: {command}")
    print(json.dumps(figures, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps({"command": command, **figures}, indent=1))
