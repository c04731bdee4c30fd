"""Fault injection against real processes, with real signals: each scenario returns its figures and the
invariants it checked. ``tests/faults/`` runs them small in CI; this script runs them at full size.

    .venv/bin/python bench/faults.py redis --rooms 25 --seated 8 --waiting 4          # 300 clients
    .venv/bin/python bench/faults.py redis --empty --rooms 25 --seated 8 --waiting 4  # Redis back empty
    .venv/bin/python bench/faults.py app --rooms 25 --seated 8 --waiting 4

Scenarios:

- ``redis``: redis-server (external, AOF on; ``--empty``: no persistence, back with nothing) is SIGKILLed
  mid-session, left down ``--outage`` seconds, and started again on the same socket. Checked: the lobby
  (order included), every admission and every attendance interval are as before; presence is back (the
  snapshot equals the one before) within 5 s; every socket's heartbeat answers again (its "reconnect
  time", p50/p99 from the restart); a waiting client can still be admitted.
- ``failover``: the server reaches Redis through three sentinels (master + replica); the master is
  SIGKILLed (``--lose-writes``: the replica is flushed at that moment, so the promoted master has nothing).
  Checked: the promotion time; a host's lobby message reaches a waiting client again and presence equals
  the snapshot before, both timed from the kill; lobby, admissions and attendance as before.
- ``app``: the ``vIOP serve`` process is SIGKILLed and started again (same data folder, same external
  Redis). Checked: every client reconnects with its resume token and gets the same participant back
  (reconnect time p50/p99 from the kill and from the restart); presence and lobby as before; no attendance
  interval closed, split or doubled.

Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.fault_world import CLINICIAN, Shape, accounts, open_world, spread
from bench.harness import (
    PASSWORD,
    PostgresProcess,
    RedisProcess,
    SentinelGroup,
    ServerProcess,
    raise_fd_limit,
    wait_until,
)
from vIOP.errors import VIOPError
from vIOP.signaling import messages as m

PRESENCE_BACK_LIMIT_S = 5.0
# Short heartbeats so a scenario sees every periodic write (presence, resume token, sign-in) within seconds.
LIVENESS = {"heartbeat_seconds": "2", "presence_expiry_seconds": "6"}
SETTLE_S = 5.0  # after recovery: long enough for every socket's next periodic write to hit the new Redis
KEEP_LOGS = os.environ.get("VIOP_FAULT_LOGS")  # a folder: each scenario's server log is copied there


def _lost(before: list[tuple[str, str, str | None]], after: list[tuple[str, str, str | None]]) -> list[Any]:
    return [row for row in before if row not in after]


async def redis_restart(tmp: Path, shape: Shape, *, persistent: bool, outage: float = 1.0) -> dict[str, Any]:
    redis = RedisProcess(tmp / "redis", persistent=persistent)
    redis.start()
    server = ServerProcess(tmp / "var", redis_url=redis.url, settings=LIVENESS)
    try:
        server.create_accounts(accounts(shape))
        server.start()
        world = await open_world(server, shape)
        try:
            presence0, intervals0 = await world.presence(), await world.intervals()
            redis.kill()
            await asyncio.sleep(outage)
            redis.start()
            back = time.monotonic()
            presence_back = await world.wait_presence(presence0, timeout=30)
            recovered = await _beats_after(world, back, timeout=30)
            await asyncio.sleep(SETTLE_S)
            intervals1, presence1 = await world.intervals(), await world.presence()
            admitted_after = await _admit_one_waiting(world)
            dropped = [p for p in world.people if p.reconnects or p.terminal]
            return {
                "scenario": f"redis SIGKILL, {outage:g} s down, back {'with AOF' if persistent else 'EMPTY'}",
                "clients": shape.clients,
                "rooms": shape.rooms,
                "sockets": len(world.people),
                "presence_back_s": None if presence_back is None else round(presence_back, 2),
                "presence_before": presence0,
                "presence_after": presence1,
                "intervals_before": len(intervals0),
                "intervals_lost": _lost(intervals0, intervals1),
                "intervals_added": _lost(intervals1, intervals0),
                "heartbeat_back": spread(recovered),
                "heartbeat_not_back": len(world.people) - len(recovered),
                "sockets_dropped": len(dropped),
                "closed_for_good": sorted({str(p.terminal.close_code) for p in dropped if p.terminal}),
                "waiting_client_admitted_after": admitted_after,
                "server_log_errors": _errors(server),
            }
        finally:
            await world.stop()
    finally:
        server.stop()
        _keep_log(server, f"redis-{'aof' if persistent else 'empty'}.log")
        redis.stop()


async def redis_failover(tmp: Path, shape: Shape, *, lose_writes: bool = False) -> dict[str, Any]:
    """The server reaches Redis through three sentinels (master + one replica); the master is SIGKILLed.
    ``lose_writes``: the replica's data is flushed the moment the master dies, so the promoted master has
    lost everything (the worst case of asynchronous replication: rooms come back only from live sockets)."""
    group = SentinelGroup(tmp / "sentinel")
    server = ServerProcess(tmp / "var", settings={**LIVENESS, **group.settings()})
    try:
        group.start()
        server.create_accounts(accounts(shape))
        server.start()
        world = await open_world(server, shape)
        stream = await _PresenceStream.open(world)
        try:
            presence0, intervals0 = await world.presence(), await world.intervals()
            old_master, new_master = group.data_ports
            killed = time.monotonic()
            group.kill(old_master)
            if lose_writes:
                group.command(new_master, "FLUSHALL")
            # All three clocks run from the kill: the sentinels' promotion, a signaling round trip, and
            # the presence snapshot (read by an operator over HTTP) equal to the one before.
            probe = asyncio.create_task(_lobby_probe(world, killed, timeout=60))
            presence = asyncio.create_task(world.wait_presence(presence0, timeout=60))
            promoted = await asyncio.to_thread(
                lambda: wait_until(lambda: group.master_port() == new_master, timeout=60, interval=0.02)
            )
            failover_s = time.monotonic() - killed
            presence_back = await presence
            signaling_back = await probe
            await asyncio.sleep(SETTLE_S)
            intervals1, presence1 = await world.intervals(), await world.presence()
            admitted_after = await _admit_one_waiting(world)
            stream_admitted = await stream.event_after("admitted", killed + failover_s, timeout=10)
            dropped = [p for p in world.people if p.reconnects or p.terminal]
            return {
                "scenario": "redis master SIGKILLed, sentinel failover to its replica"
                + (", replica flushed (all writes lost)" if lose_writes else ""),
                "clients": shape.clients,
                "rooms": shape.rooms,
                "sockets": len(world.people),
                "promoted": promoted,
                "failover_s": round(failover_s, 2) if promoted else None,
                "signaling_back_s": None if signaling_back is None else round(signaling_back, 2),
                "presence_back_s": None if presence_back is None else round(presence_back, 2),
                "presence_stream_snapshot_s": stream.snapshot_after(killed),
                "presence_stream_open": stream.closed is None,
                "presence_stream_admitted_after": stream_admitted,
                "presence_before": presence0,
                "presence_after": presence1,
                "intervals_before": len(intervals0),
                "intervals_lost": _lost(intervals0, intervals1),
                "intervals_added": _lost(intervals1, intervals0),
                "sockets_dropped": len(dropped),
                "closed_for_good": sorted({str(p.terminal.close_code) for p in dropped if p.terminal}),
                "waiting_client_admitted_after": admitted_after,
                "server_log_errors": _errors(server),
            }
        finally:
            await stream.close()
            await world.stop()
    finally:
        server.stop()
        _keep_log(server, f"redis-failover{'-lost' if lose_writes else ''}.log")
        group.stop()


class _PresenceStream:
    """An operator's live presence stream (``/ws/presence``, every room) and what it received, timed."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.frames: list[tuple[float, dict[str, Any]]] = []
        self.closed: str | None = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, world: Any) -> _PresenceStream:
        response = await world.api.http.post(
            "/api/v1/signal-tickets",
            json={"purpose": "presence"},
            headers={"Authorization": f"Bearer {world.bearer}"},
        )
        response.raise_for_status()
        socket = await connect(
            response.json()["ws_url"], origin=world.server.origin, compression=None, proxy=None
        )
        return cls(socket)

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                self.frames.append((time.monotonic(), json.loads(raw)))
        except ConnectionClosed:
            pass
        self.closed = f"closed {self.socket.close_code}"

    def snapshot_after(self, t: float) -> float | None:
        """Seconds from ``t`` to the first full snapshot sent after it (the stream's answer to a gap)."""
        return next(
            (round(at - t, 2) for at, f in self.frames if at >= t and f["type"] == "presence_snapshot"), None
        )

    async def event_after(self, event: str, t: float, timeout: float) -> bool:
        """Whether a ``presence_event`` of that kind arrives after ``t`` (waiting up to ``timeout``)."""
        return await _wait(
            lambda: any(
                at >= t and f["type"] == "presence_event" and f["event"] == event for at, f in self.frames
            ),
            timeout,
        )

    async def close(self) -> None:
        await self.socket.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


async def _lobby_probe(world: Any, since: float, timeout: float) -> float | None:
    """Seconds from ``since`` until a host's lobby message reaches a waiting client: a signaling round trip
    through Redis (the room's transaction, the event stream, delivery). One is sent every 0.25 s; the first
    to arrive counts (the host's socket queues its messages while Redis is away)."""
    room = next(r for r in world.rooms if r.waiting)
    person = room.waiting[0]
    deadline = time.monotonic() + timeout
    for attempt in itertools.count():
        arrived = [
            at
            for at, w in person.client.received_since(m.Waiting, since)
            if (w.message or "").startswith("probe ")
        ]
        if arrived:
            return arrived[0] - since
        if time.monotonic() > deadline:
            return None
        with contextlib.suppress(VIOPError):
            await room.host.client.send(
                m.LobbyMessage(participant_id=person.participant_id, message=f"probe {attempt}")
            )
        await asyncio.sleep(0.25)
    return None


async def app_restart(tmp: Path, shape: Shape, *, outage: float = 0.5) -> dict[str, Any]:
    redis = RedisProcess(tmp / "redis", persistent=True)
    redis.start()
    server = ServerProcess(tmp / "var", redis_url=redis.url, settings=LIVENESS)
    try:
        server.create_accounts(accounts(shape))
        server.start()
        world = await open_world(server, shape)
        try:
            presence0, intervals0 = await world.presence(), await world.intervals()
            killed = time.monotonic()
            server.kill()
            await asyncio.sleep(outage)
            server.start()
            up = time.monotonic()
            back = await _all_reconnected(world, killed, timeout=60)
            presence_back = await world.wait_presence(presence0, timeout=30)
            await asyncio.sleep(SETTLE_S)
            intervals1, presence1 = await world.intervals(), await world.presence()
            reconnects = [r for p in world.people for r in p.reconnects if r.lost_at >= killed]
            return {
                "scenario": f"app SIGKILL, restarted after {outage:g} s (same data folder, same Redis)",
                "clients": shape.clients,
                "rooms": shape.rooms,
                "sockets": len(world.people),
                "restart_s": round(up - killed, 2),
                "reconnected": back,
                "resumed_same_participant": sum(1 for r in reconnects if r.resumed and r.same_participant),
                "reconnect_from_kill": spread([r.welcomed_at - r.lost_at for r in reconnects]),
                "reconnect_from_restart": spread([max(0.0, r.welcomed_at - up) for r in reconnects]),
                "not_reconnected": sorted(
                    f"{p.name}: {p.failure or p.terminal}" for p in world.people if not p.connected
                ),
                "presence_back_s": None if presence_back is None else round(presence_back, 2),
                "presence_before": presence0,
                "presence_after": presence1,
                "intervals_before": len(intervals0),
                "intervals_lost": _lost(intervals0, intervals1),
                "intervals_added": _lost(intervals1, intervals0),
                "waiting_client_admitted_after": await _admit_one_waiting(world),
                "server_log_errors": _errors(server),
            }
        finally:
            await world.stop()
    finally:
        server.stop()
        _keep_log(server, "app-kill.log")
        redis.stop()


async def network_cut(tmp: Path, *, grace: float = 10.0) -> dict[str, Any]:
    """Three ways a client's network goes: its socket is aborted (RST, no close frame) and it comes back;
    it is aborted and the person never comes back; its process is frozen (SIGSTOP: not a single packet, the
    server only notices the silence) and thawed within the grace window."""
    server = ServerProcess(tmp / "var", settings={**LIVENESS, "reconnect_grace_seconds": str(int(grace))})
    frozen: subprocess.Popen[str] | None = None
    try:
        cut_shape = Shape(rooms=1, seated=3, waiting=0, media=True)
        server.create_accounts(accounts(cut_shape))
        server.start()
        world = await open_world(server, cut_shape)
        try:
            room = world.rooms[0]
            host, returner, leaver = room.host, room.seated[0], room.seated[1]
            leaver.reconnect = False
            saw = _Watch(host)
            cut_wall, cut = time.time(), time.monotonic()
            await asyncio.gather(returner.client.drop(), leaver.client.drop())
            returner_back = await _wait(lambda: bool(returner.reconnects), 15)
            leaver_left = await saw.left(leaver, "timeout", within=grace + 10)
            left_after = time.monotonic() - cut
            # The partition: a participant in its own process, frozen longer than the silence limit.
            invite = await world.api.create_invite(
                world.host_bearer(room.room_id), room.room_id, "Frozen client"
            )
            frozen, frozen_pid = await _start_frozen(server, room.room_id, invite)
            await host.client.send(m.Admit(participant_id=frozen_pid))
            freeze_s = float(LIVENESS["presence_expiry_seconds"]) + 1.5
            frozen.send_signal(signal.SIGSTOP)
            await asyncio.sleep(freeze_s)
            frozen_marked = saw.reconnecting_seen(frozen_pid)
            frozen.send_signal(signal.SIGCONT)
            frozen_back = await asyncio.to_thread(_read_json_line, frozen, 15)
            await asyncio.sleep(SETTLE_S)
            intervals = {
                pid: [(j, left) for p_, j, left in await world.intervals() if p_ == pid]
                for pid in (returner.participant_id, leaver.participant_id)
            }
            leaver_intervals = intervals[leaver.participant_id]
            left_at = leaver_intervals[0][1] if len(leaver_intervals) == 1 else None
            presence = await world.presence()
            return {
                "scenario": f"client network cut (grace {grace:g} s)",
                "returner_resumed_same_participant": bool(returner.reconnects)
                and returner.reconnects[-1].resumed
                and returner.reconnects[-1].same_participant,
                "returner_reconnect_ms": round((returner.reconnects[-1].welcomed_at - cut) * 1000, 1)
                if returner_back
                else None,
                # A client back within milliseconds may resume before its old socket's drop is even
                # processed; then nobody needs to hear it was reconnecting.
                "others_saw_returner_reconnecting": saw.reconnecting_seen(returner.participant_id),
                "others_saw_leaver_reconnecting": saw.reconnecting_seen(leaver.participant_id),
                "leaver_left_with_timeout": leaver_left,
                "leaver_left_after_s": round(left_after, 2),
                "returner_intervals": len(intervals[returner.participant_id]),
                "returner_interval_open": all(left is None for _, left in intervals[returner.participant_id]),
                "leaver_intervals": len(leaver_intervals),
                "leaver_left_at_minus_cut_s": None
                if left_at is None
                else round(_epoch(left_at) - cut_wall, 1),
                "frozen_marked_reconnecting": frozen_marked,
                "frozen_welcome_after_thaw": frozen_back,
                "frozen_resumed_same_participant": frozen_back is not None
                and frozen_back.get("resumed") is True
                and frozen_back.get("participant_id") == frozen_pid,
                "nobody_reconnecting_after": all(not r["reconnecting"] for r in presence.values()),
                "server_log_errors": _errors(server),
            }
        finally:
            await world.stop()
    finally:
        if frozen is not None:
            with contextlib.suppress(Exception):
                frozen.send_signal(signal.SIGCONT)
                frozen.kill()
                frozen.wait(5)
        server.stop()
        _keep_log(server, "network-cut.log")


async def db_outage(tmp: Path, *, backend: str, outage: float = 10.0) -> dict[str, Any]:
    """The database goes away for ``outage`` seconds mid-session: PostgreSQL stopped like a crash
    (``pg_ctl -m immediate``), or the SQLite file held under an exclusive lock by another process (what a
    careless backup or maintenance job does). Room changes keep working (they live in Redis); what they must
    write (attendance, audit) is written once the database is back; HTTP writes succeed late or are refused
    with 503, never a 500, and nothing is silently lost."""
    pg = PostgresProcess() if backend == "postgres" else None
    server = ServerProcess(tmp / "var", database_url=pg.url if pg else None, settings=LIVENESS)
    locker: subprocess.Popen[str] | None = None
    try:
        if pg is not None:
            pg.start()
            server.cli("db", "upgrade")
        db_shape = Shape(rooms=1, seated=2, waiting=3, media=True)
        server.create_accounts(accounts(db_shape))
        server.start()
        world = await open_world(server, db_shape)
        try:
            room = world.rooms[0]
            host, newcomer, leaver, told = room.host, room.waiting[0], room.seated[0], room.waiting[1]
            begun = time.monotonic()
            if pg is not None:
                await asyncio.to_thread(pg.stop, "immediate")
            else:
                locker = await asyncio.to_thread(_lock_sqlite, server.data_dir / "viop.db")
            down_wall = time.time()
            assert newcomer.participant_id is not None and told.participant_id is not None
            await host.client.send(m.Admit(participant_id=newcomer.participant_id))
            admitted = await _within(newcomer.enter_room(), 15)
            await leaver.client.send(m.Leave())
            left = await _within(leaver.client.wait_closed(15), 16)
            await host.client.send(
                m.LobbyMessage(participant_id=told.participant_id, message="Starting soon")
            )
            told_ok = await _within(
                told.client.wait_message(m.Waiting, where=lambda w: w.message is not None), 10
            )
            probes = await _http_probes(world, room.room_id)
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - begun)))
            if pg is not None:
                await asyncio.to_thread(pg.start)
            elif locker is not None:
                _unlock_sqlite(locker)
            up = time.monotonic()
            # The ledger entries held back are written by the next change or sweep (every second here).
            want_open = newcomer.participant_id
            want_closed = leaver.participant_id
            written_after: float | None = None
            intervals: list[tuple[str, str, str | None]] = []
            while time.monotonic() - up < 20:
                try:
                    intervals = await world.intervals()
                except httpx.HTTPError:
                    intervals = []
                if any(p == want_open and left_at is None for p, _, left_at in intervals) and any(
                    p == want_closed and left_at is not None for p, _, left_at in intervals
                ):
                    written_after = time.monotonic() - up
                    break
                await asyncio.sleep(0.2)
            # Audit rows held back by the outage are written by the outbox's next flush (kicked by the
            # sweeper's rounds): wait for the admit's row a bounded while rather than read once.
            wanted = ("room.admit", newcomer.participant_id)
            audit = await _audit_actions(server, pg)
            while wanted not in audit and time.monotonic() - up < 30:
                await asyncio.sleep(0.2)
                audit = await _audit_actions(server, pg)
            after = await _http_probes(world, room.room_id)
            opened = [r for r in intervals if r[0] == want_open]
            closed = [r for r in intervals if r[0] == want_closed]
            return {
                "scenario": f"{backend} unavailable for {outage:g} s",
                "admitted_during_outage": admitted,
                "left_during_outage": left,
                "lobby_message_during_outage": told_ok,
                "http_during_outage": probes,
                "http_after": after,
                "ledger_written_s_after_recovery": None if written_after is None else round(written_after, 2),
                "interval_opened_during_outage": len(opened) == 1 and _epoch(opened[0][1]) >= down_wall - 1,
                "interval_closed_during_outage": len(closed) == 1
                and closed[0][2] is not None
                and _epoch(closed[0][2]) < down_wall + outage,
                "audit_admit_recorded": wanted in audit,
                "server_log_errors": _errors(server),
            }
        finally:
            await world.stop()
    finally:
        if locker is not None:
            _unlock_sqlite(locker)
        server.stop()
        _keep_log(server, f"db-{backend}.log")
        if pg is not None:
            pg.remove()


async def _within(job: Any, seconds: float) -> bool:
    try:
        await asyncio.wait_for(job, seconds)
    except (TimeoutError, VIOPError):
        return False
    return True


async def _http_probes(world: Any, room_id: str) -> dict[str, Any]:
    """One write, one read and a sign-in over HTTP: status and seconds each (None: no answer)."""
    api = world.api
    auth = {"Authorization": f"Bearer {world.bearer}"}
    host = {"Authorization": f"Bearer {world.host_bearer(room_id)}"}
    calls = {
        "create_invite": lambda: api.http.post(
            f"/api/v1/rooms/{room_id}/invites", json={"display_name": "Late"}, headers=host
        ),
        "list_rooms": lambda: api.http.get("/api/v1/rooms", headers=auth),
        "login": lambda: api.http.post(
            "/api/v1/auth/login", json={"username": CLINICIAN, "password": PASSWORD}
        ),
    }
    out: dict[str, Any] = {}
    for name, call in calls.items():
        started = time.monotonic()
        try:
            response = await call()
            retry = response.headers.get("retry-after")
            out[name] = {"status": response.status_code, "s": round(time.monotonic() - started, 2)}
            if retry:
                out[name]["retry_after"] = retry
        except httpx.HTTPError as exc:
            out[name] = {"status": None, "error": type(exc).__name__}
    return out


def _lock_sqlite(path: Path) -> subprocess.Popen[str]:
    """Another process takes the database's write lock and keeps it until told to let go."""
    code = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n"
        # SQLite answers "database is locked" at once, without the busy timeout, in some states (e.g. the
        # server's WAL checkpoint in progress): try again for as long as the timeout would have waited.
        "deadline = time.monotonic() + 30\n"
        "while True:\n"
        "    try:\n"
        "        c.execute('BEGIN EXCLUSIVE')\n"
        "        break\n"
        "    except sqlite3.OperationalError:\n"
        "        if time.monotonic() > deadline: raise\n"
        "        time.sleep(0.05)\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.execute('COMMIT')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "locked":
        raise RuntimeError("could not lock the SQLite database")
    return process


def _unlock_sqlite(process: subprocess.Popen[str]) -> None:
    if process.poll() is None and process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.write("\n")
            process.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    if process.poll() is None:
        process.kill()


async def _audit_actions(server: ServerProcess, pg: PostgresProcess | None) -> set[tuple[str, str]]:
    """(action, object id) of every audit row, read straight from the database."""
    url = pg.url if pg is not None else f"sqlite+aiosqlite:///{server.data_dir / 'viop.db'}"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT action, object_id FROM audit_log"))
            return {(str(a), str(o)) for a, o in rows}
    finally:
        await engine.dispose()


class _Watch:
    """What one participant (the host) saw of the others."""

    def __init__(self, person: Any) -> None:
        self.client = person.client

    def reconnecting_seen(self, pid: str | None) -> bool:
        return any(isinstance(x, m.Reconnecting) and x.participant_id == pid for x in self.client.messages)

    async def left(self, person: Any, reason: str, within: float) -> bool:
        try:
            await self.client.wait_message(
                m.ParticipantLeft,
                within=within,
                where=lambda x: x.participant_id == person.participant_id and x.reason.value == reason,
            )
        except TimeoutError:
            return False
        return True


async def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def _start_frozen(server: ServerProcess, room_id: str, invite: str) -> tuple[Any, str]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("participant_proc.py")), server.base_url, room_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert process.stdin is not None
    process.stdin.write(invite + "\n")
    process.stdin.flush()
    first = await asyncio.to_thread(_read_json_line, process, 30)
    if first is None:
        raise RuntimeError("the participant process did not join")
    return process, str(first["participant_id"])


def _read_json_line(process: Any, timeout: float) -> dict[str, Any] | None:
    stdout = process.stdout
    readable, _, _ = select.select([stdout], [], [], timeout)
    if not readable:
        return None
    line = stdout.readline()
    return json.loads(line) if line.strip() else None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _all_reconnected(world: Any, since: float, timeout: float) -> int:
    """How many participants got a new welcome after ``since`` (waits until all did, or the timeout)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        back = [p for p in world.people if any(r.lost_at >= since for r in p.reconnects)]
        count = len(back)
        if all(p in back or p.given_up for p in world.people):
            break
        await asyncio.sleep(0.1)
    return count


async def _beats_after(world: Any, t: float, timeout: float) -> list[float]:
    """Seconds from ``t`` to each participant's first answered heartbeat (those that got one in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.first_ok_beat_after(t) is not None for p in world.people):
            break
        await asyncio.sleep(0.1)
    return [b - t for p in world.people if (b := p.first_ok_beat_after(t)) is not None]


async def _admit_one_waiting(world: Any) -> bool:
    room = next((r for r in world.rooms if r.waiting), None)
    if room is None:
        return True
    person = room.waiting[0]
    try:
        await room.host.client.send(m.Admit(participant_id=person.participant_id))
        await person.client.wait_message(m.Admitted, within=10)
    except (TimeoutError, VIOPError):
        return False
    return True


def _keep_log(server: ServerProcess, name: str) -> None:
    if KEEP_LOGS:
        Path(KEEP_LOGS).mkdir(parents=True, exist_ok=True)
        (Path(KEEP_LOGS) / name).write_text(server.log_tail(10_000_000))


def _errors(server: ServerProcess) -> list[str]:
    """Error-level log lines of the server, reduced to their message (no field values)."""
    lines = []
    for line in server.log_tail(2_000_000).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("error", "critical"):
            lines.append(f"{record.get('msg')} ({record.get('exc', '')[:80]})")
    return sorted(set(lines))


SCENARIOS = {"redis", "failover", "app", "cut", "sqlite", "postgres"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--rooms", type=int, default=25)
    parser.add_argument("--seated", type=int, default=8, help="clients admitted into each room")
    parser.add_argument("--waiting", type=int, default=4, help="clients left waiting in each lobby")
    parser.add_argument("--no-media", action="store_true", help="no peer connections (no attendance)")
    parser.add_argument("--empty", action="store_true", help="redis: restart without persistence")
    parser.add_argument(
        "--lose-writes", action="store_true", help="failover: the promoted replica has lost every write"
    )
    parser.add_argument("--outage", type=float, default=1.0, help="seconds the process stays down")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    raise_fd_limit()
    shape = Shape(rooms=args.rooms, seated=args.seated, waiting=args.waiting, media=not args.no_media)
    with tempfile.TemporaryDirectory(prefix="viop-faults-") as tmp:
        if args.scenario == "redis":
            job = redis_restart(Path(tmp), shape, persistent=not args.empty, outage=args.outage)
        elif args.scenario == "failover":
            job = redis_failover(Path(tmp), shape, lose_writes=args.lose_writes)
        elif args.scenario == "app":
            job = app_restart(Path(tmp), shape, outage=args.outage)
        elif args.scenario == "cut":
            job = network_cut(Path(tmp))
        else:
            job = db_outage(
                Path(tmp), backend=args.scenario, outage=args.outage if args.outage != 1.0 else 10.0
            )
        figures = asyncio.run(asyncio.wait_for(job, args.max_seconds))
    command = ".venv/bin/python bench/faults.py " + shlex.join(sys.argv[1:])
    print(f"command: {command}")
    shown = {k: v for k, v in figures.items() if k not in ("presence_before", "presence_after")}
    print(json.dumps(shown, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, **figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
