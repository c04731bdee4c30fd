"""The participants of one group (or part of one) in their own process, for ``bench/capacity.py``.

    python bench/capacity_group.py   (its configuration comes as one JSON line on stdin, never in argv:
                                      it holds a bearer token and invite tokens)

Each participant is a :class:`vIOP.client.session.RoomClient` on its own signaling socket (its origin
chosen by the caller: a round-robin load balancer's choice), publishing the pre-encoded clips that
``bench/capacity.py`` wrote once (no encoder runs here) and counting received RTP frames without decoding
(``ReceiveMode.PACKETS``). The host, when this process has it, admits every knock its lobby lists.

Protocol on stdout, one JSON line each: ``{"event": "ready", ...}`` once every participant receives video
from everyone else in the group (or the join deadline passed: ``missing`` says how many streams never
came); then, for every ``snapshot`` line on stdin, ``{"event": "snapshot", "t", "cpu", "video", "audio",
"connections", "consent_expired", "audio_only"}`` (frame counts per receiver and publisher so far; ``t`` on the system-wide
monotonic clock, ``cpu`` this process's CPU seconds; participants per peer connection state; ICE
connections closed for lack of consent; the reasons of the ``audio_only`` notices received so far). ``quit`` or the end of stdin closes everything and exits; so does
``max_seconds`` from the configuration.

For ``bench/migration.py`` (optional configuration): ``receive`` (a :class:`ReceiveMode` value, default
``packets``); ``resume_origins`` (every node's origin: a participant whose socket closes resumes it with its
resume token on the first of them that takes it, as a client behind a load balancer would, and a ``waiting``
after such a resume counts as a knock again). ``reset_gaps`` on stdin restarts every stream's longest gap
(answered ``{"event": "reset", "t"}``); snapshots then also carry ``gaps`` (per receiver and publisher, the
longest time without a frame since then, the silence up to now included; video unless ``gap_kind`` says
``audio``), ``recent`` (per receiver, the video publishers with a frame in the last second), ``resumes``
and ``knocks``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fractions
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import MediaStreamTrack

from vIOP.client.media import EncodedClip, PreEncodedTrack, ReceiveMode
from vIOP.client.session import HttpApi, RoomClient
from vIOP.signaling import messages as m


def clip_to_json(clip: EncodedClip) -> dict[str, Any]:
    return {
        "kind": clip.kind,
        "frames": [base64.b64encode(f).decode() for f in clip.frames],
        "pts_step": clip.pts_step,
        "time_base": str(clip.time_base),
        "interval": clip.interval,
    }


def clip_from_json(data: dict[str, Any]) -> EncodedClip:
    return EncodedClip(
        kind=data["kind"],
        frames=tuple(base64.b64decode(f) for f in data["frames"]),
        pts_step=int(data["pts_step"]),
        time_base=fractions.Fraction(data["time_base"]),
        interval=float(data["interval"]),
    )


class ConsentExpiries(logging.Handler):
    """Counts aioice's "Consent to send expired": an ICE connection closed because 6 consent checks in a row
    (one every ~5 s, no retransmission, 0.5 s to answer) went unanswered."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "Consent to send expired" in record.getMessage():
            self.count += 1


CONSENT = ConsentExpiries()


def emit(event: str, **fields: object) -> None:
    try:
        print(json.dumps({"event": event, **fields}), flush=True)
    except BrokenPipeError:  # the benchmark has gone: nobody to tell, exit quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (kept open until the process exits)


async def admit_knocks(host: RoomClient) -> None:
    """Admit whoever the host's lobby lists, as soon as it lists them."""
    admitted: set[str] = set()
    while True:

        def new_knock(msg: m.ServerMessage) -> bool:
            return isinstance(msg, m.Lobby) and any(e.participant_id not in admitted for e in msg.waiting)

        with contextlib.suppress(TimeoutError):
            lobby = await host.wait_for(new_knock, within=1.0)
            assert isinstance(lobby, m.Lobby)
            for entry in lobby.waiting:
                if entry.participant_id not in admitted:
                    admitted.add(entry.participant_id)
                    await host.send(m.Admit(participant_id=entry.participant_id))


def counts(people: Sequence[RoomClient], kind: str) -> dict[str, dict[str, int]]:
    """Frames received so far, per receiver and publisher."""
    out: dict[str, dict[str, int]] = {}
    for person in people:
        if person.welcome is None:
            continue
        out[person.participant_id] = {
            publisher: c.frames for (publisher, k), c in person.counter.streams.items() if k == kind
        }
    return out


def gaps(people: Sequence[RoomClient], kind: str) -> dict[str, dict[str, float]]:
    """The longest time without a frame since the last ``reset_gaps``, per receiver and publisher."""
    now = time.monotonic()
    return {
        p.participant_id: {
            publisher: p.counter.longest_gap(publisher, kind, now)
            for (publisher, k) in p.counter.streams
            if k == kind
        }
        for p in people
        if p.welcome is not None
    }


class Resumer:
    """Resumes a participant's socket whenever it closes, on the first node that takes it (its peer
    connection stays: only signaling moves), and counts resumes and knocks again (a ``waiting`` after one)."""

    def __init__(self, person: RoomClient, apis: Sequence[HttpApi], bearer: str, room_id: str) -> None:
        self.person, self.apis, self.bearer, self.room_id = person, apis, bearer, room_id
        self.resumes = 0
        self.knocks = 0

    async def run(self) -> None:  # bounded by the process's own max_seconds
        while True:
            await self.person.wait_closed(within=3600)
            welcome = await self._resume_anywhere()
            assert self.person.signaling is not None
            self.person.signaling.start_heartbeat(welcome.heartbeat_seconds)
            self.resumes += 1
            first = await self.person.wait_for(lambda msg: isinstance(msg, m.Admitted | m.Waiting), within=30)
            if isinstance(first, m.Waiting):
                self.knocks += 1

    async def _resume_anywhere(self) -> m.Welcome:
        while True:
            for api in self.apis:
                self.person.tickets = api.ticket_source(self.bearer, self.room_id)
                self.person.origin = api.base_url
                with contextlib.suppress(Exception):  # that node is down or draining: the next one
                    return await self.person.join(resume=True)
            await asyncio.sleep(0.2)


def states(people: Sequence[RoomClient]) -> dict[str, int]:
    """How many participants' peer connections are in each state, and how many sockets closed."""
    out: dict[str, int] = {}
    for person in people:
        state = person.media.pc.connectionState if person.media is not None else "none"
        if person.closed is not None:
            state = f"socket closed {person.closed.close_code}"
        out[state] = out.get(state, 0) + 1
    return out


async def run(config: dict[str, Any], commands: asyncio.Queue[str]) -> None:
    clips = json.loads(Path(config["clips"]).read_text())
    audio, video = clip_from_json(clips["audio"]), clip_from_json(clips["video"])

    def tracks() -> tuple[MediaStreamTrack, ...]:
        return PreEncodedTrack(audio), PreEncodedTrack(video)

    apis: dict[str, HttpApi] = {}
    people: list[RoomClient] = []
    admitter: asyncio.Task[None] | None = None
    resumers: list[Resumer] = []
    background: list[asyncio.Task[None]] = []
    room_id = config["room_id"]
    receive = ReceiveMode(config.get("receive", ReceiveMode.PACKETS.value))
    gap_kind = config.get("gap_kind", "video")
    try:
        for n, (origin, bearer) in enumerate(zip(config["origins"], config["bearers"], strict=True)):
            api = apis.setdefault(origin, HttpApi(origin, timeout=30))
            is_host = n == 0 and config["has_host"]
            person = RoomClient(
                api.ticket_source(bearer, room_id), origin=origin, tracks=tracks, receive=receive
            )
            people.append(person)
            welcome = await person.join()
            assert person.signaling is not None
            person.signaling.start_heartbeat(welcome.heartbeat_seconds)  # a silent socket is closed
            if is_host:
                admitter = asyncio.get_running_loop().create_task(admit_knocks(person))
            else:
                await person.wait_message(m.Admitted, within=60)
            await person.start_media(retry_within=30)  # "unavailable" while the room is being placed
            if config.get("resume_origins"):
                resume_apis = [apis.setdefault(o, HttpApi(o, timeout=30)) for o in config["resume_origins"]]
                resumers.append(Resumer(person, resume_apis, bearer, room_id))
                background.append(asyncio.get_running_loop().create_task(resumers[-1].run()))
        others = config["group_size"] - 1
        deadline = time.monotonic() + config["ready_seconds"]
        while time.monotonic() < deadline:
            if all(len(p.counter.publishers("video")) >= others for p in people):
                break
            await asyncio.sleep(0.1)
        missing = sum(max(0, others - len(p.counter.publishers("video"))) for p in people)
        emit("ready", participants=[p.participant_id for p in people], missing=missing)
        stop_at = time.monotonic() + config["max_seconds"]
        while time.monotonic() < stop_at:
            try:
                command = await asyncio.wait_for(commands.get(), timeout=max(0.1, stop_at - time.monotonic()))
            except TimeoutError:
                break
            if command == "snapshot":
                emit(
                    "snapshot",
                    t=time.monotonic(),
                    cpu=time.process_time(),
                    video=counts(people, "video"),
                    audio=counts(people, "audio"),
                    connections=states(people),
                    consent_expired=CONSENT.count,
                    audio_only=[
                        str(x.reason)
                        for p in people
                        for x in p.messages
                        # about themselves (a host also hears of everyone else's)
                        if isinstance(x, m.AudioOnly) and x.on and x.participant_id == p.participant_id
                    ],
                    gaps=gaps(people, gap_kind),
                    recent={
                        p.participant_id: sorted(p.counter.recent_publishers("video", within=1.0))
                        for p in people
                        if p.welcome is not None
                    },
                    resumes=sum(r.resumes for r in resumers),
                    knocks=sum(r.knocks for r in resumers),
                )
            elif command == "reset_gaps":
                for person in people:
                    person.counter.reset_gaps()
                emit("reset", t=time.monotonic())
            else:  # "quit", or stdin closed
                break
    finally:
        for task in background:
            task.cancel()
        if admitter is not None:
            admitter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await admitter
        for person in people:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(person.close(), 5)
        for api in apis.values():
            await api.close()


async def main() -> None:
    ice_log = logging.getLogger("aioice.ice")
    ice_log.setLevel(logging.INFO)
    ice_log.propagate = False  # counted, not printed (stdout is the protocol)
    ice_log.addHandler(CONSENT)
    config = json.loads(sys.stdin.readline())
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:  # a daemon thread: a pending read never holds up the exit
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    threading.Thread(target=read_stdin, daemon=True).start()
    try:
        await asyncio.wait_for(run(config, commands), config["max_seconds"] + config["ready_seconds"] + 120)
    except Exception as exc:  # one clear line for the orchestrator, no traceback
        emit("failed", error=f"{type(exc).__name__}: {exc}"[:500])


if __name__ == "__main__":
    asyncio.run(main())
