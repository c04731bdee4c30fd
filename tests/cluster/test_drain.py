"""Drain (issue 14): SIGTERM to the node carrying a live room's media moves the room to the other node
make-before-break, then the node exits. Two real `python -m vIOP serve` processes on one redis-server, real
aiortc peers (``vIOP.client``).

Everyone is told ``media_moved {reason: "drain"}`` and opens a new peer connection to the other node while
the old one still flows; the lease moves (a larger token); the drained node stops the room and exits. The
participant whose socket was on the drained node resumes its socket on the other node and keeps its new
peer connection. Nobody knocks again, every attendance stay runs on, and no receiver sees a long freeze
(the 0.5 s figure is bench/migration.py's; here a generous bound)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from tests.api.test_two_processes import App
from tests.cluster.test_signaling_on_any_node import (  # noqa: F401 (two_nodes is a fixture)
    both_registered,
    decoding_grows,
    group_room,
    media_tracks,
    two_nodes,
)
from vIOP.client.session import HttpApi, RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisRoomLeases

FREEZE_BOUND_SECONDS = 3.0  # generous: a loaded 2-core machine; the benchmark measures the real figure


async def log_lines_containing(
    app: App, needle: str, until: Callable[[str], bool], within: float = 10
) -> str:
    """The lines of ``app``'s log (its stderr pipe, read without blocking) holding ``needle``, read until
    they satisfy ``until`` or ``within`` seconds passed (a bounded poll: the log is another process's)."""
    assert app.process.stderr is not None
    fd = app.process.stderr.fileno()
    os.set_blocking(fd, False)
    text, deadline = "", time.monotonic() + within
    while True:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 1 << 16):
                text += chunk.decode(errors="replace")
        lines = "\n".join(line for line in text.splitlines() if needle in line)
        if until(lines) or time.monotonic() >= deadline:
            return lines
        await asyncio.sleep(0.1)


async def test_sigterm_moves_a_live_room_to_the_other_node_without_a_freeze(
    two_nodes: tuple[App, App],  # noqa: F811 (the fixture imported above)
    redis_client: aioredis.Redis,
) -> None:
    """Regression: on main a drained node kept its rooms until it closed their sockets; nobody was told to
    move, so the media stopped when the node exited."""
    a, b = two_nodes
    await both_registered(redis_client)
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        room = await group_room(api_b, "Drain", "Kim", "Lee")
        token, headers, room_id = room.token, room.headers, room.room_id
        kim_invite, lee_invite = room.invites["Kim"], room.invites["Lee"]
        host = RoomClient(api_b.ticket_source(token, room_id), origin=b.base_url, tracks=media_tracks)
        kim = RoomClient(api_b.ticket_source(kim_invite, room_id), origin=b.base_url, tracks=media_tracks)
        lee = RoomClient(api_a.ticket_source(lee_invite, room_id), origin=a.base_url, tracks=media_tracks)
        people += [host, kim, lee]
        await host.join()
        for guest in (lee, kim):
            await guest.join()
            await guest.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
        await lee.start_media()  # first offer, through node a: the room's media is placed on a
        await host.start_media()
        await kim.start_media()
        leases = RedisRoomLeases(redis_client)
        before = await leases.current(RoomId(room_id))
        assert before is not None and before.node_id == "node-a"
        for viewer in people:
            for publisher in people:
                if publisher is not viewer:
                    await viewer.wait_frames(publisher.participant_id, "video", at_least=10, within=30)

        # `kill -USR1`: the node logs every subscriber's video legs (ids and counters, no names) and goes on.
        a.process.send_signal(signal.SIGUSR1)
        wanted = {
            f"media state: subscriber {viewer.participant_id} leg {publisher.participant_id} active: on video"
            for viewer in people
            for publisher in people
            if publisher is not viewer
        }
        logged = await log_lines_containing(
            a, "media state", until=lambda text: all(w in text for w in wanted)
        )
        assert all(w in logged for w in wanted), logged
        assert "Kim" not in logged and "Lee" not in logged
        assert a.process.poll() is None

        for person in people:
            person.counter.reset_gaps()
        drained_at = time.monotonic()
        a.process.terminate()  # SIGTERM: drain

        for person in people:
            moved = await person.wait_message(m.MediaMoved, within=30)
            assert moved.reason is m.MediaMoveReason.DRAIN
        # The drained node exits once its room has moved (bounded by its move timeout).
        assert await asyncio.to_thread(a.process.wait, 60) == 0
        after = await leases.current(RoomId(room_id))
        assert after is not None and after.node_id == "node-b" and after.token > before.token
        assert all(len(person.renegotiated) == 1 for person in people)

        # Lee's socket was on node a: it resumes on node b and keeps its (new) peer connection there.
        await lee.wait_closed(within=15)
        lee.tickets = api_b.ticket_source(lee_invite, room_id)
        lee.origin = b.base_url
        welcome = await lee.join(resume=True)
        assert welcome.resumed
        await lee.wait_message(m.Admitted)

        for viewer in people:
            for publisher in people:
                if publisher is not viewer:
                    await decoding_grows(viewer, publisher, "video")
        now = time.monotonic()
        gaps = {
            (viewer.participant_id, publisher.participant_id): viewer.counter.longest_gap(
                publisher.participant_id, "video", now
            )
            for viewer in people
            for publisher in people
            if publisher is not viewer
        }
        assert max(gaps.values()) <= FREEZE_BOUND_SECONDS, gaps

        # Nobody knocked again; every stay runs on.
        for person in people:
            assert not person.received_since(m.Waiting, drained_at)
        report = await api_b.http.get("/api/v1/attendance", params={"room_id": room_id}, headers=headers)
        assert report.status_code == 200, report.text
        (session,) = report.json()["sessions"]
        assert len(session["roster"]) == 3
        for line in session["roster"]:
            assert len(line["stays"]) == 1, line["stays"]
            assert line["stays"][0]["left_at"] is None
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()


async def test_nodes_drain_moves_the_room_and_the_node_stays_up_not_ready(
    two_nodes: tuple[App, App],  # noqa: F811 (the fixture imported above)
    redis_client: aioredis.Redis,
    tmp_path: Path,
) -> None:
    """The operator's `nodes drain NODE` (no signal): the node's live room moves to the other node (the same
    make-before-break as SIGTERM), the node stays up and keeps serving sockets (signaling works on any
    node), and its /readyz says `draining`, so a load balancer's or Kubernetes' check sends it no new work."""
    a, b = two_nodes
    await both_registered(redis_client)
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        room = await group_room(api_b, "Drain by hand", "Kim")
        token, room_id, invite = room.token, room.room_id, room.invites["Kim"]
        host = RoomClient(api_a.ticket_source(token, room_id), origin=a.base_url, tracks=media_tracks)
        kim = RoomClient(api_b.ticket_source(invite, room_id), origin=b.base_url, tracks=media_tracks)
        people += [host, kim]
        await host.join()
        await kim.join()
        await kim.wait_message(m.Waiting)
        await host.send(m.Admit(participant_id=kim.participant_id))
        await kim.wait_message(m.Admitted)
        await host.start_media()  # through node a: the room's media is placed on a
        await kim.start_media()
        leases = RedisRoomLeases(redis_client)
        before = await leases.current(RoomId(room_id))
        assert before is not None and before.node_id == "node-a"
        assert (await api_a.http.get("/readyz")).status_code == 200
        await kim.wait_frames(host.participant_id, "video", at_least=10, within=30)
        await host.wait_frames(kim.participant_id, "video", at_least=10, within=30)
        drained_at = time.monotonic()

        drained = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "vIOP", "nodes", "drain", "node-a"],
            env=a.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert drained.returncode == 0, drained.stderr
        for person in people:
            moved = await person.wait_message(m.MediaMoved, within=30)
            assert moved.reason is m.MediaMoveReason.DRAIN
        deadline = time.monotonic() + 30
        while (after := await leases.current(RoomId(room_id))) is None or after.node_id != "node-b":
            assert time.monotonic() < deadline, after
            await asyncio.sleep(0.2)
        assert after.token > before.token
        for viewer, publisher in ((host, kim), (kim, host)):
            await decoding_grows(viewer, publisher, "video")

        ready = await api_a.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "draining", ready.text
        assert (await api_b.http.get("/readyz")).status_code == 200
        assert a.process.poll() is None  # still up, its socket (the host's) still served
        await host.send(m.Ping(id="still-here"))
        await host.wait_message(m.Pong, where=lambda p: p.id == "still-here")
        for person in people:
            assert not person.received_since(m.Waiting, drained_at)
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()
