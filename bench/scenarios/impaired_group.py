"""The 5-person group of issue 13 on impaired home links, for ``bench/impaired.py`` and ``tests/media/``.

Five participants publish audio and video (clips encoded once, replayed) and receive everyone else:
``clean1`` and ``clean2`` on clean links, ``lossdown`` with 3 % downlink loss, ``cap250`` with its downlink
capped at 250 kbit/s, ``lossup`` with 3 % uplink loss (:data:`ROLES`). Impairment sits in each client's own
UDP path (:mod:`bench.scenarios.impairment`). Whoever runs the relay passes ``join`` (offer in, answer out)
and answers the relay's renegotiation offers with the peers in ``peers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Final

from bench.scenarios.impairment import ImpairedLink, Impairment, Shape
from vIOP.client.media import EncodedClip, FrameCounter, MediaPeer, PreEncodedTrack, ReceiveMode

LOOPBACK: Final = ("127.0.0.1",)
CAP_BPS: Final = 250_000

ROLES: Final[dict[str, Impairment]] = {
    "clean1": Impairment(),
    "clean2": Impairment(),
    "lossdown": Impairment(down=Shape(loss=0.03)),
    "cap250": Impairment(down=Shape(rate_bps=CAP_BPS)),
    "lossup": Impairment(up=Shape(loss=0.03)),
}

Join = Callable[[str, str], Awaitable[str]]
"""``join(participant id, offer SDP) -> answer SDP``."""


@dataclass
class Participant:
    role: str
    pid: str
    link: ImpairedLink  # every participant has one, so what the relay sends it is counted even when clean
    peer: MediaPeer
    audio: PreEncodedTrack
    video: PreEncodedTrack


async def join_group(
    join: Join,
    peers: MutableMapping[str, MediaPeer],
    *,
    video: EncodedClip,
    audio: EncodedClip,
    roles: dict[str, Impairment] = ROLES,
    receive: ReceiveMode = ReceiveMode.DECODE,
    seed: int = 1,
) -> list[Participant]:
    """Everyone joins in order; participant ids are ``pt_<role>``; loss seeds are ``seed``, ``seed + 2``..."""
    people = []
    for n, (role, impairment) in enumerate(roles.items()):
        link = ImpairedLink(impairment, seed=seed + 2 * n)
        peer = MediaPeer(host_addresses=LOOPBACK, receive=receive, counter=FrameCounter(), tap=link)
        audio_track, video_track = PreEncodedTrack(audio), PreEncodedTrack(video)
        peer.publish(audio_track, video_track)
        pid = f"pt_{role}"
        peers[pid] = peer
        people.append(Participant(role, pid, link, peer, audio_track, video_track))
        await peer.accept_answer(await join(pid, await peer.create_offer()))
    return people


async def everyone_hears_everyone(people: list[Participant], within: float) -> bool:
    """Bounded poll until every receiver has audio from every other person; False on timeout."""
    deadline = time.monotonic() + within
    while not all(r.peer.counter.frames(p.pid, "audio") for r in people for p in people if p is not r):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def close_group(people: list[Participant]) -> None:
    for person in people:
        person.link.close()
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(person.peer.close(), 5)
