"""``python -m vIOP serve --workers N``: N node processes on one public port, supervised.

On Linux each worker accepts on its own SO_REUSEPORT socket of the port, bound by the supervisor when it
starts the worker and listening from the moment the worker serves, and the kernel spreads new connections
evenly over the serving workers' sockets (a dead worker's socket closes with it, so nothing waits for it). Elsewhere the workers share one socket the
supervisor bound, as uvicorn's ``--workers`` does; measured here, an idle set of workers sharing one socket
let one of them accept every connection (docs/SCALING.md, "Several workers on one machine"). Before any
worker starts, the supervisor starts the embedded default once (the managed
redis-server, the SQLite migrations and the development key file), so the workers share them and never race
to create them. Each worker is a whole node (vIOP/server.py ``serve_worker``): its own node id, heartbeat,
room leases and media-signal inbox, so any worker serves any socket (docs/SCALING.md, "Signaling on any
node"); its media uses ephemeral UDP ports on the same host addresses, so workers never collide.

A worker that dies is restarted after a bounded backoff (a crash-looping worker does not spin); meanwhile
it counts as a lost node (its heartbeat lapses; the other nodes take over its rooms' leases). SIGTERM or
SIGINT is forwarded to every worker (each drains as a single ``serve`` does); the supervisor then stops the
managed redis-server and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from vIOP.errors import StartupError, VIOPError
from vIOP.server import bind_socket, check_data_dir, serve_worker
from vIOP.settings import Settings, worker_node_id
from vIOP.storage.bootstrap import open_storage
from vIOP.storage.embedded_redis import EmbeddedRedis

log = logging.getLogger("vIOP.supervisor")

# Workers are started fresh (spawn), never forked: a fork would copy the supervisor's state mid-flight.
_SPAWN = multiprocessing.get_context("spawn")
# After the drain a worker still closes its services; past this much more it is killed.
_STOP_MARGIN_SECONDS = 15.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT)
_PASSED_ON = (signal.SIGUSR1,)  # to every worker, without stopping anything: each logs its media state


class Listener:
    """Where the workers accept connections: a fresh SO_REUSEPORT socket per worker start when the kernel
    balances such a group (Linux), else one socket every worker shares."""

    def __init__(self, host: str, port: int, *, balanced: bool = sys.platform == "linux") -> None:
        self.host, self.port = host, port
        # Bound now either way: a port already in use (by anyone, another vIOP included) stops us here.
        first = bind_socket(host, port)
        if balanced:
            first.close()
        self.shared: socket.socket | None = None if balanced else first

    def for_worker(self) -> socket.socket:
        if self.shared is not None:
            return self.shared
        # Bound, not listening: the kernel hashes no connection to it until its worker serves (uvicorn's
        # start calls listen), so nobody waits on a worker that is still starting.
        return bind_socket(self.host, self.port, reuse_port=True, listen=False)

    def started(self, sock: socket.socket) -> None:
        """The worker holds its own copy now: ours would keep a dead worker's socket (and the connections
        the kernel keeps hashing to it) open."""
        if sock is not self.shared:
            sock.close()

    def close(self) -> None:
        if self.shared is not None:
            self.shared.close()


@dataclass
class RestartBackoff:
    """How long to wait before restarting a worker that died. Each death of a worker that ran less than
    ``stable_after`` seconds doubles the wait, from ``first`` up to ``longest``; a worker that ran longer
    was healthy, so its death starts again from ``first``. Pure: times are given."""

    first: float = 0.5
    longest: float = 30.0
    stable_after: float = 60.0
    _next: float = field(default=-1.0, init=False)

    def after_exit(self, ran_for: float) -> float:
        if self._next < 0 or ran_for >= self.stable_after:
            self._next = self.first
        delay = self._next
        self._next = min(self.longest, self._next * 2)
        return delay


@dataclass
class _Worker:
    number: int  # 1-based, stable across restarts (a restarted worker is a new node, with a new id)
    settings: Settings
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    process: BaseProcess | None = None
    ready: Connection | None = None  # the read end: True once it serves, EOF when it is gone
    started_at: float = 0.0
    serving: bool = False
    restart_at: float | None = None


def worker_settings(settings: Settings, number: int, redis_url: str | None) -> Settings:
    """What a worker runs with: the supervisor's Redis and the database it migrated (so a worker neither
    starts its own redis-server nor migrates), and its own node id when ``VIOP_NODE_ID`` is set."""
    return dataclasses.replace(
        settings,
        redis_url=redis_url if redis_url is not None else settings.redis_url,
        database_url=settings.effective_database_url,
        node_id=worker_node_id(settings.node_id, number) if settings.node_id else None,
        workers=1,
    )


async def _prepare_storage(settings: Settings) -> None:
    """Migrate the embedded SQLite and create the development key file once, before any worker starts."""
    try:
        storage = await open_storage(settings, checkpoint_path=settings.audit_checkpoint_file)
    except VIOPError:
        raise
    except Exception as exc:
        raise StartupError(
            f"the database is unreachable or unusable ({type(exc).__name__}): check VIOP_DATABASE_URL"
        ) from None
    await storage.close()


class Supervisor:
    def __init__(
        self, settings: Settings, listener: Listener, redis_url: str | None, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.listener = listener
        self.clock = clock
        self.workers = [
            _Worker(n, worker_settings(settings, n, redis_url)) for n in range(1, settings.workers + 1)
        ]
        self.stopping = False
        self._signals_in, self._signals_out = socket.socketpair()

    # --- signals: handlers only wake the loop (set_wakeup_fd writes the signal number) ----------------

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        for end in (self._signals_in, self._signals_out):
            end.setblocking(False)
        previous = {sig: signal.signal(sig, lambda _sig, _frame: None) for sig in (*_FORWARDED, *_PASSED_ON)}
        old_fd = signal.set_wakeup_fd(self._signals_out.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._signals_in.close()
            self._signals_out.close()

    def _take_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for number in self._signals_in.recv(64):
                if number in _FORWARDED:
                    self._on_signal(signal.Signals(number))
                elif number in _PASSED_ON:
                    self._pass_on(signal.Signals(number))

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self.stopping:
            log.info("stopping workers", extra={"reason": sig.name})
        self.stopping = True
        self._pass_on(sig)  # a second SIGINT reaches them too: uvicorn then stops at once

    def _pass_on(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.exitcode is None and worker.process.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, sig)

    # --- workers ------------------------------------------------------------------------------------

    def _start(self, worker: _Worker) -> None:
        reader, writer = _SPAWN.Pipe(duplex=False)
        sock = self.listener.for_worker()
        process = _SPAWN.Process(
            target=serve_worker,
            args=(worker.settings, sock, os.getpid(), writer),
            name=f"vIOP worker {worker.number}",
        )
        try:
            process.start()
        finally:
            writer.close()  # the worker holds the only write end: its death reads as EOF
            self.listener.started(sock)
        worker.process, worker.ready = process, reader
        worker.started_at, worker.serving, worker.restart_at = self.clock(), False, None
        log.info("worker started", extra={"worker": worker.number, "pid": process.pid})

    def _wait(self, timeout: float | None) -> list[Any]:
        watched: list[Any] = [self._signals_in]
        for worker in self.workers:
            if worker.process is not None:
                watched.append(worker.process.sentinel)
            if worker.ready is not None:
                watched.append(worker.ready)
        return wait(watched, timeout)

    def _collect(self, woke: list[Any]) -> None:
        """Read what woke the loop: signals, workers now serving, workers that exited."""
        if self._signals_in in woke:
            self._take_signals()
        for worker in self.workers:
            if worker.ready is not None and worker.ready in woke:
                try:
                    worker.serving = bool(worker.ready.recv())
                    pid = worker.process.pid if worker.process is not None else None
                    log.info("worker serving", extra={"worker": worker.number, "pid": pid})
                except (EOFError, OSError):
                    pass  # it is gone: its sentinel says so
                worker.ready.close()
                worker.ready = None
            process = worker.process
            if process is not None and process.sentinel in woke:
                process.join()
                worker.process = None
                if worker.ready is not None:
                    worker.ready.close()
                    worker.ready = None
                self._exited(worker, process)

    def _exited(self, worker: _Worker, process: BaseProcess) -> None:
        if self.stopping:
            return
        delay = worker.backoff.after_exit(self.clock() - worker.started_at)
        worker.restart_at = self.clock() + delay
        log.warning(
            "worker died: restarting it (its rooms go to the other nodes meanwhile)",
            extra={"worker": worker.number, "pid": process.pid, "exit_code": process.exitcode,
                   "restart_seconds": delay},
        )  # fmt: skip

    # --- the run ------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers (the first one alone: if it cannot start, neither could the others, and its
        one line is the whole story), keep them running, and stop them on SIGTERM/SIGINT."""
        with self._signals():
            first = self.workers[0]
            self._start(first)
            while not first.serving and not self.stopping:
                self._collect(self._wait(None))
                if first.process is None and not first.serving:
                    self.stopping = True  # it failed to start and said why on stderr
                    return 1
            if not self.stopping:
                for worker in self.workers[1:]:
                    self._start(worker)
                log.info("supervising", extra={"count": len(self.workers), "port": self.settings.port})
            while not self.stopping:
                due = [w.restart_at for w in self.workers if w.restart_at is not None]
                timeout = max(0.0, min(due) - self.clock()) if due else None
                self._collect(self._wait(timeout))
                now = self.clock()
                for worker in self.workers:
                    if not self.stopping and worker.restart_at is not None and worker.restart_at <= now:
                        self._restart(worker)
            self._stop_all()
        return 0

    def _restart(self, worker: _Worker) -> None:
        try:
            self._start(worker)
        except VIOPError as exc:  # e.g. its socket could not be bound: the others serve meanwhile
            delay = worker.backoff.after_exit(0.0)
            worker.restart_at = self.clock() + delay
            log.warning(
                "worker could not be restarted: trying again",
                extra={"worker": worker.number, "reason": exc.message, "restart_seconds": delay},
            )

    def _stop_all(self) -> None:
        """Wait for the workers to drain and exit (they got the signal); kill what outlives the bound."""
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds + _STOP_MARGIN_SECONDS
        while any(w.process is not None for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._collect(self._wait(left))
        for worker in self.workers:
            if worker.process is not None:
                log.warning("worker did not stop in time: killed", extra={"worker": worker.number})
                worker.process.kill()
                worker.process.join()
                worker.process = None
        log.info("workers stopped")


def serve_workers(settings: Settings, *, balanced: bool = sys.platform == "linux") -> int:
    """``serve`` with ``settings.workers`` > 1: prepare the shared parts once, then supervise.
    ``balanced``: a SO_REUSEPORT socket per worker (else one shared socket; bench/accept_spread.py)."""
    try:
        check_data_dir(settings.data_dir)
        listener = Listener(settings.host, settings.port, balanced=balanced)
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        return 1
    embedded = EmbeddedRedis(settings.data_dir / "redis") if settings.embedded_redis else None
    try:
        if embedded is not None:
            embedded.start()  # from the main thread: it dies with the supervisor, even a SIGKILLed one
        asyncio.run(_prepare_storage(settings))
        supervisor = Supervisor(settings, listener, embedded.url if embedded else None, time.monotonic)
        return supervisor.run()
    except VIOPError as exc:
        print(f"vIOP: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if embedded is not None:
            embedded.stop()
        listener.close()
