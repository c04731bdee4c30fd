"""Benchmark: how long a client waits from knocking to seeing the group: knock -> admitted -> first remote
video frame decoded, over ``--joins`` sequential joins with the Python client.

    .venv/bin/python bench/join_latency.py [--joins 50] [--width 320 --height 180]

A ``python -m vIOP serve`` process (own embedded Redis, ICE host address 127.0.0.1) on a free loopback port.
A clinician signs in over HTTP, opens a room and hosts it with the Python client, publishing VP8 video
(keyframe on request) and Opus; the host admits every knock the moment its ``lobby`` lists it. Each join is
a new client from its own invite, receiving only (it decodes what it gets), and leaves after its first
decoded frame; the next one knocks ``--gap`` seconds later (0: back to back, the worst case for the relay's
limit of one keyframe request per publisher per 0.5 s). Times, from one monotonic clock:

- ``ticket+connect+knock``: from asking for a ticket to ``welcome`` (the knock is stored);
- ``knock->admitted``: ``welcome`` to ``admitted`` (the host's lobby update, the host's admit, the event);
- ``knock->first frame``: ``welcome`` to the first host video frame decoded (offer/answer, ICE, DTLS,
  the server's renegotiation, a keyframe forwarded from the host); on the way, ``answer`` (the server's
  answer to the client's offer is applied) and ``server_offer`` (the renegotiation offer carrying the
  host's tracks has arrived).

Target (issue 8): p50 knock -> first frame < 500 ms on loopback. Loopback only; bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import AudioStreamTrack

from bench.harness import PASSWORD, ClinicApi, ServerProcess, percentile, report_figures, run_with_server
from vIOP.client.media import FrameCounter, KeyframeOnRequestVideoTrack, ReceiveMode
from vIOP.client.session import RoomClient
from vIOP.signaling import messages as m

CLINICIAN = "join.host"


async def auto_admit(host: RoomClient, stop: asyncio.Event) -> None:
    """Admit whoever the host's lobby lists, as soon as it lists them."""
    admitted: set[str] = set()
    while not stop.is_set():

        def new_knock(msg: m.ServerMessage) -> bool:
            return isinstance(msg, m.Lobby) and any(e.participant_id not in admitted for e in msg.waiting)

        with contextlib.suppress(TimeoutError):
            lobby = await host.wait_for(new_knock, within=1.0)
            assert isinstance(lobby, m.Lobby)
            for entry in lobby.waiting:
                if entry.participant_id not in admitted:
                    admitted.add(entry.participant_id)
                    await host.send(m.Admit(participant_id=entry.participant_id))


async def one_join(api: ClinicApi, origin: str, invite: str, room_id: str, host_pid: str) -> dict[str, float]:
    counter = FrameCounter()
    client = RoomClient(
        api.ticket_source(invite, room_id), origin=origin, receive=ReceiveMode.DECODE, counter=counter
    )
    try:
        t0 = time.monotonic()
        await client.join(audio=False, video=False)
        welcomed = time.monotonic()
        await client.wait_message(m.Admitted, within=30)
        admitted = time.monotonic()
        await client.start_media()
        answered = time.monotonic()
        offered: float | None = None  # the server's renegotiation offer with the host's tracks
        deadline = time.monotonic() + 30
        while counter.frames(host_pid, "video") < 1:
            if offered is None and any(isinstance(x, m.ServerOffer) for x in client.messages):
                offered = time.monotonic()
            if time.monotonic() > deadline:
                raise TimeoutError("no video frame from the host within 30 s")
            await asyncio.sleep(0.002)
        first = counter.streams[(host_pid, "video")].first_at
        assert first is not None
        await client.send(m.Leave())
        with contextlib.suppress(Exception):
            await client.wait_closed(5)
        return {
            "connect_ms": (welcomed - t0) * 1000,
            "admitted_ms": (admitted - welcomed) * 1000,
            "answer_ms": (answered - welcomed) * 1000,
            "server_offer_ms": ((offered or first) - welcomed) * 1000,
            "first_frame_ms": (first - welcomed) * 1000,
            "click_to_frame_ms": (first - t0) * 1000,
        }
    finally:
        await client.close()


async def run(args: argparse.Namespace, server: ServerProcess) -> dict[str, object]:
    api = ClinicApi(server.base_url, timeout=30)
    bearer = await api.login(CLINICIAN, PASSWORD)
    room_id = await api.create_room(bearer, "Join latency", capacity=15)
    invites = [await api.create_invite(bearer, room_id, f"Joiner {i}") for i in range(args.joins)]

    def host_tracks() -> tuple[AudioStreamTrack, KeyframeOnRequestVideoTrack]:
        return AudioStreamTrack(), KeyframeOnRequestVideoTrack(width=args.width, height=args.height, fps=15)

    host = RoomClient(
        api.ticket_source(bearer, room_id),
        origin=server.origin,
        tracks=host_tracks,
        receive=ReceiveMode.PACKETS,
    )
    stop = asyncio.Event()
    welcome = await host.join()
    assert host.signaling is not None
    host.signaling.start_heartbeat(welcome.heartbeat_seconds)  # a silent socket is closed after 30 s
    await host.start_media()
    admitter = asyncio.create_task(auto_admit(host, stop))
    samples: list[dict[str, float]] = []
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    try:
        for invite in invites:
            samples.append(await one_join(api, server.origin, invite, room_id, host.participant_id))
            await asyncio.sleep(args.gap)
    finally:
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        stop.set()
        admitter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await admitter
        await host.close()
        await api.close()
    figures: dict[str, object] = {"joins": len(samples)}
    for key in (
        "connect_ms",
        "admitted_ms",
        "answer_ms",
        "server_offer_ms",
        "first_frame_ms",
        "click_to_frame_ms",
    ):
        values = [s[key] for s in samples]
        figures[key] = {
            "p50": round(percentile(values, 50), 1),
            "p99": round(percentile(values, 99), 1),
            "max": round(max(values), 1),
        }
    figures["server_cpu_pct"] = round((cpu1 - cpu0) / (t1 - t0) * 100, 1)
    figures["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds between joins (keyframe requests to one publisher are limited to one per 0.5 s)",
    )
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="hard stop for the whole run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = run_with_server("viop-join-", CLINICIAN, lambda server: run(args, server), args.max_seconds)
    report_figures("bench/join_latency.py", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
