"""``python -m vIOP serve``: pre-flight checks, then uvicorn on a socket we bound ourselves.

Pre-flight turns every start-up failure (occupied port, unreachable Redis, unwritable data folder,
missing redis-server) into one clear line and a non-zero exit, with nothing left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from sqlalchemy import text

from vIOP.app import Services, close_services, create_app, open_services
from vIOP.errors import StartupError, VIOPError
from vIOP.http_protocol import MAX_HEADER_BYTES, REQUEST_DEADLINE_SECONDS, guarded_protocol
from vIOP.logging import configure_logging
from vIOP.settings import Settings
from vIOP.storage.embedded_redis import die_with_parent
from vIOP.storage.redis_cluster import clock_skew

log = logging.getLogger("vIOP.server")


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening socket, or StartupError saying what is wrong in one line. ``reuse_port``: one of a
    group of sockets on the same port among which the kernel spreads connections (``serve --workers``).
    ``listen=False``: bound only; it takes connections from when the server starts serving on it (asyncio
    calls ``listen`` then), so none wait in its queue while its worker is still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP. Without it Nagle + delayed ACK held every second write of a keep-alive response
    # (or of a burst of WebSocket frames) for 40 ms: measured 48 ms per /healthz with keep-alive, 1 ms with.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use: stop the other server or pass --port"
            ) from None
        if exc.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME):
            raise StartupError(
                f"cannot listen on {host}: no such local address (try --host 127.0.0.1)"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"not allowed to listen on port {port}: use a port above 1023") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    except socket.gaierror:
        sock.close()
        raise StartupError(f"cannot listen on {host}: unknown host (try --host 127.0.0.1)") from None
    if listen:
        sock.listen(2048)
    sock.setblocking(False)
    return sock


def check_data_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"the data folder {path} is not writable ({exc.strerror}): set VIOP_DATA_DIR to a writable folder"
        ) from None


class VIOPServer(uvicorn.Server):
    """uvicorn, plus our drain step before it closes connections (so WebSockets get 1001, not 1012),
    and without uvicorn's re-raise of the caught signal (it would kill us before Redis is stopped)."""

    def __init__(
        self, config: uvicorn.Config, services: Services, on_started: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.services = services
        self.on_started = on_started  # a worker tells its supervisor it serves (vIOP/supervisor.py)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # `kill -USR1 PID`: every subscriber's video legs and last layer changes in the log (ids and
        # counters only), to tell why someone sees a frozen tile without stopping the session.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self.log_media_state)
        if self.started and not self.should_exit and self.on_started is not None:
            self.on_started()

    def log_media_state(self) -> None:
        log.warning("media state requested")  # one line even with no media here (several workers: one each)
        relay = self.services.relay
        if relay is None:
            return
        legs, changes = relay.video_legs(), relay.layer_changes()
        for pid in legs:
            for line in legs[pid]:
                log.warning("media state: subscriber %s leg %s", pid, line)
            for line in changes.get(pid, []):
                log.warning("media state: subscriber %s change %s", pid, line)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        def handle(sig: int, frame: FrameType | None) -> None:
            self.handle_exit(sig, frame)

        originals = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first
        await self.services.drain()
        await super().shutdown(sockets)


async def _preflight(settings: Settings) -> Services:
    check_data_dir(settings.data_dir)
    try:
        services = await open_services(settings)
    except VIOPError:
        raise
    except Exception as exc:
        # Migrations or the key ring hit the database first: name it, without the driver's traceback.
        raise StartupError(
            f"the database is unreachable or unusable ({type(exc).__name__}): check VIOP_DATABASE_URL"
        ) from None
    try:
        try:
            await asyncio.wait_for(services.redis.ping(), 5)
        except Exception:
            if services.embedded_redis:
                where, fix = "the embedded redis-server", "VIOP_REDIS_URL"
            elif services.settings.redis_sentinels:
                where = fix = "VIOP_REDIS_SENTINELS / VIOP_REDIS_SENTINEL_MASTER"
            else:
                where = fix = "VIOP_REDIS_URL"
            raise StartupError(f"Redis is unreachable at {where}: start Redis or fix {fix}") from None
        await _check_clock(services, settings)
        try:
            async with services.storage.db.read() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
        except Exception:
            raise StartupError("the database is unreachable: check VIOP_DATABASE_URL") from None
    except BaseException:
        await close_services(services)
        raise
    return services


async def _check_clock(services: Services, settings: Settings) -> None:
    """Room leases carry expiry times from each node's clock: a clock off by more than half a lease from
    Redis's would let two nodes disagree on who holds a room. Such a node does not join (one clear line)."""
    try:
        skew = await asyncio.wait_for(clock_skew(services.redis, time.time), 5)
    except Exception:
        raise StartupError("Redis is unreachable: start Redis or fix VIOP_REDIS_URL") from None
    if abs(skew) > settings.room_lease_seconds / 2:
        raise StartupError(
            f"this machine's clock is {skew:+.1f} s off the Redis server's, more than half a room lease "
            f"(VIOP_ROOM_LEASE_SECONDS={settings.room_lease_seconds}): synchronise the clocks (NTP)"
        )


def uvicorn_config(
    app: Any, settings: Settings, *, request_deadline: float = REQUEST_DEADLINE_SECONDS
) -> uvicorn.Config:
    """How vIOP runs uvicorn (``serve`` and the tests' live servers alike)."""
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        # Slow-loris and header-bomb clients: a request must arrive whole within the deadline, headers
        # are capped (uvicorn has neither; vIOP/http_protocol.py).
        http=guarded_protocol(request_deadline, MAX_HEADER_BYTES),
        ws="websockets-sansio",
        ws_per_message_deflate=False,  # measured: deflate on cost p99 250 ms vs 15 ms off
        # Above the protocol's 64 KiB cap, so the codec answers an oversized frame with an `error` before
        # closing 1009; uvicorn's own limit only stops frames too big to be worth reading at all.
        ws_max_size=2 * settings.ws_max_message_bytes,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_keep_alive=5,  # idle time between requests on a kept-alive connection
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        # Behind a reverse proxy the peer is the proxy: only listed proxies' X-Forwarded-For is believed
        # (login throttling and audit rows are per client address; docs/SCALING.md "Deployment").
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        server_header=False,
    )


GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Measured with bench/signaling_load.py (1,000 sockets): the collector's pauses were the p99. A full
    collection walked ~300,000 objects (up to 230 ms); young ones ran 25 times a second. Objects loaded at
    start live as long as the process, so they leave the collector; the rest is collected less often (what
    dies young is freed by reference counting anyway). Costs some memory held by cycles for longer."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve(
    settings: Settings, sock: socket.socket, on_started: Callable[[], None] | None = None
) -> None:
    # Until the server is up, SIGUSR1 (log the media state) has nothing to log; its default would kill us.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    services = await _preflight(settings)
    app = create_app(settings, services=services)
    config = uvicorn_config(app, settings)
    tune_gc()
    server = VIOPServer(config, services, on_started)
    node_id = services.node.node_id if services.node is not None else None
    try:
        log.info(
            "serving",
            extra={"host": settings.host, "port": settings.port, "pid": os.getpid(), "node_id": node_id},
        )
        await server.serve(sockets=[sock])
    finally:
        await close_services(services)
        log.info("stopped")


def serve(settings: Settings) -> int:
    try:
        sock = bind_socket(settings.host, settings.port)
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(settings, sock))
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return 0


def serve_worker(settings: Settings, sock: socket.socket, supervisor_pid: int, ready: Connection) -> None:
    """One worker of ``serve --workers N``, in a process spawned by :mod:`vIOP.supervisor`: a whole node
    (its own node id, Redis pool and relay) serving the supervisor's listening socket, shared with the
    other workers. ``settings`` name the supervisor's Redis and database; it sends ``True`` on ``ready``
    once it serves. Exit status 0 after a stop, 1 after a start-up failure (one line on stderr)."""
    # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which forwards it once.
    os.setpgid(0, 0)
    die_with_parent()  # a SIGKILLed supervisor must not leave workers holding the port
    if os.getppid() != supervisor_pid:  # it died before the line above took effect
        sys.exit(1)
    configure_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings, sock, on_started=lambda: ready.send(True)))
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        sys.exit(1)
    finally:
        sock.close()
