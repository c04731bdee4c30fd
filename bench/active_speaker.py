"""Benchmark: how soon everyone learns who speaks (``active_speaker``), and that silence says nothing.

    .venv/bin/python bench/active_speaker.py [--people 4] [--turns 12] [--hold 1.5] [--silence 5]

A ``python -m vIOP serve`` process (own embedded Redis, ICE host address 127.0.0.1) on a free loopback port.
A clinician and ``--people - 1`` invited clients, each with the Python client, publish one audio track that
plays silence or a 440 Hz tone (aiortc's Opus encoder; its sender writes the RFC 6464 level). Turn by turn
one person talks (round robin, never the same twice in a row) for ``--hold`` seconds of their own audio as
heard by everyone; then the whole room is silent for ``--silence`` seconds. Figures:

- ``change_to_message``: from the moment the new speaker's track starts the tone to the arrival of the
  ``active_speaker`` naming them, at every participant (p50, p99, max);
- ``wrong_names``: ``active_speaker`` messages naming anyone but the person talking, after a change;
- ``during_silence``: ``active_speaker`` messages while nobody talks (flapping; must be 0);
- server CPU over the run. Loopback only; bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PASSWORD, ClinicApi, ServerProcess, percentile, report_figures, run_with_server
from vIOP.client.media import ReceiveMode, ToneAudioTrack
from vIOP.client.session import RoomClient
from vIOP.signaling import messages as m

CLINICIAN = "speaker.host"


class Person:
    def __init__(self, api: ClinicApi, origin: str, bearer: str, room_id: str) -> None:
        self.tone: ToneAudioTrack | None = None
        self.client = RoomClient(
            api.ticket_source(bearer, room_id),
            origin=origin,
            tracks=self._tracks,
            receive=ReceiveMode.PACKETS,
        )

    def _tracks(self) -> tuple[ToneAudioTrack]:
        self.tone = ToneAudioTrack()
        return (self.tone,)

    def talk(self, on: bool) -> None:
        assert self.tone is not None
        self.tone.speaking = on


async def wait_heard(listeners: list[RoomClient], publisher: str, frames: int, within: float = 30) -> None:
    """Every listener has received ``frames`` more audio packets from ``publisher`` (bounded poll)."""
    start = {c.participant_id: c.counter.frames(publisher, "audio") for c in listeners}
    deadline = time.monotonic() + within
    while any(c.counter.frames(publisher, "audio") < start[c.participant_id] + frames for c in listeners):
        if time.monotonic() > deadline:
            raise TimeoutError(f"audio from {publisher} stopped")
        await asyncio.sleep(0.02)


async def run(args: argparse.Namespace, server: ServerProcess) -> dict[str, object]:
    api = ClinicApi(server.base_url, timeout=30)
    bearer = await api.login(CLINICIAN, PASSWORD)
    room_id = await api.create_room(bearer, "Active speaker", capacity=15)
    invites = [await api.create_invite(bearer, room_id, f"Client {i}") for i in range(args.people - 1)]
    people = [Person(api, server.origin, bearer, room_id)]
    people += [Person(api, server.origin, invite, room_id) for invite in invites]
    clients = [p.client for p in people]
    latencies: list[float] = []
    wrong = silent_messages = 0
    try:
        for client in clients:
            welcome = await client.join()
            assert client.signaling is not None
            client.signaling.start_heartbeat(welcome.heartbeat_seconds)
        host = clients[0]
        await host.wait_message(m.Lobby, within=30, where=lambda lobby: len(lobby.waiting) == len(invites))
        await host.send(m.AdmitAll())
        for client in clients[1:]:
            await client.wait_message(m.Admitted, within=30)
        await asyncio.gather(*(c.start_media() for c in clients))
        ids = [c.participant_id for c in clients]
        for i, pid in enumerate(ids):
            await wait_heard([c for j, c in enumerate(clients) if j != i], pid, 25)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        for turn in range(args.turns):
            speaker = turn % len(people)
            for i, person in enumerate(people):
                person.talk(i == speaker)
            changed_at = time.monotonic()
            named = ids[speaker]
            earlier = [{id(msg) for msg in c.messages} for c in clients]
            for client, old in zip(clients, earlier, strict=True):
                await client.wait_message(
                    m.ActiveSpeaker,
                    within=10,
                    where=lambda msg, old=old, named=named: msg.speaker == named and id(msg) not in old,
                )
            others = [c for i, c in enumerate(clients) if i != speaker]
            await wait_heard(others, named, round(args.hold * 50))
            for client in clients:
                arrivals = client.received_since(m.ActiveSpeaker, changed_at)
                latencies.append(next(at for at, msg in arrivals if msg.speaker == named) - changed_at)
                wrong += sum(msg.speaker != named for _, msg in arrivals)
        for person in people:
            person.talk(False)
        silent_from = time.monotonic()
        for i, pid in enumerate(ids):
            await wait_heard([c for j, c in enumerate(clients) if j != i], pid, round(args.silence * 50))
        silent_messages = sum(len(c.received_since(m.ActiveSpeaker, silent_from)) for c in clients)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        await api.close()
    millis = [x * 1000 for x in latencies]
    return {
        "people": args.people,
        "turns": args.turns,
        "arrivals": len(millis),
        "change_to_message_ms": {
            "p50": round(percentile(millis, 50), 1),
            "p99": round(percentile(millis, 99), 1),
            "max": round(max(millis), 1),
        },
        "wrong_names": wrong,
        "during_silence": silent_messages,
        "server_cpu_pct": round((cpu1 - cpu0) / (t1 - t0) * 100, 1),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--hold", type=float, default=1.5, help="seconds each speaker talks once named")
    parser.add_argument("--silence", type=float, default=5.0, help="seconds of silence at the end")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="hard stop for the whole run")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = run_with_server("viop-speaker-", CLINICIAN, lambda server: run(args, server), args.max_seconds)
    report_figures("bench/active_speaker.py", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
