"""Live migration on drain (issue 14): a ``--participants``-person group (aiortc peers, 160x120 VP8 at
15 fps and audio) on two ``vIOP serve`` nodes sharing one external redis-server, sockets spread over both
nodes. The node carrying the room's media gets SIGTERM: it moves the room to the other node make-before-break
(``media_moved {reason: "drain"}``: each client opens the new peer connection while the old one flows, then
switches) and exits. With ``--rolling`` the drained node is started again and then the other one is
drained too (the room moves back), so both nodes have restarted while the group ran. A participant whose
socket was on a drained node resumes it on the other node with its resume token and keeps its peer
connection.

Figure, per drain: for each receiver the longest gap between two decoded video frames from any publisher
of the group during the drain (p50 / p99 / max over receivers; the issue's bound: p99 at most 0.5 s), how
many knocked again (a ``waiting`` after a resume: must be 0), and the attendance stays per person at the end
(1: unbroken).

    .venv/bin/python bench/migration.py --participants 13 --rolling
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
from vIOP.client.media import (
    EncodedClip,
    PreEncodedTrack,
    ReceiveMode,
    SyntheticVideoTrack,
    encode_opus_clip,
    encode_video_clip,
    silent_audio_track,
)
from vIOP.client.session import RoomClient
from vIOP.ids import RoomId
from vIOP.signaling import messages as m
from vIOP.storage.redis_cluster import RedisNodeRegistry, RedisRoomLeases

FPS = 15


CLIPS: list[EncodedClip] = []  # (audio, video) encoded once for every participant (``--media clip``)


def tracks() -> tuple[object, ...]:
    if CLIPS:  # replayed: no encoder per participant (13 VP8 encoders did not hold in one process)
        return tuple(PreEncodedTrack(clip) for clip in CLIPS)
    return (silent_audio_track(), SyntheticVideoTrack(fps=FPS))


class Person:
    def __init__(self, client: RoomClient, node: int, bearer: str) -> None:
        self.client, self.node, self.bearer = client, node, bearer
        self.knocks = 0
        self.resumes = 0


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    (tmp / "redis").mkdir()
    redis = RedisProcess(tmp / "redis")
    redis.start()
    data = tmp / "var"
    nodes = [
        ServerProcess(
            data,
            redis_url=redis.url,
            settings={
                "ice_host_addresses": "127.0.0.1",
                "node_id": f"node-{name}",
                "log_level": args.log_level,
            },
            log_name=f"node-{name}.log",
        )
        for name in "ab"
    ]
    with running(redis, *nodes):
        nodes[0].create_clinician("dr.move")
        for node in nodes:
            node.start()
        store = aioredis.from_url(redis.url)
        registry, leases = RedisNodeRegistry(store), RedisRoomLeases(store)
        apis = [ClinicApi(node.base_url) for node in nodes]
        people: list[Person] = []
        keepers: list[asyncio.Task[None]] = []
        serving = {0, 1}
        try:
            bearer = await apis[0].login("dr.move", PASSWORD)
            room_id = await apis[0].create_room(bearer, "Group", capacity=max(15, args.participants))
            for i in range(args.participants):
                node = i % 2
                api = apis[node]
                token = bearer if i == 0 else await api.create_invite(bearer, room_id, f"Guest {i}")
                client = RoomClient(api.ticket_source(token, room_id), origin=nodes[node].base_url,
                                    tracks=tracks, receive=ReceiveMode(args.receive))  # fmt: skip
                people.append(Person(client, node, token))
            host = people[0].client
            await host.join()
            await host.start_media(retry_within=30)
            for guest in people[1:]:
                await guest.client.join()
                await guest.client.wait_message(m.Waiting)
                await host.send(m.Admit(participant_id=guest.client.participant_id))
                await guest.client.wait_message(m.Admitted)
                await guest.client.start_media(retry_within=30)

            async def keep(person: Person) -> None:
                """The socket's reconnect to a serving node, as a client's would; the peer connection stays."""
                while True:
                    await person.client.wait_closed(within=3600)
                    person.node = min(serving)
                    api = apis[person.node]
                    person.client.tickets = api.ticket_source(person.bearer, room_id)
                    person.client.origin = nodes[person.node].base_url
                    await person.client.join(resume=True)
                    person.resumes += 1
                    first = await person.client.wait_for(
                        lambda msg: isinstance(msg, m.Admitted | m.Waiting), within=30
                    )
                    if isinstance(first, m.Waiting):
                        person.knocks += 1

            keepers = [asyncio.get_running_loop().create_task(keep(p)) for p in people]

            async def everyone_decodes(by: int, watched: dict[int, set[str]] | None = None) -> None:
                """Every receiver gets ``by`` more video frames from each publisher it watches (all the
                others when ``watched`` is None)."""
                for n, viewer in enumerate(people):
                    others = [o.client.participant_id for o in people if o is not viewer]
                    for pid in watched[n] if watched is not None else others:
                        seen = viewer.client.counter.frames(pid, args.kind)
                        await viewer.client.wait_frames(pid, args.kind, seen + by, within=90)

            async def receiving() -> dict[int, set[str]]:
                """The video publishers each receiver gets now (a large group's receivers may get fewer than
                all: the relay's per-subscriber budget pauses the lowest-ranked videos)."""
                await asyncio.sleep(3)  # a settled picture, not a moment
                return {
                    n: viewer.client.counter.recent_publishers("video", within=1.0)
                    for n, viewer in enumerate(people)
                }

            for viewer in people:  # everyone receives some video before the first drain
                for other in people:
                    if other is not viewer:
                        await viewer.client.wait_frames(other.client.participant_id, "audio", 10, within=120)

            async def drain_holder() -> dict[str, object]:
                watched = await receiving()
                lease = await leases.current(RoomId(room_id))
                assert lease is not None
                holder = 0 if lease.node_id == "node-a" else 1
                for person in people:
                    person.client.counter.reset_gaps()
                serving.discard(holder)
                started = time.monotonic()
                nodes[holder].process.terminate()  # type: ignore[union-attr]
                code = await asyncio.to_thread(nodes[holder].process.wait, 120)  # type: ignore[union-attr]
                exited_after = time.monotonic() - started
                await everyone_decodes(15, watched)
                now = time.monotonic()
                gaps = [
                    max(viewer.client.counter.longest_gap(pid, args.kind, now) for pid in watched[n])
                    for n, viewer in enumerate(people)
                    if watched[n]
                ]
                after = await leases.current(RoomId(room_id))
                return {
                    "drained": f"node-{'ab'[holder]}",
                    "exit_code": code,
                    "exited_after_s": round(exited_after, 1),
                    "room_now_on": after.node_id if after else None,
                    "token": [lease.token, after.token if after else None],
                    "longest_frame_gap_s": {
                        "p50": round(percentile(gaps, 50), 3),
                        "p99": round(percentile(gaps, 99), 3),
                        "max": round(max(gaps, default=float("nan")), 3),
                    },
                    "streams_per_receiver": round(sum(map(len, watched.values())) / len(people), 1),
                    "receivers_without_any": sum(1 for w in watched.values() if not w),
                    "holder": holder,
                }

            drains = [await drain_holder()]
            print(f"first drain: {drains[0]}", file=sys.stderr)
            if args.rolling:
                back = int(drains[0]["holder"])  # type: ignore[call-overload]
                nodes[back].start()
                while await registry.get(f"node-{'ab'[back]}", time.time()) is None:
                    await asyncio.sleep(0.1)
                serving.add(back)
                drains.append(await drain_holder())
                again = int(drains[1]["holder"])  # type: ignore[call-overload]
                nodes[again].start()
                serving.add(again)
            report = await apis[min(serving)].http.get(
                "/api/v1/attendance",
                params={"room_id": room_id},
                headers={"Authorization": f"Bearer {bearer}"},
            )
            report.raise_for_status()
            (session,) = report.json()["sessions"]
            stays = [len(line["stays"]) for line in session["roster"]]
            for drain in drains:
                drain.pop("holder")
            return {
                "participants": args.participants,
                "media": args.media,
                "receive": args.receive,
                "fps": args.fps,
                "kind": args.kind,
                "drains": drains,
                "re_knocks": sum(p.knocks for p in people),
                "socket_resumes": sum(p.resumes for p in people),
                "attendance_stays_per_person": {"max": max(stays), "people": len(stays)},
            }
        finally:
            for keeper in keepers:
                keeper.cancel()
            for person in people:
                await person.client.close()
            for api in apis:
                await api.close()
            await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--participants", type=int, default=13)
    parser.add_argument("--rolling", action="store_true", help="then restart the other node the same way")
    parser.add_argument(
        "--receive", choices=[mode.value for mode in ReceiveMode], default="decode",
        help="decode (default), or count whole encoded frames (lighter for the one client process)",
    )  # fmt: skip
    parser.add_argument(
        "--kind",
        choices=["video", "audio"],
        default="video",
        help="whose frame gaps: video (default) or audio",
    )
    parser.add_argument(
        "--fps", type=int, default=15, help="each camera's frame rate (lower: a lighter client process)"
    )
    parser.add_argument(
        "--log-level", default="warning", help="the nodes' VIOP_LOG_LEVEL (their logs: node-a/b.log)"
    )
    parser.add_argument(
        "--media", choices=["clip", "synthetic"], default="clip",
        help="clip (default): 160x120 VP8 and Opus encoded once and replayed by everyone; synthetic: a "
        "live VP8 encoder and silence per participant",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    global FPS
    FPS = args.fps
    if args.media == "clip":
        CLIPS[:] = [encode_opus_clip(10.0), encode_video_clip(160, 120, FPS, 10.0, bitrate=150_000)]
    with tempfile.TemporaryDirectory(prefix="viop-migration-") as tmp:
        figures = asyncio.run(run(args, Path(tmp)))
    report_figures("bench/migration.py", figures, args.json)


if __name__ == "__main__":
    main()
