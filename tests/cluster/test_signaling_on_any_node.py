"""Signaling on any node (issue 14): two real `python -m vIOP serve` processes on one redis-server and one
database. People of one room whose sockets land on different nodes all decode each other's audio and
video (the media node's relay carries the room; the other node relays their signaling over Redis), and
rooms started through one node spread over both by load."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiortc import MediaStreamTrack

from tests.api.test_two_processes import PASSWORD, App
from vIOP.client.media import SyntheticVideoTrack, silent_audio_track
from vIOP.client.session import HttpApi, RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases

NODE_SETTINGS = {"VIOP_NODE_HEARTBEAT_SECONDS": "1", "VIOP_NODE_TTL_SECONDS": "3"}


@pytest.fixture
def two_nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[App, App]]:
    data_dir = tmp_path / "var"
    first = App(data_dir, redis_url, VIOP_NODE_ID="node-a", **NODE_SETTINGS)
    apps = [first]
    try:
        first.wait_ready()  # the first one migrates the database and creates the key file
        created = subprocess.run(
            [sys.executable, "-m", "vIOP", "users", "create", "--role", "clinician", "--username", "dr.two",
             "--password-stdin"],
            input=PASSWORD, env=first.env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        second = App(data_dir, redis_url, VIOP_NODE_ID="node-b", **NODE_SETTINGS)
        apps.append(second)
        second.wait_ready()
        yield first, second
    finally:
        for app in apps:
            app.stop()


@dataclass(frozen=True)
class GroupRoom:
    """A group room of the nodes' clinician (dr.two) with an invite per guest."""

    token: str  # the clinician's bearer token
    headers: dict[str, str]
    room_id: str
    invites: dict[str, str]  # display name -> invite token


async def group_room(api: HttpApi, title: str, *guests: str) -> GroupRoom:
    token = await api.login("dr.two", PASSWORD)
    headers = {"Authorization": f"Bearer {token}"}
    created = await api.http.post("/api/v1/rooms", json={"kind": "group", "title": title}, headers=headers)
    room_id = created.json()["id"]
    invites = {}
    for name in guests:
        invite = await api.http.post(
            f"/api/v1/rooms/{room_id}/invites", json={"display_name": name}, headers=headers
        )
        invites[name] = invite.json()["invite_token"]
    return GroupRoom(token, headers, room_id, invites)


async def both_registered(redis_client: aioredis.Redis) -> None:
    registry = RedisNodeRegistry(redis_client)
    deadline = time.monotonic() + 15
    while sorted(n.id for n in await registry.nodes(time.time())) != ["node-a", "node-b"]:
        assert time.monotonic() < deadline, "both nodes never registered"
        await asyncio.sleep(0.1)


async def node_carries_nobody(redis_client: aioredis.Redis, node_id: str) -> None:
    """Bounded poll of the node's heartbeat record (every second here) until it has no participant."""
    registry = RedisNodeRegistry(redis_client)
    deadline = time.monotonic() + 15
    while True:
        node = await registry.get(node_id, time.time())
        assert node is not None
        if node.load.participants == 0:
            return
        assert time.monotonic() < deadline, f"{node_id} still carries {node.load.participants}"
        await asyncio.sleep(0.2)


def media_tracks() -> tuple[MediaStreamTrack, ...]:
    return (silent_audio_track(), SyntheticVideoTrack())


async def test_a_room_whose_sockets_are_on_two_nodes_decodes_everyone(
    two_nodes: tuple[App, App], redis_client: aioredis.Redis
) -> None:
    """Regression: on main the offer of whoever's socket was not on the media node got `unavailable`."""
    a, b = two_nodes
    await both_registered(redis_client)
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        room = await group_room(api_b, "Across nodes", "Kim", "Lee")
        room_id = room.room_id
        # The host and Lee on node b, Kim on node a: whichever node carries the media, someone's socket
        # is on the other one.
        host = RoomClient(api_b.ticket_source(room.token, room_id), origin=b.base_url, tracks=media_tracks)
        kim = RoomClient(
            api_a.ticket_source(room.invites["Kim"], room_id), origin=a.base_url, tracks=media_tracks
        )
        lee = RoomClient(
            api_b.ticket_source(room.invites["Lee"], room_id), origin=b.base_url, tracks=media_tracks
        )
        people += [host, kim, lee]
        await host.join()
        await host.start_media()
        for guest in (kim, lee):
            await guest.join()
            await guest.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
            await guest.start_media()

        # Placed where its first offer arrived (both nodes empty: no hop), so Kim's signaling crossed nodes.
        lease = await RedisRoomLeases(redis_client).current(RoomId(room_id))
        assert lease is not None and lease.node_id == "node-b"
        for viewer in people:
            for publisher in people:
                if publisher is viewer:
                    continue
                for kind in ("audio", "video"):
                    await viewer.wait_frames(publisher.participant_id, kind, at_least=10, within=30)

        # The host ends the room: node b stops every stream it carries, Kim's (socket on node a) included.
        # Regression: the room's end stopped only the media of sockets on the media node.
        await host.send(m.End())
        await node_carries_nobody(redis_client, "node-b")
    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()


async def test_twenty_rooms_started_through_one_node_spread_over_both(
    two_nodes: tuple[App, App], redis_client: aioredis.Redis
) -> None:
    """Every socket lands on node a; the rooms' media is placed by load, at most 60/40 (here 10/10)."""
    a, _ = two_nodes
    await both_registered(redis_client)
    api = HttpApi(a.base_url)
    hosts: list[RoomClient] = []
    room_ids: list[RoomId] = []
    try:
        token = await api.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        for n in range(20):
            room = (await api.http.post("/api/v1/rooms", json={"kind": "group", "title": f"Group {n}"},
                                        headers=headers)).json()  # fmt: skip
            room_ids.append(RoomId(room["id"]))
            host = RoomClient(api.ticket_source(token, room["id"]), origin=a.base_url)
            hosts.append(host)
            await host.join()
            await host.start_media()  # receive only: the answer came back through whichever node
        leases = RedisRoomLeases(redis_client)
        holders: Counter[str] = Counter()
        for room_id in room_ids:
            lease = await leases.current(room_id)
            assert lease is not None and lease.live(time.time())
            holders[lease.node_id] += 1
        assert set(holders) == {"node-a", "node-b"}
        assert max(holders.values()) <= 12, holders  # 60/40 at worst
    finally:
        for host in hosts:
            await host.close()
        await api.close()


async def decoding_grows(viewer: RoomClient, publisher: RoomClient, kind: str, by: int = 10) -> None:
    seen = viewer.counter.frames(publisher.participant_id, kind)
    await viewer.wait_frames(publisher.participant_id, kind, at_least=seen + by, within=30)


async def test_host_actions_reach_the_media_node_and_a_socket_nodes_loss_is_survived(
    two_nodes: tuple[App, App], redis_client: aioredis.Redis
) -> None:
    """The room's media on node b; Kim's socket on node a. The host's mute of Kim stops Kim's audio at
    Lee (a room event, applied by b's relay); node a is SIGKILLed, Kim resumes on node b with the resume
    token and decodes again."""
    a, b = two_nodes
    await both_registered(redis_client)
    api_a, api_b = HttpApi(a.base_url), HttpApi(b.base_url)
    people: list[RoomClient] = []
    try:
        token = await api_b.login("dr.two", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        room = (await api_b.http.post("/api/v1/rooms", json={"kind": "group", "title": "Node loss"},
                                      headers=headers)).json()  # fmt: skip
        kim_invite, lee_invite = [
            (
                await api_b.http.post(
                    f"/api/v1/rooms/{room['id']}/invites", json={"display_name": name}, headers=headers
                )
            ).json()["invite_token"]
            for name in ("Kim", "Lee")
        ]
        host = RoomClient(api_b.ticket_source(token, room["id"]), origin=b.base_url, tracks=media_tracks)
        kim = RoomClient(api_a.ticket_source(kim_invite, room["id"]), origin=a.base_url, tracks=media_tracks)
        lee = RoomClient(api_b.ticket_source(lee_invite, room["id"]), origin=b.base_url, tracks=media_tracks)
        people += [host, kim, lee]
        await host.join()
        await host.start_media()
        for guest in (kim, lee):
            await guest.join()
            await guest.wait_message(m.Waiting)
            await host.send(m.Admit(participant_id=guest.participant_id))
            await guest.wait_message(m.Admitted)
            await guest.start_media()
        lease = await RedisRoomLeases(redis_client).current(RoomId(room["id"]))
        assert lease is not None and lease.node_id == "node-b"
        await decoding_grows(lee, kim, "audio")

        await host.send(m.Mute(participant_id=kim.participant_id, kind=m.MediaKind.AUDIO, muted=True))
        await lee.wait_message(m.Muted, where=lambda x: x.participant_id == kim.participant_id)
        await decoding_grows(lee, host, "audio", by=50)  # let what was in flight arrive
        muted_at = lee.counter.frames(kim.participant_id, "audio")
        await decoding_grows(lee, host, "audio", by=100)  # 2 s of the host's audio, none of Kim's
        assert lee.counter.frames(kim.participant_id, "audio") == muted_at
        await decoding_grows(lee, kim, "video")  # only the audio was muted

        a.process.kill()  # Kim's socket's node dies
        a.process.wait(10)
        await kim.wait_closed(within=15)
        kim.tickets = api_b.ticket_source(kim_invite, room["id"])
        kim.origin = b.base_url
        welcome = await kim.join(resume=True)
        assert welcome.resumed
        await kim.wait_message(m.Admitted)
        await kim.start_media()  # a new peer connection, now through node b's socket
        await decoding_grows(kim, host, "video")
        await decoding_grows(host, kim, "video")

    finally:
        for person in people:
            await person.close()
        await api_a.close()
        await api_b.close()
