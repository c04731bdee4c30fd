"""Node loss mid-session (issue 14): two ``vIOP serve`` nodes on one external redis-server, ``--rooms`` live
rooms of ``--per-room`` aiortc participants (160x120 VP8 at 15 fps and audio), sockets spread over both
nodes; the node carrying half the rooms' media is SIGKILLed. Every participant of the dead node's rooms
recovers by itself: sockets on the survivor are told ``media_moved`` and renegotiate (``vIOP.client``);
sockets that died with the node resume on the survivor (as the web client's reconnect does) and offer
again, retrying while the room's lease is being taken over.

Figure: per participant of the dead node's rooms, the time from the SIGKILL until its new peer connection
has decoded ``--frames`` video frames from every other participant of its room (p50 / p99 / max), plus
how many knocked again (``waiting`` after the kill: must be 0).

    .venv/bin/python bench/node_loss.py                      # 6 rooms x 4, default heartbeat 2 s / TTL 6 s
    .venv/bin/python bench/node_loss.py --heartbeat 1 --ttl 3
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    PASSWORD,
    ClinicApi,
    RedisProcess,
    ServerProcess,
    percentile,
    report_figures,
    running,
)
from vIOP.client.media import ReceiveMode, SyntheticVideoTrack, silent_audio_track
from vIOP.client.session import RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisRoomLeases


def tracks() -> tuple[object, ...]:
    return (silent_audio_track(), SyntheticVideoTrack())


class Person:
    def __init__(self, client: RoomClient, node: int, bearer: str, room_id: str) -> None:
        self.client, self.node, self.bearer, self.room_id = client, node, bearer, room_id


async def holder(leases: RedisRoomLeases, room_id: str) -> str:
    lease = await leases.current(RoomId(room_id))
    return lease.node_id if lease is not None else ""


async def recovered(
    person: Person, others: list[Person], old_media: object, frames: int, since: float
) -> float:
    """Seconds from ``since`` until ``person``'s new peer connection decoded ``frames`` video frames from
    each of ``others``."""
    client = person.client
    while client.media is old_media or client.media is None:
        await asyncio.sleep(0.02)
    baseline = {
        o.client.participant_id: client.counter.frames(o.client.participant_id, "video") for o in others
    }
    for pid, seen in baseline.items():
        await client.wait_frames(pid, "video", at_least=seen + frames, within=120)
    return time.monotonic() - since


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    redis = RedisProcess(tmp / "redis")
    (tmp / "redis").mkdir()
    redis.start()
    settings = {
        "ice_host_addresses": "127.0.0.1",
        "node_heartbeat_seconds": str(args.heartbeat),
        "node_ttl_seconds": str(args.ttl),
    }
    data = tmp / "var"
    nodes = [
        ServerProcess(data, redis_url=redis.url, settings={**settings, "node_id": f"node-{n}"},
                      log_name=f"node-{n}.log")
        for n in "ab"
    ]  # fmt: skip
    with running(redis, *nodes):
        nodes[0].create_clinician("dr.loss")
        for node in nodes:
            node.start()
        apis = [ClinicApi(node.base_url) for node in nodes]
        people: list[Person] = []
        rooms: dict[str, list[Person]] = {}
        try:
            bearer = await apis[0].login("dr.loss", PASSWORD)
            for r in range(args.rooms):
                room_id = await apis[0].create_room(bearer, f"Group {r}")
                members = rooms[room_id] = []
                for i in range(args.per_room):
                    node = (r + i) % 2  # the host's node alternates by room; guests alternate within it
                    api = apis[node]
                    token = bearer if i == 0 else await api.create_invite(bearer, room_id, f"Guest {i}")
                    client = RoomClient(api.ticket_source(token, room_id), origin=nodes[node].base_url,
                                        tracks=tracks, receive=ReceiveMode(args.receive))  # fmt: skip
                    members.append(Person(client, node, token, room_id))
                host = members[0].client
                await host.join()
                await host.start_media(retry_within=30)  # placed by load: rooms alternate between nodes
                for guest in members[1:]:
                    await guest.client.join()
                    await guest.client.wait_message(m.Waiting)
                    await host.send(m.Admit(participant_id=guest.client.participant_id))
                    await guest.client.wait_message(m.Admitted)
                    await guest.client.start_media(retry_within=30)
                people += members
            for members in rooms.values():
                for viewer in members:
                    for other in members:
                        if other is not viewer:
                            await viewer.client.wait_frames(
                                other.client.participant_id, "video", 10, within=60
                            )

            store = aioredis.from_url(redis.url)
            leases = RedisRoomLeases(store)
            holders = {room_id: await holder(leases, room_id) for room_id in rooms}
            victim = "node-a"
            lost_rooms = [room_id for room_id, holder in holders.items() if holder == victim]
            affected = [p for room_id in lost_rooms for p in rooms[room_id]]
            old_media = {id(p): p.client.media for p in affected}

            killed_at = time.monotonic()
            nodes[0].kill()

            async def follow(person: Person) -> float:
                if person.node == 0:  # its socket died with the node: resume on the survivor
                    await person.client.wait_closed(within=30)
                    api = apis[1]
                    person.client.tickets = api.ticket_source(person.bearer, person.room_id)
                    person.client.origin = nodes[1].base_url
                    await person.client.join(resume=True)
                    await person.client.wait_message(m.Admitted, within=30)
                    await person.client.start_media(retry_within=60)
                others = [o for o in rooms[person.room_id] if o is not person]
                return await recovered(person, others, old_media[id(person)], args.frames, killed_at)

            times = await asyncio.gather(*(follow(p) for p in affected))
            knocks = sum(1 for p in affected if p.client.received_since(m.Waiting, killed_at))
            moved_here = sum(1 for p in affected if p.client.renegotiated)
            told = [
                at - killed_at for p in affected for at, _ in p.client.received_since(m.MediaMoved, killed_at)
            ]
            answered = [p.client.renegotiated[-1] - killed_at for p in affected if p.client.renegotiated]
            after = {room_id: await holder(leases, room_id) for room_id in lost_rooms}
            await store.aclose()
            return {
                "rooms": args.rooms,
                "per_room": args.per_room,
                "receive": args.receive,
                "heartbeat_s": args.heartbeat,
                "node_ttl_s": args.ttl,
                "rooms_on_killed_node": len(lost_rooms),
                "participants_affected": len(affected),
                "told_media_moved": moved_here,
                "resumed_from_dead_socket": sum(1 for p in affected if p.node == 0),
                "recovery_s": {
                    "p50": round(percentile(times, 50), 2),
                    "p99": round(percentile(times, 99), 2),
                    "max": round(max(times), 2),
                },
                "told_media_moved_after_s": {
                    "p50": round(percentile(told, 50), 2),
                    "max": round(max(told), 2),
                }
                if told
                else None,
                "new_answer_after_s": {
                    "p50": round(percentile(answered, 50), 2),
                    "max": round(max(answered), 2),
                }
                if answered
                else None,
                "re_knocks": knocks,
                "rooms_now_on": sorted(set(after.values())),
            }
        finally:
            for person in people:
                await person.client.close()
            for api in apis:
                await api.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=6)
    parser.add_argument("--per-room", type=int, default=4)
    parser.add_argument("--heartbeat", type=int, default=2)
    parser.add_argument("--ttl", type=int, default=6)
    parser.add_argument(
        "--frames", type=int, default=5, help="video frames from each peer that count as back"
    )
    parser.add_argument(
        "--receive", choices=[mode.value for mode in ReceiveMode], default="decode",
        help="decode (default), or count whole encoded frames (lighter for the one client process)",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="viop-node-loss-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    report_figures("bench/node_loss.py", figures, args.json)


if __name__ == "__main__":
    main()
